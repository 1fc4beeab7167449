//! The expiry sweep: expires seats past their end and queues the 30-, 7- and 1-day
//! reminders, each step a command through the pipeline (conditional on the version the
//! sweep read, audited, its messages in the outbox — nothing is sent from here).

use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;

use crate::audit::{Actor, AuditAction};
use crate::env::Env;
use crate::error::{Error, Rejection};
use crate::metrics::Metric;
use crate::outbox::{Channel, Message};
use crate::pipeline::{Command, Decision, ReadFirst, Reads, RequestMeta, audit_entry, run};
use crate::policy::Caller;
use crate::store::{PageRequest, Record, SweepMonth, Write};
use crate::user::{Reminder, SweepStep, User, UserStatus};

/// How many months before the current one the sweep looks for work missed runs left
/// behind. Expiry is also enforced at request time, so a seat is never usable past its end
/// whatever the sweep did.
pub const CATCH_UP_MONTHS: usize = 12;
/// At most this many users per run, so a run ends well within the Lambda timeout; the
/// next run continues where this one stopped.
pub const DEFAULT_MAX_ITEMS: usize = 5_000;
const PAGE: usize = 100;

#[derive(Debug, Clone, Copy)]
pub struct SweepOptions {
    pub max_items: usize,
}

impl Default for SweepOptions {
    fn default() -> Self {
        SweepOptions { max_items: DEFAULT_MAX_ITEMS }
    }
}

/// What one run did.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SweepReport {
    #[serde(with = "crate::clock::utc")]
    pub now: OffsetDateTime,
    /// Items the index returned as due.
    pub due: usize,
    pub expired: usize,
    pub reminded: usize,
    /// Due when listed, already done by the time they were processed (another run).
    pub already_done: usize,
    /// Items that could not be read; logged and skipped.
    pub bad_items: usize,
    /// Items whose processing failed; logged, left for the next run.
    pub failed: usize,
    /// Stopped at `max_items`; the next run continues.
    pub stopped_early: bool,
}

/// The sweep acts as itself in the audit trail.
fn sweep_meta(run: &str, deadline: crate::deadline::Deadline) -> RequestMeta {
    RequestMeta::new(Caller::Anonymous, run).with_deadline(deadline)
}

/// Runs the sweep as of `now` (the scheduled event's time, so any day can be replayed).
/// Work is found through the `by_sweep_month` index (never a scan): the items due by `now`
/// in the current month and the `CATCH_UP_MONTHS` before it, oldest first. Every step is a
/// conditional write on the version it read, so runs that repeat or overlap expire each
/// seat once and queue each reminder once.
pub async fn sweep(env: &Env, meta: &RequestMeta, now: OffsetDateTime, options: SweepOptions) -> Result<SweepReport, Error> {
    let mut report = SweepReport { now, due: 0, expired: 0, reminded: 0, already_done: 0, bad_items: 0, failed: 0, stopped_early: false };
    let mut months = vec![SweepMonth::of(now)];
    for _ in 0..CATCH_UP_MONTHS {
        months.push(months.last().expect("not empty").previous());
    }
    let meta = sweep_meta(&meta.request_id, meta.deadline);
    let clock = FixedNow(now);
    let env = Env { clock: std::sync::Arc::new(clock), ..env.clone() };
    let mut processed = 0;
    for month in months.into_iter().rev() {
        let mut page = PageRequest::first(PAGE);
        loop {
            let listed = env.store.due_for_sweep(month, now, page.clone()).await?;
            for item in listed.items {
                if processed == options.max_items {
                    report.stopped_early = true;
                    return Ok(report);
                }
                processed += 1;
                report.due += 1;
                match item {
                    Err(bad) => {
                        tracing::error!(key = %bad.key, problem = %bad.problem, "skipping an unreadable item in the sweep index");
                        report.bad_items += 1;
                    }
                    Ok(user) => match run(&env, &meta, &SweepUser::new(user)).await {
                        Ok(outcome) => match outcome.answer {
                            Swept::Expired => report.expired += 1,
                            Swept::Reminded => report.reminded += 1,
                            Swept::AlreadyDone => report.already_done += 1,
                        },
                        Err(error) => {
                            tracing::error!(error = %error, cause = ?std::error::Error::source(&error), "sweep step failed; the next run retries it");
                            report.failed += 1;
                        }
                    },
                }
            }
            match listed.next {
                Some(cursor) => page.cursor = Some(cursor),
                None => break,
            }
        }
    }
    tracing::info!(
        due = report.due,
        expired = report.expired,
        reminded = report.reminded,
        bad = report.bad_items,
        failed = report.failed,
        "sweep finished"
    );
    Ok(report)
}

/// The sweep's "now" is the scheduled event's time, for every step of the run.
struct FixedNow(OffsetDateTime);

impl crate::clock::Clock for FixedNow {
    fn now(&self) -> OffsetDateTime {
        self.0
    }
}

/// What one step did.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum Swept {
    Expired,
    Reminded,
    AlreadyDone,
}

/// Does what is due for one user. The first attempt decides from the record the index
/// listed (it may be stale: the write is conditional on its version); a retry reads the
/// record by key.
pub struct SweepUser {
    user: ReadFirst,
}

impl SweepUser {
    pub fn new(listed: User) -> Self {
        let (organization, id) = (listed.organization.clone(), listed.id.clone());
        SweepUser { user: ReadFirst::new(&organization, &id, Some(listed)) }
    }
}

impl Command for SweepUser {
    type State = Option<User>;
    type Answer = Swept;

    async fn load(&self, _: &RequestMeta, reads: &mut Reads<'_>) -> Result<Option<User>, Error> {
        self.user.load(reads).await
    }

    fn authorize(&self, _: &RequestMeta, _: &Option<User>, _: OffsetDateTime) -> Result<(), Rejection> {
        // The scheduled job acts on its own authority.
        Ok(())
    }

    fn decide(&self, meta: &RequestMeta, user: &Option<User>, now: OffsetDateTime) -> Result<Decision<Swept>, Error> {
        let Some(user) = user else { return Ok(Decision::answer(Swept::AlreadyDone)) };
        let Some(step) = user.sweep_due_at(now) else { return Ok(Decision::answer(Swept::AlreadyDone)) };
        let mut next = user.clone();
        next.updated_at = now;
        next.version = user.version + 1;
        let (mut decision, action, changes) = match step {
            SweepStep::Expire => {
                let seat_id = user.last_period().map(|s| s.id.clone());
                let ended = [next.seat.take(), next.next_seat.take()];
                next.past_seats.extend(ended.into_iter().flatten());
                if !next.is_manager() {
                    // The manager's access never depended on a seat; only the seat ends.
                    next.status = UserStatus::Expired;
                }
                next.activation.email_token = None;
                next.activation.mobile_code = None;
                let mut decision = Decision::answer(Swept::Expired);
                decision.count(Metric::SweepExpiries(1));
                (
                    decision,
                    AuditAction::SeatExpired,
                    json!({ "seat_id": seat_id, "status": { "before": user.status, "after": next.status } }),
                )
            }
            SweepStep::Remind(reminder) => {
                let seat = next.last_period_mut().expect("a reminder is due only for a seat");
                // Earlier reminders that were missed are skipped, not sent late.
                for earlier in Reminder::ALL.into_iter().take_while(|r| *r <= reminder) {
                    seat.reminders_sent.insert(earlier);
                }
                let ends_at = seat.ends_at;
                let mut decision = Decision::answer(Swept::Reminded);
                let channels = user.notifications.expiry_reminders;
                for (wanted, channel) in [(channels.email, Channel::Email), (channels.sms, Channel::Sms)] {
                    if wanted {
                        decision.notify(meta, &mut next, Message::ExpiryReminder { reminder, channel, ends_at }, now);
                    }
                }
                decision.count(Metric::SweepReminders(1));
                (
                    decision,
                    AuditAction::SeatReminderQueued,
                    json!({ "reminder": reminder, "seat_ends_at": crate::clock::key_timestamp(ends_at) }),
                )
            }
        };
        let mut audit = audit_entry(meta, &user.organization, action, Some(&next), changes, now);
        audit.actor = Actor::System("expiry-sweep".to_owned());
        decision.push_write(Write::replace(Record::User(next), user.version));
        decision.push_audit(audit);
        Ok(decision)
    }
}
