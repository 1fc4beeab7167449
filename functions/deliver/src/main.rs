use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    gateway::observability::init();
    let ports = deliver_function::Ports {
        env: gateway::bootstrap::env().await?,
        secrets: gateway::bootstrap::secrets().await?,
        senders: gateway::bootstrap::senders().await?,
    };
    let ports: &'static deliver_function::Ports = Box::leak(Box::new(ports));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<aws_lambda_events::event::dynamodb::Event>| async move {
        let deadline = domain::deadline::Deadline::from_epoch_millis(event.context.deadline);
        let meta = deliver_function::meta(&event.context.request_id, deadline);
        Ok::<_, std::convert::Infallible>(deliver_function::handle(ports, event.payload, &meta).await)
    }))
    .await
}
