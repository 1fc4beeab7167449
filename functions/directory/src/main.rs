#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    gateway::bootstrap::run_http(gateway::bootstrap::env(), directory_function::handle).await
}
