//! The deliver function. It takes three kinds of events:
//!
//! - **the outbox table's DynamoDB stream**: each new intent is delivered
//!   (`domain::actions::deliver`); a record that must come again — a transient failure of
//!   SES or SNS, an unreadable item, a failure of ours — is reported in
//!   `batchItemFailures`, so the event source mapping retries it (bisecting a failing
//!   batch), and after its retries sends its batch's metadata to the failure destination;
//! - **the failure destination (SQS)**: each message names a shard and a range of sequence
//!   numbers; the records are read again from the stream and delivered again. A message
//!   whose intents still need another try is reported in `batchItemFailures`: SQS hands it
//!   back after its visibility timeout (the backoff), and after its receives moves it to
//!   the dead-letter queue (alarmed). Records past the stream's 24-hour retention are left
//!   to the redrive, which does not need the stream;
//! - **the schedule (every 5 minutes)**: the redrive (`domain::actions::redrive`) finds
//!   messages still queued past their time through the `by_undelivered` index and sends
//!   them again, or gives them up as `undeliverable`.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use aws_sdk_dynamodb::types::AttributeValue;
use domain::actions::deliver::{Delivered, deliver};
use domain::actions::redrive::{Redriven, redrive};
use domain::env::{Env, SecretSource, Senders};
use domain::outbox::Intent;
use domain::pipeline::RequestMeta;
use domain::policy::Caller;
use domain::secrets::CodeKey;
use domain::store::Record;
use serde::Deserialize;
use serde_json::Value;

/// What `deliver` runs with.
pub struct Ports {
    pub env: Env,
    pub secrets: std::sync::Arc<dyn SecretSource>,
    pub senders: Senders,
}

/// An invocation's event, by where it came from.
#[derive(Debug)]
pub enum Incoming {
    Stream(Event),
    Failures(SqsEvent),
    Schedule,
}

impl Incoming {
    /// Tells the event sources apart: stream and queue records say their `eventSource`; the
    /// schedule's event comes from `aws.events` (EventBridge Scheduler or a rule).
    pub fn parse(event: Value) -> Result<Incoming, String> {
        let source = event.pointer("/Records/0/eventSource").or_else(|| event.pointer("/Records/0/EventSource")).and_then(Value::as_str);
        match source {
            Some("aws:dynamodb") => serde_json::from_value(event).map(Incoming::Stream).map_err(|e| format!("a stream event: {e}")),
            Some("aws:sqs") => serde_json::from_value(event).map(Incoming::Failures).map_err(|e| format!("a queue event: {e}")),
            Some(other) => Err(format!("records from {other}")),
            None if event.get("source").and_then(Value::as_str) == Some("aws.events") => Ok(Incoming::Schedule),
            // An empty batch (a stream event with no records) has nothing to do.
            None if event.get("Records").and_then(Value::as_array).is_some_and(Vec::is_empty) => Ok(Incoming::Stream(Event::default())),
            None => Err("an event from no source this function knows".to_owned()),
        }
    }
}

/// Answers any event this function takes.
pub async fn handle_any(ports: &Ports, streams: &dyn StreamRanges, event: Value, meta: &RequestMeta) -> Result<Value, String> {
    let answer = match Incoming::parse(event)? {
        Incoming::Stream(event) => serde_json::to_value(handle(ports, event, meta).await),
        Incoming::Failures(event) => serde_json::to_value(handle_failures(ports, streams, event, meta).await),
        Incoming::Schedule => {
            let redriven = handle_schedule(ports, meta).await.map_err(|error| {
                tracing::error!(error = %error, cause = ?std::error::Error::source(&error), "the redrive failed");
                "the redrive failed".to_owned()
            })?;
            serde_json::to_value(redriven)
        }
    };
    answer.map_err(|e| format!("an answer that does not serialize: {e}"))
}

/// The intent a stream record carries, if it is a new one.
pub fn intent_of(record: &EventRecord) -> Result<Option<Intent>, String> {
    if record.event_name != "INSERT" {
        return Ok(None);
    }
    let item: HashMap<String, AttributeValue> = record.change.new_image.clone().into();
    match aws_adapters::dynamo::from_item(item)? {
        Record::Intent(intent) => Ok(Some(intent)),
        other => Err(format!("a {} on the outbox stream", other.kind())),
    }
}

/// The code key, read once per invocation when first needed.
struct KeyOnce<'a> {
    ports: &'a Ports,
    key: Option<CodeKey>,
}

impl KeyOnce<'_> {
    async fn get(&mut self) -> Result<&CodeKey, domain::error::Error> {
        if self.key.is_none() {
            self.key = Some(self.ports.secrets.code_key().await?);
        }
        Ok(self.key.as_ref().expect("just set"))
    }
}

/// Delivers one stream record: whether it must come again.
async fn deliver_record(ports: &Ports, key: &mut KeyOnce<'_>, record: &EventRecord, meta: &RequestMeta) -> bool {
    match intent_of(record) {
        Ok(None) => false,
        Ok(Some(intent)) => {
            let delivered = match key.get().await {
                Ok(key) => deliver(&ports.env, &ports.senders, key, meta, &intent).await,
                Err(error) => Err(error),
            };
            match delivered {
                Ok(Delivered { retry, sent, failed, undeliverable, possibly_duplicated, skipped }) => {
                    tracing::info!(intent = %intent.id, sent, failed, undeliverable, possibly_duplicated, skipped, retry, "intent delivered");
                    retry
                }
                Err(error) => {
                    tracing::error!(intent = %intent.id, error = %error, cause = ?std::error::Error::source(&error), "intent not delivered");
                    true
                }
            }
        }
        Err(problem) => {
            tracing::error!(problem = %problem, "an unreadable record on the outbox stream");
            true
        }
    }
}

/// Delivers every new intent of a batch; answers which records must come again.
pub async fn handle(ports: &Ports, event: Event, meta: &RequestMeta) -> DynamoDbEventResponse {
    let mut response = DynamoDbEventResponse::default();
    let mut key = KeyOnce { ports, key: None };
    let mut out_of_time = false;
    for record in &event.records {
        // Once the time left cannot hold an intent, the rest of the batch comes again.
        out_of_time |= !meta.deadline.allows(domain::deadline::DELIVER_INTENT_BUDGET);
        let retry = out_of_time || deliver_record(ports, &mut key, record, meta).await;
        if retry {
            let mut failure = DynamoDbBatchItemFailure::default();
            failure.item_identifier = record.change.sequence_number.clone();
            response.batch_item_failures.push(failure);
        }
    }
    response
}

/// What the stream's failure destination receives for a batch that kept failing (the
/// records themselves stay on the stream).
#[derive(Debug, Clone, Deserialize)]
pub struct FailedBatch {
    #[serde(rename = "DDBStreamBatchInfo")]
    pub batch: StreamBatch,
}

/// Where a failed batch lies on the stream.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamBatch {
    pub shard_id: String,
    pub start_sequence_number: String,
    pub end_sequence_number: String,
    pub stream_arn: String,
}

/// Why a failed batch's records could not be read again.
#[derive(Debug, thiserror::Error)]
pub enum RangeError {
    /// Past the stream's retention (24 hours): the redrive finds their messages instead.
    #[error("the records are no longer on the stream")]
    Trimmed,
    #[error("the stream could not be read")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Reads a range of a stream again.
#[async_trait]
pub trait StreamRanges: Send + Sync {
    async fn records(&self, batch: &StreamBatch) -> Result<Vec<EventRecord>, RangeError>;
}

/// Delivers again the records each failure message names; answers which messages must
/// come again.
pub async fn handle_failures(ports: &Ports, streams: &dyn StreamRanges, event: SqsEvent, meta: &RequestMeta) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    let mut key = KeyOnce { ports, key: None };
    for message in &event.records {
        let id = message.message_id.clone().unwrap_or_default();
        let retry = if !meta.deadline.allows(domain::deadline::DELIVER_INTENT_BUDGET) {
            true
        } else {
            match serde_json::from_str::<FailedBatch>(message.body.as_deref().unwrap_or_default()) {
                Err(problem) => {
                    // Kept for its receives, then in the dead-letter queue for an operator.
                    tracing::error!(message = %id, problem = %problem, "a failure message that is not a stream batch");
                    true
                }
                Ok(FailedBatch { batch }) => match streams.records(&batch).await {
                    Ok(records) => {
                        tracing::info!(message = %id, shard = %batch.shard_id, records = records.len(), "a failed batch read again");
                        let mut retry = false;
                        for record in &records {
                            retry |= deliver_record(ports, &mut key, record, meta).await;
                        }
                        retry
                    }
                    Err(RangeError::Trimmed) => {
                        tracing::warn!(message = %id, shard = %batch.shard_id, "a failed batch past the stream's retention; left to the redrive");
                        false
                    }
                    Err(error) => {
                        tracing::error!(message = %id, error = %error, cause = ?std::error::Error::source(&error), "a failed batch could not be read again");
                        true
                    }
                },
            }
        };
        if retry {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            response.batch_item_failures.push(failure);
        }
    }
    response
}

/// The scheduled redrive.
pub async fn handle_schedule(ports: &Ports, meta: &RequestMeta) -> Result<Redriven, domain::error::Error> {
    let key = ports.secrets.code_key().await?;
    let redriven = redrive(&ports.env, &ports.senders, &key, meta).await?;
    tracing::info!(
        users = redriven.users,
        sent = redriven.delivered.sent,
        failed = redriven.delivered.failed,
        given_up = redriven.given_up,
        stopped_early = redriven.stopped_early,
        "redrive done"
    );
    Ok(redriven)
}

/// The request meta of one invocation.
pub fn meta(request_id: &str, deadline: domain::deadline::Deadline) -> RequestMeta {
    RequestMeta::new(Caller::Anonymous, request_id).with_deadline(deadline)
}

/// A DynamoDB stream read again through the DynamoDB Streams API.
pub struct DynamoStreams {
    /// Made on first use: most invocations never read a range (start-up makes no client).
    client: aws_adapters::sdk::LazyClient<aws_sdk_dynamodbstreams::Client>,
}

impl DynamoStreams {
    pub fn new(client: impl Into<aws_adapters::sdk::LazyClient<aws_sdk_dynamodbstreams::Client>>) -> Self {
        DynamoStreams { client: client.into() }
    }
}

/// Sequence numbers are decimal strings of varying length.
fn sequence_after(a: &str, b: &str) -> bool {
    (a.len(), a) > (b.len(), b)
}

/// Reads of one range before giving up on reaching its end (a range is one failed batch,
/// at most the mapping's `BatchSize` records).
const RANGE_READS: usize = 10;

#[async_trait]
impl StreamRanges for DynamoStreams {
    async fn records(&self, batch: &StreamBatch) -> Result<Vec<EventRecord>, RangeError> {
        use aws_sdk_dynamodbstreams::error::SdkError;
        use aws_sdk_dynamodbstreams::operation::get_records::GetRecordsError;
        use aws_sdk_dynamodbstreams::operation::get_shard_iterator::GetShardIteratorError;
        use aws_sdk_dynamodbstreams::types::ShardIteratorType;
        let unavailable = |e: aws_sdk_dynamodbstreams::Error| RangeError::Unavailable(Box::new(e));
        let opened = self
            .client
            .get()
            .get_shard_iterator()
            .stream_arn(&batch.stream_arn)
            .shard_id(&batch.shard_id)
            .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
            .sequence_number(&batch.start_sequence_number)
            .send()
            .await;
        let mut iterator = match opened {
            Ok(output) => output.shard_iterator,
            Err(SdkError::ServiceError(e))
                if matches!(
                    e.err(),
                    GetShardIteratorError::TrimmedDataAccessException(_) | GetShardIteratorError::ResourceNotFoundException(_)
                ) =>
            {
                return Err(RangeError::Trimmed);
            }
            Err(e) => return Err(unavailable(e.into())),
        };
        let mut records = Vec::new();
        for _ in 0..RANGE_READS {
            let Some(current) = iterator.take() else { break };
            let output = match self.client.get().get_records().shard_iterator(current).send().await {
                Ok(output) => output,
                Err(SdkError::ServiceError(e)) if matches!(e.err(), GetRecordsError::TrimmedDataAccessException(_)) => {
                    return Err(RangeError::Trimmed);
                }
                Err(e) => return Err(unavailable(e.into())),
            };
            let read = output.records();
            let mut past_end = false;
            for record in read.iter().filter_map(event_record) {
                let sequence = record.change.sequence_number.clone().unwrap_or_default();
                if sequence_after(&sequence, &batch.end_sequence_number) {
                    past_end = true;
                    break;
                }
                records.push(record);
            }
            if past_end || read.is_empty() {
                break;
            }
            iterator = output.next_shard_iterator;
        }
        Ok(records)
    }
}

/// A stream record as Lambda hands it to a function.
pub fn event_record(record: &aws_sdk_dynamodbstreams::types::Record) -> Option<EventRecord> {
    let change = record.dynamodb()?;
    let mut event = EventRecord::default();
    event.event_id = record.event_id().unwrap_or_default().to_owned();
    event.event_name = record.event_name().map(|name| name.as_str().to_owned()).unwrap_or_default();
    event.event_source = Some("aws:dynamodb".to_owned());
    event.aws_region = record.aws_region().unwrap_or_default().to_owned();
    event.change.sequence_number = change.sequence_number().map(str::to_owned);
    event.change.size_bytes = change.size_bytes().unwrap_or_default();
    if let Some(image) = change.new_image() {
        event.change.new_image = serde_dynamo::Item::from(image.clone());
    }
    if let Some(keys) = change.keys() {
        event.change.keys = serde_dynamo::Item::from(keys.clone());
    }
    Some(event)
}
