//! The one way every action runs (after `cqrs-es`'s aggregate: a pure decision per action,
//! one executor around it — but our state stays items with versions, not an event store).
//!
//! A `Command` says what it reads (`load`), whether the caller may (`authorize`, through
//! the policy) and what follows from what it read (`decide`: the writes, each conditional on
//! the state it was decided from, its audit entries, the messages to send, and its answer —
//! or a refusal). `run` does the rest, the same for every action:
//!
//! 1. loads, authorizes, and for a keyed request replays the stored answer (only after the
//!    caller's right is established) or refuses a reused key;
//! 2. decides, and commits the writes, the audit entries, the message intent and the
//!    stored answer in one atomic write;
//! 3. on a conflict (someone changed what was read) reads and decides again, backing off
//!    with jitter, for as long as the invocation's deadline allows — then 503 `busy`;
//! 4. on an unknown outcome (the write may have reached the table) reads back the commit's
//!    witness — its first created record, an audit entry or intent with a fresh ID — so a
//!    write that landed is answered as the success it was, and one that did not is tried
//!    again and meets the real refusal if the state has moved on.

use serde::Serialize;
use serde::de::DeserializeOwned;
use time::{Duration as TimeDuration, OffsetDateTime};

use crate::audit::{AuditAction, AuditEntry, AuditScope};
use crate::deadline::{Deadline, SDK_OPERATION_TIMEOUT, within};
use crate::entropy::{Entropy, Fresh};
use crate::env::Env;
use crate::error::{Error, Kind, Rejection};
use crate::idempotency::{IdempotencyRecord, IdempotencyScope, Operation};
use crate::metrics::Metric;
use crate::organization::OrganizationId;
use crate::outbox::{DeliveryRecord, DeliveryState, INTENT_LIFETIME, Intent, Message, Notice};
use crate::policy::Caller;
use crate::store::{CommitError, Expect, Key, Loaded, Record, Store, StoreError, Write};
use crate::user::User;

/// Who is asking, the request's id for the audit trail and logs, and when the invocation
/// must have answered.
#[derive(Debug, Clone)]
pub struct RequestMeta {
    pub caller: Caller,
    pub request_id: String,
    pub deadline: Deadline,
}

impl RequestMeta {
    pub fn new(caller: Caller, request_id: impl Into<String>) -> Self {
        RequestMeta { caller, request_id: request_id.into(), deadline: Deadline::unbounded() }
    }

    pub fn with_deadline(self, deadline: Deadline) -> Self {
        RequestMeta { deadline, ..self }
    }
}

/// A keyed request: its stored answer is replayed to a retry, and refused to a reuse.
#[derive(Debug, Clone)]
pub struct Keyed {
    pub organization: OrganizationId,
    pub scope: IdempotencyScope,
    /// SHA-256 of the key (and of its owner, for keys that belong to a caller).
    pub key_digest: String,
    /// SHA-256 of the canonical request.
    pub request_digest: String,
    /// How long the answer is kept; `None` is forever (payment references).
    pub lifetime: Option<TimeDuration>,
    /// The refusal of the same key with another request.
    pub reused: Kind,
}

impl Keyed {
    /// A key that belongs to the caller within the organization: another caller's key of
    /// the same text is another key, and the same key sent with another paid operation is
    /// a reuse (the operation is digested with the request). Remembered `KEY_LIFETIME`.
    pub fn for_caller(meta: &RequestMeta, organization: &OrganizationId, operation: Operation, key: &str, request_digest: String) -> Self {
        Keyed {
            organization: organization.clone(),
            scope: IdempotencyScope::Caller,
            key_digest: crate::idempotency::key_digest(&format!("{}\n{key}", meta.caller.key_owner())),
            request_digest: crate::secrets::sha256_hex(format!("{}\n{request_digest}", operation.as_str()).as_bytes()),
            lifetime: Some(crate::idempotency::KEY_LIFETIME),
            reused: Kind::IdempotencyKeyReused,
        }
    }

    fn key(&self) -> Key {
        Key::Idempotency(self.organization.clone(), self.scope, self.key_digest.clone())
    }
}

/// Reading for a command: records in batches, and the store's queries. The executor's own
/// reads (the stored answer of a keyed request) ride along with the command's first batch,
/// so a keyed command still reads once.
pub struct Reads<'a> {
    store: &'a dyn Store,
    deadline: Deadline,
    now: OffsetDateTime,
    extra: Option<Key>,
    extra_loaded: Option<Loaded>,
}

impl<'a> Reads<'a> {
    fn new(store: &'a dyn Store, deadline: Deadline, now: OffsetDateTime, extra: Option<Key>) -> Self {
        Reads { store, deadline, now, extra, extra_loaded: None }
    }

    /// The attempt's `now` (what `authorize` and `decide` will get).
    pub fn now(&self) -> OffsetDateTime {
        self.now
    }

    /// Reads records by key, in one request.
    pub async fn load(&mut self, keys: impl IntoIterator<Item = Key>) -> Result<Loaded, Error> {
        let mut keys: Vec<Key> = keys.into_iter().collect();
        let first = self.extra_loaded.is_none() && self.extra.is_some();
        if first {
            keys.extend(self.extra.clone());
        }
        let loaded = bounded(self.deadline, self.store.load(&keys)).await?;
        if first {
            let extra = self.extra.as_ref().expect("checked");
            self.extra_loaded = Some(Loaded::new(loaded.record(extra).cloned()));
        }
        Ok(loaded)
    }

    /// The store, for index queries (each bounded by the deadline through `query`).
    pub fn store(&self) -> &'a dyn Store {
        self.store
    }

    /// Runs an index query within the deadline.
    pub async fn query<T>(&self, query: impl Future<Output = Result<T, StoreError>>) -> Result<T, Error> {
        bounded(self.deadline, query).await
    }
}

/// Runs a store call within the deadline (and the SDK's operation timeout).
pub(crate) async fn bounded<T>(deadline: Deadline, call: impl Future<Output = Result<T, StoreError>>) -> Result<T, Error> {
    match within(deadline, SDK_OPERATION_TIMEOUT, call).await {
        Some(result) => result.map_err(Error::from),
        None => Err(Error::internal(StoreError::Unavailable("the invocation's time ran out waiting for the store".into()))),
    }
}

/// A user read before the command ran (by a listing, or before sending): the first attempt
/// decides from it — its write is conditional on its version, so a stale read costs a
/// conflict, never a wrong write — and a retry reads the record by key.
pub struct ReadFirst {
    read: std::sync::Mutex<Option<User>>,
    organization: OrganizationId,
    id: crate::identity::PersonId,
}

impl ReadFirst {
    pub fn new(organization: &OrganizationId, id: &crate::identity::PersonId, read: Option<User>) -> Self {
        ReadFirst { read: std::sync::Mutex::new(read), organization: organization.clone(), id: id.clone() }
    }

    pub async fn load(&self, reads: &mut Reads<'_>) -> Result<Option<User>, Error> {
        if let Some(read) = self.read.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take() {
            return Ok(Some(read));
        }
        Ok(reads.load([Key::User(self.organization.clone(), self.id.clone())]).await?.user(&self.organization, &self.id).cloned())
    }
}

/// What a command decided: the answer (or a refusal to give after the writes, as when a
/// wrong code's count must be kept), and everything that commits with it.
#[derive(Debug)]
pub struct Decision<A> {
    answer: Result<A, Rejection>,
    writes: Vec<Write>,
    audit: Vec<AuditEntry>,
    intent: Option<Intent>,
    metrics: Vec<Metric>,
}

impl<A> Decision<A> {
    /// An answer that changes nothing.
    pub fn answer(answer: A) -> Self {
        Decision { answer: Ok(answer), writes: vec![], audit: vec![], intent: None, metrics: vec![] }
    }

    /// A refusal that is given only once the writes have committed.
    pub fn refuse_after_writing(rejection: Rejection) -> Self {
        Decision { answer: Err(rejection), writes: vec![], audit: vec![], intent: None, metrics: vec![] }
    }

    /// The answer decided, if it is not a refusal.
    pub fn answer_ref(&self) -> Option<&A> {
        self.answer.as_ref().ok()
    }

    /// The same writes, audit entries and messages, with `answer` (for decisions built up
    /// before their answer is known).
    pub fn with_answer<B>(self, answer: B) -> Decision<B> {
        Decision { answer: Ok(answer), writes: self.writes, audit: self.audit, intent: self.intent, metrics: self.metrics }
    }

    pub fn write(mut self, write: Write) -> Self {
        self.writes.push(write);
        self
    }

    pub fn push_write(&mut self, write: Write) {
        self.writes.push(write);
    }

    pub fn audit(mut self, entry: AuditEntry) -> Self {
        self.audit.push(entry);
        self
    }

    pub fn push_audit(&mut self, entry: AuditEntry) {
        self.audit.push(entry);
    }

    /// Counts a business fact, emitted once the commit has landed.
    pub fn count(&mut self, metric: Metric) {
        self.metrics.push(metric);
    }

    /// Queues `message` to `user` (whose record this decision writes, after this call):
    /// the notice joins the intent committed with the change, and the user's slot for it
    /// says `queued`.
    pub fn notify(&mut self, meta: &RequestMeta, user: &mut User, message: Message, now: OffsetDateTime, fresh: &mut Fresh) {
        let intent = self.intent.get_or_insert_with(|| Intent {
            organization: user.organization.clone(),
            id: fresh.id("intent"),
            created_at: now,
            request_id: meta.request_id.clone(),
            notices: vec![],
            events: vec![],
        });
        user.deliveries.insert(
            message.slot(),
            DeliveryRecord {
                intent: intent.id.clone(),
                state: DeliveryState::Queued,
                message_id: None,
                reason: None,
                attempts: 0,
                updated_at: now,
                claim: None,
                queued_at: Some(intent.created_at),
            },
        );
        intent.notices.push(Notice { user: user.id.clone(), message });
    }

    fn changes_nothing(&self) -> bool {
        self.writes.is_empty() && self.audit.is_empty() && self.intent.is_none()
    }
}

/// An action. See the module's documentation for how `run` uses it.
pub trait Command: Sync {
    /// What `load` read.
    type State: Send + Sync;
    /// What the command answers on success; stored and replayed for keyed requests.
    type Answer: Serialize + DeserializeOwned + Send;

    /// Reads what the decision needs (records in one batch where it can).
    fn load(&self, meta: &RequestMeta, reads: &mut Reads<'_>) -> impl Future<Output = Result<Self::State, Error>> + Send;

    /// Whether the caller may, through `policy`. Runs before any stored answer is replayed.
    fn authorize(&self, meta: &RequestMeta, state: &Self::State, now: OffsetDateTime) -> Result<(), Rejection>;

    /// What follows from the state, at `now`: a decision, a refusal, or (when what was read
    /// breaks an invariant) an internal error. Pure: no I/O, no clock, and no randomness
    /// but `fresh` (identifiers and nonces, from a seed the pipeline drew for this attempt).
    fn decide(
        &self,
        meta: &RequestMeta,
        state: &Self::State,
        now: OffsetDateTime,
        fresh: &mut Fresh,
    ) -> Result<Decision<Self::Answer>, Error>;

    /// The idempotency key, for keyed requests.
    fn keyed(&self) -> Option<&Keyed> {
        None
    }
}

/// A command's answer, and whether it is a replay of the first answer to its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome<A> {
    pub answer: A,
    pub replayed: bool,
}

impl<A> Outcome<A> {
    fn fresh(answer: A) -> Self {
        Outcome { answer, replayed: false }
    }
}

/// Runs a command to its end. See the module's documentation.
pub async fn run<C: Command>(env: &Env, meta: &RequestMeta, command: &C) -> Result<Outcome<C::Answer>, Error> {
    let mut backoff = Backoff::new(env.settings.retry, meta.deadline, env.entropy.as_ref());
    // Set when our commit lost the race for its idempotency key: the next read finds the
    // winner's answer, which a concurrent duplicate does not get as its own.
    let mut key_taken = false;
    loop {
        let now = env.clock.now();
        let keyed = command.keyed();
        let mut reads = Reads::new(env.store.as_ref(), meta.deadline, now, keyed.map(Keyed::key));
        let state = command.load(meta, &mut reads).await?;
        command.authorize(meta, &state, now)?;
        if let Some(keyed) = keyed {
            let stored = match reads.extra_loaded.take() {
                Some(loaded) => loaded,
                None => bounded(meta.deadline, env.store.load(&[keyed.key()])).await?,
            };
            if let Some(Record::Idempotency(record)) = stored.record(&keyed.key())
                && record.is_live_at(now)
            {
                // A concurrent duplicate is told to retry for the winner's answer; another
                // request under the same key is refused as reused, concurrent or not.
                if key_taken && record.request_digest == keyed.request_digest {
                    return Err(in_flight());
                }
                return replay(record, keyed);
            }
        }
        let mut fresh = Fresh::draw(env.entropy.as_ref());
        let decision = command.decide(meta, &state, now, &mut fresh)?;
        if decision.changes_nothing() {
            return decision.answer.map(Outcome::fresh).map_err(Error::from);
        }
        let Decision { answer, mut writes, audit, mut intent, metrics } = decision;
        // Every audited change is published: its events ride in the change's intent (one
        // more item in the same transaction when it sends no message, never another call).
        let events = crate::events::of(&audit, &writes);
        if !events.is_empty() {
            let organization = audit.iter().find_map(|entry| match &entry.scope {
                crate::audit::AuditScope::Organization(org) => Some(org.clone()),
                crate::audit::AuditScope::Platform => None,
            });
            if let Some(organization) = organization {
                let intent = intent.get_or_insert_with(|| Intent {
                    organization,
                    id: fresh.id("intent"),
                    created_at: now,
                    request_id: meta.request_id.clone(),
                    notices: vec![],
                    events: vec![],
                });
                intent.events = events;
            }
        }
        let witness = witness(&writes, &audit, intent.as_ref());
        writes.extend(audit.into_iter().map(|entry| Write::create(Record::Audit(entry))));
        writes.extend(intent.into_iter().map(|intent| Write::create(Record::Intent(intent))));
        let key_position = match (keyed, &answer) {
            (Some(keyed), Ok(answer)) => {
                writes.push(Write {
                    record: Record::Idempotency(stored_answer(keyed, answer, now)?),
                    expect: Expect::AbsentOrExpiredBy(now),
                });
                Some(writes.len() - 1)
            }
            _ => None,
        };
        // Sent again with the same token whenever its outcome is unknown (DynamoDB applies a
        // token's transaction at most once): it settles as landed or not, never both.
        let token = fresh.hex(16);
        match settle(env, meta, &token, writes, &witness).await {
            Settled::Landed => {
                crate::metrics::emit(&metrics);
                return answer.map(Outcome::fresh).map_err(Error::from);
            }
            Settled::Conflict { failed } => {
                if key_position.is_some_and(|position| failed.contains(&position)) {
                    key_taken = true;
                }
            }
            Settled::Failed(error) => return Err(error),
        }
        backoff.wait().await?;
    }
}

/// How a commit ended.
enum Settled {
    Landed,
    /// It did not land: someone changed what it was decided from.
    Conflict {
        failed: Vec<usize>,
    },
    Failed(Error),
}

/// Resends of a commit whose outcome is unknown, before its outcome is read back instead.
const RESENDS: u32 = 6;

/// Commits `writes` under `token`, and settles an unknown outcome: the same transaction is
/// sent again (after a pause, while the deadline allows) until the store says it landed
/// (its token applied it, now or before) or that it cannot (a condition failed, and the
/// witness — the commit's first created record — is not there). Re-deciding instead could
/// meet the commit's own write, still in flight, and refuse what had succeeded.
async fn settle(env: &Env, meta: &RequestMeta, token: &str, writes: Vec<Write>, witness: &Witness) -> Settled {
    let mut uncertain = false;
    let mut resends = 0;
    let mut pause = std::time::Duration::from_millis(20);
    loop {
        let committed = match within(meta.deadline, SDK_OPERATION_TIMEOUT, env.store.commit_once(token, writes.clone())).await {
            Some(result) => result,
            None => Err(CommitError::Unknown("the invocation's time ran out waiting for the commit".into())),
        };
        let cause = match committed {
            Ok(()) => return Settled::Landed,
            Err(CommitError::Conflict { failed }) if !uncertain => return Settled::Conflict { failed },
            // A condition failed after an unknown outcome: either our own write, landed
            // under a store that does not keep tokens, or someone else's.
            Err(CommitError::Conflict { failed }) => {
                return match landed(env, meta, witness).await {
                    Ok(true) => Settled::Landed,
                    Ok(false) => Settled::Conflict { failed },
                    Err(error) => Settled::Failed(error),
                };
            }
            Err(CommitError::Unknown(cause)) => cause,
            // An outage after an unknown outcome leaves the outcome unknown.
            Err(CommitError::Unavailable(cause)) if uncertain => cause,
            // Kept whole, so the edge can tell an outage (503) from a misconfiguration (500).
            Err(error @ (CommitError::Unavailable(_) | CommitError::Misconfigured(_))) => return Settled::Failed(Error::internal(error)),
        };
        uncertain = true;
        resends += 1;
        if resends > RESENDS || !meta.deadline.allows(pause + SDK_OPERATION_TIMEOUT * 2) {
            // Out of time to resend: what is stored says, or the outcome stays unknown (503;
            // a keyed retry replays it, an unkeyed one meets the real state).
            return match landed(env, meta, witness).await {
                Ok(true) => Settled::Landed,
                Ok(false) => Settled::Failed(Error::internal(CommitError::Unknown(cause))),
                Err(error) => Settled::Failed(error),
            };
        }
        tracing::warn!(resends, "commit outcome unknown; sending the same transaction again");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(std::time::Duration::from_millis(250));
    }
}

/// Whether the commit's witness is stored.
async fn landed(env: &Env, meta: &RequestMeta, witness: &Witness) -> Result<bool, Error> {
    let read = bounded(meta.deadline, env.store.load(&[witness.key()])).await?;
    Ok(witness.found_in(&read))
}

/// What proves a commit landed: its first created record (an audit entry or intent with a
/// fresh ID, which nothing else writes), or else its first replaced record, as written.
enum Witness {
    Created(crate::store::StorageKey),
    Replaced(Box<Record>),
}

fn witness(writes: &[Write], audit: &[AuditEntry], intent: Option<&Intent>) -> Witness {
    if let Some(entry) = audit.first() {
        return Witness::Created(Record::Audit(entry.clone()).storage_key());
    }
    if let Some(intent) = intent {
        return Witness::Created(Record::Intent(intent.clone()).storage_key());
    }
    let first = writes.first().expect("a decision that changes something writes");
    Witness::Replaced(Box::new(first.record.clone()))
}

impl Witness {
    fn key(&self) -> Key {
        match self {
            Witness::Created(key) => Key::At(key.clone()),
            Witness::Replaced(record) => Key::At(record.storage_key()),
        }
    }

    fn found_in(&self, read: &Loaded) -> bool {
        match self {
            Witness::Created(key) => read.holds(key),
            Witness::Replaced(record) => read.record(&self.key()) == Some(record.as_ref()),
        }
    }
}

fn stored_answer<A: Serialize>(keyed: &Keyed, answer: &A, now: OffsetDateTime) -> Result<IdempotencyRecord, Error> {
    Ok(IdempotencyRecord {
        organization: keyed.organization.clone(),
        scope: keyed.scope,
        key_digest: keyed.key_digest.clone(),
        request_digest: keyed.request_digest.clone(),
        body: serde_json::to_string(answer).map_err(Error::internal)?,
        created_at: now,
        expires_at: keyed.lifetime.map(|lifetime| now + lifetime),
    })
}

fn replay<A: DeserializeOwned>(record: &IdempotencyRecord, keyed: &Keyed) -> Result<Outcome<A>, Error> {
    if record.request_digest != keyed.request_digest {
        return Err(Rejection::new(keyed.reused, "this key was already used for a different request").into());
    }
    let answer = serde_json::from_str(&record.body).map_err(Error::internal)?;
    Ok(Outcome { answer, replayed: true })
}

fn in_flight() -> Error {
    Rejection::new(
        Kind::IdempotencyKeyInFlight,
        "another request with this key was being processed at the same time; retry to get its result",
    )
    .into()
}

/// Backoff between attempts, with full jitter, within the retry policy and the deadline.
struct Backoff<'a> {
    policy: crate::env::RetryPolicy,
    deadline: Deadline,
    entropy: &'a dyn Entropy,
    round: u32,
}

impl<'a> Backoff<'a> {
    fn new(policy: crate::env::RetryPolicy, deadline: Deadline, entropy: &'a dyn Entropy) -> Self {
        Backoff { policy, deadline, entropy, round: 0 }
    }

    async fn wait(&mut self) -> Result<(), Error> {
        self.round += 1;
        let ceiling = self.policy.base.saturating_mul(1u32 << self.round.min(16)).min(self.policy.cap);
        let pause = ceiling.mul_f64(Fresh::draw(self.entropy).fraction());
        // Another attempt needs its pause and one store call's worth of time.
        if self.round >= self.policy.attempts || !self.deadline.allows(pause + SDK_OPERATION_TIMEOUT) {
            tracing::warn!(attempts = self.round, "gave up after repeated write conflicts");
            return Err(Rejection::busy().into());
        }
        tokio::time::sleep(pause).await;
        Ok(())
    }
}

/// An audit entry of `organization`, about `target`, by the caller.
pub fn audit_entry(
    meta: &RequestMeta,
    organization: &OrganizationId,
    action: AuditAction,
    target: Option<&User>,
    changes: serde_json::Value,
    at: OffsetDateTime,
    fresh: &mut Fresh,
) -> AuditEntry {
    AuditEntry {
        scope: AuditScope::Organization(organization.clone()),
        id: fresh.id("audit"),
        at,
        actor: meta.caller.actor(),
        action,
        target: target.map(|user| user.id.clone()),
        establishments: target.map(|user| user.establishments.clone()).unwrap_or_default(),
        changes,
        request_id: meta.request_id.clone(),
    }
}

/// How long an intent's item lives (for the adapters that set a TTL).
pub fn intent_expiry(intent: &Intent) -> OffsetDateTime {
    intent.created_at + INTENT_LIFETIME
}
