//! The deliver function: consumes the outbox table's DynamoDB stream. Each new intent is
//! delivered (`domain::actions::deliver`); a record that must come again — a transient
//! failure of SES or SNS, an unreadable item, a failure of ours — is reported in
//! `batchItemFailures`, so the event source mapping retries it (bisecting a failing batch),
//! and after its retries puts it on the failure destination.

use std::collections::HashMap;

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use aws_sdk_dynamodb::types::AttributeValue;
use domain::actions::deliver::{Delivered, deliver};
use domain::env::{Env, SecretSource, Senders};
use domain::outbox::Intent;
use domain::pipeline::RequestMeta;
use domain::policy::Caller;
use domain::store::Record;

/// What `deliver` runs with.
pub struct Ports {
    pub env: Env,
    pub secrets: std::sync::Arc<dyn SecretSource>,
    pub senders: Senders,
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

/// Delivers every new intent of a batch; answers which records must come again.
pub async fn handle(ports: &Ports, event: Event, meta: &RequestMeta) -> DynamoDbEventResponse {
    let mut response = DynamoDbEventResponse::default();
    let mut key = None;
    let mut out_of_time = false;
    for record in &event.records {
        // Once the time left cannot hold an intent, the rest of the batch comes again.
        out_of_time |= !meta.deadline.allows(domain::deadline::DELIVER_INTENT_BUDGET);
        let retry = match intent_of(record) {
            _ if out_of_time => true,
            Ok(None) => false,
            Ok(Some(intent)) => {
                let key = match &key {
                    Some(key) => Ok(key),
                    None => ports.secrets.code_key().await.map(|loaded| &*key.insert(loaded)),
                };
                let delivered = match key {
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
        };
        if retry {
            let mut failure = DynamoDbBatchItemFailure::default();
            failure.item_identifier = record.change.sequence_number.clone();
            response.batch_item_failures.push(failure);
        }
    }
    response
}

/// The request meta of one invocation.
pub fn meta(request_id: &str, deadline: domain::deadline::Deadline) -> RequestMeta {
    RequestMeta::new(Caller::Anonymous, request_id).with_deadline(deadline)
}
