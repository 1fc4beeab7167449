//! Embedded adapters for the local server and fast tests: an in-memory store that keeps
//! the DynamoDB adapter's key order, conditions, limits and paging (the same contract
//! suite runs against both) and, like the outbox table's DynamoDB stream, a stream of the
//! intents it committed; and a provider that keeps and prints messages.

use std::collections::{BTreeMap, HashSet};
use std::ops::Bound;
use std::sync::Mutex;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::audit::AuditEntry;
use crate::clock::key_timestamp;
use crate::ledger::LedgerEntry;
use crate::messaging::{DeliveryError, EmailMessage, Mailer, SmsMessage, TextSender};
use crate::organization::OrganizationId;
use crate::store::{
    AuditQuery, BadItem, CommitError, Contact, Cursor, Expect, Key, LEDGER_PREFIX, Loaded, Page, PageRequest, Queries, Record, Records,
    StorageKey, StoreError, SweepMonth, Table, USER_PREFIX, UserFilter, Write, audit_matches, audit_partition, audit_sort_range,
    organization_partition, user_matches,
};
use crate::user::User;

pub use crate::store::MAX_WRITES as MAX_TRANSACTION_ITEMS;

#[derive(Default)]
pub struct EmbeddedStore {
    records: Mutex<BTreeMap<StorageKey, Record>>,
    /// Every intent committed, in commit order: the stream `deliver` reads.
    stream: Mutex<Vec<crate::outbox::Intent>>,
    appended: tokio::sync::Notify,
}

impl EmbeddedStore {
    pub fn new() -> Self {
        Self::default()
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

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<StorageKey, Record>> {
        self.records.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Every stored record, for tests that check invariants over the whole store.
    pub fn snapshot(&self) -> Vec<Record> {
        self.lock().values().cloned().collect()
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
        let records = self.lock();
        Ok(Loaded::new(keys.iter().filter_map(|key| records.get(&key.storage_key()).cloned())))
    }

    async fn commit(&self, writes: Vec<Write>) -> Result<(), CommitError> {
        if writes.is_empty() || writes.len() > MAX_TRANSACTION_ITEMS {
            return Err(invalid("a transaction holds 1 to 100 writes"));
        }
        let mut seen = HashSet::new();
        if !writes.iter().all(|write| seen.insert(write.record.storage_key())) {
            return Err(invalid("a transaction cannot write the same item twice"));
        }
        let mut records = self.lock();
        let failed: Vec<usize> = writes
            .iter()
            .enumerate()
            .filter(|(_, write)| !holds(write.expect, records.get(&write.record.storage_key())))
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
            records.insert(write.record.storage_key(), write.record);
        }
        drop(records);
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

/// Walks one partition's sort keys in `[low, high]`, ascending or descending, resuming
/// after a cursor, and returns up to `limit` records that pass `keep`.
fn walk<T>(
    records: &BTreeMap<StorageKey, Record>,
    table: Table,
    partition: &str,
    (low, high): (String, String),
    descending: bool,
    page: &PageRequest,
    mut keep: impl FnMut(&Record) -> Option<T>,
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
        return Ok(Page { items: vec![], next: None });
    }
    let range = records.range((lower, upper));
    let iter: Box<dyn Iterator<Item = (&StorageKey, &Record)>> = if descending { Box::new(range.rev()) } else { Box::new(range) };
    let mut items = Vec::new();
    let mut last = None;
    let mut more = false;
    for (key, record) in iter {
        if items.len() == page.limit {
            more = true;
            break;
        }
        if let Some(item) = keep(record) {
            items.push(item);
            last = Some(key.clone());
        }
    }
    Ok(Page { next: if more { last.as_ref().map(cursor_of) } else { None }, items })
}

fn prefix_range(prefix: &str) -> (String, String) {
    (prefix.to_owned(), format!("{prefix}~"))
}

#[async_trait]
impl Queries for EmbeddedStore {
    async fn users(&self, organization: &OrganizationId, filter: &UserFilter, page: PageRequest) -> Result<Page<User>, StoreError> {
        let records = self.lock();
        walk(
            &records,
            Table::Users,
            &organization_partition(organization),
            prefix_range(USER_PREFIX),
            false,
            &page,
            |record| match record {
                Record::User(user) if user_matches(user, filter) => Some(user.clone()),
                _ => None,
            },
        )
    }

    async fn audit(&self, query: &AuditQuery, page: PageRequest) -> Result<Page<AuditEntry>, StoreError> {
        let records = self.lock();
        walk(&records, Table::Audit, &audit_partition(&query.scope), audit_sort_range(query), true, &page, |record| match record {
            Record::Audit(entry) if audit_matches(entry, query) => Some(entry.clone()),
            _ => None,
        })
    }

    async fn ledger(&self, organization: &OrganizationId, page: PageRequest) -> Result<Page<LedgerEntry>, StoreError> {
        let records = self.lock();
        walk(&records, Table::Balances, &organization_partition(organization), prefix_range(LEDGER_PREFIX), true, &page, |record| {
            match record {
                Record::Ledger(entry) => Some(entry.clone()),
                _ => None,
            }
        })
    }

    async fn due_for_sweep(
        &self,
        month: SweepMonth,
        until: OffsetDateTime,
        page: PageRequest,
    ) -> Result<Page<Result<User, BadItem>>, StoreError> {
        let partition = month.partition();
        let until = key_timestamp(until);
        let records = self.lock();
        // The index orders by (sweep_at, table key); a cursor carries all of them.
        let mut due: Vec<(String, &StorageKey, &User)> = records
            .iter()
            .filter_map(|(key, record)| match record {
                Record::User(user) => {
                    let attributes = record.index_attributes();
                    match (attributes.sweep_month, attributes.sweep_at) {
                        (Some(day), Some(at)) if day == partition && at <= until => Some((at, key, user)),
                        _ => None,
                    }
                }
                _ => None,
            })
            .collect();
        due.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        let start = match &page.cursor {
            None => 0,
            Some(cursor) => {
                let key = cursor.decode()?;
                if key.get("sweep_month") != Some(&partition) {
                    return Err(StoreError::InvalidCursor);
                }
                let position = (
                    key.get("sweep_at").cloned().unwrap_or_default(),
                    key.get("pk").cloned().unwrap_or_default(),
                    key.get("sk").cloned().unwrap_or_default(),
                );
                due.iter().position(|(at, k, _)| (at.clone(), k.pk.clone(), k.sk.clone()) > position).unwrap_or(due.len())
            }
        };
        let slice = &due[start..];
        let taken = &slice[..slice.len().min(page.limit)];
        let next = (slice.len() > page.limit).then(|| {
            let (at, key, _) = taken.last().expect("a full page has a last item");
            Cursor::encode(&BTreeMap::from([
                ("sweep_month".to_owned(), partition.clone()),
                ("sweep_at".to_owned(), at.clone()),
                ("pk".to_owned(), key.pk.clone()),
                ("sk".to_owned(), key.sk.clone()),
            ]))
        });
        Ok(Page { items: taken.iter().map(|(_, _, user)| Ok((*user).clone())).collect(), next })
    }

    async fn users_with_contact(&self, organization: &OrganizationId, contact: &Contact) -> Result<Vec<User>, StoreError> {
        let key = contact.key(organization);
        let records = self.lock();
        Ok(records
            .values()
            .filter_map(|record| match record {
                Record::User(user) => {
                    let attributes = record.index_attributes();
                    let found = match contact {
                        Contact::Email(_) => attributes.email_key,
                        Contact::Mobile(_) => attributes.mobile_key,
                    };
                    (found.as_deref() == Some(key.as_str())).then(|| user.clone())
                }
                _ => None,
            })
            .collect())
    }

    async fn memberships(&self, person: &crate::identity::PersonId) -> Result<Vec<OrganizationId>, StoreError> {
        let key = crate::store::person_key(person);
        let records = self.lock();
        Ok(records
            .values()
            .filter_map(|record| match record {
                Record::User(user) if record.index_attributes().person_key.as_deref() == Some(key.as_str()) => {
                    Some(user.organization.clone())
                }
                _ => None,
            })
            .collect())
    }

    async fn user_by_link_token(&self, sha256: &str) -> Result<Option<User>, StoreError> {
        let records = self.lock();
        Ok(records.values().find_map(|record| match record {
            Record::User(user) if record.index_attributes().link_token.as_deref() == Some(sha256) => Some(user.clone()),
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
