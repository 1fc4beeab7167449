//! Start-up of a Lambda: configuration from the environment once, SDK clients once (one
//! configuration for all of them, `aws_adapters::sdk::from_env`: no profile files, no
//! certificate store read), logging and metrics once (`observability::init`), then the
//! runtime loop. Each function
//! builds only the ports it uses: the store (every function), the code key (subscribe,
//! activate, modify, deliver — read from Secrets Manager by the first request that needs
//! it), the senders (deliver).
//!
//! | variable | meaning |
//! |---|---|
//! | `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN` | set by Lambda; `AWS_ENDPOINT_URL` for an emulator (see `aws_adapters::sdk`) |
//! | `USERS_TABLE`, `BALANCES_TABLE`, `AUDIT_TABLE`, `OUTBOX_TABLE` | DynamoDB table names |
//! | `CODE_KEY_SECRET_ARN` | the Secrets Manager secret whose text (≥ 32 bytes) is the key links and codes are derived and digested under |
//! | `ACTIVATION_LINK_PREFIX` | text the activation token is appended to |
//! | `PRICING` | pricing JSON (default: `shared/config/pricing.json`) |
//! | `MAIL_FROM`, `SES_CONFIGURATION_SET` | SES sender identity and optional configuration set (deliver) |
//! | `SMS_SENDER_ID` | optional alphanumeric SMS sender (deliver) |

use std::future::Future;
use std::sync::Arc;

use aws_adapters::sdk::LazyClient;
use aws_adapters::{DynamoStore, SesMailer, SnsTexter, TableNames};
use domain::clock::SystemClock;
use domain::env::{Env, RetryPolicy, SecretSource, Senders, Settings};
use domain::pricing::PricingConfig;
use domain::secrets::CodeKey;
use lambda_http::{Body, Request, Response, service_fn};

pub const DEFAULT_ACTIVATION_LINK_PREFIX: &str = "https://portal.example.sa/activate#token=";

/// Reads the settings every function shares.
pub fn settings_from_env() -> Result<Settings, String> {
    let pricing = match std::env::var("PRICING") {
        Ok(json) if !json.trim().is_empty() => PricingConfig::from_json(&json).map_err(|e| format!("PRICING: {e}"))?,
        _ => PricingConfig::bundled(),
    };
    Ok(Settings {
        catalog: Arc::new(domain::catalog::Catalog::bundled()),
        pricing,
        activation_link_prefix: std::env::var("ACTIVATION_LINK_PREFIX").unwrap_or_else(|_| DEFAULT_ACTIVATION_LINK_PREFIX.to_owned()),
        retry: RetryPolicy::default(),
    })
}

/// A key given as text (the local server's `CODE_HMAC_KEY`): its bytes, at least 32.
pub fn parse_code_key(text: &str) -> Result<CodeKey, String> {
    CodeKey::new(text.trim().as_bytes().to_vec()).map_err(|e| format!("CODE_HMAC_KEY: {e}"))
}

/// The store, the clock and the settings.
pub async fn env() -> Result<Env, lambda_http::Error> {
    let config = aws_adapters::sdk::from_env()?;
    let store = DynamoStore::new(LazyClient::new(config, aws_sdk_dynamodb::Client::new), TableNames::from_env()?);
    Ok(Env {
        store: Arc::new(store),
        clock: Arc::new(SystemClock),
        entropy: Arc::new(domain::entropy::SystemEntropy),
        settings: Arc::new(settings_from_env()?),
    })
}

/// The key links and codes are derived and digested under: the Secrets Manager secret
/// `CODE_KEY_SECRET_ARN` names, read when a request first needs it
/// (`aws_adapters::secrets::SecretsManagerKey`), so start-up makes no request of its own.
pub async fn secrets() -> Result<Arc<dyn SecretSource>, lambda_http::Error> {
    let secret = std::env::var("CODE_KEY_SECRET_ARN").map_err(|_| "CODE_KEY_SECRET_ARN is not set")?;
    let config = aws_adapters::sdk::from_env()?;
    Ok(Arc::new(aws_adapters::secrets::SecretsManagerKey::new(LazyClient::new(config, aws_sdk_secretsmanager::Client::new), secret)))
}

/// SES and SNS, for `deliver`, paced at the account's rates (`domain::pace`).
pub async fn senders() -> Result<Senders, lambda_http::Error> {
    let config = aws_adapters::sdk::from_env()?;
    let from = std::env::var("MAIL_FROM").map_err(|_| "MAIL_FROM is not set")?;
    let configuration_set = std::env::var("SES_CONFIGURATION_SET").ok().filter(|s| !s.is_empty());
    let sender = std::env::var("SMS_SENDER_ID").ok().filter(|s| !s.is_empty());
    let rate = domain::pace::SendRate::from_lookup(|name| std::env::var(name).ok())?;
    Ok(domain::pace::Paced::senders(
        Arc::new(SesMailer::new(LazyClient::new(config.clone(), aws_sdk_sesv2::Client::new), from, configuration_set)),
        Arc::new(SnsTexter::new(LazyClient::new(config, aws_sdk_sns::Client::new), sender)),
        rate,
    ))
}

/// Runs an HTTP function: its ports are built once, then every invocation calls `handle`.
pub async fn run_http<Ports, Build, Handle, Fut>(build: Build, handle: Handle) -> Result<(), lambda_http::Error>
where
    Ports: Send + Sync + 'static,
    Build: Future<Output = Result<Ports, lambda_http::Error>>,
    Handle: Fn(&'static Ports, Request) -> Fut + Sync,
    Fut: Future<Output = Response<Body>> + Send,
{
    crate::observability::init();
    // The ports live as long as the process; leaking them gives handlers a plain reference.
    let ports: &'static Ports = Box::leak(Box::new(build.await?));
    let handle = &handle;
    lambda_http::run(service_fn(move |request: Request| async move { Ok::<_, std::convert::Infallible>(handle(ports, request).await) }))
        .await
}
