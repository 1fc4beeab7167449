//! The code key from AWS Secrets Manager, so nothing secret sits in the function's
//! configuration (where `lambda:GetFunctionConfiguration` would show it): read once per
//! process, when the first request that issues or checks a secret needs it, not at start-up
//! (a quote, a listing or a refused request never waits for it).

use async_trait::async_trait;
use aws_sdk_secretsmanager::Client;
use domain::env::SecretSource;
use domain::secrets::CodeKey;
use tokio::sync::OnceCell;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("the secret could not be read")]
    Unavailable(#[source] aws_sdk_secretsmanager::Error),
    #[error("the secret holds no text")]
    NotText,
    #[error("the secret is not a usable key: {0}")]
    Unusable(String),
}

/// Reads the secret `secret_id` (its ARN or name): its text, as the key's bytes (at least 32).
pub async fn read_code_key(client: &Client, secret_id: &str) -> Result<CodeKey, SecretError> {
    let output = client
        .get_secret_value()
        .secret_id(secret_id)
        .send()
        .await
        .map_err(|error| SecretError::Unavailable(aws_sdk_secretsmanager::Error::from(error)))?;
    let text = output.secret_string().ok_or(SecretError::NotText)?;
    CodeKey::new(text.trim().as_bytes().to_vec()).map_err(|error| SecretError::Unusable(error.to_string()))
}

/// The code key of the secret `secret_id`, read on first use and kept for the process's
/// life. A failed read is not kept: the request that needed the key gets a bare 5xx (its
/// cause logged, never the secret) and the next one tries again.
pub struct SecretsManagerKey {
    client: crate::sdk::LazyClient<Client>,
    secret_id: String,
    key: OnceCell<CodeKey>,
}

impl SecretsManagerKey {
    pub fn new(client: impl Into<crate::sdk::LazyClient<Client>>, secret_id: impl Into<String>) -> Self {
        SecretsManagerKey { client: client.into(), secret_id: secret_id.into(), key: OnceCell::new() }
    }
}

#[async_trait]
impl SecretSource for SecretsManagerKey {
    async fn code_key(&self) -> Result<CodeKey, domain::error::Error> {
        self.key
            .get_or_try_init(|| read_code_key(self.client.get(), &self.secret_id))
            .await
            .cloned()
            .map_err(domain::error::Error::internal)
    }
}
