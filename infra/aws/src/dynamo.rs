//! The DynamoDB store: one `BatchGetItem` (or `GetItem`) per read, one `TransactWriteItems`
//! (or conditional `PutItem` for a single write) per commit, `Query` for listings. Never a
//! `Scan`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, Put, TransactWriteItem};
use domain::audit::AuditEntry;
use domain::clock::key_timestamp;
use domain::identity::mask_id;
use domain::ledger::LedgerEntry;
use domain::organization::OrganizationId;
use domain::store::{
    AuditQuery, BadItem, BoxError, CommitError, Contact, EMAIL_INDEX, EXPIRY_INDEX, Expect, ExpiryPartition, Key, LEDGER_PREFIX,
    LINK_TOKEN_INDEX, LISTING_READ_BUDGET, Loaded, MOBILE_INDEX, Page, PageRequest, Position, Queries, QueryPage, Record, Records,
    StoreError, TARGET_INDEX, Table, UNDELIVERED_INDEX, USER_PREFIX, UserFilter, Write, audit_partition, audit_sort_range, audit_target,
    organization_partition, undelivered_partition,
};
use domain::user::{User, UserStatus};
use time::OffsetDateTime;

use crate::tables::{TTL_ATTRIBUTE, TableNames};

type Item = HashMap<String, AttributeValue>;

/// The largest number of keys `BatchGetItem` takes.
const BATCH_GET_LIMIT: usize = 100;
/// How often unprocessed batch keys (throttling) are re-requested before giving up.
const UNPROCESSED_RETRIES: u32 = 5;

#[derive(Clone)]
pub struct DynamoStore {
    client: crate::sdk::LazyClient<Client>,
    names: TableNames,
    read_budget: usize,
}

impl DynamoStore {
    /// `client`: a client, or one made by the store's first request (a function's:
    /// `LazyClient::new(config, Client::new)`, see [`crate::sdk::LazyClient`]).
    pub fn new(client: impl Into<crate::sdk::LazyClient<Client>>, names: TableNames) -> Self {
        DynamoStore { client: client.into(), names, read_budget: LISTING_READ_BUDGET }
    }

    /// The same store with another read budget for filtered listings (see
    /// `domain::store::read_budget`).
    pub fn with_read_budget(self, budget: usize) -> Self {
        DynamoStore { read_budget: budget, ..self }
    }

    pub fn client(&self) -> &Client {
        self.client.get()
    }

    pub fn names(&self) -> &TableNames {
        &self.names
    }

    fn table_of(&self, name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|table| self.names.of(*table) == name)
    }
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn unavailable<E: Into<BoxError>>(error: E) -> StoreError {
    StoreError::Unavailable(error.into())
}

/// A failed read: a missing table or index is a deployment mistake (500, said so in the
/// log), anything else the store being unavailable (503, retry).
fn read_failure(error: aws_sdk_dynamodb::Error) -> StoreError {
    match error {
        aws_sdk_dynamodb::Error::ResourceNotFoundException(_) => StoreError::Misconfigured(Box::new(error)),
        other => StoreError::Unavailable(Box::new(other)),
    }
}

/// Serializes a record with its keys, its kind and its index attributes.
pub fn to_item(record: &Record) -> Result<Item, serde_dynamo::Error> {
    use serde_dynamo::aws_sdk_dynamodb_1::to_item as item;
    let mut attributes: Item = match record {
        Record::Organization(value) => item(value)?,
        Record::User(value) => item(value)?,
        Record::Person(value) => item(value)?,
        Record::Balance(value) => item(value)?,
        Record::Ledger(value) => item(value)?,
        Record::Audit(value) => item(value)?,
        Record::Idempotency(value) => item(value)?,
        Record::Intent(value) => item(value)?,
        Record::SweepState(value) => item(value)?,
    };
    let key = record.storage_key();
    attributes.insert("pk".into(), s(key.pk));
    attributes.insert("sk".into(), s(key.sk));
    attributes.insert("kind".into(), s(record.kind()));
    let index = record.index_attributes();
    for (name, value) in [
        ("expiry_key", index.expiry_key),
        ("expiry_at", index.expiry_at),
        ("link_token", index.link_token),
        ("audit_target", index.target),
        ("email_key", index.email_key),
        ("mobile_key", index.mobile_key),
        ("search_text", index.search_text),
        ("access_ends_at", index.access_ends_at),
        ("undelivered_key", index.undelivered_key),
        ("undelivered_at", index.undelivered_at),
    ] {
        if let Some(value) = value {
            attributes.insert(name.into(), s(value));
        }
    }
    let expiry = match record {
        Record::Idempotency(idempotency) => idempotency.expires_at,
        Record::Intent(intent) => Some(domain::pipeline::intent_expiry(intent)),
        _ => None,
    };
    if let Some(expiry) = expiry {
        attributes.insert(TTL_ATTRIBUTE.into(), AttributeValue::N(expiry.unix_timestamp().to_string()));
    }
    Ok(attributes)
}

/// Reads a stored item back into a record. A failure names the item's kind, its masked key
/// and the field that could not be read — never a stored value, which may be personal data
/// (serde's own messages quote the value they refused).
pub fn from_item(item: Item) -> Result<Record, String> {
    fn parse<T: serde::de::DeserializeOwned>(item: Item) -> Result<T, String> {
        let item: serde_dynamo::Item = item.into();
        let deserializer = serde_dynamo::Deserializer::from_attribute_value(serde_dynamo::AttributeValue::M(item.into()));
        serde_path_to_error::deserialize(deserializer).map_err(|error| {
            let path = error.path().to_string();
            if path == "." { "the item's shape".to_owned() } else { format!("field `{path}`") }
        })
    }
    let kind = item.get("kind").and_then(|v| v.as_s().ok()).cloned().ok_or("the item has no kind")?;
    let key = masked_key(&item);
    let record = match kind.as_str() {
        "organization" => parse(item).map(Record::Organization),
        "user" => parse(item).map(Record::User),
        "person" => parse(item).map(Record::Person),
        "balance" => parse(item).map(Record::Balance),
        "ledger_entry" => parse(item).map(Record::Ledger),
        "audit_entry" => parse(item).map(Record::Audit),
        "idempotency" => parse(item).map(Record::Idempotency),
        "intent" => parse(item).map(Record::Intent),
        "sweep_state" => parse(item).map(Record::SweepState),
        _ => return Err(format!("{key}: an unknown kind of item")),
    };
    record.map_err(|problem| format!("{kind} {key}: could not read {problem}"))
}

/// A stored key with any person's ID masked, for logs.
fn masked_key(item: &Item) -> String {
    let part = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).map_or("?", String::as_str).to_owned();
    // `USER#<id>` and `PERSON#<id>` end with a person's ID number.
    let mask = |key: String| match key.rsplit_once('#') {
        Some((prefix, id))
            if id.len() == 10 && id.bytes().all(|b| b.is_ascii_digit()) && (prefix.ends_with("USER") || prefix == "PERSON") =>
        {
            format!("{prefix}#{}", mask_id(id))
        }
        _ => key,
    };
    format!("{}/{}", mask(part("pk")), mask(part("sk")))
}

struct Condition {
    expression: &'static str,
    names: Option<HashMap<String, String>>,
    values: Option<HashMap<String, AttributeValue>>,
}

fn condition(expect: Expect) -> Condition {
    match expect {
        Expect::Absent => Condition { expression: "attribute_not_exists(pk)", names: None, values: None },
        Expect::Present => Condition { expression: "attribute_exists(pk)", names: None, values: None },
        Expect::Version(version) => Condition {
            expression: "#version = :expected_version",
            names: Some(HashMap::from([("#version".to_owned(), "version".to_owned())])),
            values: Some(HashMap::from([(":expected_version".to_owned(), AttributeValue::N(version.to_string()))])),
        },
        // Stored instants are fixed-width UTC text, so string order is time order.
        Expect::AbsentOrExpiredBy(now) => Condition {
            expression: "attribute_not_exists(pk) OR #expires_at <= :now",
            names: Some(HashMap::from([("#expires_at".to_owned(), "expires_at".to_owned())])),
            values: Some(HashMap::from([(":now".to_owned(), s(key_timestamp(now)))])),
        },
    }
}

/// Whether an SDK error may have happened after the request reached DynamoDB.
fn outcome_unknown<E, R>(error: &SdkError<E, R>) -> bool {
    matches!(error, SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_))
}

#[async_trait]
impl Records for DynamoStore {
    async fn load(&self, keys: &[Key]) -> Result<Loaded, StoreError> {
        let mut seen = HashSet::new();
        let keys: Vec<_> = keys.iter().map(Key::storage_key).filter(|key| seen.insert(key.clone())).collect();
        let mut records = Vec::with_capacity(keys.len());
        if let [key] = keys.as_slice() {
            let output = self
                .client()
                .get_item()
                .table_name(self.names.of(key.table))
                .key("pk", s(&key.pk))
                .key("sk", s(&key.sk))
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| read_failure(aws_sdk_dynamodb::Error::from(e)))?;
            if let Some(item) = output.item {
                records.push(from_item(item).map_err(StoreError::Corrupt)?);
            }
            return Ok(Loaded::new(records));
        }
        for chunk in keys.chunks(BATCH_GET_LIMIT) {
            let mut request: HashMap<String, KeysAndAttributes> = HashMap::new();
            for key in chunk {
                let entry = request.entry(self.names.of(key.table).to_owned()).or_insert_with(|| {
                    KeysAndAttributes::builder().consistent_read(true).set_keys(Some(vec![])).build().expect("keys are set")
                });
                let mut keys = entry.keys().to_vec();
                keys.push(HashMap::from([("pk".to_owned(), s(&key.pk)), ("sk".to_owned(), s(&key.sk))]));
                *entry = KeysAndAttributes::builder().consistent_read(true).set_keys(Some(keys)).build().expect("keys are set");
            }
            let mut pending = Some(request);
            let mut round = 0;
            while let Some(request) = pending.take().filter(|r| !r.is_empty()) {
                if round > 0 {
                    if round > UNPROCESSED_RETRIES {
                        return Err(unavailable("DynamoDB kept returning unprocessed keys"));
                    }
                    tokio::time::sleep(Duration::from_millis(20 << round)).await;
                }
                round += 1;
                let output = self
                    .client()
                    .batch_get_item()
                    .set_request_items(Some(request))
                    .send()
                    .await
                    .map_err(|e| read_failure(aws_sdk_dynamodb::Error::from(e)))?;
                for (table, items) in output.responses.unwrap_or_default() {
                    if self.table_of(&table).is_none() {
                        continue;
                    }
                    for item in items {
                        records.push(from_item(item).map_err(StoreError::Corrupt)?);
                    }
                }
                pending = output.unprocessed_keys;
            }
        }
        Ok(Loaded::new(records))
    }

    async fn commit_once(&self, token: &str, writes: Vec<Write>) -> Result<(), CommitError> {
        let mut puts = Vec::with_capacity(writes.len());
        for write in &writes {
            let item = to_item(&write.record).map_err(|e| CommitError::Unavailable(Box::new(e)))?;
            let condition = condition(write.expect);
            puts.push((self.names.of(write.record.storage_key().table).to_owned(), item, condition));
        }
        if puts.len() == 1 {
            let (table, item, condition) = puts.pop().expect("one put");
            let result = self
                .client()
                .put_item()
                .table_name(table)
                .set_item(Some(item))
                .condition_expression(condition.expression)
                .set_expression_attribute_names(condition.names)
                .set_expression_attribute_values(condition.values)
                .send()
                .await;
            return match result {
                Ok(_) => Ok(()),
                Err(error) if outcome_unknown(&error) => Err(CommitError::Unknown(Box::new(aws_sdk_dynamodb::Error::from(error)))),
                Err(error) => match error.into_service_error() {
                    PutItemError::ConditionalCheckFailedException(_) => Err(CommitError::Conflict { failed: vec![0] }),
                    PutItemError::InternalServerError(e) => Err(CommitError::Unknown(Box::new(e))),
                    PutItemError::ResourceNotFoundException(e) => Err(CommitError::Misconfigured(Box::new(e))),
                    other => Err(CommitError::Unavailable(Box::new(other))),
                },
            };
        }
        let items = puts
            .into_iter()
            .map(|(table, item, condition)| {
                let put = Put::builder()
                    .table_name(table)
                    .set_item(Some(item))
                    .condition_expression(condition.expression)
                    .set_expression_attribute_names(condition.names)
                    .set_expression_attribute_values(condition.values)
                    .build()
                    .map_err(|e| CommitError::Unavailable(Box::new(e)))?;
                Ok(TransactWriteItem::builder().put(put).build())
            })
            .collect::<Result<Vec<_>, CommitError>>()?;
        // The same token on a commit sent again (the pipeline does after an unknown outcome)
        // makes DynamoDB apply it at most once, for ten minutes.
        let result = self.client().transact_write_items().set_transact_items(Some(items)).client_request_token(token).send().await;
        match result {
            Ok(_) => Ok(()),
            Err(error) if outcome_unknown(&error) => Err(CommitError::Unknown(Box::new(aws_sdk_dynamodb::Error::from(error)))),
            Err(error) => match error.into_service_error() {
                TransactWriteItemsError::TransactionCanceledException(canceled) => {
                    let reasons = canceled.cancellation_reasons();
                    let failed: Vec<usize> = reasons
                        .iter()
                        .enumerate()
                        .filter(|(_, reason)| reason.code() == Some("ConditionalCheckFailed"))
                        .map(|(position, _)| position)
                        .collect();
                    let retryable = reasons.iter().all(|r| {
                        matches!(r.code(), None | Some("None" | "ConditionalCheckFailed" | "TransactionConflict" | "ThrottlingError"))
                    });
                    if retryable { Err(CommitError::Conflict { failed }) } else { Err(CommitError::Unavailable(Box::new(canceled))) }
                }
                TransactWriteItemsError::TransactionInProgressException(e) => Err(CommitError::Unknown(Box::new(e))),
                TransactWriteItemsError::InternalServerError(e) => Err(CommitError::Unknown(Box::new(e))),
                TransactWriteItemsError::ResourceNotFoundException(e) => Err(CommitError::Misconfigured(Box::new(e))),
                other => Err(CommitError::Unavailable(Box::new(other))),
            },
        }
    }
}

/// One listing query: a page of items that pass the filter, reading at most a budget.
struct Listing<'a> {
    table: Table,
    index: Option<&'static str>,
    key_condition: &'static str,
    filter: Option<String>,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
    forward: bool,
    /// The key attributes that make up a cursor, and the ones a cursor must match.
    cursor_attributes: &'a [&'static str],
    cursor_must_match: Vec<(&'static str, String)>,
}

impl DynamoStore {
    /// A listing, paged by `domain::store::paginate` (the loop both stores share) over
    /// DynamoDB's `Query`: `Limit` counts items read before the filter.
    async fn list(&self, listing: Listing<'_>, page: &PageRequest) -> Result<Page<Item>, StoreError> {
        let filtered = listing.filter.is_some();
        let listing = &listing;
        domain::store::paginate(page, filtered, self.read_budget, |start, limit| async move {
            let start: Option<Item> = match start {
                None => None,
                Some(position) => {
                    let key = position.decode()?;
                    let matches = listing.cursor_must_match.iter().all(|(name, value)| key.get(*name) == Some(value));
                    let complete = listing.cursor_attributes.iter().all(|name| key.contains_key(*name))
                        && key.len() == listing.cursor_attributes.len();
                    if !matches || !complete {
                        return Err(StoreError::InvalidCursor);
                    }
                    Some(key.into_iter().map(|(name, value)| (name, s(value))).collect())
                }
            };
            let output = self
                .client()
                .query()
                .table_name(self.names.of(listing.table))
                .set_index_name(listing.index.map(str::to_owned))
                .key_condition_expression(listing.key_condition)
                .set_filter_expression(listing.filter.clone())
                .set_expression_attribute_names((!listing.names.is_empty()).then(|| listing.names.clone()))
                .set_expression_attribute_values(Some(listing.values.clone()))
                .scan_index_forward(listing.forward)
                .limit(i32::try_from(limit).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| read_failure(aws_sdk_dynamodb::Error::from(e)))?;
            Ok(QueryPage {
                scanned: usize::try_from(output.scanned_count).unwrap_or(0),
                last_evaluated: output.last_evaluated_key.as_ref().map(|key| position_from(key, listing.cursor_attributes)),
                items: output
                    .items
                    .unwrap_or_default()
                    .into_iter()
                    .map(|item| {
                        let position = position_from(&item, listing.cursor_attributes);
                        (item, position)
                    })
                    .collect(),
            })
        })
        .await
    }
}

impl DynamoStore {
    /// Every item of an index partition, following `LastEvaluatedKey` to the end. Only for
    /// partitions that stay small by design (one contact value in one organization).
    async fn query_every_page(&self, index: &str, attribute: &str, value: String) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let output = self
                .client()
                .query()
                .table_name(self.names.of(Table::Users))
                .index_name(index)
                .key_condition_expression("#key = :value")
                .expression_attribute_names("#key", attribute)
                .expression_attribute_values(":value", s(&value))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| read_failure(aws_sdk_dynamodb::Error::from(e)))?;
            items.extend(output.items.unwrap_or_default());
            match output.last_evaluated_key {
                Some(key) => start = Some(key),
                None => return Ok(items),
            }
        }
    }
}

fn position_from(item: &Item, attributes: &[&str]) -> Position {
    let key: BTreeMap<String, String> =
        attributes.iter().filter_map(|name| item.get(*name).and_then(|v| v.as_s().ok()).map(|v| ((*name).to_owned(), v.clone()))).collect();
    Position::encode(&key)
}

fn parse_items<T>(page: Page<Item>, pick: impl Fn(Record) -> Option<T>) -> Result<Page<T>, StoreError> {
    let items = page
        .items
        .into_iter()
        .map(|item| {
            from_item(item).map_err(StoreError::Corrupt).and_then(|r| pick(r).ok_or_else(|| StoreError::Corrupt("unexpected kind".into())))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page { items, next: page.next, scanned: page.scanned })
}

fn status_value(status: UserStatus) -> AttributeValue {
    s(status.as_str())
}

/// The filter of a user listing; mirrors `domain::store::user_matches`.
fn user_filter(filter: &UserFilter, names: &mut HashMap<String, String>, values: &mut HashMap<String, AttributeValue>) -> Option<String> {
    let mut clauses = Vec::new();
    if let Some(status) = filter.status {
        clauses.push(status_expression(&domain::status::condition(status), filter.now, names, values));
    }
    if let Some(establishments) = &filter.establishments {
        clauses.push(contains_any(
            "#establishments",
            "establishments",
            ":establishment",
            establishments.iter().map(|e| e.as_str()),
            names,
            values,
        ));
    }
    if let Some(search) = &filter.search {
        names.insert("#search".into(), "search_text".into());
        values.insert(":search".into(), s(search));
        clauses.push("contains(#search, :search)".to_owned());
    }
    (!clauses.is_empty()).then(|| clauses.join(" AND "))
}

/// The status rule (`domain::status`) as a filter expression over the stored `status`,
/// `role` and `access_ends_at` (fixed-width UTC text, so string order is time order).
/// Names and values are added only as used: DynamoDB refuses unused ones.
fn status_expression(
    condition: &domain::status::Condition,
    now: OffsetDateTime,
    names: &mut HashMap<String, String>,
    values: &mut HashMap<String, AttributeValue>,
) -> String {
    use domain::status::Condition;
    let now_value = |names: &mut HashMap<String, String>, values: &mut HashMap<String, AttributeValue>| {
        names.insert("#access_ends_at".into(), "access_ends_at".into());
        values.insert(":now".into(), s(key_timestamp(now)));
    };
    let join = |conditions: &[Condition], with: &str, names: &mut HashMap<String, String>, values: &mut HashMap<String, AttributeValue>| {
        let parts: Vec<String> = conditions.iter().map(|c| status_expression(c, now, names, values)).collect();
        format!("({})", parts.join(with))
    };
    match condition {
        Condition::Stored(status) => {
            names.insert("#status".into(), "status".into());
            let value = format!(":status_{}", status.as_str());
            values.insert(value.clone(), status_value(*status));
            format!("#status = {value}")
        }
        Condition::Role(role) => {
            names.insert("#role".into(), "role".into());
            let role = match role {
                domain::user::Role::Manager => "manager",
                domain::user::Role::Member => "member",
            };
            values.insert(format!(":role_{role}"), s(role));
            format!("#role = :role_{role}")
        }
        Condition::AccessAfterNow => {
            now_value(names, values);
            "#access_ends_at > :now".to_owned()
        }
        Condition::AccessEndedByNow => {
            now_value(names, values);
            "(attribute_not_exists(#access_ends_at) OR #access_ends_at <= :now)".to_owned()
        }
        Condition::All(all) => join(all, " AND ", names, values),
        Condition::Any(any) => join(any, " OR ", names, values),
    }
}

fn contains_any<'a>(
    placeholder: &str,
    attribute: &str,
    value_prefix: &str,
    wanted: impl Iterator<Item = &'a str>,
    names: &mut HashMap<String, String>,
    values: &mut HashMap<String, AttributeValue>,
) -> String {
    names.insert(placeholder.into(), attribute.into());
    let alternatives: Vec<String> = wanted
        .enumerate()
        .map(|(n, value)| {
            let name = format!("{value_prefix}{n}");
            values.insert(name.clone(), s(value));
            format!("contains({placeholder}, {name})")
        })
        .collect();
    if alternatives.is_empty() {
        // Nothing can match an empty set.
        values.insert(format!("{value_prefix}_none"), s("\u{0}"));
        return format!("{placeholder} = {value_prefix}_none");
    }
    format!("({})", alternatives.join(" OR "))
}

/// A users index partitioned by `key` and sorted by the instant in `at`.
struct TimeIndex {
    name: &'static str,
    key: &'static str,
    at: &'static str,
}

impl DynamoStore {
    /// The users of one partition of an index sorted by time, in that order; only those up
    /// to `until` when given.
    async fn users_by_time(
        &self,
        index: TimeIndex,
        partition: String,
        until: Option<OffsetDateTime>,
        page: PageRequest,
    ) -> Result<Page<Result<User, BadItem>>, StoreError> {
        let mut values = HashMap::from([(":key".to_owned(), s(&partition))]);
        let mut names = HashMap::from([("#key".to_owned(), index.key.to_owned())]);
        if let Some(until) = until {
            values.insert(":until".to_owned(), s(key_timestamp(until)));
            names.insert("#at".to_owned(), index.at.to_owned());
        }
        let listing = Listing {
            table: Table::Users,
            index: Some(index.name),
            key_condition: if until.is_some() { "#key = :key AND #at <= :until" } else { "#key = :key" },
            filter: None,
            names,
            values,
            forward: true,
            cursor_attributes: &["pk", "sk", index.key, index.at],
            cursor_must_match: vec![(index.key, partition)],
        };
        let page = self.list(listing, &page).await?;
        let items = page
            .items
            .into_iter()
            .map(|item| {
                let key = masked_key(&item);
                match from_item(item) {
                    Ok(Record::User(user)) => Ok(user),
                    Ok(other) => Err(BadItem { key, problem: format!("a {} in the {} index", other.kind(), index.name) }),
                    Err(problem) => Err(BadItem { key, problem }),
                }
            })
            .collect();
        Ok(Page { items, next: page.next, scanned: page.scanned })
    }
}

#[async_trait]
impl Queries for DynamoStore {
    async fn users(&self, organization: &OrganizationId, filter: &UserFilter, page: PageRequest) -> Result<Page<User>, StoreError> {
        let partition = organization_partition(organization);
        let mut names = HashMap::new();
        let mut values = HashMap::from([(":pk".to_owned(), s(&partition)), (":prefix".to_owned(), s(USER_PREFIX))]);
        let filter = user_filter(filter, &mut names, &mut values);
        let listing = Listing {
            table: Table::Users,
            index: None,
            key_condition: "pk = :pk AND begins_with(sk, :prefix)",
            filter,
            names,
            values,
            forward: true,
            cursor_attributes: &["pk", "sk"],
            cursor_must_match: vec![("pk", partition)],
        };
        let page = self.list(listing, &page).await?;
        parse_items(page, |record| match record {
            Record::User(user) => Some(user),
            _ => None,
        })
    }

    async fn audit(&self, query: &AuditQuery, page: PageRequest) -> Result<Page<AuditEntry>, StoreError> {
        let partition = audit_partition(&query.scope);
        let (low, high) = audit_sort_range(query);
        let mut names = HashMap::new();
        let mut values = HashMap::from([(":low".to_owned(), s(low)), (":high".to_owned(), s(high))]);
        let mut clauses = Vec::new();
        if let Some(actions) = &query.actions {
            names.insert("#action".to_owned(), "action".to_owned());
            let list: Vec<String> = actions
                .iter()
                .enumerate()
                .map(|(n, action)| {
                    values.insert(format!(":action{n}"), s(action.as_str()));
                    format!(":action{n}")
                })
                .collect();
            if list.is_empty() {
                return Ok(Page { items: vec![], next: None, scanned: 0 });
            }
            clauses.push(format!("#action IN ({})", list.join(", ")));
        }
        if let Some(establishments) = &query.establishments {
            clauses.push(contains_any(
                "#establishments",
                "establishments",
                ":establishment",
                establishments.iter().map(|e| e.as_str()),
                &mut names,
                &mut values,
            ));
        }
        let filter = (!clauses.is_empty()).then(|| clauses.join(" AND "));
        let listing = match (&query.target, &query.scope) {
            (Some(target), domain::audit::AuditScope::Organization(organization)) => {
                let target = audit_target(organization, target);
                values.insert(":target".to_owned(), s(&target));
                Listing {
                    table: Table::Audit,
                    index: Some(TARGET_INDEX),
                    key_condition: "audit_target = :target AND sk BETWEEN :low AND :high",
                    filter,
                    names,
                    values,
                    forward: false,
                    cursor_attributes: &["pk", "sk", "audit_target"],
                    cursor_must_match: vec![("audit_target", target)],
                }
            }
            _ => {
                values.insert(":pk".to_owned(), s(&partition));
                Listing {
                    table: Table::Audit,
                    index: None,
                    key_condition: "pk = :pk AND sk BETWEEN :low AND :high",
                    filter,
                    names,
                    values,
                    forward: false,
                    cursor_attributes: &["pk", "sk"],
                    cursor_must_match: vec![("pk", partition)],
                }
            }
        };
        let page = self.list(listing, &page).await?;
        parse_items(page, |record| match record {
            Record::Audit(entry) => Some(entry),
            _ => None,
        })
    }

    async fn ledger(&self, organization: &OrganizationId, page: PageRequest) -> Result<Page<LedgerEntry>, StoreError> {
        let partition = organization_partition(organization);
        let listing = Listing {
            table: Table::Balances,
            index: None,
            key_condition: "pk = :pk AND begins_with(sk, :prefix)",
            filter: None,
            names: HashMap::new(),
            values: HashMap::from([(":pk".to_owned(), s(&partition)), (":prefix".to_owned(), s(LEDGER_PREFIX))]),
            forward: false,
            cursor_attributes: &["pk", "sk"],
            cursor_must_match: vec![("pk", partition)],
        };
        let page = self.list(listing, &page).await?;
        parse_items(page, |record| match record {
            Record::Ledger(entry) => Some(entry),
            _ => None,
        })
    }

    async fn expiring(
        &self,
        partition: ExpiryPartition,
        until: Option<OffsetDateTime>,
        page: PageRequest,
    ) -> Result<Page<Result<User, BadItem>>, StoreError> {
        self.users_by_time(TimeIndex { name: EXPIRY_INDEX, key: "expiry_key", at: "expiry_at" }, partition.key(), until, page).await
    }

    async fn undelivered(&self, shard: u8, due_by: OffsetDateTime, page: PageRequest) -> Result<Page<Result<User, BadItem>>, StoreError> {
        let index = TimeIndex { name: UNDELIVERED_INDEX, key: "undelivered_key", at: "undelivered_at" };
        self.users_by_time(index, undelivered_partition(shard), Some(due_by), page).await
    }

    async fn users_with_contact(&self, organization: &OrganizationId, contact: &Contact) -> Result<Vec<User>, StoreError> {
        let (index, attribute) = match contact {
            Contact::Email(_) => (EMAIL_INDEX, "email_key"),
            Contact::Mobile(_) => (MOBILE_INDEX, "mobile_key"),
        };
        let items = self.query_every_page(index, attribute, contact.key(organization)).await?;
        items
            .into_iter()
            .map(|item| match from_item(item).map_err(StoreError::Corrupt)? {
                Record::User(user) => Ok(user),
                other => Err(StoreError::Corrupt(format!("a {} in the contact index", other.kind()))),
            })
            .collect()
    }

    async fn user_by_link_token(&self, sha256: &str) -> Result<Option<User>, StoreError> {
        let output = self
            .client()
            .query()
            .table_name(self.names.of(Table::Users))
            .index_name(LINK_TOKEN_INDEX)
            .key_condition_expression("link_token = :token")
            .expression_attribute_values(":token", s(sha256))
            .limit(1)
            .send()
            .await
            .map_err(|e| read_failure(aws_sdk_dynamodb::Error::from(e)))?;
        match output.items.unwrap_or_default().into_iter().next() {
            None => Ok(None),
            Some(item) => match from_item(item).map_err(StoreError::Corrupt)? {
                Record::User(user) => Ok(Some(user)),
                other => Err(StoreError::Corrupt(format!("a {} in the link token index", other.kind()))),
            },
        }
    }
}
