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
use crate::ledger::LedgerEntry;
use crate::messaging::{DeliveryError, EmailMessage, Mailer, SmsMessage, TextSender};
use crate::organization::OrganizationId;
use crate::store::{
    AuditQuery, BadItem, CommitError, Contact, EMAIL_INDEX, EXPIRY_INDEX, Expect, ExpiryPartition, IndexAttributes, Key, LEDGER_PREFIX,
    LINK_TOKEN_INDEX, LISTING_READ_BUDGET, Loaded, MOBILE_INDEX, Page, PageRequest, Position, Queries, QueryPage, Record, Records,
    StorageKey, StoreError, TARGET_INDEX, Table, UNDELIVERED_INDEX, USER_PREFIX, UserFilter, Write, audit_matches, audit_partition,
    audit_sort_range, audit_target, organization_partition, paginate, undelivered_partition, user_matches,
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
    /// Tokens of the commits applied lately, with a digest of their writes: a commit sent
    /// again under its token is answered as applied and not applied twice (DynamoDB keeps a
    /// `ClientRequestToken` ten minutes; this store, its last `TOKENS_KEPT`).
    tokens: HashMap<String, String>,
    token_order: std::collections::VecDeque<String>,
}

const TOKENS_KEPT: usize = 10_000;

/// The index entries of a record: `(index, partition, sort)`, as the DynamoDB tables define
/// them (`aws-adapters`' table specs).
fn entries(attributes: IndexAttributes, key: &StorageKey) -> Vec<(&'static str, String, String)> {
    let mut entries = Vec::new();
    if let (Some(partition), Some(at)) = (attributes.expiry_key, attributes.expiry_at) {
        entries.push((EXPIRY_INDEX, partition, at));
    }
    if let (Some(partition), Some(at)) = (attributes.undelivered_key, attributes.undelivered_at) {
        entries.push((UNDELIVERED_INDEX, partition, at));
    }
    for (index, partition) in
        [(LINK_TOKEN_INDEX, attributes.link_token), (EMAIL_INDEX, attributes.email_key), (MOBILE_INDEX, attributes.mobile_key)]
    {
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
        (Expect::AbsentOrExpiredBy(_), None) => true,
        (Expect::AbsentOrExpiredBy(now), Some(Record::Idempotency(record))) => {
            record.expires_at.is_some_and(|expiry| key_timestamp(expiry) <= key_timestamp(now))
        }
        (Expect::AbsentOrExpiredBy(_), Some(_)) => false,
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

    async fn commit_once(&self, token: &str, writes: Vec<Write>) -> Result<(), CommitError> {
        if writes.is_empty() || writes.len() > MAX_TRANSACTION_ITEMS {
            return Err(invalid("a transaction holds 1 to 100 writes"));
        }
        let mut seen = HashSet::new();
        if !writes.iter().all(|write| seen.insert(write.record.storage_key())) {
            return Err(invalid("a transaction cannot write the same item twice"));
        }
        let digest = crate::secrets::sha256_hex(format!("{writes:?}").as_bytes());
        let mut tables = self.lock();
        match tables.tokens.get(token) {
            Some(applied) if *applied == digest => return Ok(()),
            Some(_) => return Err(invalid("a commit token was sent again with other writes")),
            None => {}
        }
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
        tables.tokens.insert(token.to_owned(), digest);
        tables.token_order.push_back(token.to_owned());
        if tables.token_order.len() > TOKENS_KEPT
            && let Some(oldest) = tables.token_order.pop_front()
        {
            tables.tokens.remove(&oldest);
        }
        drop(tables);
        if !intents.is_empty() {
            self.stream.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).extend(intents);
            self.appended.notify_waiters();
        }
        Ok(())
    }
}

fn position_of(key: &StorageKey) -> Position {
    Position::encode(&BTreeMap::from([("pk".to_owned(), key.pk.clone()), ("sk".to_owned(), key.sk.clone())]))
}

/// The sort key a position resumes after, checked against the partition being listed.
fn resume_after(start: Option<&Position>, partition: &str) -> Result<Option<String>, StoreError> {
    let Some(start) = start else {
        return Ok(None);
    };
    let key = start.decode()?;
    if key.get("pk").map(String::as_str) != Some(partition) {
        return Err(StoreError::InvalidCursor);
    }
    key.get("sk").cloned().map(Some).ok_or(StoreError::InvalidCursor)
}

/// A position in an index partition, as DynamoDB's: the index's keys and the item's.
impl EmbeddedStore {
    /// The users of one partition of an index sorted by time, in that order; only those up
    /// to `until` when given.
    async fn users_by_time(
        &self,
        name: &'static str,
        index: IndexPosition<'_>,
        until: Option<OffsetDateTime>,
        page: PageRequest,
    ) -> Result<Page<Result<User, BadItem>>, StoreError> {
        let until = until.map(key_timestamp);
        paginate(&page, false, self.read_budget, |start, limit| {
            let tables = self.lock();
            let queried = index.resume(start.as_ref()).map(|after| {
                let low = after.map_or(Bound::Unbounded, Bound::Excluded);
                let entries = tables
                    .span(name, index.partition, low, Bound::Unbounded)
                    .take_while(|((_, at, _), _)| until.as_ref().is_none_or(|until| at <= until))
                    .map(|(entry, record)| (entry.clone(), record));
                evaluate(
                    entries,
                    limit,
                    |record| match record {
                        Record::User(user) => Some(Ok(user.clone())),
                        _ => None,
                    },
                    |entry: &Entry| index.position(entry),
                )
            });
            std::future::ready(queried)
        })
        .await
    }
}

struct IndexPosition<'a> {
    partition_attribute: &'static str,
    partition: &'a str,
    sort_attribute: &'static str,
    table: Table,
}

impl IndexPosition<'_> {
    /// The entry `(sort value, item key)` a position resumes after, checked against the
    /// partition being listed.
    fn resume(&self, start: Option<&Position>) -> Result<Option<(String, StorageKey)>, StoreError> {
        let Some(start) = start else {
            return Ok(None);
        };
        let key = start.decode()?;
        if key.get(self.partition_attribute).map(String::as_str) != Some(self.partition) {
            return Err(StoreError::InvalidCursor);
        }
        let field = |name: &str| key.get(name).cloned().ok_or(StoreError::InvalidCursor);
        Ok(Some((field(self.sort_attribute)?, StorageKey { table: self.table, pk: field("pk")?, sk: field("sk")? })))
    }

    fn position(&self, (_, sort, item): &Entry) -> Position {
        Position::encode(&BTreeMap::from([
            (self.partition_attribute.to_owned(), self.partition.to_owned()),
            (self.sort_attribute.to_owned(), sort.clone()),
            ("pk".to_owned(), item.pk.clone()),
            ("sk".to_owned(), item.sk.clone()),
        ]))
    }
}

/// One query, as DynamoDB evaluates it: at most `limit` items, those that pass `keep`
/// returned, and the last one evaluated when another follows (as the emulator says).
fn evaluate<'a, T, K: 'a>(
    mut iter: impl Iterator<Item = (K, &'a Record)>,
    limit: usize,
    mut keep: impl FnMut(&Record) -> Option<T>,
    position: impl Fn(&K) -> Position,
) -> QueryPage<T> {
    let mut items = Vec::new();
    let mut scanned = 0;
    let mut last = None;
    for (key, record) in iter.by_ref().take(limit) {
        scanned += 1;
        if let Some(item) = keep(record) {
            items.push((item, position(&key)));
        }
        last = Some(key);
    }
    let last_evaluated = if iter.next().is_some() { last.as_ref().map(&position) } else { None };
    QueryPage { items, scanned, last_evaluated }
}

/// Queries one partition's sort keys in `[low, high]`, ascending or descending, from after
/// `start`, evaluating at most `limit` items.
#[allow(clippy::too_many_arguments)]
fn walk<T>(
    records: &BTreeMap<StorageKey, Record>,
    table: Table,
    partition: &str,
    (low, high): &(String, String),
    descending: bool,
    start: Option<&Position>,
    limit: usize,
    keep: impl FnMut(&Record) -> Option<T>,
) -> Result<QueryPage<T>, StoreError> {
    let at = |sk: String| StorageKey { table, pk: partition.to_owned(), sk };
    let mut lower = Bound::Included(at(low.clone()));
    let mut upper = Bound::Included(at(high.clone()));
    if let Some(after) = resume_after(start, partition)? {
        if descending {
            upper = Bound::Excluded(at(after));
        } else {
            lower = Bound::Excluded(at(after));
        }
    }
    if matches!((&lower, &upper), (Bound::Included(l) | Bound::Excluded(l), Bound::Included(u) | Bound::Excluded(u)) if l > u) {
        return Ok(QueryPage { items: vec![], scanned: 0, last_evaluated: None });
    }
    let range = records.range((lower, upper));
    let iter: Box<dyn Iterator<Item = (&StorageKey, &Record)>> = if descending { Box::new(range.rev()) } else { Box::new(range) };
    Ok(evaluate(iter, limit, keep, |key: &&StorageKey| position_of(key)))
}

impl EmbeddedStore {
    /// One partition of a table in sort-key order (`descending`: newest first), filtered by
    /// `keep`, paged as every store pages (`store::paginate`).
    #[allow(clippy::too_many_arguments)]
    async fn partition_pages<T: Send>(
        &self,
        table: Table,
        partition: &str,
        range: &(String, String),
        descending: bool,
        filtered: bool,
        page: &PageRequest,
        keep: impl Fn(&Record) -> Option<T> + Sync,
    ) -> Result<Page<T>, StoreError> {
        paginate(page, filtered, self.read_budget, |start, limit| {
            let tables = self.lock();
            std::future::ready(walk(&tables.records, table, partition, range, descending, start.as_ref(), limit, &keep))
        })
        .await
    }
}

fn prefix_range(prefix: &str) -> (String, String) {
    (prefix.to_owned(), format!("{prefix}~"))
}

#[async_trait]
impl Queries for EmbeddedStore {
    async fn users(&self, organization: &OrganizationId, filter: &UserFilter, page: PageRequest) -> Result<Page<User>, StoreError> {
        let filtered = filter.status.is_some() || filter.establishments.is_some() || filter.search.is_some();
        let partition = organization_partition(organization);
        self.partition_pages(Table::Users, &partition, &prefix_range(USER_PREFIX), false, filtered, &page, |record| match record {
            Record::User(user) if user_matches(user, filter) => Some(user.clone()),
            _ => None,
        })
        .await
    }

    async fn audit(&self, query: &AuditQuery, page: PageRequest) -> Result<Page<AuditEntry>, StoreError> {
        let filtered = query.actions.is_some() || query.establishments.is_some();
        let keep = |record: &Record| match record {
            Record::Audit(entry) if audit_matches(entry, query) => Some(entry.clone()),
            _ => None,
        };
        let range = audit_sort_range(query);
        match (&query.target, &query.scope) {
            (Some(target), AuditScope::Organization(organization)) => {
                // The `by_target` index, newest first, within the time range.
                let partition = audit_target(organization, target);
                let index =
                    IndexPosition { partition_attribute: "audit_target", partition: &partition, sort_attribute: "sk", table: Table::Audit };
                paginate(&page, filtered, self.read_budget, |start, limit| {
                    let tables = self.lock();
                    let queried = index.resume(start.as_ref()).map(|after| {
                        let smallest = || StorageKey { table: Table::Users, pk: String::new(), sk: String::new() };
                        // Sort values up to `high`, all of them: below `high` followed by the
                        // smallest character.
                        let high = match after {
                            Some(after) if after.0 <= range.1 => Bound::Excluded(after),
                            _ => Bound::Excluded((format!("{}\u{0}", range.1), smallest())),
                        };
                        let entries = tables
                            .span(TARGET_INDEX, &partition, Bound::Included((range.0.clone(), smallest())), high)
                            .rev()
                            .map(|(entry, record)| (entry.clone(), record));
                        evaluate(entries, limit, keep, |entry: &Entry| index.position(entry))
                    });
                    std::future::ready(queried)
                })
                .await
            }
            _ => {
                let partition = audit_partition(&query.scope);
                self.partition_pages(Table::Audit, &partition, &range, true, filtered, &page, keep).await
            }
        }
    }

    async fn ledger(&self, organization: &OrganizationId, page: PageRequest) -> Result<Page<LedgerEntry>, StoreError> {
        let partition = organization_partition(organization);
        self.partition_pages(Table::Balances, &partition, &prefix_range(LEDGER_PREFIX), true, false, &page, |record| match record {
            Record::Ledger(entry) => Some(entry.clone()),
            _ => None,
        })
        .await
    }

    async fn expiring(
        &self,
        partition: ExpiryPartition,
        until: Option<OffsetDateTime>,
        page: PageRequest,
    ) -> Result<Page<Result<User, BadItem>>, StoreError> {
        let index = IndexPosition {
            partition_attribute: "expiry_key",
            partition: &partition.key(),
            sort_attribute: "expiry_at",
            table: Table::Users,
        };
        self.users_by_time(EXPIRY_INDEX, index, until, page).await
    }

    async fn undelivered(&self, shard: u8, due_by: OffsetDateTime, page: PageRequest) -> Result<Page<Result<User, BadItem>>, StoreError> {
        let key = undelivered_partition(shard);
        let index = IndexPosition {
            partition_attribute: "undelivered_key",
            partition: &key,
            sort_attribute: "undelivered_at",
            table: Table::Users,
        };
        self.users_by_time(UNDELIVERED_INDEX, index, Some(due_by), page).await
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
