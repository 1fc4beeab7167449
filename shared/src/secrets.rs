//! Activation link tokens and verification codes.
//!
//! Neither is ever stored, nor put in a message intent or a stream record. What is stored
//! is random material — a 128-bit nonce, in the outbox intent — and a digest, on the user.
//! The secret itself is derived from the nonce under the server-side key (an HMAC), by the
//! command that issues it (to compute the digest) and again by `deliver` (to send it), and
//! then forgotten. Whoever reads the tables, or the stream, holds nonces and digests and
//! cannot activate anyone without the key.
//!
//! Link tokens are 256 bits of HMAC output, so a plain SHA-256 of them is a safe lookup
//! key. Codes have only a million values, so their digest is an HMAC under the key too: a
//! leaked table cannot be brute-forced offline.

use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

use crate::entropy::Fresh;
use crate::identity::PersonId;
use crate::organization::OrganizationId;

/// How long an activation link works.
pub const LINK_TOKEN_TTL: Duration = Duration::hours(72);
/// How long an SMS or email code works.
pub const CODE_TTL: Duration = Duration::minutes(10);
/// Wrong tries after which a code is dead.
pub const MAX_CODE_ATTEMPTS: u8 = 5;

type HmacSha256 = hmac::Hmac<Sha256>;

/// The server-side key under which codes are digested. At least 32 bytes.
#[derive(Clone)]
pub struct CodeKey(Vec<u8>);

impl CodeKey {
    pub fn new(bytes: Vec<u8>) -> Result<Self, &'static str> {
        if bytes.len() < 32 {
            return Err("the code key must be at least 32 bytes");
        }
        Ok(CodeKey(bytes))
    }

    /// A key of its own for another use (`label`): HMAC-SHA256 of the label under this key,
    /// so one secret serves several purposes without any two sharing a key.
    pub fn derive(&self, label: &str) -> [u8; 32] {
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.0).expect("HMAC accepts keys of any length");
        mac.update(b"derived-key:");
        mac.update(label.as_bytes());
        mac.finalize().into_bytes().into()
    }
}

impl std::fmt::Debug for CodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CodeKey(..)")
    }
}

/// What a code proves: activation of a user's mobile, or ownership of a new contact value.
/// Bound into the digest so a code for one purpose cannot be replayed for another.
#[derive(Debug, Clone, Copy)]
pub enum CodePurpose<'a> {
    ActivateMobile,
    VerifyEmail(&'a str),
    VerifyMobile(&'a str),
}

/// The stored form of a link token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenDigest {
    pub sha256: String,
    #[serde(with = "crate::clock::utc")]
    pub expires_at: OffsetDateTime,
}

/// The stored form of a code, with its count of wrong tries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeDigest {
    pub hmac: String,
    #[serde(with = "crate::clock::utc")]
    pub expires_at: OffsetDateTime,
    pub failed_attempts: u8,
}

/// A freshly issued secret: the nonce it is derived from (for the outbox intent), the
/// digest to store, and the secret itself — for tests and for nothing else to keep.
pub struct Issued<D> {
    pub nonce: Nonce,
    pub raw: String,
    pub digest: D,
}

/// The random material a link token or code is derived from, stored in the outbox intent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Nonce(String);

impl Nonce {
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Nonce(hex::encode(bytes))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn derive(key: &CodeKey, label: &str, nonce: &Nonce, counter: u32) -> [u8; 32] {
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&key.0).expect("HMAC accepts keys of any length");
    for part in [label.as_bytes(), nonce.0.as_bytes(), &counter.to_be_bytes()] {
        mac.update(&(part.len() as u32).to_be_bytes());
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// The activation link token a nonce stands for: 256 bits, base64url (43 characters).
pub fn link_token(key: &CodeKey, nonce: &Nonce) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(derive(key, "activation-link", nonce, 0))
}

/// The six-digit code a nonce stands for, uniform over 000000–999999 (rejection sampling
/// over successive HMAC outputs).
pub fn code_for(key: &CodeKey, nonce: &Nonce) -> String {
    (0u32..)
        .find_map(|counter| {
            let bytes = derive(key, "verification-code", nonce, counter);
            let value = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
            // 4_294_000_000 is the largest multiple of 1_000_000 below 2^32.
            (value < 4_294_000_000).then(|| format!("{:06}", value % 1_000_000))
        })
        .expect("an HMAC output below the bound turns up")
}

/// The outcome of checking a code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeCheck {
    Accepted,
    Wrong { remaining: u8 },
    Locked,
    Expired,
}

/// A new activation link: its nonce (from `fresh`) and the digest to store.
pub fn new_link_token(key: &CodeKey, now: OffsetDateTime, fresh: &mut Fresh) -> Issued<TokenDigest> {
    let nonce = fresh.nonce();
    let raw = link_token(key, &nonce);
    let digest = TokenDigest { sha256: token_sha256(&raw), expires_at: now + LINK_TOKEN_TTL };
    Issued { nonce, raw, digest }
}

/// The lookup key of a link token.
pub fn token_sha256(raw: &str) -> String {
    hex::encode(Sha256::digest(raw.as_bytes()))
}

fn code_hmac(key: &CodeKey, organization: &OrganizationId, user: &PersonId, purpose: CodePurpose<'_>, code: &str) -> HmacSha256 {
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&key.0).expect("HMAC accepts keys of any length");
    let purpose = match purpose {
        CodePurpose::ActivateMobile => "activate-mobile".to_owned(),
        CodePurpose::VerifyEmail(value) => format!("verify-email:{value}"),
        CodePurpose::VerifyMobile(value) => format!("verify-mobile:{value}"),
    };
    for part in [organization.as_str(), user.as_str(), purpose.as_str(), code] {
        mac.update(&(part.len() as u32).to_be_bytes());
        mac.update(part.as_bytes());
    }
    mac
}

/// A new code for `purpose`: its nonce and the digest to store.
pub fn new_code(
    key: &CodeKey,
    organization: &OrganizationId,
    user: &PersonId,
    purpose: CodePurpose<'_>,
    now: OffsetDateTime,
    fresh: &mut Fresh,
) -> Issued<CodeDigest> {
    let nonce = fresh.nonce();
    let raw = code_for(key, &nonce);
    let hmac = code_digest(key, organization, user, purpose, &raw);
    Issued { nonce, raw, digest: CodeDigest { hmac, expires_at: now + CODE_TTL, failed_attempts: 0 } }
}

/// The stored digest of a code.
pub fn code_digest(key: &CodeKey, organization: &OrganizationId, user: &PersonId, purpose: CodePurpose<'_>, code: &str) -> String {
    hex::encode(code_hmac(key, organization, user, purpose, code).finalize().into_bytes())
}

impl CodeDigest {
    pub fn is_locked(&self) -> bool {
        self.failed_attempts >= MAX_CODE_ATTEMPTS
    }

    /// Checks a submitted code and counts a wrong try. The comparison is constant-time.
    pub fn check(
        &mut self,
        key: &CodeKey,
        organization: &OrganizationId,
        user: &PersonId,
        purpose: CodePurpose<'_>,
        submitted: &str,
        now: OffsetDateTime,
    ) -> CodeCheck {
        if self.is_locked() {
            return CodeCheck::Locked;
        }
        if now >= self.expires_at {
            return CodeCheck::Expired;
        }
        let Ok(expected) = hex::decode(&self.hmac) else {
            return CodeCheck::Locked;
        };
        let matches = code_hmac(key, organization, user, purpose, submitted.trim()).verify_slice(&expected).is_ok();
        if matches {
            CodeCheck::Accepted
        } else {
            self.failed_attempts = self.failed_attempts.saturating_add(1);
            if self.is_locked() { CodeCheck::Locked } else { CodeCheck::Wrong { remaining: MAX_CODE_ATTEMPTS - self.failed_attempts } }
        }
    }
}

/// A digest of a request body or an idempotency key, for comparing without storing them.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn key() -> CodeKey {
        CodeKey::new(vec![7; 32]).unwrap()
    }

    fn fresh() -> Fresh {
        Fresh::for_tests(1)
    }

    fn who() -> (OrganizationId, PersonId) {
        (OrganizationId::parse("7001234567").unwrap(), PersonId::parse("1000000008").unwrap())
    }

    #[test]
    fn link_tokens_have_256_bits_and_store_only_their_hash() {
        let now = datetime!(2026-11-23 10:00 UTC);
        let mut fresh = fresh();
        let token = new_link_token(&key(), now, &mut fresh);
        assert_eq!(token.raw.len(), 43);
        assert_ne!(token.digest.sha256, token.raw);
        assert_eq!(token.digest.sha256, token_sha256(&token.raw));
        assert_eq!(token.digest.expires_at, now + Duration::hours(72));
        assert_ne!(new_link_token(&key(), now, &mut fresh).raw, token.raw);
    }

    #[test]
    fn a_secret_is_derived_again_from_its_nonce_only_with_the_key() {
        let now = datetime!(2026-11-23 10:00 UTC);
        let (org, user) = who();
        let token = new_link_token(&key(), now, &mut fresh());
        assert_eq!(link_token(&key(), &token.nonce), token.raw, "deliver derives the same link");
        assert!(!token.nonce.as_str().contains(&token.raw) && token.digest.sha256 != token_sha256(token.nonce.as_str()));
        let other_key = CodeKey::new(vec![8; 32]).unwrap();
        assert_ne!(link_token(&other_key, &token.nonce), token.raw, "without the key the nonce is useless");

        let code = new_code(&key(), &org, &user, CodePurpose::ActivateMobile, now, &mut fresh());
        assert_eq!(code_for(&key(), &code.nonce), code.raw);
        assert_eq!(code_digest(&key(), &org, &user, CodePurpose::ActivateMobile, &code.raw), code.digest.hmac);
        assert_ne!(code_for(&other_key, &code.nonce), code.raw);
    }

    #[test]
    fn derived_codes_are_six_digits_and_spread_over_all_digits() {
        let mut first_digits = std::collections::BTreeSet::new();
        let mut fresh = fresh();
        for _ in 0..400 {
            let code = code_for(&key(), &fresh.nonce());
            assert!(code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()), "{code}");
            first_digits.insert(code.as_bytes()[0]);
        }
        assert_eq!(first_digits.len(), 10, "every leading digit turns up in 400 codes");
    }

    #[test]
    fn a_code_is_six_digits_and_its_digest_is_not_the_code() {
        let (org, user) = who();
        let code = new_code(&key(), &org, &user, CodePurpose::ActivateMobile, datetime!(2026-11-23 10:00 UTC), &mut fresh());
        assert_eq!(code.raw.len(), 6);
        assert!(code.raw.bytes().all(|b| b.is_ascii_digit()));
        assert!(!code.digest.hmac.contains(&code.raw));
        assert_eq!(code.digest.hmac.len(), 64);
    }

    #[test]
    fn the_right_code_is_accepted_and_wrong_ones_count_down_to_a_lock() {
        let (org, user) = who();
        let now = datetime!(2026-11-23 10:00 UTC);
        let issued = new_code(&key(), &org, &user, CodePurpose::ActivateMobile, now, &mut fresh());
        let wrong = if issued.raw == "000000" { "111111" } else { "000000" };
        let mut digest = issued.digest.clone();
        for remaining in (1..MAX_CODE_ATTEMPTS).rev() {
            assert_eq!(digest.check(&key(), &org, &user, CodePurpose::ActivateMobile, wrong, now), CodeCheck::Wrong { remaining });
        }
        assert_eq!(digest.check(&key(), &org, &user, CodePurpose::ActivateMobile, wrong, now), CodeCheck::Locked);
        // Once dead, even the right code is refused.
        assert_eq!(digest.check(&key(), &org, &user, CodePurpose::ActivateMobile, &issued.raw, now), CodeCheck::Locked);

        let mut unspoiled = issued.digest;
        assert_eq!(unspoiled.check(&key(), &org, &user, CodePurpose::ActivateMobile, &issued.raw, now), CodeCheck::Accepted);
    }

    #[test]
    fn a_code_expires_after_ten_minutes() {
        let (org, user) = who();
        let now = datetime!(2026-11-23 10:00 UTC);
        let issued = new_code(&key(), &org, &user, CodePurpose::ActivateMobile, now, &mut fresh());
        let mut digest = issued.digest.clone();
        assert_eq!(
            digest.check(&key(), &org, &user, CodePurpose::ActivateMobile, &issued.raw, now + Duration::minutes(10)),
            CodeCheck::Expired
        );
        let mut digest = issued.digest;
        assert_eq!(
            digest.check(&key(), &org, &user, CodePurpose::ActivateMobile, &issued.raw, now + Duration::seconds(599)),
            CodeCheck::Accepted
        );
    }

    #[test]
    fn a_code_is_bound_to_its_purpose_user_and_key() {
        let (org, user) = who();
        let now = datetime!(2026-11-23 10:00 UTC);
        let issued = new_code(&key(), &org, &user, CodePurpose::VerifyEmail("a@example.com"), now, &mut fresh());
        let other_user = PersonId::parse("2000000006").unwrap();
        let mut d = issued.digest.clone();
        assert_ne!(d.check(&key(), &org, &user, CodePurpose::VerifyEmail("b@example.com"), &issued.raw, now), CodeCheck::Accepted);
        let mut d2 = issued.digest.clone();
        assert_ne!(d2.check(&key(), &org, &other_user, CodePurpose::VerifyEmail("a@example.com"), &issued.raw, now), CodeCheck::Accepted);
        let other_key = CodeKey::new(vec![8; 32]).unwrap();
        let mut d3 = issued.digest;
        assert_ne!(d3.check(&other_key, &org, &user, CodePurpose::VerifyEmail("a@example.com"), &issued.raw, now), CodeCheck::Accepted);
    }
}
