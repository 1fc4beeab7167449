//! The use cases: read, decide with the rules, commit atomically, then tell people.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;

use crate::app::App;
use crate::audit::{AuditAction, AuditEntry, AuditScope};
use crate::error::{Error, Rejection};
use crate::messaging::{EmailMessage, SmsMessage};
use crate::organization::{EstablishmentId, OrganizationId};
use crate::policy::Caller;
use crate::store::CommitError;
use crate::user::User;

/// Who is asking, and the request's id for the audit trail and logs.
#[derive(Debug, Clone)]
pub struct RequestMeta {
    pub caller: Caller,
    pub request_id: String,
}

/// A random identifier with a readable prefix, e.g. `seat_3f9c…`.
pub(crate) fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", crate::secrets::random_hex(10))
}

pub(crate) fn audit_entry(
    meta: &RequestMeta,
    organization: &OrganizationId,
    action: AuditAction,
    target: Option<&User>,
    changes: Value,
    at: OffsetDateTime,
) -> AuditEntry {
    AuditEntry {
        scope: AuditScope::Organization(organization.clone()),
        id: new_id("audit"),
        at,
        actor: meta.caller.actor(),
        action,
        target: target.map(|user| user.id.clone()),
        establishments: target.map(|user| user.establishments.clone()).unwrap_or_default(),
        changes,
        request_id: meta.request_id.clone(),
    }
}

/// What one attempt of a read-decide-commit loop concluded.
pub(crate) enum Attempt<T> {
    Done(T),
    /// The data changed under us; read again and decide again.
    Retry,
}

/// How a commit ended, for the loops below.
pub(crate) enum Committed {
    Yes,
    /// Conditions failed at these write positions (empty when the store does not say).
    Conflict(Vec<usize>),
    /// Unknown outcome: the caller re-reads, and the idempotency record settles it.
    Unknown,
}

pub(crate) async fn commit(app: &App, writes: Vec<crate::store::Write>) -> Result<Committed, Error> {
    match app.store.commit(writes).await {
        Ok(()) => Ok(Committed::Yes),
        Err(CommitError::Conflict { failed }) => Ok(Committed::Conflict(failed)),
        Err(CommitError::Unknown(cause)) => {
            tracing::warn!(error = %cause, "commit outcome unknown; re-reading");
            Ok(Committed::Unknown)
        }
        // Kept whole, so the edge can tell a dependency outage (503) from a bug (500).
        Err(error @ (CommitError::Unavailable(_) | CommitError::Misconfigured(_))) => Err(Error::internal(error)),
    }
}

/// Backoff between attempts of a read-decide-commit loop, with full jitter. When the
/// budget is spent the client gets 503 `busy` (and may retry safely).
pub(crate) struct Backoff {
    policy: crate::app::RetryPolicy,
    round: u32,
}

impl Backoff {
    pub(crate) fn new(app: &App) -> Self {
        Backoff { policy: app.settings.retry, round: 0 }
    }

    pub(crate) async fn wait(&mut self) -> Result<(), Error> {
        self.round += 1;
        if self.round >= self.policy.attempts {
            tracing::warn!(attempts = self.policy.attempts, "gave up after repeated write conflicts");
            return Err(Rejection::busy().into());
        }
        let ceiling = self.policy.base.saturating_mul(1u32 << self.round.min(16)).min(self.policy.cap);
        crate::clock::pause(jitter(ceiling)).await;
        Ok(())
    }
}

/// Runs `$body` (an async block yielding `Result<Attempt<T>, Error>`) until it is done,
/// backing off between tries; evaluates to the `T`, or returns the error.
macro_rules! retrying {
    ($app:expr, $body:block) => {{
        let mut backoff = $crate::usecases::Backoff::new($app);
        loop {
            let attempt: Result<$crate::usecases::Attempt<_>, $crate::error::Error> = async $body.await;
            match attempt? {
                $crate::usecases::Attempt::Done(value) => break value,
                $crate::usecases::Attempt::Retry => backoff.wait().await?,
            }
        }
    }};
}

pub mod activation;
pub mod billing;
pub mod directory;
pub mod lifecycle;
pub mod onboarding;
pub mod organizations;
pub mod permissions;
pub mod profile;

fn jitter(ceiling: Duration) -> Duration {
    let mut bytes = [0u8; 4];
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    let fraction = f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX);
    ceiling.mul_f64(fraction)
}

/// Whether a message went out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    Sent,
    Failed,
    NotNeeded,
}

pub(crate) async fn send_email(app: &App, message: &EmailMessage) -> Delivery {
    match app.mailer.send_email(message).await {
        Ok(()) => Delivery::Sent,
        Err(error) => {
            tracing::error!(template = ?message.template, to = %message.to, error = %error, cause = ?std::error::Error::source(&error), "email not delivered");
            Delivery::Failed
        }
    }
}

pub(crate) async fn send_sms(app: &App, message: &SmsMessage) -> Delivery {
    match app.texts.send_sms(message).await {
        Ok(()) => Delivery::Sent,
        Err(error) => {
            tracing::error!(template = ?message.template, to = %message.to, error = %error, cause = ?std::error::Error::source(&error), "sms not delivered");
            Delivery::Failed
        }
    }
}

/// A name to greet a user by, in their language when available.
pub(crate) fn display_name(user: &User) -> String {
    let name = &user.name;
    match user.language {
        crate::contact::Language::Ar => name.ar.clone().or_else(|| name.en.clone()),
        crate::contact::Language::En => name.en.clone().or_else(|| name.ar.clone()),
    }
    .unwrap_or_default()
}

pub(crate) fn establishment_list(set: &BTreeSet<EstablishmentId>) -> Value {
    Value::Array(set.iter().map(|e| Value::String(e.as_str().to_owned())).collect())
}
