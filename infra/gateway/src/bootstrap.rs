//! Start-up of a Lambda: configuration from the environment once, SDK clients once,
//! tracing once, then the runtime loop.
//!
//! | variable | meaning |
//! |---|---|
//! | `USERS_TABLE`, `BALANCES_TABLE`, `AUDIT_TABLE` | DynamoDB table names |
//! | `CODE_HMAC_KEY` | key (≥ 32 bytes of text) that codes are digested under; only functions that issue or check codes |
//! | `ACTIVATION_LINK_PREFIX` | text the activation token is appended to |
//! | `PRICING` | pricing JSON (default: `shared/config/pricing.json`) |
//! | `MAIL_FROM`, `SES_CONFIGURATION_SET` | SES sender identity and optional configuration set |
//! | `SMS_SENDER_ID` | optional alphanumeric SMS sender |

use std::future::Future;
use std::sync::Arc;

use aws_adapters::{DynamoStore, SesMailer, SnsTexter, TableNames};
use domain::app::{App, RetryPolicy, Settings};
use domain::catalog::Catalog;
use domain::clock::SystemClock;
use domain::messaging::{DeliveryError, EmailMessage, Mailer, SmsMessage, TextSender};
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
    let code_key = match std::env::var("CODE_HMAC_KEY") {
        Ok(text) if !text.is_empty() => Some(parse_code_key(&text)?),
        _ => None,
    };
    Ok(Settings {
        catalog: Arc::new(Catalog::bundled()),
        pricing,
        code_key,
        activation_link_prefix: std::env::var("ACTIVATION_LINK_PREFIX").unwrap_or_else(|_| DEFAULT_ACTIVATION_LINK_PREFIX.to_owned()),
        retry: RetryPolicy::default(),
    })
}

/// The key is used as the text's bytes (Secrets Manager generates it); at least 32.
pub fn parse_code_key(text: &str) -> Result<CodeKey, String> {
    CodeKey::new(text.trim().as_bytes().to_vec()).map_err(|e| format!("CODE_HMAC_KEY: {e}"))
}

/// A function that sends no messages gets this in place of SES and SNS, so its binary does
/// not carry those SDKs; calling it is a wiring bug and fails loudly.
struct NoMessaging;

#[async_trait::async_trait]
impl Mailer for NoMessaging {
    async fn send_email(&self, _: &EmailMessage) -> Result<(), DeliveryError> {
        Err(DeliveryError("this function is not configured to send email".into()))
    }
}

#[async_trait::async_trait]
impl TextSender for NoMessaging {
    async fn send_sms(&self, _: &SmsMessage) -> Result<(), DeliveryError> {
        Err(DeliveryError("this function is not configured to send SMS".into()))
    }
}

/// Builds the app of a function that stores but sends nothing.
pub async fn storage_app() -> Result<App, lambda_http::Error> {
    let config = aws_adapters::sdk_config().await;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&config), TableNames::from_env()?);
    Ok(App {
        store: Arc::new(store),
        mailer: Arc::new(NoMessaging),
        texts: Arc::new(NoMessaging),
        clock: Arc::new(SystemClock),
        settings: Arc::new(settings_from_env()?),
    })
}

/// Builds the app of a function that also sends email (SES) and SMS (SNS).
pub async fn messaging_app() -> Result<App, lambda_http::Error> {
    let config = aws_adapters::sdk_config().await;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&config), TableNames::from_env()?);
    let from = std::env::var("MAIL_FROM").map_err(|_| "MAIL_FROM is not set")?;
    let configuration_set = std::env::var("SES_CONFIGURATION_SET").ok().filter(|s| !s.is_empty());
    let sender = std::env::var("SMS_SENDER_ID").ok().filter(|s| !s.is_empty());
    Ok(App {
        store: Arc::new(store),
        mailer: Arc::new(SesMailer::new(aws_sdk_sesv2::Client::new(&config), from, configuration_set)),
        texts: Arc::new(SnsTexter::new(aws_sdk_sns::Client::new(&config), sender)),
        clock: Arc::new(SystemClock),
        settings: Arc::new(settings_from_env()?),
    })
}

/// Runs an HTTP function: `app` is built once, then every invocation calls `handle`.
pub async fn run_http<Build, Handle, Fut>(build: Build, handle: Handle) -> Result<(), lambda_http::Error>
where
    Build: Future<Output = Result<App, lambda_http::Error>>,
    Handle: Fn(&'static App, Request) -> Fut + Sync,
    Fut: Future<Output = Response<Body>> + Send,
{
    lambda_http::tracing::init_default_subscriber();
    // The app lives as long as the process; leaking it gives handlers a plain reference.
    let app: &'static App = Box::leak(Box::new(build.await?));
    let handle = &handle;
    lambda_http::run(service_fn(move |request: Request| async move { Ok::<_, std::convert::Infallible>(handle(app, request).await) })).await
}
