//! The outbox delivered locally, as Lambda's event source mapping delivers it in AWS: on
//! the embedded store, the store's own stream of committed intents goes to the `deliver`
//! action in-process; on DynamoDB (the emulator), the outbox table's stream is read with the
//! DynamoDB Streams API and each batch goes to the `deliver` function's handler as the
//! event Lambda would build. A record reported as failed is retried, in order, with backoff,
//! `MAX_ATTEMPTS` times in all; then it is put on the failure list (the local failure
//! destination, `GET /local/failures`) and the next record is taken. The failure list is
//! consumed as the SQS failure destination is in AWS (`redrive_failures`: on DynamoDB, the
//! deliver function's queue handler reads the batch again from the stream), and the
//! scheduled redrive (`redrive`) runs every `REDRIVE_EVERY`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_sdk_dynamodbstreams::types::ShardIteratorType;
use deliver_function::{DynamoStreams, Ports, StreamBatch};
use domain::actions::deliver::deliver;
use domain::embedded::EmbeddedStore;
use serde::Serialize;

/// Attempts of one record before it goes to the failure list (Lambda's
/// `MaximumRetryAttempts` is 3 in `template.yaml`: one try and three retries) — the
/// product's budget of tries per message.
pub const MAX_ATTEMPTS: u32 = domain::outbox::DELIVERY_ATTEMPTS;
/// Records handed to the handler at once (the event source mapping's `BatchSize`).
const BATCH: usize = 10;

/// How often the local server runs the redrive (every 5 minutes in AWS).
pub const REDRIVE_EVERY: Duration = Duration::from_secs(60);

/// A record that kept failing, as the failure destination would keep it: where it is, not
/// what it says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    pub position: String,
    pub attempts: u32,
    /// On DynamoDB: the batch as the failure destination names it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch: Option<StreamBatch>,
}

/// What a drain did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Drained {
    /// Records handed to the handler (retries included).
    pub deliveries: usize,
    /// Records put on the failure list.
    pub failed: usize,
}

enum Source {
    Embedded {
        store: std::sync::Arc<EmbeddedStore>,
        next: Mutex<usize>,
    },
    /// Boxed: it holds SDK clients, the embedded variant a pointer.
    Stream(Box<StreamReader>),
}

pub struct Deliverer {
    ports: Ports,
    /// The in-process bus the change events of each delivered intent are published to
    /// (`GET /local/events`), as the publish function publishes them to EventBridge.
    bus: domain::events::Memory,
    /// Another bus the events also go to (the emulator's EventBridge on DynamoDB).
    also: Option<std::sync::Arc<dyn domain::events::EventBus>>,
    /// The ids of the events published so far (a record delivered again publishes nothing).
    published: Mutex<std::collections::HashSet<String>>,
    source: Source,
    failures: Mutex<Vec<Failure>>,
    /// Deliveries to drop before they reach the handler, as if the invocation had died.
    drop_next: AtomicUsize,
    /// Serializes drains: records of one stream are delivered in order, one batch at a time.
    draining: tokio::sync::Mutex<()>,
    backoff: Duration,
}

impl Deliverer {
    /// Delivers the embedded store's intents.
    pub fn embedded(ports: Ports, store: std::sync::Arc<EmbeddedStore>) -> Self {
        Deliverer::new(ports, Source::Embedded { store, next: Mutex::new(0) })
    }

    /// Delivers from the DynamoDB stream of `outbox_table`.
    pub fn stream(
        ports: Ports,
        streams: aws_sdk_dynamodbstreams::Client,
        dynamodb: aws_sdk_dynamodb::Client,
        outbox_table: String,
    ) -> Self {
        Deliverer::new(ports, Source::Stream(Box::new(StreamReader::new(streams, dynamodb, outbox_table))))
    }

    fn new(ports: Ports, source: Source) -> Self {
        Deliverer {
            ports,
            bus: domain::events::Memory::default(),
            also: None,
            published: Mutex::default(),
            source,
            failures: Mutex::default(),
            drop_next: AtomicUsize::new(0),
            draining: tokio::sync::Mutex::new(()),
            backoff: Duration::from_millis(20),
        }
    }

    /// Drops the next `count` deliveries before the handler sees them (a dead invocation):
    /// they come again, as Lambda retries them.
    pub fn drop_next(&self, count: usize) {
        self.drop_next.store(count, Ordering::SeqCst);
    }

    /// Publishes the change events to `bus` as well as to the local one.
    pub fn with_bus(mut self, bus: std::sync::Arc<dyn domain::events::EventBus>) -> Self {
        self.also = Some(bus);
        self
    }

    /// The change events published so far, oldest first.
    pub fn events(&self) -> Vec<domain::events::ChangeEvent> {
        self.bus.events()
    }

    /// Publishes an intent's events to the local bus, once per intent (a record delivered
    /// again publishes nothing more: consumers de-duplicate on the id, the local bus too).
    async fn publish(&self, intent: &domain::outbox::Intent) {
        let fresh: Vec<_> = {
            let mut published = self.published.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            intent.events.iter().filter(|event| published.insert(event.id.clone())).cloned().collect()
        };
        if !fresh.is_empty() {
            use domain::events::EventBus;
            self.bus.publish(&fresh).await;
            if let Some(also) = &self.also {
                let outcomes = domain::events::publish(also.as_ref(), &fresh, domain::deadline::Deadline::unbounded()).await;
                if let Some(Err(error)) = outcomes.iter().find(|outcome| outcome.is_err()) {
                    tracing::error!(reason = %error.reason, "change events not published to the emulator's bus");
                }
            }
        }
    }

    /// The failure destination's records so far.
    pub fn failures(&self) -> Vec<Failure> {
        self.failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    fn dropped(&self) -> bool {
        self.drop_next.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| left.checked_sub(1)).is_ok()
    }

    /// Delivers everything committed so far, retries included.
    pub async fn drain(&self) -> Result<Drained, domain::error::Error> {
        let _one_at_a_time = self.draining.lock().await;
        let mut drained = Drained::default();
        loop {
            let batch = self.next_batch().await?;
            if batch.is_empty() {
                return Ok(drained);
            }
            for (position, record) in batch {
                let mut attempts = 0;
                loop {
                    attempts += 1;
                    drained.deliveries += 1;
                    let delivered = !self.dropped() && self.deliver_one(&record).await;
                    if delivered {
                        break;
                    }
                    if attempts >= MAX_ATTEMPTS {
                        tracing::error!(position = %position, attempts, "a record kept failing; put on the failure list");
                        let batch = match &record {
                            Pending::Record(_, batch) => Some(batch.clone()),
                            Pending::Intent(_) => None,
                        };
                        self.failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(Failure {
                            position: position.clone(),
                            attempts,
                            batch,
                        });
                        drained.failed += 1;
                        break;
                    }
                    tokio::time::sleep(self.backoff * 2u32.pow(attempts - 1)).await;
                }
            }
        }
    }

    /// Consumes the failure list as the deliver function consumes the SQS failure
    /// destination: each failed record is delivered again (on DynamoDB, its batch read
    /// again from the stream by the function's queue handler); those that still need a try
    /// stay on the list. Answers how many were taken off.
    pub async fn redrive_failures(&self) -> usize {
        let _one_at_a_time = self.draining.lock().await;
        let failures = std::mem::take(&mut *self.failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
        let mut kept = Vec::new();
        let mut done = 0;
        for failure in failures {
            let delivered = match (&self.source, &failure.batch) {
                (Source::Stream(reader), Some(batch)) => {
                    let body = serde_json::json!({ "DDBStreamBatchInfo": batch }).to_string();
                    let event = serde_json::json!({
                        "Records": [{ "messageId": failure.position, "eventSource": "aws:sqs", "body": body }]
                    });
                    let meta = local_meta();
                    match deliver_function::handle_any(&self.ports, &reader.ranges, event, &meta).await {
                        Ok(answer) => answer["batchItemFailures"].as_array().is_some_and(Vec::is_empty),
                        Err(problem) => {
                            tracing::error!(problem = %problem, "the failure handler refused its event");
                            false
                        }
                    }
                }
                (Source::Embedded { store, .. }, _) => match failure.position.parse::<usize>() {
                    Ok(position) => match store.stream_after(position, 1).into_iter().next() {
                        Some((at, intent)) if at == position => self.deliver_one(&Pending::Intent(Box::new(intent))).await,
                        _ => true,
                    },
                    Err(_) => true,
                },
                (Source::Stream(_), None) => true,
            };
            if delivered {
                done += 1;
            } else {
                kept.push(failure);
            }
        }
        self.failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).extend(kept);
        done
    }

    /// The scheduled redrive (`domain::actions::redrive`), as the deliver function runs it.
    pub async fn redrive(&self) -> Result<domain::actions::redrive::Redriven, domain::error::Error> {
        deliver_function::handle_schedule(&self.ports, &local_meta()).await
    }

    /// Delivers in the background as intents are committed (the local server), and runs
    /// the redrive every `REDRIVE_EVERY`.
    pub async fn run(self: std::sync::Arc<Self>) {
        let mut last_redrive = tokio::time::Instant::now();
        loop {
            if let Err(error) = self.drain().await {
                tracing::error!(error = %error, "the local deliverer could not read the outbox; trying again");
            }
            if last_redrive.elapsed() >= REDRIVE_EVERY {
                last_redrive = tokio::time::Instant::now();
                self.redrive_failures().await;
                if let Err(error) = self.redrive().await {
                    tracing::error!(error = %error, "the local redrive failed; trying again later");
                }
            }
            match &self.source {
                Source::Embedded { store, .. } => {
                    let _ = tokio::time::timeout(Duration::from_millis(500), store.appended()).await;
                }
                Source::Stream(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }

    async fn next_batch(&self) -> Result<Vec<(String, Pending)>, domain::error::Error> {
        match &self.source {
            Source::Embedded { store, next } => {
                let start = *next.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                let intents = store.stream_after(start, BATCH);
                if let Some((last, _)) = intents.last() {
                    *next.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = last + 1;
                }
                Ok(intents.into_iter().map(|(position, intent)| (position.to_string(), Pending::Intent(Box::new(intent)))).collect())
            }
            Source::Stream(reader) => reader.next_batch().await,
        }
    }

    /// One attempt of one record: whether it was delivered (or needs nothing more).
    async fn deliver_one(&self, record: &Pending) -> bool {
        let meta = local_meta();
        match record {
            Pending::Intent(intent) => {
                let key = match self.ports.secrets.code_key().await {
                    Ok(key) => key,
                    Err(error) => {
                        tracing::error!(error = %error, "no code key");
                        return false;
                    }
                };
                self.publish(intent).await;
                match deliver(&self.ports.env, &self.ports.senders, &key, &meta, intent).await {
                    Ok(delivered) => !delivered.retry,
                    Err(error) => {
                        tracing::error!(error = %error, cause = ?std::error::Error::source(&error), "intent not delivered");
                        false
                    }
                }
            }
            Pending::Record(record, _) => {
                if let Ok(Some(intent)) = deliver_function::intent_of(record) {
                    self.publish(&intent).await;
                }
                let mut event = Event::default();
                event.records = vec![(**record).clone()];
                deliver_function::handle(&self.ports, event, &meta).await.batch_item_failures.is_empty()
            }
        }
    }
}

/// The meta of one local invocation.
fn local_meta() -> domain::pipeline::RequestMeta {
    deliver_function::meta(&format!("local-deliver-{}", domain::entropy::SystemEntropy::hex(4)), domain::deadline::Deadline::unbounded())
}

/// A record waiting for delivery (on DynamoDB, with the batch it would be reported in).
enum Pending {
    Intent(Box<domain::outbox::Intent>),
    Record(Box<EventRecord>, StreamBatch),
}

/// Reads the outbox table's stream (one shard on the emulator; shards in order of their
/// ids otherwise), remembering the position of each shard.
pub struct StreamReader {
    streams: aws_sdk_dynamodbstreams::Client,
    dynamodb: aws_sdk_dynamodb::Client,
    table: String,
    /// The stream's ARN and each shard's next iterator, once opened.
    position: tokio::sync::Mutex<Option<(String, HashMap<String, String>)>>,
    /// The stream read again by range (what the failure handler uses).
    ranges: DynamoStreams,
}

fn stream_error(error: impl std::error::Error + Send + Sync + 'static) -> domain::error::Error {
    domain::error::Error::internal(error)
}

impl StreamReader {
    pub fn new(streams: aws_sdk_dynamodbstreams::Client, dynamodb: aws_sdk_dynamodb::Client, table: String) -> Self {
        let ranges = DynamoStreams::new(streams.clone());
        StreamReader { streams, dynamodb, table, position: tokio::sync::Mutex::new(None), ranges }
    }

    /// The records not read yet, as Lambda hands them to a function.
    pub async fn read(&self) -> Result<Vec<EventRecord>, domain::error::Error> {
        let mut records = Vec::new();
        loop {
            let batch = self.next_batch().await?;
            if batch.is_empty() {
                return Ok(records);
            }
            records.extend(batch.into_iter().filter_map(|(_, pending)| match pending {
                Pending::Record(record, _) => Some(*record),
                Pending::Intent(_) => None,
            }));
        }
    }

    async fn next_batch(&self) -> Result<Vec<(String, Pending)>, domain::error::Error> {
        let mut position = self.position.lock().await;
        if position.is_none() {
            *position = Some(self.open().await?);
        }
        let (arn, iterators) = position.as_mut().expect("opened");
        let mut shards: Vec<String> = iterators.keys().cloned().collect();
        shards.sort();
        for shard in shards {
            let iterator = iterators[&shard].clone();
            let output = self
                .streams
                .get_records()
                .shard_iterator(iterator)
                .limit(BATCH as i32)
                .send()
                .await
                .map_err(|e| stream_error(aws_sdk_dynamodbstreams::Error::from(e)))?;
            if let Some(next) = output.next_shard_iterator() {
                iterators.insert(shard.clone(), next.to_owned());
            }
            let records: Vec<(String, Pending)> = output
                .records()
                .iter()
                .filter_map(deliver_function::event_record)
                .map(|record| {
                    let position = record.change.sequence_number.clone().unwrap_or_default();
                    let batch = StreamBatch {
                        shard_id: shard.clone(),
                        start_sequence_number: position.clone(),
                        end_sequence_number: position.clone(),
                        stream_arn: arn.clone(),
                    };
                    (position, Pending::Record(Box::new(record), batch))
                })
                .collect();
            if !records.is_empty() {
                return Ok(records);
            }
        }
        Ok(vec![])
    }

    /// Opens every shard of the table's latest stream at its start.
    async fn open(&self) -> Result<(String, HashMap<String, String>), domain::error::Error> {
        let table = self
            .dynamodb
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .map_err(|e| stream_error(aws_sdk_dynamodb::Error::from(e)))?;
        let arn = table
            .table()
            .and_then(|t| t.latest_stream_arn())
            .ok_or_else(|| domain::error::Error::internal("the outbox table has no stream"))?
            .to_owned();
        let description = self
            .streams
            .describe_stream()
            .stream_arn(&arn)
            .send()
            .await
            .map_err(|e| stream_error(aws_sdk_dynamodbstreams::Error::from(e)))?;
        let mut iterators = HashMap::new();
        for shard in description.stream_description().map(|d| d.shards()).unwrap_or_default() {
            let Some(id) = shard.shard_id() else { continue };
            let iterator = self
                .streams
                .get_shard_iterator()
                .stream_arn(&arn)
                .shard_id(id)
                .shard_iterator_type(ShardIteratorType::TrimHorizon)
                .send()
                .await
                .map_err(|e| stream_error(aws_sdk_dynamodbstreams::Error::from(e)))?;
            if let Some(iterator) = iterator.shard_iterator() {
                iterators.insert(id.to_owned(), iterator.to_owned());
            }
        }
        Ok((arn, iterators))
    }
}
