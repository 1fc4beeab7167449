//! The local stand-in for API Gateway's JWT authorizer: HS256 with a local secret, the
//! same issuer and audience checks, and claims handed on as strings the way API Gateway
//! hands them to a function.

use std::collections::HashMap;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Map, Value, json};

pub const DEFAULT_ISSUER: &str = "https://local-api.invalid/";
pub const DEFAULT_AUDIENCE: &str = "establishment-users";
/// Only for running on a developer's machine; `LOCAL_JWT_SECRET` overrides it.
pub const DEFAULT_SECRET: &str = "local-development-secret-not-for-production-use";

#[derive(Clone)]
pub struct JwtConfig {
    secret: Vec<u8>,
    issuer: String,
    audience: String,
    /// Built once: the HMAC key and the rules every token is checked against.
    key: DecodingKey,
    validation: Validation,
}

impl JwtConfig {
    pub fn new(secret: &[u8], issuer: &str, audience: &str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 0;
        JwtConfig {
            secret: secret.to_vec(),
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            key: DecodingKey::from_secret(secret),
            validation,
        }
    }

    pub fn from_env() -> Self {
        let secret = std::env::var("LOCAL_JWT_SECRET").unwrap_or_else(|_| DEFAULT_SECRET.to_owned());
        let issuer = std::env::var("LOCAL_JWT_ISSUER").unwrap_or_else(|_| DEFAULT_ISSUER.to_owned());
        let audience = std::env::var("LOCAL_JWT_AUDIENCE").unwrap_or_else(|_| DEFAULT_AUDIENCE.to_owned());
        JwtConfig::new(secret.as_bytes(), &issuer, &audience)
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// Signs a token for `subject`, with `role` (`operator`, `service`) when given.
    pub fn mint(&self, subject: &str, role: Option<&str>, lifetime_seconds: i64) -> String {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut claims = json!({ "sub": subject, "iss": self.issuer, "aud": self.audience, "iat": now, "exp": now + lifetime_seconds });
        if let Some(role) = role {
            claims["role"] = Value::String(role.to_owned());
        }
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(&self.secret))
            .expect("HS256 signing cannot fail")
    }

    /// Verifies signature (HS256 only: `none` and other algorithms are refused), expiry,
    /// issuer and audience, and returns the claims as API Gateway would pass them.
    pub fn verify(&self, token: &str) -> Result<HashMap<String, String>, jsonwebtoken::errors::Error> {
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &self.key, &self.validation)?;
        Ok(data.claims.into_iter().map(|(name, value)| (name, claim_text(value))).collect())
    }
}

/// API Gateway passes every claim as text; lists look like `[a b]`.
fn claim_text(value: Value) -> String {
    match value {
        Value::String(text) => text,
        Value::Array(items) => format!("[{}]", items.into_iter().map(claim_text).collect::<Vec<_>>().join(" ")),
        other => other.to_string(),
    }
}
