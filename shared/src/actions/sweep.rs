//! The expiry sweep: expires seats past their end and queues the 30-, 7- and 1-day
//! reminders. Every step is a command through the pipeline (conditional on the version the
//! sweep read, audited, its messages in the outbox — nothing is sent from here).
//!
//! **What it reads.** The `by_expiry_day` index keys each seat by the Saudi day its last paid
//! period ends, spread over `EXPIRY_SHARDS` shards. The sweep works in *sweep days*: on Saudi
//! day `d` it expires every seat that ended on `d − 1` and reminds the seats that end on
//! `d + 1`, `d + 7` and `d + 30` — sixty-four index partitions, read shard by shard in
//! parallel. Each run also expires the seats of today's partitions that have ended by now,
//! so a seat does not wait for the next day. It never scans and never reads a day it does
//! not have to.
//!
//! **When it stops.** A run works until its deadline less `SWEEP_MARGIN`, not until a count:
//! it then saves where each partition stopped in its state record, and the next run (the
//! schedule is hourly) continues there. We chose the next run over fanning shard work out
//! through SQS: the work of a day is at most 64 partitions, one Lambda already works them in
//! parallel, the state is one item, and an hourly schedule finishes a national renewal
//! season's day (a million seats) in a few runs — SQS would add a queue, its own failure
//! handling and a second function for throughput the day does not need.
//!
//! **Missed runs.** Days not completed are caught up oldest first: every day's expiries (up
//! to `EXPIRY_CATCH_UP_DAYS`, so no seat's entry is left behind), reminders only for the last
//! `REMINDER_CATCH_UP_DAYS` (older ones are superseded by the next reminder). Expiry is also
//! enforced at request time, so a seat is never usable past its end whatever the sweep did.
//!
//! **Overlapping runs** are safe (every step is conditional), and a lease in the state record
//! keeps a second run from doing the same work twice: it reports `skipped`.

use std::collections::BTreeMap;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::{Date, Duration, OffsetDateTime};

use crate::audit::{Actor, AuditAction};
use crate::clock::saudi_day;
use crate::deadline::{Deadline, SWEEP_FUNCTION_TIMEOUT, SWEEP_MARGIN, SWEEP_SAVE_RESERVE};
use crate::entropy::Fresh;
use crate::env::Env;
use crate::error::{Error, Rejection};
use crate::metrics::Metric;
use crate::outbox::{Channel, Message};
use crate::pipeline::{Command, Decision, ReadFirst, Reads, RequestMeta, audit_entry, run};
use crate::policy::Caller;
use crate::store::{EXPIRY_SHARDS, ExpiryPartition, Key, PageRequest, Position, Record, Write};
pub use crate::sweep_state::{DayProgress, Lease, Mark, Retry, SweepState};
use crate::user::{Reminder, SweepStep, User, UserStatus};

/// Missed days whose reminders are still sent (late); older reminders are skipped.
pub const REMINDER_CATCH_UP_DAYS: i64 = 7;
/// Missed days whose expiries are caught up: longer than a seat, so none is left behind.
pub const EXPIRY_CATCH_UP_DAYS: i64 = 400;
/// Runs in which a partition's items may fail before the sweep stops retrying them (each
/// failure is logged and counted in `SweepFailures`, which raises an alarm).
pub const MAX_RETRY_RUNS: u32 = 3;
/// Partitions worked at once: every shard of a day.
pub const CONCURRENCY: usize = EXPIRY_SHARDS as usize;
/// Users per index query.
pub const PAGE: usize = 100;

#[derive(Debug, Clone, Copy, Default)]
pub struct SweepOptions {
    /// Overrides `EXPIRY_CATCH_UP_DAYS` (an operator catching up after a long outage).
    pub catch_up_days: Option<i64>,
}

/// What one run did.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SweepReport {
    #[serde(with = "crate::clock::utc")]
    pub now: OffsetDateTime,
    /// Sweep days this run completed, oldest first.
    pub days_completed: Vec<Date>,
    /// Index queries made, and the items they read.
    pub queries: usize,
    pub items_read: usize,
    pub expired: usize,
    pub reminded: usize,
    /// Listed, but nothing was due (already done by another run, or not due yet).
    pub already_done: usize,
    /// Items that could not be read; logged and skipped.
    pub bad_items: usize,
    /// Items or queries that failed; logged, retried by the next run.
    pub failed: usize,
    /// The deadline came first; the next run continues where this one saved its place.
    pub stopped_early: bool,
    /// Another run holds the lease; this one did nothing.
    pub skipped: bool,
}

impl SweepReport {
    fn new(now: OffsetDateTime) -> Self {
        SweepReport {
            now,
            days_completed: vec![],
            queries: 0,
            items_read: 0,
            expired: 0,
            reminded: 0,
            already_done: 0,
            bad_items: 0,
            failed: 0,
            stopped_early: false,
            skipped: false,
        }
    }

    fn absorb(&mut self, worked: &Worked) {
        debug_assert!(!worked.stopped || worked.resume.is_some());
        self.queries += worked.queries;
        self.items_read += worked.items_read;
        self.expired += worked.expired;
        self.reminded += worked.reminded;
        self.already_done += worked.already_done;
        self.bad_items += worked.bad_items;
        self.failed += worked.failed;
        self.stopped_early |= worked.stopped;
    }
}

/// The sweep days from `first` to `today`, each with the end days whose partitions it reads:
/// the day before (expiries) and the reminder days still ahead — without reminders for an
/// old day being caught up. An end day is read once per run: every step decides as of the
/// run's time, so one read does all that is due for its seats.
pub fn plan(first: Date, today: Date) -> Vec<(Date, Vec<Date>)> {
    let mut read = std::collections::BTreeSet::new();
    let mut plan = Vec::new();
    let mut day = first;
    while day <= today {
        let mut ends = vec![day - Duration::days(1)];
        if day > today - Duration::days(REMINDER_CATCH_UP_DAYS) {
            ends.extend(Reminder::ALL.into_iter().rev().map(|reminder| day + reminder.before_expiry()).filter(|end| *end > today));
        }
        ends.retain(|end| read.insert(*end));
        plan.push((day, ends));
        day += Duration::days(1);
    }
    plan
}

/// Runs the sweep as of `now` (the scheduled event's time, so any day can be replayed).
/// See the module's documentation.
pub async fn sweep(env: &Env, meta: &RequestMeta, now: OffsetDateTime, options: SweepOptions) -> Result<SweepReport, Error> {
    let mut report = SweepReport::new(now);
    let meta = RequestMeta::new(Caller::Anonymous, meta.request_id.clone()).with_deadline(meta.deadline);
    let Some(mut state) = run(env, &meta, &StateChange::Take).await?.answer else {
        tracing::info!("another sweep run holds the lease; nothing to do");
        report.skipped = true;
        return Ok(report);
    };
    // Every step of the run decides as of the event's time; the lease keeps the real clock.
    let steps = Env { clock: std::sync::Arc::new(FixedNow(now)), ..env.clone() };
    let items = meta.clone().with_deadline(meta.deadline.earlier_by(SWEEP_SAVE_RESERVE));
    let today = saudi_day(now);
    let catch_up = Duration::days(options.catch_up_days.unwrap_or(EXPIRY_CATCH_UP_DAYS).max(1));
    let first = state.completed_through.map_or(today - Duration::days(REMINDER_CATCH_UP_DAYS), |done| done + Duration::days(1));
    let day = first.max(today - catch_up);
    let mut failures = 0;

    // Partitions whose items failed in earlier runs, from their first failed page.
    if !state.retries.is_empty() {
        let retries = std::mem::take(&mut state.retries);
        let runs: BTreeMap<ExpiryPartition, u32> = retries.iter().map(|retry| (retry.partition, retry.runs)).collect();
        let pending = retries.into_iter().map(|retry| (retry.partition, retry.from)).collect();
        for (partition, done) in work(&steps, &items, pending, None).await {
            report.absorb(&done);
            failures += done.failed;
            let runs = runs.get(&partition).copied().unwrap_or(0) + u32::from(done.failed > 0);
            match done.left_at() {
                None => {}
                Some(_) if runs >= MAX_RETRY_RUNS => {
                    tracing::error!(partition = %partition.key(), runs, "sweep items still fail; no more retries (expiry is enforced at request time)");
                }
                Some(from) => state.retries.push(Retry { partition, from, runs }),
            }
        }
    }

    let mut days = plan(day, today).into_iter().peekable();
    while let Some((day, ends)) = days.next_if(|_| !report.stopped_early && !stopping(items.deadline)) {
        let mut progress = match state.progress.take() {
            Some(progress) if progress.day == day => progress,
            _ => DayProgress { day, partitions: BTreeMap::new() },
        };
        let pending: Vec<(ExpiryPartition, Option<Position>)> = ends
            .into_iter()
            .flat_map(ExpiryPartition::of_day)
            .filter_map(|partition| match progress.partitions.get(&partition.key()) {
                Some(Mark::Done) => None,
                Some(Mark::Resume(cursor)) => Some((partition, cursor.clone())),
                None => Some((partition, None)),
            })
            .collect();
        for (partition, done) in work(&steps, &items, pending, None).await {
            report.absorb(&done);
            failures += done.failed;
            let mark = match done.left_at() {
                // Failed items do not hold the day up: the partition is retried on its own.
                Some(from) if !done.stopped => {
                    tracing::warn!(partition = %partition.key(), failed = done.failed, "sweep items failed; the next run retries them");
                    state.retries.push(Retry { partition, from, runs: 1 });
                    Mark::Done
                }
                Some(from) => Mark::Resume(from),
                None => Mark::Done,
            };
            progress.partitions.insert(partition.key(), mark);
        }
        if report.stopped_early {
            state.progress = Some(progress);
            break;
        }
        state = save(env, &meta, Some(day), None, state.retries.clone(), false).await?;
        report.days_completed.push(day);
    }
    report.stopped_early |= days.peek().is_some();

    // Today's seats that have ended by now (hourly, so none waits for tomorrow's sweep day).
    // Expired seats leave the index, so this pass needs no saved place.
    if !report.stopped_early {
        let today_pending = ExpiryPartition::of_day(today).map(|partition| (partition, None)).collect();
        for (_, done) in work(&steps, &items, today_pending, Some(now)).await {
            report.absorb(&done);
            failures += done.failed;
        }
    }

    save(env, &meta, state.completed_through, state.progress.clone(), state.retries.clone(), true).await?;
    crate::metrics::emit(&[
        Metric::SweepExpiries(report.expired as u64),
        Metric::SweepReminders(report.reminded as u64),
        Metric::SweepFailures(failures as u64),
    ]);
    tracing::info!(
        days = report.days_completed.len(),
        queries = report.queries,
        items_read = report.items_read,
        expired = report.expired,
        reminded = report.reminded,
        bad = report.bad_items,
        failed = report.failed,
        stopped_early = report.stopped_early,
        "sweep run finished"
    );
    Ok(report)
}

/// What the work of one partition came to.
#[derive(Debug, Default)]
struct Worked {
    queries: usize,
    items_read: usize,
    expired: usize,
    reminded: usize,
    already_done: usize,
    bad_items: usize,
    failed: usize,
    /// The deadline came before the partition's end.
    stopped: bool,
    /// Where the partition must be read again from, if anywhere: its first page with a
    /// failed item, or the page the deadline came in.
    resume: Option<Option<Position>>,
}

impl Worked {
    fn left_at(&self) -> Option<Option<Position>> {
        self.resume.clone()
    }
}

/// Works `partitions`, `CONCURRENCY` at a time; `until` bounds the entries read by their end.
async fn work(
    env: &Env,
    meta: &RequestMeta,
    partitions: Vec<(ExpiryPartition, Option<Position>)>,
    until: Option<OffsetDateTime>,
) -> Vec<(ExpiryPartition, Worked)> {
    futures_util::stream::iter(partitions)
        .map(|(partition, cursor)| async move { (partition, work_partition(env, meta, partition, cursor, until).await) })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await
}

/// Works one partition page by page from `start`, until it is done or the deadline comes.
/// A page is resumed from its start (items already done list as nothing due, or are gone);
/// a page with a failed item is resumed from there, so the next run retries it.
async fn work_partition(
    env: &Env,
    meta: &RequestMeta,
    partition: ExpiryPartition,
    start: Option<Position>,
    until: Option<OffsetDateTime>,
) -> Worked {
    let mut worked = Worked::default();
    let mut cursor = start;
    loop {
        if stopping(meta.deadline) {
            worked.stopped = true;
            worked.resume.get_or_insert(cursor);
            return worked;
        }
        let page = PageRequest { cursor: cursor.clone(), limit: PAGE };
        let listed = match crate::pipeline::bounded(meta.deadline, env.store.expiring(partition, until, page)).await {
            Ok(listed) => listed,
            Err(error) => {
                tracing::error!(partition = %partition.key(), error = %error, cause = ?std::error::Error::source(&error), "sweep query failed; the next run retries it");
                worked.failed += 1;
                worked.resume.get_or_insert(cursor);
                return worked;
            }
        };
        worked.queries += 1;
        worked.items_read += listed.scanned;
        for item in listed.items {
            if stopping(meta.deadline) {
                worked.stopped = true;
                worked.resume.get_or_insert(cursor);
                return worked;
            }
            match item {
                Err(bad) => {
                    tracing::error!(key = %bad.key, problem = %bad.problem, "skipping an unreadable item in the expiry index");
                    worked.bad_items += 1;
                }
                Ok(user) => match run(env, meta, &SweepUser::new(user)).await {
                    Ok(outcome) => match outcome.answer {
                        Swept::Expired => worked.expired += 1,
                        Swept::Reminded => worked.reminded += 1,
                        Swept::AlreadyDone => worked.already_done += 1,
                    },
                    Err(error) => {
                        tracing::error!(partition = %partition.key(), error = %error, cause = ?std::error::Error::source(&error), "sweep step failed; the next run retries it");
                        worked.failed += 1;
                        worked.resume.get_or_insert_with(|| cursor.clone());
                    }
                },
            }
        }
        match listed.next {
            Some(next) => cursor = Some(next),
            None => return worked,
        }
    }
}

/// Whether to stop starting work, by the deadline of the items (the run's, less the time
/// kept for saving): `SWEEP_MARGIN` before the run's deadline.
fn stopping(items_deadline: Deadline) -> bool {
    items_deadline.nearly_reached(SWEEP_MARGIN.saturating_sub(SWEEP_SAVE_RESERVE))
}

/// The sweep's "now" is the scheduled event's time, for every step of the run.
struct FixedNow(OffsetDateTime);

impl crate::clock::Clock for FixedNow {
    fn now(&self) -> OffsetDateTime {
        self.0
    }
}

/// A change to the sweep's state item, by the run named by the request id: `Take` the
/// lease (unless another run holds it; a retry of the same run, same id, takes its lease
/// back), or `Save` the run's place while it holds the lease (`release` on the last save).
/// Answers the state written, or `None` when the lease is another run's.
enum StateChange {
    Take,
    Save { completed_through: Option<Date>, progress: Option<DayProgress>, retries: Vec<Retry>, release: bool },
}

async fn save(
    env: &Env,
    meta: &RequestMeta,
    completed_through: Option<Date>,
    progress: Option<DayProgress>,
    retries: Vec<Retry>,
    release: bool,
) -> Result<SweepState, Error> {
    match run(env, meta, &StateChange::Save { completed_through, progress, retries, release }).await?.answer {
        Some(saved) => Ok(saved),
        None => Err(Error::internal(std::io::Error::other("the sweep's lease was taken by another run"))),
    }
}

impl Command for StateChange {
    type State = Option<SweepState>;
    type Answer = Option<SweepState>;

    async fn load(&self, _: &RequestMeta, reads: &mut Reads<'_>) -> Result<Option<SweepState>, Error> {
        Ok(reads.load([Key::SweepState]).await?.sweep_state().cloned())
    }

    fn authorize(&self, _: &RequestMeta, _: &Option<SweepState>, _: OffsetDateTime) -> Result<(), Rejection> {
        // The scheduled job acts on its own authority.
        Ok(())
    }

    fn decide(
        &self,
        meta: &RequestMeta,
        state: &Option<SweepState>,
        now: OffsetDateTime,
        _: &mut Fresh,
    ) -> Result<Decision<Option<SweepState>>, Error> {
        let lease = state.as_ref().and_then(|state| state.lease.as_ref());
        let ours = lease.is_some_and(|lease| lease.run == meta.request_id);
        let next = match (self, state) {
            (StateChange::Take, _) if !ours && lease.is_some_and(|lease| lease.until > now) => return Ok(Decision::answer(None)),
            (StateChange::Take, _) => SweepState {
                version: state.as_ref().map_or(0, |state| state.version) + 1,
                lease: Some(Lease { run: meta.request_id.clone(), until: now + SWEEP_FUNCTION_TIMEOUT }),
                updated_at: now,
                ..state.clone().unwrap_or(SweepState {
                    version: 0,
                    completed_through: None,
                    progress: None,
                    retries: vec![],
                    lease: None,
                    updated_at: now,
                })
            },
            (StateChange::Save { .. }, None) => return Ok(Decision::answer(None)),
            (StateChange::Save { .. }, Some(_)) if !ours => return Ok(Decision::answer(None)),
            (StateChange::Save { completed_through, progress, retries, release }, Some(state)) => SweepState {
                version: state.version + 1,
                completed_through: *completed_through,
                progress: progress.clone(),
                retries: retries.clone(),
                lease: if *release { None } else { state.lease.clone() },
                updated_at: now,
            },
        };
        let write = match state {
            Some(state) => Write::replace(Record::SweepState(next.clone()), state.version),
            None => Write::create(Record::SweepState(next.clone())),
        };
        Ok(Decision::answer(Some(next)).write(write))
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

    fn decide(&self, meta: &RequestMeta, user: &Option<User>, now: OffsetDateTime, fresh: &mut Fresh) -> Result<Decision<Swept>, Error> {
        let Some(user) = user else { return Ok(Decision::answer(Swept::AlreadyDone)) };
        let Some(step) = user.sweep_due_at(now) else { return Ok(Decision::answer(Swept::AlreadyDone)) };
        let mut next = user.clone();
        next.updated_at = now;
        next.version = user.version + 1;
        let (mut decision, action, changes) = match step {
            SweepStep::Expire => {
                // The period stays where it is (a renewal within the grace days reads it,
                // and answers show it as the one that ended last); only its end is recorded.
                let seat = next.last_period_mut().expect("expiry is due only for a seat");
                seat.expired = true;
                let seat_id = Some(seat.id.clone());
                if !next.is_manager() {
                    // The manager's access never depended on a seat; only the seat ends.
                    next.status = UserStatus::Expired;
                }
                (
                    Decision::answer(Swept::Expired),
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
                        decision.notify(meta, &mut next, Message::ExpiryReminder { reminder, channel, ends_at }, now, fresh);
                    }
                }
                (
                    decision,
                    AuditAction::SeatReminderQueued,
                    json!({ "reminder": reminder, "seat_ends_at": crate::clock::key_timestamp(ends_at) }),
                )
            }
        };
        let mut audit = audit_entry(meta, &user.organization, action, Some(&next), changes, now, fresh);
        audit.actor = Actor::System("expiry-sweep".to_owned());
        decision.push_write(Write::replace(Record::User(next), user.version));
        decision.push_audit(audit);
        Ok(decision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn a_sweep_day_reads_yesterday_and_the_reminder_days() {
        let today = date!(2027 - 11 - 20);
        assert_eq!(
            plan(today, today),
            vec![(today, vec![date!(2027 - 11 - 19), date!(2027 - 11 - 21), date!(2027 - 11 - 27), date!(2027 - 12 - 20)])]
        );
    }

    #[test]
    fn a_catch_up_reads_every_expiry_day_and_recent_reminders_once() {
        let today = date!(2027 - 11 - 20);
        let plan = plan(today - Duration::days(20), today);
        assert_eq!(plan.len(), 21);
        let ends: Vec<Date> = plan.iter().flat_map(|(_, ends)| ends.iter().copied()).collect();
        let distinct: std::collections::BTreeSet<Date> = ends.iter().copied().collect();
        assert_eq!(ends.len(), distinct.len(), "each end day once");
        for back in 1..=21 {
            assert!(distinct.contains(&(today - Duration::days(back))), "every ended day expires");
        }
        // Reminders of the last seven days only: the 1-day (tomorrow), 7-day (tomorrow..+7)
        // and 30-day (+24..+30) days.
        let ahead: Vec<i64> = distinct.iter().filter(|end| **end > today).map(|end| (*end - today).whole_days()).collect();
        assert_eq!(ahead, (1..=7).chain(24..=30).collect::<Vec<_>>());
        let old = &plan[0];
        assert_eq!(old.1, vec![old.0 - Duration::days(1)], "an old missed day only expires");
    }
}
