#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    gateway::bootstrap::run_http(gateway::bootstrap::storage_app(), grant_function::handle).await
}
