//! Store wrappers for tests: a gate that holds commits until enough requests have read
//! (to stage races deterministically), and fault injection at the adapter boundary.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use domain::audit::AuditEntry;
use domain::ledger::LedgerEntry;
use domain::organization::OrganizationId;
use domain::store::{
    AuditQuery, BadItem, CommitError, Contact, ExpiryPartition, Key, Loaded, Page, PageRequest, Queries, Records, Store, StoreError,
    UserFilter, Write,
};
use domain::user::User;
use time::OffsetDateTime;
use tokio::sync::Notify;

/// Holds every commit until `readers` loads have happened: two requests that must race
/// both read before either writes.
pub struct GatedStore {
    inner: Arc<dyn Store>,
    readers: usize,
    loads: AtomicUsize,
    opened: Notify,
}

impl GatedStore {
    pub fn new(inner: Arc<dyn Store>, readers: usize) -> Arc<Self> {
        Arc::new(GatedStore { inner, readers, loads: AtomicUsize::new(0), opened: Notify::new() })
    }
}

#[async_trait]
impl Records for GatedStore {
    async fn load(&self, keys: &[Key]) -> Result<Loaded, StoreError> {
        let loaded = self.inner.load(keys).await;
        if self.loads.fetch_add(1, Ordering::SeqCst) + 1 >= self.readers {
            self.opened.notify_waiters();
        }
        loaded
    }

    async fn commit_once(&self, token: &str, writes: Vec<Write>) -> Result<(), CommitError> {
        loop {
            let opened = self.opened.notified();
            if self.loads.load(Ordering::SeqCst) >= self.readers {
                break;
            }
            opened.await;
        }
        self.inner.commit_once(token, writes).await
    }
}

#[async_trait]
impl Queries for GatedStore {
    async fn users(&self, organization: &OrganizationId, filter: &UserFilter, page: PageRequest) -> Result<Page<User>, StoreError> {
        self.inner.users(organization, filter, page).await
    }
    async fn audit(&self, query: &AuditQuery, page: PageRequest) -> Result<Page<AuditEntry>, StoreError> {
        self.inner.audit(query, page).await
    }
    async fn ledger(&self, organization: &OrganizationId, page: PageRequest) -> Result<Page<LedgerEntry>, StoreError> {
        self.inner.ledger(organization, page).await
    }
    async fn expiring(
        &self,
        partition: ExpiryPartition,
        until: Option<OffsetDateTime>,
        page: PageRequest,
    ) -> Result<Page<Result<User, BadItem>>, StoreError> {
        self.inner.expiring(partition, until, page).await
    }
    async fn undelivered(&self, shard: u8, due_by: OffsetDateTime, page: PageRequest) -> Result<Page<Result<User, BadItem>>, StoreError> {
        self.inner.undelivered(shard, due_by, page).await
    }
    async fn user_by_link_token(&self, sha256: &str) -> Result<Option<User>, StoreError> {
        self.inner.user_by_link_token(sha256).await
    }
    async fn users_with_contact(&self, organization: &OrganizationId, contact: &Contact) -> Result<Vec<User>, StoreError> {
        self.inner.users_with_contact(organization, contact).await
    }
}

/// What a wrapped call is about to do, for deciding whether to fail it.
#[derive(Debug)]
pub enum Call<'a> {
    Load(&'a [Key]),
    Commit(&'a [Write]),
    Query(&'static str),
}

/// A failure to inject at the adapter boundary.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Throttled or down: nothing happens, the call fails.
    Unavailable,
    /// A transaction conflict (DynamoDB's `TransactionConflict`): nothing is written.
    Conflict,
    /// The write reaches the table, then the response is lost (a timeout after commit).
    LostResponse,
    /// The outcome is unknown and the write did not land — another request's (these
    /// writes) landed in its place, so the state moved on before the caller could retry.
    Instead(Vec<Write>),
    /// The call takes this long (on Tokio's clock, so paused-time tests stay instant), then
    /// goes through.
    Slow(std::time::Duration),
}

type Plan = Box<dyn FnMut(&Call<'_>) -> Option<Fault> + Send>;

/// A store that fails the calls its plan picks, and counts what it injected.
pub struct FaultyStore {
    inner: Arc<dyn Store>,
    plan: std::sync::Mutex<Plan>,
    pub injected: AtomicUsize,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn Store>, plan: impl FnMut(&Call<'_>) -> Option<Fault> + Send + 'static) -> Arc<Self> {
        Arc::new(FaultyStore { inner, plan: std::sync::Mutex::new(Box::new(plan)), injected: AtomicUsize::new(0) })
    }

    fn decide(&self, call: &Call<'_>) -> Option<Fault> {
        let fault = (self.plan.lock().expect("plan"))(call);
        if fault.is_some() {
            self.injected.fetch_add(1, Ordering::SeqCst);
        }
        fault
    }

    /// Fails a query (as throttled) when the plan picks it.
    fn query_allowed(&self, query: &'static str) -> Result<(), StoreError> {
        match self.decide(&Call::Query(query)) {
            Some(_) => Err(StoreError::Unavailable(injected_error("query throttled"))),
            None => Ok(()),
        }
    }
}

fn injected_error(what: &str) -> domain::store::BoxError {
    format!("injected fault: {what}").into()
}

#[async_trait]
impl Records for FaultyStore {
    async fn load(&self, keys: &[Key]) -> Result<Loaded, StoreError> {
        match self.decide(&Call::Load(keys)) {
            Some(_) => Err(StoreError::Unavailable(injected_error("read throttled"))),
            None => self.inner.load(keys).await,
        }
    }

    async fn commit_once(&self, token: &str, writes: Vec<Write>) -> Result<(), CommitError> {
        match self.decide(&Call::Commit(&writes)) {
            Some(Fault::Unavailable) => Err(CommitError::Unavailable(injected_error("write throttled"))),
            Some(Fault::Conflict) => Err(CommitError::Conflict { failed: vec![] }),
            Some(Fault::LostResponse) => {
                self.inner.commit_once(token, writes).await?;
                Err(CommitError::Unknown(injected_error("timeout after the write")))
            }
            Some(Fault::Instead(other)) => {
                self.inner.commit(other).await?;
                Err(CommitError::Unknown(injected_error("timeout; another change landed instead")))
            }
            Some(Fault::Slow(pause)) => {
                tokio::time::sleep(pause).await;
                self.inner.commit_once(token, writes).await
            }
            None => self.inner.commit_once(token, writes).await,
        }
    }
}

#[async_trait]
impl Queries for FaultyStore {
    async fn users(&self, organization: &OrganizationId, filter: &UserFilter, page: PageRequest) -> Result<Page<User>, StoreError> {
        self.query_allowed("users")?;
        self.inner.users(organization, filter, page).await
    }
    async fn audit(&self, query: &AuditQuery, page: PageRequest) -> Result<Page<AuditEntry>, StoreError> {
        self.query_allowed("audit")?;
        self.inner.audit(query, page).await
    }
    async fn ledger(&self, organization: &OrganizationId, page: PageRequest) -> Result<Page<LedgerEntry>, StoreError> {
        self.query_allowed("ledger")?;
        self.inner.ledger(organization, page).await
    }
    async fn expiring(
        &self,
        partition: ExpiryPartition,
        until: Option<OffsetDateTime>,
        page: PageRequest,
    ) -> Result<Page<Result<User, BadItem>>, StoreError> {
        self.query_allowed("expiring")?;
        self.inner.expiring(partition, until, page).await
    }
    async fn undelivered(&self, shard: u8, due_by: OffsetDateTime, page: PageRequest) -> Result<Page<Result<User, BadItem>>, StoreError> {
        self.query_allowed("undelivered")?;
        self.inner.undelivered(shard, due_by, page).await
    }
    async fn user_by_link_token(&self, sha256: &str) -> Result<Option<User>, StoreError> {
        self.query_allowed("user_by_link_token")?;
        self.inner.user_by_link_token(sha256).await
    }
    async fn users_with_contact(&self, organization: &OrganizationId, contact: &Contact) -> Result<Vec<User>, StoreError> {
        self.query_allowed("users_with_contact")?;
        self.inner.users_with_contact(organization, contact).await
    }
}

/// Whether a commit writes the user record of `person`.
pub fn writes_user(writes: &[Write], person: &domain::identity::PersonId) -> bool {
    writes.iter().any(|write| matches!(&write.record, domain::store::Record::User(user) if &user.id == person))
}
