//! The storage port.
//!
//! Use cases read what they need in one batch, decide, and commit every change as one
//! atomic list of writes, each conditional on the state it was decided from. The key
//! scheme below is shared by every adapter, so the embedded store orders and pages exactly
//! like DynamoDB.
//!
//! | record       | table    | partition key        | sort key                         |
//! |--------------|----------|----------------------|----------------------------------|
//! | organization | users    | `ORG#{org}`          | `PROFILE`                        |
//! | user         | users    | `ORG#{org}`          | `USER#{id}`                      |
//! | person       | users    | `PERSON#{id}`        | `PROFILE`                        |
//! | balance      | balances | `ORG#{org}`          | `BALANCE`                        |
//! | ledger entry | balances | `ORG#{org}`          | `LEDGER#{sequence}`              |
//! | idempotency  | balances | `ORG#{org}`          | `IDEMPOTENCY#{scope}#{key hash}` |
//! | audit entry  | audit    | `ORG#{org}`/`PLATFORM` | `{time}#{entry}`               |
//! | intent       | outbox   | `ORG#{org}`          | `INTENT#{time}#{intent}`         |
//!
//! Indexes (sparse: only records that need them carry the attributes):
//! - users `by_expiry_day`: `expiry_key` = `EXPIRY#{YYYY-MM-DD}#{shard}` — the Saudi day the
//!   user's last paid period ends, and one of `EXPIRY_SHARDS` shards picked by a hash of the
//!   user's key (write sharding: a day's seats, sold on one busy day a year earlier, spread
//!   over the shards, so no index partition is hot at national scale) — and `expiry_at`, the
//!   instant. The sweep reads only the days it has to, shard by shard.
//! - users `by_link_token`: `link_token` = SHA-256 of the user's current activation link token.
//! - users `by_email` / `by_mobile`: `email_key` / `mobile_key` = `ORG#{org}#{value}`: who in
//!   an organization already uses an email or a mobile.
//! - audit `by_target`: `audit_target` = `ORG#{org}#USER#{id}`, `sk`.
//! - users `by_undelivered`: `undelivered_key` = `UNDELIVERED#{shard}` (the user's expiry
//!   shard) and `undelivered_at`, when the first of the user's still-queued messages is due
//!   for the redrive (`outbox::redrive_due`). Only users with a queued message carry them,
//!   so the redrive reads what is stuck and nothing else.
//!
//! User records also carry `search_text` (not a key): their ID and names, normalized for
//! search (`search::normalize`), which listings filter on.

use std::collections::{BTreeSet, HashMap};

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::audit::{AuditAction, AuditEntry, AuditScope};
use crate::clock::key_timestamp;
use crate::idempotency::{IdempotencyRecord, IdempotencyScope};
use crate::identity::PersonId;
use crate::ledger::{Balance, LedgerEntry};
use crate::organization::{EstablishmentId, Organization, OrganizationId};
use crate::person::Person;
use crate::user::{User, UserStatus};

pub use crate::cursor::Position;
pub use crate::sweep_state::{EXPIRY_SHARDS, ExpiryPartition, SweepState, expiry_shard};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The most writes one atomic commit holds (DynamoDB's limit on a transaction's items).
pub const MAX_WRITES: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    Users,
    Balances,
    Audit,
    /// Message intents, written with the change they belong to; `deliver` reads the table's
    /// stream.
    Outbox,
}

impl Table {
    pub const ALL: [Table; 4] = [Table::Users, Table::Balances, Table::Audit, Table::Outbox];
}

pub const EXPIRY_INDEX: &str = "by_expiry_day";
pub const LINK_TOKEN_INDEX: &str = "by_link_token";
pub const TARGET_INDEX: &str = "by_target";
pub const EMAIL_INDEX: &str = "by_email";
pub const MOBILE_INDEX: &str = "by_mobile";
pub const UNDELIVERED_INDEX: &str = "by_undelivered";

/// The partition of the `by_undelivered` index holding a shard's users.
pub fn undelivered_partition(shard: u8) -> String {
    format!("UNDELIVERED#{shard:02}")
}

/// Where a record lives.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StorageKey {
    pub table: Table,
    pub pk: String,
    pub sk: String,
}

pub fn organization_partition(organization: &OrganizationId) -> String {
    format!("ORG#{}", organization.as_str())
}

fn user_sort_key(id: &PersonId) -> String {
    format!("USER#{}", id.as_str())
}

pub const USER_PREFIX: &str = "USER#";
pub const LEDGER_PREFIX: &str = "LEDGER#";

/// Where an intent lives: by organization, then by the time it was written.
pub fn intent_key(organization: &OrganizationId, created_at: OffsetDateTime, id: &str) -> StorageKey {
    StorageKey { table: Table::Outbox, pk: organization_partition(organization), sk: format!("INTENT#{}#{id}", key_timestamp(created_at)) }
}

pub fn audit_partition(scope: &AuditScope) -> String {
    match scope {
        AuditScope::Organization(organization) => organization_partition(organization),
        AuditScope::Platform => "PLATFORM".to_owned(),
    }
}

pub fn audit_target(organization: &OrganizationId, user: &PersonId) -> String {
    format!("ORG#{}#USER#{}", organization.as_str(), user.as_str())
}

/// What a use case asks to read.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    Organization(OrganizationId),
    User(OrganizationId, PersonId),
    Person(PersonId),
    Balance(OrganizationId),
    Idempotency(OrganizationId, IdempotencyScope, String),
    /// Where the expiry sweep stands (one item for the platform).
    SweepState,
    /// Any record, by where it lives (the executor reads a commit's witness back with it).
    At(StorageKey),
}

impl Key {
    pub fn storage_key(&self) -> StorageKey {
        match self {
            Key::Organization(org) => StorageKey { table: Table::Users, pk: organization_partition(org), sk: "PROFILE".into() },
            Key::User(org, id) => StorageKey { table: Table::Users, pk: organization_partition(org), sk: user_sort_key(id) },
            Key::Person(id) => StorageKey { table: Table::Users, pk: format!("PERSON#{}", id.as_str()), sk: "PROFILE".into() },
            Key::Balance(org) => StorageKey { table: Table::Balances, pk: organization_partition(org), sk: "BALANCE".into() },
            Key::Idempotency(org, scope, digest) => StorageKey {
                table: Table::Balances,
                pk: organization_partition(org),
                sk: format!("IDEMPOTENCY#{}#{digest}", scope.as_str()),
            },
            Key::SweepState => StorageKey { table: Table::Users, pk: "SWEEP".into(), sk: "STATE".into() },
            Key::At(key) => key.clone(),
        }
    }
}

/// Everything that can be stored.
// A request moves a handful of records; boxing the large user variant would cost more
// reading than the bytes it saves.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Organization(Organization),
    User(User),
    Person(Person),
    Balance(Balance),
    Ledger(LedgerEntry),
    Audit(AuditEntry),
    Idempotency(IdempotencyRecord),
    Intent(crate::outbox::Intent),
    SweepState(SweepState),
}

/// Attributes an adapter stores beside a record so the indexes can find it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexAttributes {
    pub expiry_key: Option<String>,
    pub expiry_at: Option<String>,
    pub link_token: Option<String>,
    pub target: Option<String>,
    pub email_key: Option<String>,
    pub mobile_key: Option<String>,
    pub search_text: Option<String>,
    /// When the user's last paid period ends (what the status rule reads; not a key).
    pub access_ends_at: Option<String>,
    pub undelivered_key: Option<String>,
    pub undelivered_at: Option<String>,
}

/// A contact value, as looked up in the `by_email` and `by_mobile` indexes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contact {
    Email(crate::contact::Email),
    Mobile(crate::contact::SaudiMobile),
}

impl Contact {
    /// The index key of this contact within an organization.
    pub fn key(&self, organization: &OrganizationId) -> String {
        match self {
            Contact::Email(email) => format!("ORG#{}#{}", organization.as_str(), email.as_str()),
            Contact::Mobile(mobile) => format!("ORG#{}#{}", organization.as_str(), mobile.as_str()),
        }
    }
}

impl Record {
    pub fn storage_key(&self) -> StorageKey {
        match self {
            Record::Organization(o) => Key::Organization(o.id.clone()).storage_key(),
            Record::User(u) => Key::User(u.organization.clone(), u.id.clone()).storage_key(),
            Record::Person(p) => Key::Person(p.id.clone()).storage_key(),
            Record::Balance(b) => Key::Balance(b.organization.clone()).storage_key(),
            Record::Ledger(entry) => StorageKey {
                table: Table::Balances,
                pk: organization_partition(&entry.organization),
                sk: format!("{LEDGER_PREFIX}{:020}", entry.sequence),
            },
            Record::Audit(entry) => StorageKey {
                table: Table::Audit,
                pk: audit_partition(&entry.scope),
                sk: format!("{}#{}", key_timestamp(entry.at), entry.id),
            },
            Record::Idempotency(record) => {
                Key::Idempotency(record.organization.clone(), record.scope, record.key_digest.clone()).storage_key()
            }
            Record::SweepState(_) => Key::SweepState.storage_key(),
            Record::Intent(intent) => intent_key(&intent.organization, intent.created_at, &intent.id),
        }
    }

    /// The optimistic-concurrency version of mutable records.
    pub fn version(&self) -> Option<u64> {
        match self {
            Record::Organization(o) => Some(o.version),
            Record::User(u) => Some(u.version),
            Record::Person(p) => Some(p.version),
            Record::Balance(b) => Some(b.version),
            Record::SweepState(state) => Some(state.version),
            Record::Ledger(_) | Record::Audit(_) | Record::Idempotency(_) | Record::Intent(_) => None,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Record::Organization(_) => "organization",
            Record::User(_) => "user",
            Record::Person(_) => "person",
            Record::Balance(_) => "balance",
            Record::Ledger(_) => "ledger_entry",
            Record::Audit(_) => "audit_entry",
            Record::Idempotency(_) => "idempotency",
            Record::Intent(_) => "intent",
            Record::SweepState(_) => "sweep_state",
        }
    }

    pub fn index_attributes(&self) -> IndexAttributes {
        match self {
            Record::User(user) => {
                let mut attributes = IndexAttributes::default();
                if let Some(at) = user.expiry() {
                    let partition = ExpiryPartition { day: crate::clock::saudi_day(at), shard: expiry_shard(&user.organization, &user.id) };
                    attributes.expiry_key = Some(partition.key());
                    attributes.expiry_at = Some(key_timestamp(at));
                }
                // Kept after use, so a second click can be told "already used"; a resend
                // replaces it, and the old link becomes unknown.
                attributes.link_token = user.activation.email_token.as_ref().map(|token| token.sha256.clone());
                attributes.email_key = Some(Contact::Email(user.email.clone()).key(&user.organization));
                attributes.mobile_key = Some(Contact::Mobile(user.mobile.clone()).key(&user.organization));
                attributes.search_text = Some(crate::search::searchable(user));
                attributes.access_ends_at = user.access_ends_at().map(key_timestamp);
                if let Some(due) = crate::outbox::redrive_due(&user.deliveries) {
                    attributes.undelivered_key = Some(undelivered_partition(expiry_shard(&user.organization, &user.id)));
                    attributes.undelivered_at = Some(key_timestamp(due));
                }
                attributes
            }
            Record::Audit(entry) => IndexAttributes {
                target: match (&entry.scope, &entry.target) {
                    (AuditScope::Organization(org), Some(target)) => Some(audit_target(org, target)),
                    _ => None,
                },
                ..IndexAttributes::default()
            },
            _ => IndexAttributes::default(),
        }
    }
}

/// The condition a write is committed under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Nothing is stored under the key.
    Absent,
    /// The stored record has this version (the one the decision was made from).
    Version(u64),
    /// Nothing is stored, or what is stored has expired by this instant (idempotency
    /// records outlive their meaning until the table's TTL removes them; a record is dead
    /// from its expiry instant on, as `IdempotencyRecord::is_live_at` says).
    AbsentOrExpiredBy(OffsetDateTime),
    /// Something is stored under the key (for amending a record that has no version).
    Present,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    pub record: Record,
    pub expect: Expect,
}

impl Write {
    pub fn create(record: Record) -> Self {
        Write { record, expect: Expect::Absent }
    }

    /// Replaces a record read at `version`; the new record must carry `version + 1`.
    pub fn replace(record: Record, read_version: u64) -> Self {
        debug_assert_eq!(record.version(), Some(read_version + 1), "a replaced record carries the next version");
        Write { record, expect: Expect::Version(read_version) }
    }
}

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the store is unavailable")]
    Unavailable(#[source] BoxError),
    /// The store is not set up as this code expects (a table or index is missing): a
    /// deployment mistake, which retrying does not mend.
    #[error("the store is misconfigured")]
    Misconfigured(#[source] BoxError),
    #[error("a stored item could not be read: {0}")]
    Corrupt(String),
    #[error("the cursor is not valid for this listing")]
    InvalidCursor,
}

impl From<crate::cursor::InvalidCursor> for StoreError {
    fn from(_: crate::cursor::InvalidCursor) -> Self {
        StoreError::InvalidCursor
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// A condition did not hold (someone changed the data since it was read), or a
    /// concurrent transaction touched the same items. `failed` lists the positions of the
    /// writes whose condition failed (empty for a plain transaction conflict).
    #[error("a write condition did not hold (writes {failed:?})")]
    Conflict { failed: Vec<usize> },
    #[error("the store is unavailable; nothing was written")]
    Unavailable(#[source] BoxError),
    /// A table is missing or not as expected; nothing was written and retrying will not help.
    #[error("the store is misconfigured; nothing was written")]
    Misconfigured(#[source] BoxError),
    /// The request may or may not have been applied (a timeout after sending, say).
    #[error("the outcome of the write is unknown")]
    Unknown(#[source] BoxError),
}

/// The records a batch read found, by key.
#[derive(Debug, Default, Clone)]
pub struct Loaded(HashMap<StorageKey, Record>);

impl Loaded {
    pub fn new(records: impl IntoIterator<Item = Record>) -> Self {
        Loaded(records.into_iter().map(|record| (record.storage_key(), record)).collect())
    }

    fn get(&self, key: Key) -> Option<&Record> {
        self.0.get(&key.storage_key())
    }

    /// The record stored under `key`, whatever it is.
    pub fn record(&self, key: &Key) -> Option<&Record> {
        self.0.get(&key.storage_key())
    }

    pub fn organization(&self, id: &OrganizationId) -> Option<&Organization> {
        match self.get(Key::Organization(id.clone())) {
            Some(Record::Organization(o)) => Some(o),
            _ => None,
        }
    }

    pub fn user(&self, organization: &OrganizationId, id: &PersonId) -> Option<&User> {
        match self.get(Key::User(organization.clone(), id.clone())) {
            Some(Record::User(u)) => Some(u),
            _ => None,
        }
    }

    pub fn sweep_state(&self) -> Option<&SweepState> {
        match self.get(Key::SweepState) {
            Some(Record::SweepState(state)) => Some(state),
            _ => None,
        }
    }

    pub fn person(&self, id: &PersonId) -> Option<&Person> {
        match self.get(Key::Person(id.clone())) {
            Some(Record::Person(p)) => Some(p),
            _ => None,
        }
    }

    pub fn balance(&self, organization: &OrganizationId) -> Option<&Balance> {
        match self.get(Key::Balance(organization.clone())) {
            Some(Record::Balance(b)) => Some(b),
            _ => None,
        }
    }

    pub fn idempotency(&self, organization: &OrganizationId, scope: IdempotencyScope, digest: &str) -> Option<&IdempotencyRecord> {
        match self.get(Key::Idempotency(organization.clone(), scope, digest.to_owned())) {
            Some(Record::Idempotency(r)) => Some(r),
            _ => None,
        }
    }

    /// Whether a created record (an audit entry, an intent) is stored under `key`.
    pub fn holds(&self, key: &StorageKey) -> bool {
        self.0.contains_key(key)
    }

    /// Adds `other`'s records (a second read of the same attempt).
    pub fn merge(&mut self, other: Loaded) {
        self.0.extend(other.0);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[derive(Debug, Clone)]
pub struct PageRequest {
    pub cursor: Option<Position>,
    pub limit: usize,
}

impl PageRequest {
    pub fn first(limit: usize) -> Self {
        PageRequest { cursor: None, limit }
    }
}

#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Present when there may be more items.
    pub next: Option<Position>,
    /// Items read to make this page (what a request costs; bounded by the read budget).
    pub scanned: usize,
}

/// Which users a listing returns.
#[derive(Debug, Clone)]
pub struct UserFilter {
    pub status: Option<UserStatus>,
    /// Users whose ID or name contains this text, already normalized (`search::normalize`).
    pub search: Option<String>,
    /// Users assigned to any of these establishments.
    pub establishments: Option<BTreeSet<EstablishmentId>>,
    /// The moment statuses are judged at (a member whose seat ended is expired from then,
    /// whether or not the sweep has written so).
    pub now: OffsetDateTime,
}

impl UserFilter {
    /// Every user, statuses judged at `now`.
    pub fn at(now: OffsetDateTime) -> Self {
        UserFilter { status: None, search: None, establishments: None, now }
    }
}

#[derive(Debug, Clone)]
pub struct AuditQuery {
    pub scope: AuditScope,
    /// Only entries about this user (uses the `by_target` index).
    pub target: Option<PersonId>,
    pub actions: Option<BTreeSet<AuditAction>>,
    pub from: Option<OffsetDateTime>,
    pub to: Option<OffsetDateTime>,
    /// Only entries touching any of these establishments (a delegated admin's view).
    pub establishments: Option<BTreeSet<EstablishmentId>>,
}

/// An item the sweep could not read; it is logged and skipped.
#[derive(Debug, Clone)]
pub struct BadItem {
    pub key: String,
    pub problem: String,
}

/// Reading and atomically writing records.
#[async_trait]
pub trait Records: Send + Sync {
    /// Reads records by key in one request (strongly consistent). Missing ones are absent.
    async fn load(&self, keys: &[Key]) -> Result<Loaded, StoreError>;

    /// Applies every write or none. Conditions are checked atomically with the writes.
    /// `token` names this commit: sent again with the same writes (after an unknown
    /// outcome), it is applied at most once — DynamoDB's `ClientRequestToken`, which the
    /// embedded store keeps too.
    async fn commit_once(&self, token: &str, writes: Vec<Write>) -> Result<(), CommitError>;

    /// A commit under a token of its own, for writes that are never sent again (set-up,
    /// bulk loads, tests).
    async fn commit(&self, writes: Vec<Write>) -> Result<(), CommitError> {
        self.commit_once(&crate::entropy::SystemEntropy::hex(16), writes).await
    }
}

/// Listings and index lookups.
#[async_trait]
pub trait Queries: Send + Sync {
    /// The organization's users, in ID order.
    async fn users(&self, organization: &OrganizationId, filter: &UserFilter, page: PageRequest) -> Result<Page<User>, StoreError>;

    /// Audit entries, newest first.
    async fn audit(&self, query: &AuditQuery, page: PageRequest) -> Result<Page<AuditEntry>, StoreError>;

    /// Ledger entries, newest first.
    async fn ledger(&self, organization: &OrganizationId, page: PageRequest) -> Result<Page<LedgerEntry>, StoreError>;

    /// The users of one partition of the expiry index, in `expiry_at` order; only those
    /// whose period ends by `until` when given.
    async fn expiring(
        &self,
        partition: ExpiryPartition,
        until: Option<OffsetDateTime>,
        page: PageRequest,
    ) -> Result<Page<Result<User, BadItem>>, StoreError>;

    /// The users of one shard of the `by_undelivered` index whose first queued message is
    /// due by `due_by`, earliest first.
    async fn undelivered(&self, shard: u8, due_by: OffsetDateTime, page: PageRequest) -> Result<Page<Result<User, BadItem>>, StoreError>;

    /// The user holding an unused activation link token with this SHA-256.
    async fn user_by_link_token(&self, sha256: &str) -> Result<Option<User>, StoreError>;

    /// The organization's users whose current email or mobile is `contact` (the `by_email`
    /// or `by_mobile` index, every page; it may lag a just-committed change).
    async fn users_with_contact(&self, organization: &OrganizationId, contact: &Contact) -> Result<Vec<User>, StoreError>;
}

/// A complete store.
pub trait Store: Records + Queries {}

impl<T: Records + Queries> Store for T {}

/// The most items one listing request reads (DynamoDB's `Limit` is on items read before the
/// filter): a filter that matches little returns a short page and a cursor to continue,
/// rather than reading a whole large organization in one request.
pub const LISTING_READ_BUDGET: usize = 500;

/// One query of a listing as DynamoDB answers it: the items it evaluated (at most its
/// `Limit`, from after the start position) that pass the filter, each with its position;
/// how many it evaluated; and, when more may follow, the position it stopped at.
#[derive(Debug)]
pub struct QueryPage<T> {
    pub items: Vec<(T, Position)>,
    pub scanned: usize,
    pub last_evaluated: Option<Position>,
}

/// Pages a listing the one way every adapter does, over `query(start, limit)` — DynamoDB's
/// `Query` with `ExclusiveStartKey` and `Limit`, or the embedded store's emulation of it:
/// queries until the page is full or the read budget (`read_budget`) is spent; a short
/// page comes with the position to continue from whenever more may follow. One loop for
/// both stores, so that they page alike — page for page, cursor for cursor.
pub async fn paginate<T, F, Fut>(page: &PageRequest, filtered: bool, budget: usize, mut query: F) -> Result<Page<T>, StoreError>
where
    F: FnMut(Option<Position>, usize) -> Fut,
    Fut: Future<Output = Result<QueryPage<T>, StoreError>>,
{
    let budget = read_budget(page, filtered, budget);
    let mut items = Vec::new();
    let mut scanned = 0;
    let mut start = page.cursor.clone();
    loop {
        let limit = if filtered { budget - scanned } else { page.limit - items.len() };
        let answered = query(start.take(), limit.max(1)).await?;
        scanned += answered.scanned;
        let returned = answered.items.len();
        for (n, (item, position)) in answered.items.into_iter().enumerate() {
            items.push(item);
            if items.len() == page.limit {
                let more = n + 1 < returned || answered.last_evaluated.is_some();
                return Ok(Page { items, next: more.then_some(position), scanned });
            }
        }
        match answered.last_evaluated {
            Some(last) if scanned < budget => start = Some(last),
            Some(last) => return Ok(Page { items, next: Some(last), scanned }),
            None => return Ok(Page { items, next: None, scanned }),
        }
    }
}

/// What one listing request may read: its page when every item read is returned, the
/// adapter's read budget (`LISTING_READ_BUDGET` unless set otherwise) when a filter may drop
/// items.
pub fn read_budget(page: &PageRequest, filtered: bool, budget: usize) -> usize {
    if filtered { budget.max(page.limit) } else { page.limit }
}

/// Whether a user matches a listing filter (shared by the embedded store and by tests).
pub fn user_matches(user: &User, filter: &UserFilter) -> bool {
    let status_ok = match filter.status {
        None => true,
        Some(wanted) => crate::status::condition(wanted).holds(&crate::status::Facts::of(user), filter.now),
    };
    let establishment_ok = filter.establishments.as_ref().is_none_or(|wanted| user.establishments.iter().any(|e| wanted.contains(e)));
    let search_ok = filter.search.as_ref().is_none_or(|wanted| crate::search::searchable(user).contains(wanted.as_str()));
    status_ok && establishment_ok && search_ok
}

/// Whether an audit entry matches a query's filters (time range aside, which is a key range).
pub fn audit_matches(entry: &AuditEntry, query: &AuditQuery) -> bool {
    let action_ok = query.actions.as_ref().is_none_or(|actions| actions.contains(&entry.action));
    let establishment_ok = query.establishments.as_ref().is_none_or(|wanted| entry.establishments.iter().any(|e| wanted.contains(e)));
    let target_ok = query.target.as_ref().is_none_or(|target| entry.target.as_ref() == Some(target));
    action_ok && establishment_ok && target_ok
}

/// The inclusive sort-key range of an audit query's time window.
pub fn audit_sort_range(query: &AuditQuery) -> (String, String) {
    // Every sort key starts with a year; "0" sorts before all of them (DynamoDB refuses an
    // empty string in a key condition).
    let low = query.from.map(key_timestamp).unwrap_or_else(|| "0".to_owned());
    // `~` sorts after every character used in our sort keys.
    let high = query.to.map(|to| format!("{}~", key_timestamp(to))).unwrap_or_else(|| "~".to_owned());
    (low, high)
}
