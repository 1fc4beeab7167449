use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    gateway::observability::init();
    let ports = deliver_function::Ports {
        env: gateway::bootstrap::env().await?,
        secrets: gateway::bootstrap::secrets().await?,
        senders: gateway::bootstrap::senders().await?,
    };
    let config = aws_adapters::sdk::from_env()?;
    let streams = deliver_function::DynamoStreams::new(aws_adapters::sdk::LazyClient::new(config, aws_sdk_dynamodbstreams::Client::new));
    let ports: &'static deliver_function::Ports = Box::leak(Box::new(ports));
    let streams: &'static deliver_function::DynamoStreams = Box::leak(Box::new(streams));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| async move {
        let deadline = domain::deadline::Deadline::from_epoch_millis(event.context.deadline);
        let meta = deliver_function::meta(&event.context.request_id, deadline);
        deliver_function::handle_any(ports, streams, event.payload, &meta).await
    }))
    .await
}
