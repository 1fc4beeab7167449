//! The floor of a function that reads the code key at start-up (subscribe, activate,
//! modify): the Lambda HTTP runtime, a DynamoDB client (aws-config, the SDK's default HTTPS
//! client), and one Secrets Manager `GetSecretValue` of `CODE_KEY_SECRET_ARN` before the
//! first invocation, answering `{}` (after one `GetItem` when the caller is authenticated:
//! `floor::read_if_authenticated`).

use lambda_http::{Body, Error, Request, Response, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let config = aws_config::load_from_env().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&config);
    let secret = std::env::var("CODE_KEY_SECRET_ARN")?;
    let key = aws_sdk_secretsmanager::Client::new(&config).get_secret_value().secret_id(secret).send().await?;
    let state = &(dynamodb, key);
    lambda_http::run(service_fn(move |request: Request| async move {
        floor::read_if_authenticated(&state.0, &request).await?;
        Ok::<_, Error>(Response::builder().status(200).header("content-type", "application/json").body(Body::from("{}"))?)
    }))
    .await
}
