//! Idempotency records: the first response to a keyed request, kept so a retry gets it
//! again instead of paying twice.

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::organization::OrganizationId;
use crate::secrets::sha256_hex;

/// How long a subscribe or renewal key is remembered.
pub const KEY_LIFETIME: Duration = Duration::hours(24);

/// Where a key lives. A caller's `Idempotency-Key` is one key whatever paid operation it
/// is sent with: the same key with another operation is another request, refused as a
/// reuse (the operation is part of the request's digest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdempotencyScope {
    /// A caller's `Idempotency-Key` (subscribe, renew), remembered `KEY_LIFETIME`.
    #[serde(alias = "subscribe", alias = "renew")]
    Caller,
    /// Keyed by the payment reference, remembered forever.
    Credit,
}

impl IdempotencyScope {
    pub fn as_str(self) -> &'static str {
        match self {
            IdempotencyScope::Caller => "caller",
            IdempotencyScope::Credit => "credit",
        }
    }
}

/// The paid operations a caller's key can be sent with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Subscribe,
    Renew,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Subscribe => "subscribe",
            Operation::Renew => "renew",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    pub organization: OrganizationId,
    pub scope: IdempotencyScope,
    /// SHA-256 of the client's key (the key itself can be any text).
    pub key_digest: String,
    /// SHA-256 of the canonical request, to tell a retry from a reuse.
    pub request_digest: String,
    /// The answer, as JSON text.
    pub body: String,
    #[serde(with = "crate::clock::utc")]
    pub created_at: OffsetDateTime,
    #[serde(default, with = "crate::clock::utc::option", skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<OffsetDateTime>,
}

impl IdempotencyRecord {
    /// Until its expiry; from that instant on the key is free again (the same instant the
    /// store's `Expect::AbsentOrExpiredBy` lets a new answer replace it).
    pub fn is_live_at(&self, now: OffsetDateTime) -> bool {
        self.expires_at.is_none_or(|expiry| now < expiry)
    }
}

/// The digest of a client-provided key.
pub fn key_digest(key: &str) -> String {
    sha256_hex(key.as_bytes())
}

/// The digest of a request: its JSON with keys sorted and whitespace dropped, so the same
/// request written differently is still the same request.
pub fn request_digest(request: &serde_json::Value) -> String {
    let mut canonical = String::new();
    write_canonical(request, &mut canonical);
    sha256_hex(canonical.as_bytes())
}

/// Sorts object keys explicitly rather than trusting the map type, whose order depends on
/// serde_json features that another crate in the build may switch on.
fn write_canonical(value: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (position, key) in keys.into_iter().enumerate() {
                if position > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (position, item) in items.iter().enumerate() {
                if position > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// Checks the header value: 1 to 200 printable ASCII characters.
pub fn valid_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= 200 && key.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_request_written_differently_has_the_same_digest() {
        let a: serde_json::Value = serde_json::from_str(r#"{"b": [1, {"y": 2, "x": 1}], "a": "ض"}"#).unwrap();
        let b: serde_json::Value = serde_json::from_str(r#"{"a":"ض","b":[1,{"x":1,"y":2}]}"#).unwrap();
        let c: serde_json::Value = serde_json::from_str(r#"{"a":"ض","b":[{"x":1,"y":2},1]}"#).unwrap();
        assert_eq!(request_digest(&a), request_digest(&b));
        assert_ne!(request_digest(&a), request_digest(&c));
    }

    #[test]
    fn keys_are_printable_ascii_up_to_200_characters() {
        assert!(valid_key("3f2a-key_1"));
        assert!(!valid_key(""));
        assert!(!valid_key("has space"));
        assert!(!valid_key(&"k".repeat(201)));
        assert!(!valid_key("مفتاح"));
    }
}
