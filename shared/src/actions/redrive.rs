//! The redrive: messages still `queued` a while after their last try are found through the
//! sparse `by_undelivered` index (a bounded query per shard, never a scan), their intents
//! are read back from the outbox table, and they are delivered again through `deliver`
//! (claims and all, so a message another delivery is sending is left to it). A message
//! queued past `DELIVERY_WINDOW`, or whose intent is gone, is given up as `undeliverable`.
//! Runs on a schedule (every 5 minutes) and whenever the stream's failure destination says
//! records were dropped.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::actions::deliver::{Delivered, deliver, write_deliveries};
use crate::entropy::Fresh;
use crate::env::{Env, Senders};
use crate::error::{Error, Rejection};
use crate::metrics::Metric;
use crate::organization::OrganizationId;
use crate::outbox::{DeliveryState, EXPIRED, INTENT_MISSING, Intent, Slot};
use crate::pipeline::{Command, Decision, ReadFirst, Reads, RequestMeta, run};
use crate::secrets::CodeKey;
use crate::store::{EXPIRY_SHARDS, Key, PageRequest, Record, intent_key};
use crate::user::User;

/// Users read per index query.
const PAGE: usize = 25;

/// What one redrive did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redriven {
    /// Users found with a message due.
    pub users: usize,
    /// What delivering their messages again did.
    pub delivered: Delivered,
    /// Messages given up: queued past their window, or their intent gone.
    pub given_up: usize,
    /// Items of the index that could not be read (logged).
    pub unreadable: usize,
    /// The run stopped for its deadline; the next one continues.
    pub stopped_early: bool,
}

/// Delivers again every message due by now, shard by shard, within the invocation's time.
pub async fn redrive(env: &Env, senders: &Senders, key: &CodeKey, meta: &RequestMeta) -> Result<Redriven, Error> {
    let now = env.clock.now();
    let mut report = Redriven::default();
    for shard in 0..EXPIRY_SHARDS {
        let mut cursor = None;
        loop {
            if !meta.deadline.allows(crate::deadline::DELIVER_INTENT_BUDGET) {
                report.stopped_early = true;
                return Ok(finish(report));
            }
            let page = PageRequest { cursor: cursor.take(), limit: PAGE };
            let page = crate::pipeline::bounded(meta.deadline, env.store.undelivered(shard, now, page)).await?;
            for user in page.items {
                match user {
                    Ok(user) => redrive_user(env, senders, key, meta, &user, now, &mut report).await?,
                    Err(bad) => {
                        tracing::error!(key = %bad.key, problem = %bad.problem, "an unreadable item in the undelivered index; skipped");
                        report.unreadable += 1;
                    }
                }
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
    }
    Ok(finish(report))
}

fn finish(report: Redriven) -> Redriven {
    if report.given_up > 0 {
        crate::metrics::emit(&[Metric::MessagesUndeliverable(report.given_up as u64)]);
    }
    report
}

/// One user's due messages: by intent, delivered again or given up.
async fn redrive_user(
    env: &Env,
    senders: &Senders,
    key: &CodeKey,
    meta: &RequestMeta,
    user: &User,
    now: OffsetDateTime,
    report: &mut Redriven,
) -> Result<(), Error> {
    let mut due: BTreeMap<(Option<OffsetDateTime>, String), BTreeSet<Slot>> = BTreeMap::new();
    for (slot, record) in &user.deliveries {
        if record.due_at().is_some_and(|at| at <= now) {
            due.entry((record.queued_at, record.intent.clone())).or_default().insert(*slot);
        }
    }
    if due.is_empty() {
        return Ok(());
    }
    report.users += 1;
    for ((queued_at, intent_id), slots) in due {
        let expired = user.deliveries.values().any(|record| record.intent == intent_id && record.expired_at(now));
        let intent = match queued_at {
            Some(at) if !expired => {
                let key = Key::At(intent_key(&user.organization, at, &intent_id));
                let loaded = crate::pipeline::bounded(meta.deadline, env.store.load(std::slice::from_ref(&key))).await?;
                match loaded.record(&key) {
                    Some(Record::Intent(intent)) => Some(intent.clone()),
                    _ => None,
                }
            }
            _ => None,
        };
        let Some(intent) = intent else {
            let reason = if expired { EXPIRED } else { INTENT_MISSING };
            tracing::warn!(intent = %intent_id, reason, "queued messages given up");
            let command = GiveUp::new(user, intent_id, slots, reason);
            report.given_up += run(env, meta, &command).await?.answer;
            continue;
        };
        // Only this user's messages: others of the intent have their own due times.
        let mine = Intent { notices: intent.notices.iter().filter(|n| n.user == user.id).cloned().collect(), ..intent };
        let delivered = deliver(env, senders, key, meta, &mine).await?;
        tracing::info!(intent = %mine.id, sent = delivered.sent, failed = delivered.failed, retry = delivered.retry, "redriven");
        report.delivered += &delivered;
    }
    Ok(())
}

/// Marks a user's queued messages of one intent `undeliverable` with `reason` (those still
/// queued for it and not held by a live claim); answers how many.
struct GiveUp {
    organization: OrganizationId,
    intent: String,
    user: ReadFirst,
    slots: BTreeSet<Slot>,
    reason: &'static str,
}

impl GiveUp {
    fn new(user: &User, intent: String, slots: BTreeSet<Slot>, reason: &'static str) -> Self {
        GiveUp {
            organization: user.organization.clone(),
            intent,
            user: ReadFirst::new(&user.organization, &user.id, Some(user.clone())),
            slots,
            reason,
        }
    }
}

impl Command for GiveUp {
    type State = Option<User>;
    type Answer = usize;

    async fn load(&self, _: &RequestMeta, reads: &mut Reads<'_>) -> Result<Option<User>, Error> {
        self.user.load(reads).await
    }

    fn authorize(&self, _: &RequestMeta, _: &Option<User>, _: OffsetDateTime) -> Result<(), Rejection> {
        // The redrive acts on the outbox's authority, as `deliver` does.
        Ok(())
    }

    fn decide(&self, meta: &RequestMeta, user: &Option<User>, now: OffsetDateTime, fresh: &mut Fresh) -> Result<Decision<usize>, Error> {
        let Some(user) = user.as_ref().filter(|user| user.organization == self.organization) else { return Ok(Decision::answer(0)) };
        let mut next = user.clone();
        let mut given_up = Vec::new();
        for slot in &self.slots {
            let Some(record) = next.deliveries.get_mut(slot) else { continue };
            if record.intent != self.intent || record.state != DeliveryState::Queued || record.claimed_at(now) {
                continue;
            }
            record.state = DeliveryState::Undeliverable;
            record.reason = Some(self.reason.to_owned());
            record.claim = None;
            record.updated_at = now;
            given_up.push(*slot);
        }
        if given_up.is_empty() {
            return Ok(Decision::answer(0));
        }
        next.version = user.version + 1;
        Ok(write_deliveries(given_up.len(), meta, user, next, &given_up, now, fresh))
    }
}
