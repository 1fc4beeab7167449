//! The end of a seat: suspension (permanent, by an administrator) and expiry (by the
//! scheduled sweep, which also sends the 30-, 7- and 1-day reminders).

use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;

use super::permissions::load_scene;
use super::{Attempt, Committed, Delivery, RequestMeta, audit_entry, commit, display_name, send_email, send_sms};
use crate::app::App;
use crate::audit::AuditAction;
use crate::error::{Error, Kind, Rejection};
use crate::identity::PersonId;
use crate::messaging::{EmailMessage, SmsMessage, Template};
use crate::organization::OrganizationId;
use crate::policy::{Action, Caller, OnUser, authorize};
use crate::store::{CommitError, Key, PageRequest, Record, SweepMonth, Write};
use crate::user::{Channels, Reminder, Suspension, SweepStep, User, UserStatus};

#[derive(Debug, Clone)]
pub struct Suspend {
    pub organization: OrganizationId,
    pub user: PersonId,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Suspended {
    pub organization_id: OrganizationId,
    pub user_id: PersonId,
    pub status: UserStatus,
    pub reason: String,
    #[serde(with = "crate::clock::utc")]
    pub suspended_at: OffsetDateTime,
    /// The seat that ended with the suspension (nothing is refunded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_seat_id: Option<String>,
    pub notice: NoticeDelivery,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct NoticeDelivery {
    pub email: Delivery,
    pub sms: Delivery,
}

/// Sends a notice through the channels the user chose for that kind of message.
async fn notify(app: &App, channels: Channels, email: EmailMessage, sms: SmsMessage) -> NoticeDelivery {
    let email = if channels.email { send_email(app, &email).await } else { Delivery::NotNeeded };
    let sms = if channels.sms { send_sms(app, &sms).await } else { Delivery::NotNeeded };
    NoticeDelivery { email, sms }
}

/// Stops a user for good: access ends at once, the seat ends (nothing is refunded), live
/// secrets and pending contact changes die. Subscribing the person again buys a new seat.
pub async fn suspend(app: &App, meta: &RequestMeta, command: Suspend) -> Result<Suspended, Error> {
    let reason = crate::parse::text("reason", &command.reason, 500)?;
    let organization = &command.organization;
    let (organization_record, user, outcome) = retrying!(app, {
        let now = app.clock.now();
        let scene = load_scene(app, meta, organization, &command.user).await?;
        let standing = scene.standing(meta, organization, now)?;
        let target = scene.target(standing, OnUser::Suspend, organization, &command.user)?;
        authorize(standing, Action::Suspend(target))?;
        if target.status == UserStatus::Suspended {
            return Err(Rejection::new(Kind::AlreadySuspended, "this user is already suspended").into());
        }
        // Only people reach this point (the policy refuses operators and services).
        let by = meta.caller.person().cloned().ok_or_else(|| Rejection::new(Kind::Forbidden, "only people suspend users"))?;
        let mut next = target.clone();
        let ended_seat = next.seat.take().map(|mut seat| {
            if seat.ends_at > now {
                seat.ends_at = now;
            }
            seat
        });
        let ended_seat_id = ended_seat.as_ref().map(|seat| seat.id.clone());
        next.past_seats.extend(ended_seat);
        next.status = UserStatus::Suspended;
        next.suspension = Some(Suspension { by, reason: reason.clone(), at: now });
        next.activation.email_token = None;
        next.activation.mobile_code = None;
        next.pending_email = None;
        next.pending_mobile = None;
        next.updated_at = now;
        next.version = target.version + 1;
        let audit = audit_entry(
            meta,
            organization,
            AuditAction::UserSuspended,
            Some(&next),
            json!({ "reason": reason, "status": { "before": target.status, "after": next.status }, "ended_seat_id": ended_seat_id }),
            now,
        );
        match commit(app, vec![Write::replace(Record::User(next.clone()), target.version), Write::create(Record::Audit(audit))]).await? {
            Committed::Yes => {
                let org = scene.loaded.organization(organization).cloned().ok_or_else(Rejection::not_found)?;
                Ok(Attempt::Done((org, next, ended_seat_id)))
            }
            Committed::Conflict(_) | Committed::Unknown => Ok(Attempt::Retry),
        }
    });
    let at = user.suspension.as_ref().map(|s| s.at).unwrap_or_else(|| app.clock.now());
    let date = crate::clock::saudi_day(at).to_string();
    let name = display_name(&user);
    let values = [("name", name.as_str()), ("organization", organization_record.name.as_str()), ("date", date.as_str())];
    let notice = notify(
        app,
        user.notifications.account_notices,
        EmailMessage::new(&user.email, Template::AccountSuspendedEmail, user.language, &values),
        SmsMessage::new(&user.mobile, Template::AccountSuspendedSms, user.language, &values),
    )
    .await;
    Ok(Suspended {
        organization_id: organization.clone(),
        user_id: user.id.clone(),
        status: user.status,
        reason: user.suspension.map(|s| s.reason).unwrap_or_default(),
        suspended_at: at,
        ended_seat_id: outcome,
        notice,
    })
}

// ---------------------------------------------------------------------------------------
// The expiry sweep

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
    /// Reminders whose every channel failed; taken back so the next run retries.
    pub reminders_not_delivered: usize,
    /// Stopped at `max_items`; the next run continues.
    pub stopped_early: bool,
}

fn sweep_meta(run: &str) -> RequestMeta {
    RequestMeta { caller: Caller::Anonymous, request_id: run.to_owned() }
}

fn sweep_audit(run: &str, user: &User, action: AuditAction, changes: serde_json::Value, now: OffsetDateTime) -> crate::audit::AuditEntry {
    let mut entry = audit_entry(&sweep_meta(run), &user.organization, action, Some(user), changes, now);
    entry.actor = crate::audit::Actor::System("expiry-sweep".to_owned());
    entry
}

/// Runs the sweep as of `now` (the scheduled event's time, so any day can be replayed).
/// Work is found through the `by_sweep_month` index (never a scan): the items due by `now`
/// in the current month and the `CATCH_UP_MONTHS` before it, oldest first. Every step is a
/// conditional write on the version it
/// read, so runs that repeat or overlap expire each seat once and send each reminder once.
pub async fn sweep(app: &App, run: &str, now: OffsetDateTime, options: SweepOptions) -> Result<SweepReport, Error> {
    let mut report = SweepReport {
        now,
        due: 0,
        expired: 0,
        reminded: 0,
        already_done: 0,
        bad_items: 0,
        failed: 0,
        reminders_not_delivered: 0,
        stopped_early: false,
    };
    let mut months = vec![SweepMonth::of(now)];
    for _ in 0..CATCH_UP_MONTHS {
        months.push(months.last().expect("not empty").previous());
    }
    let mut processed = 0;
    let mut names = OrganizationNames::default();
    for month in months.into_iter().rev() {
        let mut page = PageRequest::first(PAGE);
        loop {
            let listed = app.store.due_for_sweep(month, now, page.clone()).await?;
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
                    Ok(user) => match sweep_user(app, run, user, now, &mut names).await {
                        Ok(Swept::Expired) => report.expired += 1,
                        Ok(Swept::Reminded) => report.reminded += 1,
                        Ok(Swept::NotDelivered) => report.reminders_not_delivered += 1,
                        Ok(Swept::AlreadyDone) => report.already_done += 1,
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

/// Organization names for reminder messages, read once per organization per run.
#[derive(Default)]
struct OrganizationNames(std::collections::HashMap<OrganizationId, String>);

impl OrganizationNames {
    async fn get(&mut self, app: &App, organization: &OrganizationId) -> Result<String, Error> {
        if let Some(name) = self.0.get(organization) {
            return Ok(name.clone());
        }
        let loaded = app.store.load(&[Key::Organization(organization.clone())]).await?;
        let name = loaded.organization(organization).map(|o| o.name.clone()).unwrap_or_default();
        self.0.insert(organization.clone(), name.clone());
        Ok(name)
    }
}

enum Swept {
    Expired,
    Reminded,
    NotDelivered,
    AlreadyDone,
}

/// Does what is due for one user. `listed` comes from the index and may be stale; every
/// write is conditional on the version read, and a conflict re-reads by key.
async fn sweep_user(app: &App, run: &str, listed: User, now: OffsetDateTime, names: &mut OrganizationNames) -> Result<Swept, Error> {
    let mut user = listed;
    for _ in 0..app.settings.retry.attempts {
        let Some(step) = user.sweep_due_at(now) else {
            return Ok(Swept::AlreadyDone);
        };
        let (next, audit) = match step {
            SweepStep::Expire => {
                let mut next = user.clone();
                let seat_id = user.last_period().map(|s| s.id.clone());
                let ended = [next.seat.take(), next.next_seat.take()];
                next.past_seats.extend(ended.into_iter().flatten());
                if !next.is_manager() {
                    // The manager's access never depended on a seat; only the seat ends.
                    next.status = UserStatus::Expired;
                }
                next.activation.email_token = None;
                next.activation.mobile_code = None;
                next.updated_at = now;
                next.version = user.version + 1;
                let audit = sweep_audit(
                    run,
                    &next,
                    AuditAction::SeatExpired,
                    json!({ "seat_id": seat_id, "status": { "before": user.status, "after": next.status } }),
                    now,
                );
                (next, audit)
            }
            SweepStep::Remind(reminder) => {
                let mut next = user.clone();
                let seat = next.last_period_mut().expect("a reminder is due only for a seat");
                // Earlier reminders that were missed are skipped, not sent late.
                for earlier in Reminder::ALL.into_iter().take_while(|r| *r <= reminder) {
                    seat.reminders_sent.insert(earlier);
                }
                let ends_at = seat.ends_at;
                next.updated_at = now;
                next.version = user.version + 1;
                let audit = sweep_audit(
                    run,
                    &next,
                    AuditAction::SeatReminderSent,
                    json!({ "reminder": reminder, "seat_ends_at": crate::clock::key_timestamp(ends_at) }),
                    now,
                );
                (next, audit)
            }
        };
        match app.store.commit(vec![Write::replace(Record::User(next.clone()), user.version), Write::create(Record::Audit(audit))]).await {
            Ok(()) => {
                return match step {
                    SweepStep::Expire => Ok(Swept::Expired),
                    SweepStep::Remind(reminder) => {
                        let organization = names.get(app, &user.organization).await?;
                        deliver_reminder(app, run, &user, next, reminder, &organization, now).await
                    }
                };
            }
            Err(CommitError::Conflict { .. } | CommitError::Unknown(_)) => {
                // Another run (or a renewal, or a suspension) got there first: read again.
                let key = Key::User(user.organization.clone(), user.id.clone());
                let loaded = app.store.load(&[key]).await?;
                match loaded.user(&user.organization, &user.id) {
                    Some(fresh) => user = fresh.clone(),
                    None => return Ok(Swept::AlreadyDone),
                }
            }
            Err(error @ (CommitError::Unavailable(_) | CommitError::Misconfigured(_))) => return Err(Error::internal(error)),
        }
    }
    Err(Rejection::busy().into())
}

/// Sends a claimed reminder; if no channel could deliver it, takes the claim back so the
/// next run tries again.
async fn deliver_reminder(
    app: &App,
    run: &str,
    before: &User,
    claimed: User,
    reminder: Reminder,
    organization: &str,
    now: OffsetDateTime,
) -> Result<Swept, Error> {
    let seat = claimed.last_period().expect("claimed with a seat");
    let days = ((seat.ends_at - now).whole_hours() as f64 / 24.0).ceil().max(1.0) as i64;
    let date = crate::clock::saudi_day(seat.ends_at).to_string();
    let days = days.to_string();
    let name = display_name(&claimed);
    let values = [("name", name.as_str()), ("organization", organization), ("days", days.as_str()), ("date", date.as_str())];
    let delivery = notify(
        app,
        claimed.notifications.expiry_reminders,
        EmailMessage::new(&claimed.email, Template::ExpiryReminderEmail, claimed.language, &values),
        SmsMessage::new(&claimed.mobile, Template::ExpiryReminderSms, claimed.language, &values),
    )
    .await;
    let delivered = delivery.email == Delivery::Sent || delivery.sms == Delivery::Sent;
    let nothing_to_send = delivery.email == Delivery::NotNeeded && delivery.sms == Delivery::NotNeeded;
    if delivered || nothing_to_send {
        return Ok(Swept::Reminded);
    }
    // Every channel failed: release the claim (conditional on the claim's own version).
    let mut released = claimed.clone();
    if let Some(seat) = released.last_period_mut() {
        seat.reminders_sent = before.last_period().map(|s| s.reminders_sent.clone()).unwrap_or_default();
    }
    released.version = claimed.version + 1;
    let audit = sweep_audit(
        run,
        &released,
        AuditAction::SeatReminderFailed,
        json!({ "reminder": reminder, "email": delivery.email, "sms": delivery.sms }),
        now,
    );
    match app.store.commit(vec![Write::replace(Record::User(released), claimed.version), Write::create(Record::Audit(audit))]).await {
        Ok(()) => Ok(Swept::NotDelivered),
        Err(error) => {
            tracing::error!(error = %error, "could not release an undelivered reminder; it will not be retried");
            Ok(Swept::NotDelivered)
        }
    }
}
