use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let app: &'static domain::app::App = Box::leak(Box::new(gateway::bootstrap::messaging_app().await?));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<expiry_sweep_function::ScheduledEvent>| async move {
        expiry_sweep_function::handle(app, event.payload, &event.context.request_id).await.inspect_err(|error| {
            lambda_runtime::tracing::error!(cause = %gateway::cause_chain(error), "sweep failed");
        })
    }))
    .await
}
