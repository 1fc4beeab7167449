//! The ports and settings a use case runs with. Each Lambda builds one `App` at start-up;
//! the local server and the tests build theirs with embedded adapters.

use std::sync::Arc;
use std::time::Duration;

use crate::catalog::Catalog;
use crate::clock::Clock;
use crate::messaging::{Mailer, TextSender};
use crate::pricing::PricingConfig;
use crate::secrets::CodeKey;
use crate::store::Store;

/// How a use case retries when its conditional write loses a race.
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
    /// The key codes are digested under. Functions that never issue or check a code run
    /// without one.
    pub code_key: Option<CodeKey>,
    /// The activation link is this text followed by the token, e.g.
    /// `https://portal.example.sa/activate#token=`.
    pub activation_link_prefix: String,
    pub retry: RetryPolicy,
}

impl Settings {
    pub fn code_key(&self) -> Result<&CodeKey, crate::error::Error> {
        self.code_key.as_ref().ok_or_else(|| crate::error::Error::internal("CODE_HMAC_KEY is not configured for this function"))
    }
}

#[derive(Clone)]
pub struct App {
    pub store: Arc<dyn Store>,
    pub mailer: Arc<dyn Mailer>,
    pub texts: Arc<dyn TextSender>,
    pub clock: Arc<dyn Clock>,
    pub settings: Arc<Settings>,
}
