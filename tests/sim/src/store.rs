//! The store as the simulator gives it to the functions: the real adapter (embedded or
//! DynamoDB) behind a decorator that decides, from the history's seed, the order in which
//! concurrent requests reach it and which of their calls fail.
//!
//! **Interleaving.** Requests of a `Together` step are actors. Every store call of an actor
//! waits for its turn; a turn is given only when every live actor is waiting for one (none
//! is computing or backing off), to one of them drawn from the step's schedule seed. So the
//! calls of concurrent requests interleave at every store call, in an order the seed alone
//! decides, whatever the store's latency — the same on the embedded store and on DynamoDB.
//!
//! **Faults.** Each request may carry one `StoreFault`, applied to its own calls.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use domain::audit::AuditEntry;
use domain::ledger::LedgerEntry;
use domain::organization::OrganizationId;
use domain::store::{
    AuditQuery, BadItem, CommitError, Contact, ExpiryPartition, Key, Loaded, Page, PageRequest, Queries, Records, Store, StoreError,
    UserFilter, Write,
};
use domain::user::User;
use rand::{RngExt, SeedableRng};
use rand_xorshift::XorShiftRng;
use time::OffsetDateTime;
use tokio::sync::oneshot;

use crate::step::StoreFault;

tokio::task_local! {
    /// The actor (the request's position in its step) a store call is made for.
    pub static ACTOR: usize;
}

#[derive(Default)]
struct Turns {
    live: BTreeSet<usize>,
    waiting: BTreeMap<usize, oneshot::Sender<()>>,
    holder: Option<usize>,
    schedule: Option<XorShiftRng>,
}

impl Turns {
    /// Gives the next turn once every live actor waits for one.
    fn release(&mut self) {
        if self.holder.is_some() || self.waiting.is_empty() || self.waiting.len() < self.live.len() {
            return;
        }
        let Some(schedule) = self.schedule.as_mut() else { return };
        let candidates: Vec<usize> = self.waiting.keys().copied().collect();
        let pick = candidates[schedule.random_range(0..candidates.len())];
        let sender = self.waiting.remove(&pick).expect("waiting");
        self.holder = Some(pick);
        let _ = sender.send(());
    }
}

/// The fault of one actor, and how far it got.
struct Plan {
    fault: StoreFault,
    fired: bool,
    /// An in-flight commit (its token and writes) and the actor's calls since.
    held: Option<(String, Vec<Write>, usize)>,
}

pub struct SimStore {
    inner: Arc<dyn Store>,
    turns: Mutex<Turns>,
    plans: Mutex<BTreeMap<usize, Plan>>,
    /// Paced calls (a sweep cut short by its deadline): time is cut in slots of `delay`
    /// from the origin (Tokio's clock), and each call waits for the next slot to begin —
    /// calls made together wait together. The slots, not the calls' own time, decide
    /// where the deadline falls, so a cut lands between the same calls on the emulator
    /// (real time) as on the embedded store (paused time) while a call takes less than
    /// half a slot.
    delay: Mutex<Option<(std::time::Duration, tokio::time::Instant)>>,
    pub calls: AtomicUsize,
    pub faults_injected: AtomicUsize,
}

/// Holds an actor's turn for the length of one store call.
struct Turn<'a>(&'a SimStore);

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut turns = self.0.turns.lock().expect("turns");
        turns.holder = None;
        turns.release();
    }
}

fn injected(what: &str) -> domain::store::BoxError {
    format!("injected fault: {what}").into()
}

impl SimStore {
    pub fn new(inner: Arc<dyn Store>) -> Arc<Self> {
        Arc::new(SimStore {
            inner,
            turns: Mutex::default(),
            plans: Mutex::default(),
            delay: Mutex::default(),
            calls: AtomicUsize::new(0),
            faults_injected: AtomicUsize::new(0),
        })
    }

    /// Starts a step of `actors` requests whose calls interleave by `schedule`, each with
    /// its fault.
    pub fn begin(&self, faults: &[Option<StoreFault>], schedule: u64) {
        let mut turns = self.turns.lock().expect("turns");
        *turns = Turns { live: (0..faults.len()).collect(), schedule: Some(XorShiftRng::seed_from_u64(schedule)), ..Turns::default() };
        let mut plans = self.plans.lock().expect("plans");
        plans.clear();
        for (actor, fault) in faults.iter().enumerate() {
            if let Some(fault) = fault {
                plans.insert(actor, Plan { fault: *fault, fired: false, held: None });
            }
        }
    }

    /// An actor is done: it takes no more turns, and a commit it left in flight lands.
    pub async fn finished(&self, actor: usize) {
        let held = self.plans.lock().expect("plans").get_mut(&actor).and_then(|plan| plan.held.take());
        if let Some((token, writes, _)) = held {
            let _ = self.inner.commit_once(&token, writes).await;
        }
        let mut turns = self.turns.lock().expect("turns");
        turns.live.remove(&actor);
        turns.release();
    }

    /// Ends the step: calls pass straight through again.
    pub fn end(&self) {
        *self.turns.lock().expect("turns") = Turns::default();
        self.plans.lock().expect("plans").clear();
    }

    pub fn slow(&self, delay: Option<std::time::Duration>) {
        *self.delay.lock().expect("delay") = delay.map(|delay| (delay, tokio::time::Instant::now()));
    }

    async fn turn(&self) -> Option<Turn<'_>> {
        let actor = ACTOR.try_with(|actor| *actor).ok()?;
        let receiver = {
            let mut turns = self.turns.lock().expect("turns");
            if !turns.live.contains(&actor) {
                return None;
            }
            let (sender, receiver) = oneshot::channel();
            turns.waiting.insert(actor, sender);
            turns.release();
            receiver
        };
        receiver.await.expect("the scheduler keeps its senders until it sends");
        Some(Turn(self))
    }

    /// Before any call of an actor: counts it, lands an in-flight commit whose time has
    /// come, and takes the call's time.
    async fn before(&self) -> Option<usize> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let slot = self.delay.lock().expect("delay").map(|(delay, origin)| {
            let slots = (tokio::time::Instant::now() - origin).as_nanos() / delay.as_nanos() + 1;
            origin + delay * u32::try_from(slots).expect("a sweep run takes few slots")
        });
        if let Some(slot) = slot {
            tokio::time::sleep_until(slot).await;
        }
        let actor = ACTOR.try_with(|actor| *actor).ok()?;
        let landing = {
            let mut plans = self.plans.lock().expect("plans");
            let plan = plans.get_mut(&actor)?;
            match plan.held.as_mut() {
                Some((_, _, calls)) if *calls + 1 >= 2 => plan.held.take().map(|(token, writes, _)| (token, writes)),
                Some((_, _, calls)) => {
                    *calls += 1;
                    None
                }
                None => None,
            }
        };
        if let Some((token, writes)) = landing {
            let _ = self.inner.commit_once(&token, writes).await;
        }
        Some(actor)
    }

    /// The fault this call meets, if any (each fires once, but `Conflicts`).
    fn fault(&self, actor: Option<usize>, commit: bool) -> Option<StoreFault> {
        let actor = actor?;
        let mut plans = self.plans.lock().expect("plans");
        let plan = plans.get_mut(&actor)?;
        let applies = match plan.fault {
            StoreFault::ReadThrottled => !commit,
            StoreFault::Conflicts => commit,
            _ => commit,
        };
        if !applies || (plan.fired && plan.fault != StoreFault::Conflicts) {
            return None;
        }
        plan.fired = true;
        self.faults_injected.fetch_add(1, Ordering::SeqCst);
        Some(plan.fault)
    }

    async fn read_call<T>(&self, call: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
        let _turn = self.turn().await;
        let actor = self.before().await;
        match self.fault(actor, false) {
            Some(_) => Err(StoreError::Unavailable(injected("read throttled"))),
            None => call.await,
        }
    }
}

#[async_trait]
impl Records for SimStore {
    async fn load(&self, keys: &[Key]) -> Result<Loaded, StoreError> {
        self.read_call(self.inner.load(keys)).await
    }

    async fn commit_once(&self, token: &str, writes: Vec<Write>) -> Result<(), CommitError> {
        let _turn = self.turn().await;
        let actor = self.before().await;
        // The same transaction sent again while it is still in flight: DynamoDB answers
        // `TransactionInProgressException`, an outcome as unknown as before.
        let in_flight = actor.is_some_and(|actor| {
            self.plans.lock().expect("plans").get(&actor).is_some_and(|plan| plan.held.as_ref().is_some_and(|(held, _, _)| held == token))
        });
        if in_flight {
            return Err(CommitError::Unknown(injected("this transaction is still in progress")));
        }
        match self.fault(actor, true) {
            None => self.inner.commit_once(token, writes).await,
            Some(StoreFault::WriteThrottled) => Err(CommitError::Unavailable(injected("write throttled"))),
            Some(StoreFault::Conflict | StoreFault::Conflicts) => Err(CommitError::Conflict { failed: vec![] }),
            Some(StoreFault::LostResponse) => {
                self.inner.commit_once(token, writes).await?;
                Err(CommitError::Unknown(injected("the answer to a commit that landed was lost")))
            }
            Some(StoreFault::NotApplied) => Err(CommitError::Unknown(injected("the answer was lost; the commit did not land"))),
            Some(StoreFault::InFlight) => {
                let actor = actor.expect("a fault belongs to an actor");
                if let Some(plan) = self.plans.lock().expect("plans").get_mut(&actor) {
                    plan.held = Some((token.to_owned(), writes, 0));
                }
                Err(CommitError::Unknown(injected("the answer was lost while the commit was in flight")))
            }
            Some(StoreFault::ReadThrottled) => unreachable!("a read fault"),
        }
    }
}

#[async_trait]
impl Queries for SimStore {
    async fn users(&self, organization: &OrganizationId, filter: &UserFilter, page: PageRequest) -> Result<Page<User>, StoreError> {
        self.read_call(self.inner.users(organization, filter, page)).await
    }
    async fn audit(&self, query: &AuditQuery, page: PageRequest) -> Result<Page<AuditEntry>, StoreError> {
        self.read_call(self.inner.audit(query, page)).await
    }
    async fn ledger(&self, organization: &OrganizationId, page: PageRequest) -> Result<Page<LedgerEntry>, StoreError> {
        self.read_call(self.inner.ledger(organization, page)).await
    }
    async fn expiring(
        &self,
        partition: ExpiryPartition,
        until: Option<OffsetDateTime>,
        page: PageRequest,
    ) -> Result<Page<Result<User, BadItem>>, StoreError> {
        self.read_call(self.inner.expiring(partition, until, page)).await
    }
    async fn undelivered(&self, shard: u8, due_by: OffsetDateTime, page: PageRequest) -> Result<Page<Result<User, BadItem>>, StoreError> {
        self.read_call(self.inner.undelivered(shard, due_by, page)).await
    }
    async fn user_by_link_token(&self, sha256: &str) -> Result<Option<User>, StoreError> {
        self.read_call(self.inner.user_by_link_token(sha256)).await
    }
    async fn users_with_contact(&self, organization: &OrganizationId, contact: &Contact) -> Result<Vec<User>, StoreError> {
        self.read_call(self.inner.users_with_contact(organization, contact)).await
    }
}
