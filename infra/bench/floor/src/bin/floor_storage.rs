//! The floor of a storage function (operator, grant, authorize, suspend, directory, and the
//! sweep): the Lambda HTTP runtime and a DynamoDB client built from the environment by
//! aws-config, with the SDK's default HTTPS client, answering `{}` (after one `GetItem` when
//! the caller is authenticated: `floor::read_if_authenticated`).

use lambda_http::{Body, Error, Request, Response, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let config = aws_config::load_from_env().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&config);
    let dynamodb = &dynamodb;
    lambda_http::run(service_fn(move |request: Request| async move {
        floor::read_if_authenticated(dynamodb, &request).await?;
        Ok::<_, Error>(Response::builder().status(200).header("content-type", "application/json").body(Body::from("{}"))?)
    }))
    .await
}
