//! Store wrappers for tests: a gate that holds commits until enough requests have read
//! (to stage races deterministically), and fault injection at the adapter boundary.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use domain::audit::AuditEntry;
use domain::ledger::LedgerEntry;
use domain::organization::OrganizationId;
use domain::store::{
    AuditQuery, BadItem, CommitError, Contact, Key, Loaded, Page, PageRequest, Queries, Records, Store, StoreError, UserFilter, Write,
};
use domain::user::User;
use time::{Date, OffsetDateTime};
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

    async fn commit(&self, writes: Vec<Write>) -> Result<(), CommitError> {
        loop {
            let opened = self.opened.notified();
            if self.loads.load(Ordering::SeqCst) >= self.readers {
                break;
            }
            opened.await;
        }
        self.inner.commit(writes).await
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
    async fn due_for_sweep(&self, day: Date, until: OffsetDateTime, page: PageRequest) -> Result<Page<Result<User, BadItem>>, StoreError> {
        self.inner.due_for_sweep(day, until, page).await
    }
    async fn user_by_link_token(&self, sha256: &str) -> Result<Option<User>, StoreError> {
        self.inner.user_by_link_token(sha256).await
    }
    async fn users_with_contact(&self, organization: &OrganizationId, contact: &Contact) -> Result<Vec<User>, StoreError> {
        self.inner.users_with_contact(organization, contact).await
    }
}
