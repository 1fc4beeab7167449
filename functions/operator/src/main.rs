#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    gateway::bootstrap::run_http(gateway::bootstrap::env(), operator_function::handle).await
}
