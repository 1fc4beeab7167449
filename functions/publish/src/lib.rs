//! The publish function: consumes the outbox table's DynamoDB stream (beside `deliver`, on
//! its own event source mapping) and publishes each new intent's change events to the
//! EventBridge bus (`domain::events`). Nothing here is on a request's path: a change is
//! committed with its events, and publishing never delays or fails it. A record whose
//! events the bus keeps refusing is reported in `batchItemFailures`, so the mapping retries
//! it (its events keep their ids: a consumer de-duplicates), and after its retries it goes
//! to the failure destination.

use aws_lambda_events::event::dynamodb::Event;
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use domain::events::{EventBus, publish};
use domain::pipeline::RequestMeta;

/// Publishes the events of every new intent of a batch, all at once (the bus puts them in
/// calls of 10); answers which records must come again.
pub async fn handle(bus: &dyn EventBus, event: Event, meta: &RequestMeta) -> DynamoDbEventResponse {
    let mut retry = vec![false; event.records.len()];
    let mut events = Vec::new();
    let mut owners = Vec::new();
    for (n, record) in event.records.iter().enumerate() {
        match deliver_function::intent_of(record) {
            Ok(None) => {}
            Ok(Some(intent)) => {
                owners.extend(std::iter::repeat_n(n, intent.events.len()));
                events.extend(intent.events);
            }
            Err(problem) => {
                tracing::error!(problem = %problem, "an unreadable record on the outbox stream");
                retry[n] = true;
            }
        }
    }
    let outcomes = publish(bus, &events, meta.deadline).await;
    let mut published = 0;
    for ((outcome, owner), event) in outcomes.iter().zip(&owners).zip(&events) {
        match outcome {
            Ok(()) => published += 1,
            Err(error) => {
                tracing::error!(event = %event.id, reason = %error.reason, transient = error.transient, "an event not published");
                retry[*owner] = true;
            }
        }
    }
    let mut response = DynamoDbEventResponse::default();
    for (record, retry) in event.records.iter().zip(retry) {
        if retry {
            let mut failure = DynamoDbBatchItemFailure::default();
            failure.item_identifier = record.change.sequence_number.clone();
            response.batch_item_failures.push(failure);
        }
    }
    tracing::info!(records = event.records.len(), published, failed = response.batch_item_failures.len(), "batch published");
    response
}
