//! Change events to an Amazon EventBridge bus with `PutEvents`: at most 10 entries a call
//! (the API's limit), each entry the CloudEvent as its `Detail`, its type as `DetailType`.
//! An entry the bus refuses is answered with its error code: throttling and internal errors
//! may pass (tried again), anything else does not.

use async_trait::async_trait;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use domain::events::{BUS_SOURCE, ChangeEvent, EventBus, PublishError};

use crate::sdk::LazyClient;

/// Entries of one `PutEvents` call.
pub const ENTRIES_PER_CALL: usize = 10;

pub struct EventBridgeBus {
    client: LazyClient<aws_sdk_eventbridge::Client>,
    bus: String,
}

impl EventBridgeBus {
    pub fn new(client: LazyClient<aws_sdk_eventbridge::Client>, bus: String) -> Self {
        EventBridgeBus { client, bus }
    }
}

fn transient(code: &str) -> bool {
    matches!(code, "ThrottlingException" | "InternalException" | "InternalFailure" | "ServiceUnavailable")
}

#[async_trait]
impl EventBus for EventBridgeBus {
    async fn publish(&self, events: &[ChangeEvent]) -> Vec<Result<(), PublishError>> {
        let mut results = Vec::with_capacity(events.len());
        for chunk in events.chunks(ENTRIES_PER_CALL) {
            let entries: Vec<PutEventsRequestEntry> = chunk
                .iter()
                .map(|event| {
                    PutEventsRequestEntry::builder()
                        .event_bus_name(&self.bus)
                        .source(BUS_SOURCE)
                        .detail_type(&event.kind)
                        .detail(serde_json::to_string(event).expect("an event serializes"))
                        .time(aws_sdk_eventbridge::primitives::DateTime::from_secs(event.time.unix_timestamp()))
                        .build()
                })
                .collect();
            match self.client.get().put_events().set_entries(Some(entries)).send().await {
                Ok(output) => {
                    let answered = output.entries();
                    for n in 0..chunk.len() {
                        let result = match answered.get(n).and_then(|entry| entry.error_code()) {
                            None if n < answered.len() => Ok(()),
                            None => Err(PublishError { reason: "no_answer".to_owned(), transient: true }),
                            Some(code) => Err(PublishError { reason: code.to_owned(), transient: transient(code) }),
                        };
                        results.push(result);
                    }
                }
                Err(error) => {
                    use aws_sdk_eventbridge::error::ProvideErrorMetadata;
                    let code = error.code().unwrap_or("bus_unreachable").to_owned();
                    // The call failed whole: every entry of it may be tried again, unless the
                    // bus refused the request itself (a missing bus, no permission).
                    let retry = matches!(
                        error,
                        aws_sdk_eventbridge::error::SdkError::DispatchFailure(_)
                            | aws_sdk_eventbridge::error::SdkError::TimeoutError(_)
                            | aws_sdk_eventbridge::error::SdkError::ResponseError(_)
                    ) || transient(&code);
                    results.extend(chunk.iter().map(|_| Err(PublishError { reason: code.clone(), transient: retry })));
                }
            }
        }
        results
    }
}
