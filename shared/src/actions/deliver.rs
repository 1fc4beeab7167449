//! Delivering the outbox: for each intent (from the table's stream), the notices still
//! wanted are rendered in the user's language, sent through SES or SNS, and their outcome is
//! recorded on the user — `sent` with the provider's message id, or `failed` with the
//! reason — through the pipeline, conditional on the user's version like any change.
//!
//! Requests per intent: one batch read (the organization and the intent's users), one send
//! per message, one conditional write per user. A notice whose slot names another intent
//! (replaced, or a commit that never happened) or that is already `sent` (the stream record
//! came again) is not sent: a record delivered twice sends once. A transient failure
//! (throttling, an outage) is recorded and reported, so the stream retries the record and,
//! past its retries, puts it on the failure destination; a refused address is recorded as
//! failed and not retried. Resend works either way: it queues a new intent.

use std::collections::BTreeMap;

use futures_util::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::deadline::{Deadline, SDK_OPERATION_TIMEOUT, within};
use crate::entropy::Fresh;
use crate::env::{Env, Senders};
use crate::error::{Error, Rejection};
use crate::identity::PersonId;
use crate::messaging::{DeliveryError, ProviderMessageId};
use crate::metrics::Metric;
use crate::outbox::{CLAIM_LEASE, Claim, DELIVERY_ATTEMPTS, DeliveryState, Intent, Outgoing, SECRET_MISMATCH, Slot, Stale, render};
use crate::pipeline::{Command, Decision, ReadFirst, Reads, RequestMeta, run};
use crate::secrets::CodeKey;
use crate::store::{Key, Loaded, Record, Write};
use crate::user::User;

/// Messages of one intent sent at once (and users' delivery records written at once).
const CONCURRENT_SENDS: usize = 8;

/// The longest a message waits for the provider's rate in one invocation.
const PACING_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// One user's messages of an intent, ready to send.
type Messages = Vec<(Slot, Outgoing)>;

/// What delivering one intent did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivered {
    pub sent: usize,
    /// Refused for good, or out of tries (`undeliverable` counts these too).
    pub failed: usize,
    /// Out of tries: recorded `undeliverable`.
    pub undeliverable: usize,
    /// Sent again after a claim ran out with the earlier send's outcome unknown.
    pub possibly_duplicated: usize,
    /// Not sent: replaced, already sent or ended, no longer current, or being sent by a
    /// delivery that holds its claim.
    pub skipped: usize,
    /// A transient failure with tries left, an outcome not recorded, or a message held by
    /// another delivery's claim: the intent must come again (the stream retries it).
    pub retry: bool,
}

impl std::ops::AddAssign<&Delivered> for Delivered {
    fn add_assign(&mut self, more: &Delivered) {
        self.sent += more.sent;
        self.failed += more.failed;
        self.undeliverable += more.undeliverable;
        self.possibly_duplicated += more.possibly_duplicated;
        self.skipped += more.skipped;
        self.retry |= more.retry;
    }
}

/// Sends what is still wanted of `intent` and records the outcomes. Each message is
/// claimed (a conditional write on its user) before it is sent and recorded after, so a
/// concurrent or repeated delivery of the same intent does not send it again.
pub async fn deliver(env: &Env, senders: &Senders, key: &CodeKey, meta: &RequestMeta, intent: &Intent) -> Result<Delivered, Error> {
    if intent.notices.is_empty() {
        // A change that sends nothing (its intent carries only its events).
        return Ok(Delivered::default());
    }
    let organization = &intent.organization;
    let mut keys = vec![Key::Organization(organization.clone())];
    keys.extend(intent.notices.iter().map(|notice| Key::User(organization.clone(), notice.user.clone())));
    let loaded = crate::pipeline::bounded(meta.deadline, env.store.load(&keys)).await?;
    let Some(org) = loaded.organization(organization) else {
        tracing::error!(intent = %intent.id, "an intent of an organization that does not exist; dropped");
        return Ok(Delivered { skipped: intent.notices.len(), ..Delivered::default() });
    };
    let mut report = Delivered::default();
    let mut wanted: BTreeMap<PersonId, Messages> = BTreeMap::new();
    // Messages no longer needed (ended as superseded) or whose secret the key cannot
    // derive (ended as failed): written with the claims, so none stays `queued` for ever.
    let mut outdated: BTreeMap<PersonId, Vec<(Slot, Stale)>> = BTreeMap::new();
    for notice in &intent.notices {
        let rendered = match loaded.user(organization, &notice.user) {
            Some(user) => render(intent, notice, user, org, key, &env.settings.activation_link_prefix, env.clock.now()),
            None => Err(Stale::Replaced),
        };
        match rendered {
            Ok(outgoing) => wanted.entry(notice.user.clone()).or_default().push((notice.message.slot(), outgoing)),
            Err(stale) => {
                tracing::info!(intent = %intent.id, slot = ?notice.message.slot(), ?stale, "not sent");
                report.skipped += 1;
                if matches!(stale, Stale::Outdated | Stale::SecretMismatch) {
                    if stale == Stale::SecretMismatch {
                        tracing::error!(intent = %intent.id, slot = ?notice.message.slot(), "a secret the code key does not derive; marked failed");
                    }
                    wanted.entry(notice.user.clone()).or_default();
                    outdated.entry(notice.user.clone()).or_default().push((notice.message.slot(), stale));
                }
                // Held by a delivery in progress, or by one that died: the record comes
                // again (and, past its tries, waits on the failure destination, alarmed).
                report.retry |= stale == Stale::Claimed;
            }
        }
    }
    // Claims first, one conditional write per user, several at once.
    let claimed: Vec<(PersonId, Messages, Result<Claimed, Error>)> = stream::iter(wanted)
        .map(|(user, messages)| {
            let slots = messages.iter().map(|(slot, _)| *slot).collect();
            let command = ClaimDeliveries::new(intent, &user, &loaded, slots, outdated.remove(&user).unwrap_or_default());
            async move {
                let claimed = run(env, meta, &command).await.map(|outcome| outcome.answer);
                (user, messages, claimed)
            }
        })
        .buffer_unordered(CONCURRENT_SENDS)
        .collect()
        .await;
    let mut to_send = Vec::new();
    let mut holders: BTreeMap<PersonId, Claimed> = BTreeMap::new();
    for (user, messages, claimed) in claimed {
        let claimed = match claimed {
            Ok(claimed) => claimed,
            Err(error) => {
                // Nothing was sent for this user: the intent comes again.
                tracing::error!(intent = %intent.id, error = %error, "could not claim deliveries");
                report.retry = true;
                continue;
            }
        };
        for (slot, outgoing) in messages {
            match claimed.slots.get(&slot) {
                Some(reclaimed) => {
                    if *reclaimed {
                        report.possibly_duplicated += 1;
                        tracing::warn!(intent = %intent.id, ?slot, "a claim ran out with its send's outcome unknown; sending again");
                    }
                    to_send.push((user.clone(), slot, outgoing));
                }
                None => report.skipped += 1,
            }
        }
        report.retry |= claimed.held_elsewhere;
        report.failed += claimed.failed;
        holders.insert(user, claimed);
    }
    let sent: Vec<(PersonId, Slot, Result<ProviderMessageId, DeliveryError>)> = stream::iter(to_send)
        .map(|(user, slot, outgoing)| send(senders, meta.deadline, user, slot, outgoing))
        .buffered(CONCURRENT_SENDS)
        .collect()
        .await;

    let mut by_user: BTreeMap<PersonId, Vec<Outcome>> = BTreeMap::new();
    for (user, slot, result) in sent {
        let outcome = match result {
            Ok(message_id) => {
                report.sent += 1;
                Outcome { slot, sent: Ok(message_id) }
            }
            Err(error) => {
                tracing::error!(
                    intent = %intent.id,
                    ?slot,
                    reason = %error.reason,
                    request_id = error.request_id.as_deref().unwrap_or("-"),
                    transient = error.transient,
                    "message not delivered"
                );
                Outcome { slot, sent: Err(error) }
            }
        };
        by_user.entry(user).or_default().push(outcome);
    }
    // The outcomes, one conditional write per user, on the record the claim wrote.
    let recorded: Vec<Result<Recorded, Error>> = stream::iter(by_user)
        .map(|(user, outcomes)| {
            let claimed = holders.remove(&user).expect("a user sent to was claimed");
            let command = RecordDeliveries::new(intent, &user, claimed, outcomes);
            async move { run(env, meta, &command).await.map(|outcome| outcome.answer) }
        })
        .buffer_unordered(CONCURRENT_SENDS)
        .collect()
        .await;
    for recorded in recorded {
        match recorded {
            Ok(recorded) => {
                report.failed += recorded.failed;
                report.undeliverable += recorded.undeliverable;
                report.retry |= recorded.retry;
            }
            Err(error) => {
                // The messages went out, or not, and their claims stand: the intent comes
                // again and sends nothing while they last; after, what is still unrecorded
                // is sent again and counted as possibly duplicated.
                tracing::error!(intent = %intent.id, error = %error, "could not record deliveries");
                report.retry = true;
            }
        }
    }
    let metrics = [
        Metric::MessagesSent(report.sent as u64),
        Metric::MessagesFailed(report.failed as u64),
        Metric::MessagesUndeliverable(report.undeliverable as u64),
        Metric::MessagesPossiblyDuplicated(report.possibly_duplicated as u64),
    ];
    crate::metrics::emit(&metrics.into_iter().filter(|m| m.value() > 0).collect::<Vec<_>>());
    Ok(report)
}

/// The decision that writes `next` (read at `read`'s version, carrying the next one) with,
/// for each of the messages in `ended`, the audit entry of a message that ended without
/// reaching the user (`failed` or `undeliverable`), with why.
pub(crate) fn write_deliveries<A>(
    answer: A,
    meta: &RequestMeta,
    read: &User,
    next: User,
    ended: &[Slot],
    now: OffsetDateTime,
    fresh: &mut Fresh,
) -> Decision<A> {
    let mut decision = Decision::answer(answer);
    for slot in ended {
        let record = &next.deliveries[slot];
        let changes = serde_json::json!({ "slot": slot, "state": record.state, "reason": record.reason, "attempts": record.attempts });
        let action = crate::audit::AuditAction::MessageUndelivered;
        decision.push_audit(crate::pipeline::audit_entry(meta, &next.organization, action, Some(&next), changes, now, fresh));
    }
    decision.write(Write::replace(Record::User(next), read.version))
}

/// Sends one message within the invocation's time, once the provider's rate allows it. A
/// send cut off by the deadline may have reached the provider: its outcome is unknown, and
/// sending it again is counted. Waiting for the rate past the time left sends nothing: the
/// message comes again, and the wait is no try.
async fn send(
    senders: &Senders,
    deadline: Deadline,
    user: PersonId,
    slot: Slot,
    outgoing: Outgoing,
) -> (PersonId, Slot, Result<ProviderMessageId, DeliveryError>) {
    let ready = async {
        match &outgoing {
            Outgoing::Email(_) => senders.mailer.ready().await,
            Outgoing::Sms(_) => senders.texts.ready().await,
        }
    };
    if !deadline.allows(SDK_OPERATION_TIMEOUT) || within(deadline, PACING_WAIT, ready).await.is_none() {
        return (user, slot, Err(DeliveryError::throttled("paced_out")));
    }
    let sending = async {
        match &outgoing {
            Outgoing::Email(message) => senders.mailer.send_email(message).await,
            Outgoing::Sms(message) => senders.texts.send_sms(message).await,
        }
    };
    let result = within(deadline, SDK_OPERATION_TIMEOUT, sending).await.unwrap_or_else(|| Err(DeliveryError::unknown("TimedOut")));
    (user, slot, result)
}

/// What became of one message.
#[derive(Debug, Clone)]
struct Outcome {
    slot: Slot,
    sent: Result<ProviderMessageId, DeliveryError>,
}

/// The messages of one user this delivery holds (slot → whether it took over a claim that
/// had run out), and the user record its claim wrote.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Claimed {
    attempt: String,
    slots: BTreeMap<Slot, bool>,
    user: Option<User>,
    /// A message was left alone because another delivery's claim on it still runs.
    held_elsewhere: bool,
    /// Messages ended as failed without a send (their secret did not match).
    failed: usize,
}

/// Claims one user's messages of one intent: those still queued for it whose claim is
/// absent or has run out. The first attempt decides from the record read before; a retry
/// (the user changed meanwhile) reads again.
struct ClaimDeliveries {
    intent: String,
    user: ReadFirst,
    slots: Vec<Slot>,
    /// Messages of the intent not to send: superseded when no longer needed, failed when
    /// their secret does not match.
    outdated: Vec<(Slot, Stale)>,
}

impl ClaimDeliveries {
    fn new(intent: &Intent, user: &PersonId, loaded: &Loaded, slots: Vec<Slot>, outdated: Vec<(Slot, Stale)>) -> Self {
        let read = loaded.user(&intent.organization, user).cloned();
        ClaimDeliveries { intent: intent.id.clone(), user: ReadFirst::new(&intent.organization, user, read), slots, outdated }
    }
}

impl Command for ClaimDeliveries {
    type State = Option<User>;
    type Answer = Claimed;

    async fn load(&self, _: &RequestMeta, reads: &mut Reads<'_>) -> Result<Option<User>, Error> {
        self.user.load(reads).await
    }

    fn authorize(&self, _: &RequestMeta, _: &Option<User>, _: OffsetDateTime) -> Result<(), Rejection> {
        // `deliver` acts on the outbox's authority: the commit that queued the message.
        Ok(())
    }

    fn decide(&self, meta: &RequestMeta, user: &Option<User>, now: OffsetDateTime, fresh: &mut Fresh) -> Result<Decision<Claimed>, Error> {
        let attempt = fresh.id("claim");
        let Some(user) = user else {
            return Ok(Decision::answer(Claimed { attempt, slots: BTreeMap::new(), user: None, held_elsewhere: false, failed: 0 }));
        };
        let mut next = user.clone();
        let mut slots = BTreeMap::new();
        let mut held_elsewhere = false;
        let mut ended_otherwise = false;
        let mut failed = Vec::new();
        for (slot, stale) in &self.outdated {
            let Some(record) = next.deliveries.get_mut(slot) else { continue };
            if record.intent == self.intent && record.state == DeliveryState::Queued && !record.claimed_at(now) {
                if *stale == Stale::SecretMismatch {
                    record.state = DeliveryState::Failed;
                    record.reason = Some(SECRET_MISMATCH.to_owned());
                    failed.push(*slot);
                } else {
                    record.state = DeliveryState::Superseded;
                }
                record.claim = None;
                record.updated_at = now;
                ended_otherwise = true;
            }
        }
        for slot in &self.slots {
            let Some(record) = next.deliveries.get_mut(slot) else { continue };
            if record.intent != self.intent || record.state != DeliveryState::Queued {
                continue;
            }
            if record.claimed_at(now) {
                held_elsewhere = true;
                continue;
            }
            // A claim that ran out: its send's outcome is unknown.
            let reclaimed = record.claim.is_some();
            record.claim = Some(Claim { attempt: attempt.clone(), until: now + CLAIM_LEASE });
            record.attempts += 1;
            record.updated_at = now;
            slots.insert(*slot, reclaimed);
        }
        if slots.is_empty() && !ended_otherwise {
            return Ok(Decision::answer(Claimed { attempt, slots, user: Some(user.clone()), held_elsewhere, failed: 0 }));
        }
        next.version = user.version + 1;
        let claimed = Claimed { attempt, slots, user: Some(next.clone()), held_elsewhere, failed: failed.len() };
        Ok(write_deliveries(claimed, meta, user, next, &failed, now, fresh))
    }
}

/// What recording one user's outcomes found.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Recorded {
    failed: usize,
    undeliverable: usize,
    retry: bool,
}

/// Records the outcomes of one user's messages of one intent, on the messages this
/// delivery's claim still holds: `sent`; `failed` for good; or, for a failure that may
/// pass, `queued` again with tries left or `undeliverable` without. The first attempt
/// decides from the record the claim wrote; a retry (the user changed meanwhile) reads again.
struct RecordDeliveries {
    intent: String,
    attempt: String,
    user: ReadFirst,
    outcomes: Vec<Outcome>,
}

impl RecordDeliveries {
    fn new(intent: &Intent, user: &PersonId, claimed: Claimed, outcomes: Vec<Outcome>) -> Self {
        RecordDeliveries {
            intent: intent.id.clone(),
            attempt: claimed.attempt,
            user: ReadFirst::new(&intent.organization, user, claimed.user),
            outcomes,
        }
    }
}

impl Command for RecordDeliveries {
    type State = Option<User>;
    type Answer = Recorded;

    async fn load(&self, _: &RequestMeta, reads: &mut Reads<'_>) -> Result<Option<User>, Error> {
        self.user.load(reads).await
    }

    fn authorize(&self, _: &RequestMeta, _: &Option<User>, _: OffsetDateTime) -> Result<(), Rejection> {
        Ok(())
    }

    fn decide(&self, meta: &RequestMeta, user: &Option<User>, now: OffsetDateTime, fresh: &mut Fresh) -> Result<Decision<Recorded>, Error> {
        let mut recorded = Recorded::default();
        let mut ended = Vec::new();
        let Some(user) = user else { return Ok(Decision::answer(recorded)) };
        let mut next = user.clone();
        let mut changed = false;
        for outcome in &self.outcomes {
            // A slot another intent has taken since keeps that intent's state.
            let Some(record) = next.deliveries.get_mut(&outcome.slot).filter(|record| record.intent == self.intent) else { continue };
            let ours = record.claim.as_ref().is_some_and(|claim| claim.attempt == self.attempt);
            match &outcome.sent {
                // Sent is the truth whoever holds the claim now (unless it ended otherwise).
                Ok(message_id) if ours || record.state == DeliveryState::Queued => {
                    record.state = DeliveryState::Sent;
                    record.message_id = Some(message_id.clone());
                    record.reason = None;
                }
                // Another delivery took the message over after this one's claim ran out.
                _ if !ours => continue,
                // Ours and sent matched above; a failed send of a message that ended
                // meanwhile (superseded by a suspension) leaves it as it ended.
                Ok(_) => continue,
                Err(_) if record.state != DeliveryState::Queued => {}
                // Refused for the rate, nothing sent: not a try. The claim is let go (not run
                // out, so the next send is no possible duplicate); the window bounds it.
                Err(error) if error.throttled => {
                    record.attempts = record.attempts.saturating_sub(1);
                    record.reason = Some(error.reason.clone());
                    recorded.retry = true;
                }
                Err(error) if !error.transient => {
                    record.state = DeliveryState::Failed;
                    record.reason = Some(error.reason.clone());
                    recorded.failed += 1;
                    ended.push(outcome.slot);
                }
                // The message may have gone out: the claim is released as run out, so the
                // next delivery sends it again and counts it as possibly duplicated.
                Err(error) if error.outcome_unknown && record.attempts < DELIVERY_ATTEMPTS => {
                    record.reason = Some(error.reason.clone());
                    if let Some(claim) = &mut record.claim {
                        claim.until = now;
                    }
                    record.updated_at = now;
                    recorded.retry = true;
                    changed = true;
                    continue;
                }
                Err(error) if record.attempts >= DELIVERY_ATTEMPTS => {
                    record.state = DeliveryState::Undeliverable;
                    record.reason = Some(error.reason.clone());
                    recorded.failed += 1;
                    recorded.undeliverable += 1;
                    ended.push(outcome.slot);
                }
                Err(error) => {
                    record.reason = Some(error.reason.clone());
                    recorded.retry = true;
                }
            }
            record.claim = None;
            record.updated_at = now;
            changed = true;
        }
        if !changed {
            return Ok(Decision::answer(recorded));
        }
        next.version = user.version + 1;
        Ok(write_deliveries(recorded, meta, user, next, &ended, now, fresh))
    }
}
