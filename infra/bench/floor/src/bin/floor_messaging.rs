//! The floor of `deliver`: the Lambda runtime, DynamoDB, SES v2 and SNS clients built from
//! the environment and one Secrets Manager `GetSecretValue` of `CODE_KEY_SECRET_ARN` before
//! the first invocation (aws-config, the SDK's default HTTPS client), answering a stream
//! event with no failures (after one `GetItem` when the batch holds records:
//! `floor::read_one`).

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = aws_config::load_from_env().await;
    let secret = std::env::var("CODE_KEY_SECRET_ARN")?;
    let key = aws_sdk_secretsmanager::Client::new(&config).get_secret_value().secret_id(secret).send().await?;
    let clients = (aws_sdk_dynamodb::Client::new(&config), aws_sdk_sesv2::Client::new(&config), aws_sdk_sns::Client::new(&config), key);
    let clients = &clients;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        if event.payload["Records"].as_array().is_some_and(|records| !records.is_empty()) {
            floor::read_one(&clients.0).await?;
        }
        Ok::<_, Error>(json!({ "batchItemFailures": [] }))
    }))
    .await
}
