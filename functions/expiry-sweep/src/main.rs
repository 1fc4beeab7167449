use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    gateway::observability::init();
    let env: &'static domain::env::Env = Box::leak(Box::new(gateway::bootstrap::env().await?));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<expiry_sweep_function::ScheduledEvent>| async move {
        let deadline = domain::deadline::Deadline::from_epoch_millis(event.context.deadline);
        expiry_sweep_function::handle(env, event.payload, &event.context.request_id, deadline).await.inspect_err(|error| {
            lambda_runtime::tracing::error!(cause = %gateway::cause_chain(error), "sweep failed");
        })
    }))
    .await
}
