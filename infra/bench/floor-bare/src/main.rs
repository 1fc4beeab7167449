//! The bare floor: what any Rust Lambda on `lambda_http` costs, with no SDK client and no
//! configuration read, answering `{}`. Every function's start-up is budgeted against it.

use lambda_http::{Body, Error, Request, Response, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    lambda_http::run(service_fn(|_: Request| async {
        Ok::<_, Error>(Response::builder().status(200).header("content-type", "application/json").body(Body::from("{}"))?)
    }))
    .await
}
