//! Embedded adapters for the local server and fast tests: an in-memory store that keeps
//! the DynamoDB adapter's key order, conditions, limits and paging (the same contract
//! suite runs against both) and, like the outbox table's DynamoDB stream, a stream of the
//! intents it committed; and a provider that keeps and prints messages.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::Bound;
use std::sync::Mutex;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::audit::{AuditEntry, AuditScope};
use crate::clock::key_timestamp;
use crate::identity::PersonId;
use crate::ledger::LedgerEntry;
use crate::messaging::{DeliveryError, EmailMessage, Mailer, SmsMessage, TextSender};
use crate::organization::OrganizationId;
use crate::store::{
    AuditQuery, BadItem, CommitError, Contact, Cursor, EMAIL_INDEX, EXPIRY_INDEX, Expect, ExpiryPartition, IndexAttributes, Key,
    LEDGER_PREFIX, LINK_TOKEN_INDEX, LISTING_READ_BUDGET, Loaded, MOBILE_INDEX, PERSON_INDEX, Page, PageRequest, Queries, Record, Records,
    StorageKey, StoreError, TARGET_INDEX, Table, USER_PREFIX, UserFilter, Write, audit_matches, audit_partition, audit_sort_range,
    audit_target, organization_partition, person_key, read_budget, user_matches,
};
use crate::user::User;

pub use crate::store::MAX_WRITES as MAX_TRANSACTION_ITEMS;

/// An index entry: its partition, its sort value, the item's key.
type Entry = (String, String, StorageKey);

#[derive(Default)]
struct Tables {
    records: BTreeMap<StorageKey, Record>,
    /// The global secondary indexes, kept with every write as DynamoDB keeps them.
    indexes: HashMap<&'static str, BTreeSet<Entry>>,
}

/// The index entries of a record: `(index, partition, sort)`, as the DynamoDB tables define
/// them (`aws-adapters`' table specs).
fn entries(attributes: IndexAttributes, key: &StorageKey) -> Vec<(&'static str, String, String)> {
    let mut entries = Vec::new();
    if let (Some(partition), Some(at)) = (attributes.expiry_key, attributes.expiry_at) {
        entries.push((EXPIRY_INDEX, partition, at));
    }
    for (index, partition) in [
        (LINK_TOKEN_INDEX, attributes.link_token),
        (EMAIL_INDEX, attributes.email_key),
        (MOBILE_INDEX, attributes.mobile_key),
        (PERSON_INDEX, attributes.person_key),
    ] {
        if let Some(partition) = partition {
            entries.push((index, partition, String::new()));
        }
    }
    if let Some(target) = attributes.target {
        entries.push((TARGET_INDEX, target, key.sk.clone()));
    }
    entries
}

impl Tables {
    fn put(&mut self, record: Record) {
        let key = record.storage_key();
        if let Some(old) = self.records.get(&key) {
            for (index, partition, sort) in entries(old.index_attributes(), &key) {
                if let Some(set) = self.indexes.get_mut(index) {
                    set.remove(&(partition, sort, key.clone()));
                }
            }
        }
        for (index, partition, sort) in entries(record.index_attributes(), &key) {
            self.indexes.entry(index).or_default().insert((partition, sort, key.clone()));
        }
        self.records.insert(key, record);
    }

    /// The items of one index partition, in sort order.
    fn partition<'a>(&'a self, index: &str, partition: &str) -> impl DoubleEndedIterator<Item = (&'a Entry, &'a Record)> + 'a {
        self.span(index, partition, Bound::Unbounded, Bound::Unbounded)
    }

    /// The items of one index partition between two positions `(sort value, item key)`.
    fn span<'a>(
        &'a self,
        index: &str,
        partition: &str,
        low: Bound<(String, StorageKey)>,
        high: Bound<(String, StorageKey)>,
    ) -> impl DoubleEndedIterator<Item = (&'a Entry, &'a Record)> + 'a {
        let smallest = || StorageKey { table: Table::Users, pk: String::new(), sk: String::new() };
        let entry = |(sort, key): (String, StorageKey)| (partition.to_owned(), sort, key);
        let low = match low {
            Bound::Unbounded => Bound::Included((partition.to_owned(), String::new(), smallest())),
            Bound::Included(at) => Bound::Included(entry(at)),
            Bound::Excluded(at) => Bound::Excluded(entry(at)),
        };
        // A string that sorts after `partition` sorts at or after `partition` followed by
        // the smallest character: the end of the partition.
        let high = match high {
            Bound::Unbounded => Bound::Excluded((format!("{partition}\u{0}"), String::new(), smallest())),
            Bound::Included(at) => Bound::Included(entry(at)),
            Bound::Excluded(at) => Bound::Excluded(entry(at)),
        };
        let empty = matches!((&low, &high), (Bound::Included(l) | Bound::Excluded(l), Bound::Included(h) | Bound::Excluded(h)) if l > h);
        self.indexes
            .get(index)
            .filter(|_| !empty)
            .into_iter()
            .flat_map(move |set| set.range((low.clone(), high.clone())))
            .filter_map(move |entry| self.records.get(&entry.2).map(|record| (entry, record)))
    }
}

pub struct EmbeddedStore {
    tables: Mutex<Tables>,
    /// Every intent committed, in commit order: the stream `deliver` reads.
    stream: Mutex<Vec<crate::outbox::Intent>>,
    appended: tokio::sync::Notify,
    read_budget: usize,
}

impl Default for EmbeddedStore {
    fn default() -> Self {
        EmbeddedStore {
            tables: Mutex::default(),
            stream: Mutex::default(),
            appended: tokio::sync::Notify::new(),
            read_budget: LISTING_READ_BUDGET,
        }
    }
}

impl EmbeddedStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// The same store with another read budget for filtered listings (the simulator runs
    /// small budgets, so that short pages and their cursors happen in small organizations).
    pub fn with_read_budget(self, budget: usize) -> Self {
        EmbeddedStore { read_budget: budget, ..self }
    }

    /// Intents committed after the first `after` (positions start at 0), at most `limit`.
    pub fn stream_after(&self, after: usize, limit: usize) -> Vec<(usize, crate::outbox::Intent)> {
        let stream = self.stream.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        stream.iter().enumerate().skip(after).take(limit).map(|(position, intent)| (position, intent.clone())).collect()
    }

    /// Waits until an intent is committed (or returns at once if one is being).
    pub async fn appended(&self) {
        self.appended.notified().await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Every stored record, for tests that check invariants over the whole store.
    pub fn snapshot(&self) -> Vec<Record> {
        self.lock().records.values().cloned().collect()
    }

    /// Stores records without conditions or transaction limits: for seeding large data sets
    /// (benchmarks, tests), as a bulk load would.
    pub fn load_directly(&self, records: impl IntoIterator<Item = Record>) {
        let mut tables = self.lock();
        for record in records {
            tables.put(record);
        }
    }
}

fn holds(expect: Expect, current: Option<&Record>) -> bool {
    match (expect, current) {
        (Expect::Absent, None) => true,
        (Expect::Absent, Some(_)) => false,
        (Expect::Version(version), Some(record)) => record.version() == Some(version),
        (Expect::Version(_), None) => false,
        (Expect::AbsentOrExpiredBefore(_), None) => true,
        (Expect::AbsentOrExpiredBefore(now), Some(Record::Idempotency(record))) => {
            record.expires_at.is_some_and(|expiry| key_timestamp(expiry) < key_timestamp(now))
        }
        (Expect::AbsentOrExpiredBefore(_), Some(_)) => false,
        (Expect::Present, current) => current.is_some(),
    }
}

fn invalid(message: &str) -> CommitError {
    CommitError::Unavailable(message.to_owned().into())
}

#[async_trait]
impl Records for EmbeddedStore {
    async fn load(&self, keys: &[Key]) -> Result<Loaded, StoreError> {
        let tables = self.lock();
        Ok(Loaded::new(keys.iter().filter_map(|key| tables.records.get(&key.storage_key()).cloned())))
    }

    async fn commit(&self, writes: Vec<Write>) -> Result<(), CommitError> {
        if writes.is_empty() || writes.len() > MAX_TRANSACTION_ITEMS {
            return Err(invalid("a transaction holds 1 to 100 writes"));
        }
        let mut seen = HashSet::new();
        if !writes.iter().all(|write| seen.insert(write.record.storage_key())) {
            return Err(invalid("a transaction cannot write the same item twice"));
        }
        let mut tables = self.lock();
        let failed: Vec<usize> = writes
            .iter()
            .enumerate()
            .filter(|(_, write)| !holds(write.expect, tables.records.get(&write.record.storage_key())))
            .map(|(position, _)| position)
            .collect();
        if !failed.is_empty() {
            return Err(CommitError::Conflict { failed });
        }
        let mut intents = Vec::new();
        for write in writes {
            if let Record::Intent(intent) = &write.record {
                intents.push(intent.clone());
            }
            tables.put(write.record);
        }
        drop(tables);
        if !intents.is_empty() {
            self.stream.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).extend(intents);
            self.appended.notify_waiters();
        }
        Ok(())
    }
}

fn cursor_of(key: &StorageKey) -> Cursor {
    Cursor::encode(&BTreeMap::from([("pk".to_owned(), key.pk.clone()), ("sk".to_owned(), key.sk.clone())]))
}

/// The sort key a cursor resumes after, checked against the partition being listed.
fn resume_after(page: &PageRequest, partition: &str) -> Result<Option<String>, StoreError> {
    let Some(cursor) = &page.cursor else {
        return Ok(None);
    };
    let key = cursor.decode()?;
    if key.get("pk").map(String::as_str) != Some(partition) {
        return Err(StoreError::InvalidCursor);
    }
    key.get("sk").cloned().map(Some).ok_or(StoreError::InvalidCursor)
}

/// A cursor into an index partition, as DynamoDB's: the index's keys and the item's.
struct IndexCursor<'a> {
    partition_attribute: &'static str,
    partition: &'a str,
    sort_attribute: &'static str,
    table: Table,
}

impl IndexCursor<'_> {
    /// The position `(sort value, item key)` a cursor resumes after, checked against the
    /// partition being listed.
    fn resume(&self, page: &PageRequest) -> Result<Option<(String, StorageKey)>, StoreError> {
        let Some(cursor) = &page.cursor else {
            return Ok(None);
        };
        let key = cursor.decode()?;
        if key.get(self.partition_attribute).map(String::as_str) != Some(self.partition) {
            return Err(StoreError::InvalidCursor);
        }
        let field = |name: &str| key.get(name).cloned().ok_or(StoreError::InvalidCursor);
        Ok(Some((field(self.sort_attribute)?, StorageKey { table: self.table, pk: field("pk")?, sk: field("sk")? })))
    }

    fn cursor(&self, (_, sort, item): &Entry) -> Cursor {
        Cursor::encode(&BTreeMap::from([
            (self.partition_attribute.to_owned(), self.partition.to_owned()),
            (self.sort_attribute.to_owned(), sort.clone()),
            ("pk".to_owned(), item.pk.clone()),
            ("sk".to_owned(), item.sk.clone()),
        ]))
    }
}

/// Collects up to `page.limit` items that pass `keep`, reading at most `budget` items (as
/// DynamoDB's `Limit` counts items read before a filter); `next` continues after the last
/// item read whenever there may be more.
fn collect<'a, T, K: Clone + 'a>(
    iter: impl Iterator<Item = (K, &'a Record)>,
    page: &PageRequest,
    budget: usize,
    mut keep: impl FnMut(&Record) -> Option<T>,
    cursor: impl Fn(&K) -> Cursor,
) -> Page<T> {
    let mut items = Vec::new();
    let mut scanned = 0;
    let mut last = None;
    let mut more = false;
    for (key, record) in iter {
        if items.len() == page.limit || scanned == budget {
            more = true;
            break;
        }
        scanned += 1;
        if let Some(item) = keep(record) {
            items.push(item);
        }
        last = Some(key);
    }
    Page { next: if more { last.as_ref().map(cursor) } else { None }, items, scanned }
}

/// Walks one partition's sort keys in `[low, high]`, ascending or descending, resuming
/// after a cursor: a page of the records that pass `keep`, reading at most `budget`.
#[allow(clippy::too_many_arguments)]
fn walk<T>(
    records: &BTreeMap<StorageKey, Record>,
    table: Table,
    partition: &str,
    (low, high): (String, String),
    descending: bool,
    page: &PageRequest,
    budget: usize,
    keep: impl FnMut(&Record) -> Option<T>,
) -> Result<Page<T>, StoreError> {
    let at = |sk: String| StorageKey { table, pk: partition.to_owned(), sk };
    let mut lower = Bound::Included(at(low));
    let mut upper = Bound::Included(at(high));
    if let Some(after) = resume_after(page, partition)? {
        if descending {
            upper = Bound::Excluded(at(after));
        } else {
            lower = Bound::Excluded(at(after));
        }
    }
    if matches!((&lower, &upper), (Bound::Included(l) | Bound::Excluded(l), Bound::Included(u) | Bound::Excluded(u)) if l > u) {
        return Ok(Page { items: vec![], next: None, scanned: 0 });
    }
    let range = records.range((lower, upper));
    let iter: Box<dyn Iterator<Item = (&StorageKey, &Record)>> = if descending { Box::new(range.rev()) } else { Box::new(range) };
    Ok(collect(iter, page, budget, keep, |key: &&StorageKey| cursor_of(key)))
}

fn prefix_range(prefix: &str) -> (String, String) {
    (prefix.to_owned(), format!("{prefix}~"))
}

#[async_trait]
impl Queries for EmbeddedStore {
    async fn users(&self, organization: &OrganizationId, filter: &UserFilter, page: PageRequest) -> Result<Page<User>, StoreError> {
        let tables = self.lock();
        let filtered = filter.status.is_some() || filter.establishments.is_some() || filter.search.is_some();
        walk(
            &tables.records,
            Table::Users,
            &organization_partition(organization),
            prefix_range(USER_PREFIX),
            false,
            &page,
            read_budget(&page, filtered, self.read_budget),
            |record| match record {
                Record::User(user) if user_matches(user, filter) => Some(user.clone()),
                _ => None,
            },
        )
    }

    async fn audit(&self, query: &AuditQuery, page: PageRequest) -> Result<Page<AuditEntry>, StoreError> {
        let tables = self.lock();
        let filtered = query.actions.is_some() || query.establishments.is_some();
        let keep = |record: &Record| match record {
            Record::Audit(entry) if audit_matches(entry, query) => Some(entry.clone()),
            _ => None,
        };
        match (&query.target, &query.scope) {
            (Some(target), AuditScope::Organization(organization)) => {
                // The `by_target` index, newest first, within the time range.
                let partition = audit_target(organization, target);
                let (low, high) = audit_sort_range(query);
                let index =
                    IndexCursor { partition_attribute: "audit_target", partition: &partition, sort_attribute: "sk", table: Table::Audit };
                let after = index.resume(&page)?;
                let smallest = || StorageKey { table: Table::Users, pk: String::new(), sk: String::new() };
                // Sort values up to `high`, all of them: below `high` followed by the smallest character.
                let high = match after {
                    Some(after) if after.0 <= high => Bound::Excluded(after),
                    _ => Bound::Excluded((format!("{high}\u{0}"), smallest())),
                };
                let entries = tables
                    .span(TARGET_INDEX, &partition, Bound::Included((low, smallest())), high)
                    .rev()
                    .map(|(entry, record)| (entry.clone(), record));
                let cursor = |entry: &Entry| index.cursor(entry);
                Ok(collect(entries, &page, read_budget(&page, filtered, self.read_budget), keep, cursor))
            }
            _ => walk(
                &tables.records,
                Table::Audit,
                &audit_partition(&query.scope),
                audit_sort_range(query),
                true,
                &page,
                read_budget(&page, filtered, self.read_budget),
                keep,
            ),
        }
    }

    async fn ledger(&self, organization: &OrganizationId, page: PageRequest) -> Result<Page<LedgerEntry>, StoreError> {
        let tables = self.lock();
        walk(
            &tables.records,
            Table::Balances,
            &organization_partition(organization),
            prefix_range(LEDGER_PREFIX),
            true,
            &page,
            page.limit,
            |record| match record {
                Record::Ledger(entry) => Some(entry.clone()),
                _ => None,
            },
        )
    }

    async fn expiring(
        &self,
        partition: ExpiryPartition,
        until: Option<OffsetDateTime>,
        page: PageRequest,
    ) -> Result<Page<Result<User, BadItem>>, StoreError> {
        let key = partition.key();
        let tables = self.lock();
        let index = IndexCursor { partition_attribute: "expiry_key", partition: &key, sort_attribute: "expiry_at", table: Table::Users };
        let after = index.resume(&page)?;
        let low = after.map_or(Bound::Unbounded, Bound::Excluded);
        let entries = tables
            .span(EXPIRY_INDEX, &key, low, Bound::Unbounded)
            .take_while(|((_, at, _), _)| until.is_none_or(|until| *at <= key_timestamp(until)))
            .map(|(entry, record)| (entry.clone(), record));
        let cursor = |entry: &Entry| index.cursor(entry);
        Ok(collect(
            entries,
            &page,
            page.limit,
            |record| match record {
                Record::User(user) => Some(Ok(user.clone())),
                _ => None,
            },
            cursor,
        ))
    }

    async fn users_with_contact(&self, organization: &OrganizationId, contact: &Contact) -> Result<Vec<User>, StoreError> {
        let index = match contact {
            Contact::Email(_) => EMAIL_INDEX,
            Contact::Mobile(_) => MOBILE_INDEX,
        };
        let key = contact.key(organization);
        let tables = self.lock();
        Ok(tables
            .partition(index, &key)
            .filter_map(|(_, record)| match record {
                Record::User(user) => Some(user.clone()),
                _ => None,
            })
            .collect())
    }

    async fn memberships(&self, person: &PersonId) -> Result<Vec<OrganizationId>, StoreError> {
        let key = person_key(person);
        let tables = self.lock();
        Ok(tables
            .partition(PERSON_INDEX, &key)
            .filter_map(|(_, record)| match record {
                Record::User(user) => Some(user.organization.clone()),
                _ => None,
            })
            .collect())
    }

    async fn user_by_link_token(&self, sha256: &str) -> Result<Option<User>, StoreError> {
        let tables = self.lock();
        Ok(tables.partition(LINK_TOKEN_INDEX, sha256).find_map(|(_, record)| match record {
            Record::User(user) => Some(user.clone()),
            _ => None,
        }))
    }
}

/// A sent message as the outbox keeps it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "channel", rename_all = "snake_case")]
pub enum OutboxMessage {
    Email { to: String, template: crate::messaging::Template, subject: String, body: String },
    Sms { to: String, template: crate::messaging::Template, body: String },
}

/// A provider that keeps every message, and prints it when `print` is set (the local
/// server does, so a developer can follow activation links and codes; this is the only place
/// they appear). Answers with message ids like SES and SNS do.
#[derive(Default)]
pub struct Outbox {
    messages: Mutex<Vec<OutboxMessage>>,
    print: bool,
}

impl Outbox {
    pub fn printing() -> Self {
        Outbox { messages: Mutex::default(), print: true }
    }

    pub fn silent() -> Self {
        Outbox::default()
    }

    pub fn messages(&self) -> Vec<OutboxMessage> {
        self.messages.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    fn keep(&self, message: OutboxMessage) -> String {
        let mut messages = self.messages.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        messages.push(message);
        format!("local-{:06}", messages.len())
    }
}

#[async_trait]
impl Mailer for Outbox {
    async fn send_email(&self, message: &EmailMessage) -> Result<String, DeliveryError> {
        if self.print {
            println!("\n[local outbox] email to {} — {}\n{}\n", message.to.masked(), message.subject, message.body);
        }
        Ok(self.keep(OutboxMessage::Email {
            to: message.to.as_str().to_owned(),
            template: message.template,
            subject: message.subject.clone(),
            body: message.body.clone(),
        }))
    }
}

#[async_trait]
impl TextSender for Outbox {
    async fn send_sms(&self, message: &SmsMessage) -> Result<String, DeliveryError> {
        if self.print {
            println!("\n[local outbox] sms to {} — {}\n", message.to.masked(), message.body);
        }
        Ok(self.keep(OutboxMessage::Sms { to: message.to.as_str().to_owned(), template: message.template, body: message.body.clone() }))
    }
}
