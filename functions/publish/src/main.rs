use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    gateway::observability::init();
    let config = aws_adapters::sdk::from_env()?;
    let bus_name = std::env::var("EVENT_BUS_NAME").map_err(|_| "EVENT_BUS_NAME is not set")?;
    let bus =
        aws_adapters::events::EventBridgeBus::new(aws_adapters::sdk::LazyClient::new(config, aws_sdk_eventbridge::Client::new), bus_name);
    let bus: &'static aws_adapters::events::EventBridgeBus = Box::leak(Box::new(bus));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<aws_lambda_events::event::dynamodb::Event>| async move {
        let deadline = domain::deadline::Deadline::from_epoch_millis(event.context.deadline);
        let meta = deliver_function::meta(&event.context.request_id, deadline);
        Ok::<_, std::convert::Infallible>(publish_function::handle(bus, event.payload, &meta).await)
    }))
    .await
}
