//! Time budgets, in one place. Every retry loop and every store call stops within the time
//! the invocation has left (the Lambda context's deadline), and that time is itself within
//! API Gateway's limit. The numbers below are derived from the two limits AWS sets and the
//! shape of a command, not guessed; `template.yaml` deploys the same timeouts (a test reads
//! them from there).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

// Tokio's clock, so tests can run a deadline on paused, virtual time.
use tokio::time::Instant;

/// API Gateway HTTP API's integration timeout: a hard limit, the client gets 503 after it.
pub const API_GATEWAY_TIMEOUT: Duration = Duration::from_secs(30);

/// The timeout of every HTTP function (`Globals.Function.Timeout` in `template.yaml`): a
/// third of API Gateway's, so a Lambda that is cut off still leaves the gateway time to
/// answer, and a client's retry fits inside the same 30 seconds.
pub const HTTP_FUNCTION_TIMEOUT: Duration = Duration::from_secs(10);

/// The timeout of the expiry sweep (`ExpirySweepFunction.Timeout`).
pub const SWEEP_FUNCTION_TIMEOUT: Duration = Duration::from_secs(300);

/// The timeout of `deliver` (`DeliverFunction.Timeout`): a batch of intents, each sent with
/// the SDK's retries.
pub const DELIVER_FUNCTION_TIMEOUT: Duration = Duration::from_secs(60);

/// Kept back from every deadline: answering, writing the last log lines and metrics.
pub const RESPONSE_RESERVE: Duration = Duration::from_millis(250);

/// Store calls one attempt of a command makes at most: its read, its commit, and the read
/// that settles a commit of unknown outcome.
pub const CALLS_PER_ATTEMPT: u32 = 3;

/// Attempts the SDK makes of one call (standard retry mode) before it gives up.
pub const SDK_ATTEMPTS: u32 = 3;

/// The longest one SDK call may take, retries included: one attempt of a command must fit
/// in an HTTP function's time (less the reserve) even when every call of it is slow.
pub const SDK_OPERATION_TIMEOUT: Duration =
    Duration::from_millis((HTTP_FUNCTION_TIMEOUT.as_millis() as u64 - RESPONSE_RESERVE.as_millis() as u64) / CALLS_PER_ATTEMPT as u64);

/// The longest one try of an SDK call may take: its share of the operation timeout.
pub const SDK_ATTEMPT_TIMEOUT: Duration = Duration::from_millis(SDK_OPERATION_TIMEOUT.as_millis() as u64 / SDK_ATTEMPTS as u64);

/// Opening a connection is part of an attempt; a third of it.
pub const SDK_CONNECT_TIMEOUT: Duration = Duration::from_millis(SDK_ATTEMPT_TIMEOUT.as_millis() as u64 / 3);

/// What delivering one intent may take: its read, its sends (concurrent, each bounded by
/// the operation timeout) and its records. `deliver` starts an intent only while this much
/// time is left, and hands the rest of its batch back to the stream to come again.
pub const DELIVER_INTENT_BUDGET: Duration = Duration::from_millis(CALLS_PER_ATTEMPT as u64 * SDK_OPERATION_TIMEOUT.as_millis() as u64);

/// Kept back from the sweep's deadline for saving where it stopped (one store call).
pub const SWEEP_SAVE_RESERVE: Duration =
    Duration::from_millis(SDK_OPERATION_TIMEOUT.as_millis() as u64 + RESPONSE_RESERVE.as_millis() as u64);

/// When the sweep stops starting work: an item started just before may still take one
/// attempt of a command (`CALLS_PER_ATTEMPT` calls), and saving its place needs its reserve.
pub const SWEEP_MARGIN: Duration =
    Duration::from_millis(CALLS_PER_ATTEMPT as u64 * SDK_OPERATION_TIMEOUT.as_millis() as u64 + SWEEP_SAVE_RESERVE.as_millis() as u64);

/// The instant an invocation must have answered by. `unbounded` outside Lambda (the local
/// server, tests), where the retry policy alone bounds the work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline(Option<Instant>);

impl Deadline {
    pub const fn unbounded() -> Self {
        Deadline(None)
    }

    pub fn at(instant: Instant) -> Self {
        Deadline(Some(instant))
    }

    pub fn after(duration: Duration) -> Self {
        Deadline(Some(Instant::now() + duration))
    }

    /// From the Lambda context's deadline, milliseconds since the Unix epoch.
    pub fn from_epoch_millis(millis: u64) -> Self {
        let now_millis = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_millis() as u64);
        Deadline::after(Duration::from_millis(millis.saturating_sub(now_millis)))
    }

    /// Time left before the reserve, or `None` when unbounded.
    pub fn usable(&self) -> Option<Duration> {
        self.0.map(|at| at.saturating_duration_since(Instant::now()).saturating_sub(RESPONSE_RESERVE))
    }

    /// Whether `needed` still fits before the reserve.
    pub fn allows(&self, needed: Duration) -> bool {
        self.usable().is_none_or(|left| left >= needed)
    }

    /// How long a call may take: `cap`, or less when less time is left.
    pub fn bound(&self, cap: Duration) -> Duration {
        self.usable().map_or(cap, |left| left.min(cap))
    }

    /// The same deadline, `by` earlier (for work that must leave time for what follows it).
    pub fn earlier_by(&self, by: Duration) -> Self {
        Deadline(self.0.map(|at| at.checked_sub(by).unwrap_or_else(Instant::now)))
    }

    /// Whether a sweep should stop starting work, keeping `margin` back.
    pub fn nearly_reached(&self, margin: Duration) -> bool {
        self.usable().is_some_and(|left| left <= margin)
    }
}

/// Runs `work` within the deadline (and at most `cap`); `None` if time ran out first.
pub async fn within<T>(deadline: Deadline, cap: Duration, work: impl Future<Output = T>) -> Option<T> {
    tokio::time::timeout(deadline.bound(cap), work).await.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budgets_nest_inside_the_limits_aws_sets() {
        assert!(HTTP_FUNCTION_TIMEOUT * 3 <= API_GATEWAY_TIMEOUT, "a cut-off function leaves the gateway time to answer");
        // One attempt of a command, every call slow, still fits in the function.
        assert!(SDK_OPERATION_TIMEOUT * CALLS_PER_ATTEMPT + RESPONSE_RESERVE <= HTTP_FUNCTION_TIMEOUT);
        assert!(SDK_ATTEMPT_TIMEOUT * SDK_ATTEMPTS <= SDK_OPERATION_TIMEOUT);
        assert!(SDK_CONNECT_TIMEOUT < SDK_ATTEMPT_TIMEOUT);
        assert_eq!(SDK_OPERATION_TIMEOUT, Duration::from_millis(3250));
        assert_eq!(SDK_ATTEMPT_TIMEOUT, Duration::from_millis(1083));
        assert_eq!(SWEEP_MARGIN, Duration::from_millis(13_250));
        assert!(DELIVER_INTENT_BUDGET * 2 < DELIVER_FUNCTION_TIMEOUT, "an invocation delivers more than one intent");
        assert!(SWEEP_MARGIN < SWEEP_FUNCTION_TIMEOUT / 10, "the sweep works for most of its time");
        assert!(SWEEP_SAVE_RESERVE < SWEEP_MARGIN, "items started before the margin finish before the save");
    }

    #[test]
    fn a_deadline_bounds_calls_and_keeps_its_reserve() {
        let unbounded = Deadline::unbounded();
        assert_eq!(unbounded.bound(Duration::from_secs(3)), Duration::from_secs(3));
        assert!(unbounded.allows(Duration::from_secs(3600)));

        let soon = Deadline::after(Duration::from_millis(1250));
        let left = soon.usable().expect("bounded");
        assert!(left <= Duration::from_millis(1000) && left > Duration::from_millis(900), "{left:?}");
        assert!(soon.bound(Duration::from_secs(3)) <= Duration::from_millis(1000));
        assert!(!soon.allows(Duration::from_secs(2)));
        assert!(soon.nearly_reached(Duration::from_secs(2)));

        let past = Deadline::from_epoch_millis(1_000);
        assert_eq!(past.usable(), Some(Duration::ZERO));
        assert_eq!(past.bound(Duration::from_secs(3)), Duration::ZERO);
    }
}
