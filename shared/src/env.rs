//! What a command runs with: the store, the clock and the settings every function needs,
//! the secret key of the functions that issue or deliver secrets, and the senders of the
//! one function that sends. Each function builds only the parts it uses.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::catalog::Catalog;
use crate::clock::Clock;
use crate::entropy::Entropy;
use crate::error::Error;
use crate::messaging::{Mailer, TextSender};
use crate::pricing::PricingConfig;
use crate::secrets::CodeKey;
use crate::store::Store;

/// How the executor backs off when a conditional write loses a race. The number of
/// attempts is a ceiling; the function's deadline usually ends the retries first.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub base: Duration,
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        // Enough for dozens of concurrent writers on one organization's balance; beyond that
        // the client gets 503 `busy` and retries with the same idempotency key.
        RetryPolicy { attempts: 12, base: Duration::from_millis(5), cap: Duration::from_millis(250) }
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub catalog: Arc<Catalog>,
    pub pricing: PricingConfig,
    /// The activation link is this text followed by the token, e.g.
    /// `https://portal.example.sa/activate#token=`.
    pub activation_link_prefix: String,
    pub retry: RetryPolicy,
}

impl Settings {
    /// The bundled catalog and pricing, with `activation_link_prefix`.
    pub fn bundled(activation_link_prefix: impl Into<String>) -> Self {
        Settings {
            catalog: Arc::new(Catalog::bundled()),
            pricing: PricingConfig::bundled(),
            activation_link_prefix: activation_link_prefix.into(),
            retry: RetryPolicy::default(),
        }
    }
}

/// The ports every command needs.
#[derive(Clone)]
pub struct Env {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    /// Where identifiers, nonces, commit tokens and backoff jitter come from.
    pub entropy: Arc<dyn Entropy>,
    pub settings: Arc<Settings>,
}

/// Where the key that link tokens and codes are derived and digested under comes from.
/// In AWS it is read from Secrets Manager once per process, at first use; locally and in
/// tests it is given.
#[async_trait]
pub trait SecretSource: Send + Sync {
    async fn code_key(&self) -> Result<CodeKey, Error>;
}

/// A key held in memory (local runs and tests).
pub struct FixedKey(pub CodeKey);

#[async_trait]
impl SecretSource for FixedKey {
    async fn code_key(&self) -> Result<CodeKey, Error> {
        Ok(self.0.clone())
    }
}

/// The senders `deliver` hands messages to.
#[derive(Clone)]
pub struct Senders {
    pub mailer: Arc<dyn Mailer>,
    pub texts: Arc<dyn TextSender>,
}
