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
use crate::outbox::{DeliveryState, Intent, Outgoing, Slot, Stale, render};
use crate::pipeline::{Command, Decision, ReadFirst, Reads, RequestMeta, run};
use crate::secrets::CodeKey;
use crate::store::{Key, Loaded, Record, Write};
use crate::user::User;

/// Messages of one intent sent at once (and users' delivery records written at once).
const CONCURRENT_SENDS: usize = 8;

/// What delivering one intent did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivered {
    pub sent: usize,
    pub failed: usize,
    /// Not sent: replaced, already sent, or no longer current.
    pub skipped: usize,
    /// A transient failure: the intent must come again (the stream retries it).
    pub retry: bool,
}

/// Sends what is still wanted of `intent` and records the outcomes.
pub async fn deliver(env: &Env, senders: &Senders, key: &CodeKey, meta: &RequestMeta, intent: &Intent) -> Result<Delivered, Error> {
    let organization = &intent.organization;
    let mut keys = vec![Key::Organization(organization.clone())];
    keys.extend(intent.notices.iter().map(|notice| Key::User(organization.clone(), notice.user.clone())));
    let loaded = crate::pipeline::bounded(meta.deadline, env.store.load(&keys)).await?;
    let Some(org) = loaded.organization(organization) else {
        tracing::error!(intent = %intent.id, "an intent of an organization that does not exist; dropped");
        return Ok(Delivered { skipped: intent.notices.len(), ..Delivered::default() });
    };
    let mut report = Delivered::default();
    let mut to_send = Vec::new();
    for notice in &intent.notices {
        let rendered = match loaded.user(organization, &notice.user) {
            Some(user) => render(intent, notice, user, org, key, &env.settings.activation_link_prefix, env.clock.now()),
            None => Err(Stale::Replaced),
        };
        match rendered {
            Ok(outgoing) => to_send.push((notice.user.clone(), notice.message.slot(), outgoing)),
            Err(stale) => {
                tracing::info!(intent = %intent.id, slot = ?notice.message.slot(), ?stale, "not sent");
                report.skipped += 1;
            }
        }
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
                report.failed += 1;
                report.retry |= error.transient;
                tracing::error!(intent = %intent.id, ?slot, reason = %error.reason, request_id = error.request_id.as_deref().unwrap_or("-"), transient = error.transient, "message not delivered");
                Outcome { slot, sent: Err(error.reason) }
            }
        };
        by_user.entry(user).or_default().push(outcome);
    }
    // One conditional write per user, several at once (each user's record is its own).
    let recorded: Vec<Result<(), Error>> = stream::iter(by_user)
        .map(|(user, outcomes)| {
            let command = RecordDeliveries::new(intent, &user, &loaded, outcomes);
            async move { run(env, meta, &command).await.map(|_| ()) }
        })
        .buffer_unordered(CONCURRENT_SENDS)
        .collect()
        .await;
    for error in recorded.into_iter().filter_map(Result::err) {
        // The messages went out; only their record is missing. Retrying the intent would
        // send them again, so the failure is logged, not retried.
        tracing::error!(intent = %intent.id, error = %error, cause = ?std::error::Error::source(&error), "could not record deliveries");
    }
    let metrics = [Metric::MessagesSent(report.sent as u64), Metric::MessagesFailed(report.failed as u64)];
    crate::metrics::emit(&metrics.into_iter().filter(|m| m.value() > 0).collect::<Vec<_>>());
    Ok(report)
}

/// Sends one message within the invocation's time. A send cut off by the deadline may have
/// reached the provider: it is a transient failure, and the intent comes again.
async fn send(
    senders: &Senders,
    deadline: Deadline,
    user: PersonId,
    slot: Slot,
    outgoing: Outgoing,
) -> (PersonId, Slot, Result<ProviderMessageId, DeliveryError>) {
    let sending = async {
        match &outgoing {
            Outgoing::Email(message) => senders.mailer.send_email(message).await,
            Outgoing::Sms(message) => senders.texts.send_sms(message).await,
        }
    };
    let result = within(deadline, SDK_OPERATION_TIMEOUT, sending).await.unwrap_or_else(|| Err(DeliveryError::transient("TimedOut")));
    (user, slot, result)
}

/// What became of one message.
#[derive(Debug, Clone)]
struct Outcome {
    slot: Slot,
    sent: Result<ProviderMessageId, String>,
}

/// Records the outcomes of one user's messages of one intent. The first attempt decides
/// from the record read before sending; a retry (the user changed meanwhile) reads again.
struct RecordDeliveries {
    intent: String,
    user: ReadFirst,
    outcomes: Vec<Outcome>,
}

impl RecordDeliveries {
    fn new(intent: &Intent, user: &PersonId, loaded: &Loaded, outcomes: Vec<Outcome>) -> Self {
        let read = loaded.user(&intent.organization, user).cloned();
        RecordDeliveries { intent: intent.id.clone(), user: ReadFirst::new(&intent.organization, user, read), outcomes }
    }
}

impl Command for RecordDeliveries {
    type State = Option<User>;
    type Answer = ();

    async fn load(&self, _: &RequestMeta, reads: &mut Reads<'_>) -> Result<Option<User>, Error> {
        self.user.load(reads).await
    }

    fn authorize(&self, _: &RequestMeta, _: &Option<User>, _: OffsetDateTime) -> Result<(), Rejection> {
        // `deliver` acts on the outbox's authority: the commit that queued the message.
        Ok(())
    }

    fn decide(&self, _: &RequestMeta, user: &Option<User>, now: OffsetDateTime, _: &mut Fresh) -> Result<Decision<()>, Error> {
        let Some(user) = user else { return Ok(Decision::answer(())) };
        let mut next = user.clone();
        let mut changed = false;
        for outcome in &self.outcomes {
            // A slot another intent has taken since keeps that intent's state.
            let Some(record) = next.deliveries.get_mut(&outcome.slot).filter(|record| record.intent == self.intent) else { continue };
            record.attempts += 1;
            record.updated_at = now;
            match &outcome.sent {
                Ok(message_id) => {
                    record.state = DeliveryState::Sent;
                    record.message_id = Some(message_id.clone());
                    record.reason = None;
                }
                Err(reason) => {
                    record.state = DeliveryState::Failed;
                    record.reason = Some(reason.clone());
                }
            }
            changed = true;
        }
        if !changed {
            return Ok(Decision::answer(()));
        }
        next.version = user.version + 1;
        Ok(Decision::answer(()).write(Write::replace(Record::User(next), user.version)))
    }
}
