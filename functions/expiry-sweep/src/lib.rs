//! The expiry sweep, run daily by an EventBridge schedule: expires seats past their end and
//! sends the 30-, 7- and 1-day reminders. "Now" is the scheduled event's `time`, so any day
//! can be replayed by invoking it with another time.

use domain::actions::sweep::{self, SweepOptions, SweepReport};
use domain::clock::parse_rfc3339;
use domain::deadline::Deadline;
use domain::env::Env;
use domain::pipeline::RequestMeta;
use domain::policy::Caller;
use serde::Deserialize;

/// The parts of an EventBridge scheduled event the sweep reads.
#[derive(Debug, Deserialize)]
pub struct ScheduledEvent {
    /// Present in EventBridge events; used to name the run in the audit trail.
    #[serde(default)]
    pub id: Option<String>,
    pub time: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("the event's time is not an RFC 3339 timestamp")]
    BadTime,
    #[error("the sweep failed")]
    Failed(#[source] domain::error::Error),
}

/// What the Lambda service records of a failed invocation: a stable `errorType` and a
/// message without personal data (the full cause chain goes to the log).
impl From<SweepError> for lambda_runtime::Diagnostic {
    fn from(error: SweepError) -> Self {
        let error_type = match &error {
            SweepError::BadTime => "BadEventTime",
            SweepError::Failed(_) => "SweepFailed",
        };
        lambda_runtime::Diagnostic { error_type: error_type.to_owned(), error_message: error.to_string() }
    }
}

pub async fn handle(env: &Env, event: ScheduledEvent, invocation: &str, deadline: Deadline) -> Result<SweepReport, SweepError> {
    let now = parse_rfc3339(&event.time).ok_or(SweepError::BadTime)?;
    let run = event.id.unwrap_or_else(|| invocation.to_owned());
    let meta = RequestMeta::new(Caller::Anonymous, run).with_deadline(deadline);
    sweep::sweep(env, &meta, now, SweepOptions::default()).await.map_err(SweepError::Failed)
}
