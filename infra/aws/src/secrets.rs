//! The code key from AWS Secrets Manager: read once, when a function starts, so nothing
//! secret sits in the function's configuration (where `lambda:GetFunctionConfiguration`
//! would show it).

use aws_sdk_secretsmanager::Client;
use domain::secrets::CodeKey;

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
