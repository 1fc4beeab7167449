#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    let ports = async { Ok((gateway::bootstrap::env().await?, gateway::bootstrap::secrets().await?)) };
    gateway::bootstrap::run_http(ports, |(env, secrets), request| directory_function::handle(env, secrets.as_ref(), request)).await
}
