//! What the SDK floors share: the one DynamoDB read they make when the caller is
//! authenticated (or, for `floor-messaging`, when the stream batch holds records), so that
//! their first invocation can be timed against the functions' (every function reads at least
//! one record then). The start-up stage's events carry no claims and no records: there the
//! floors answer at once, as they always did.

use aws_sdk_dynamodb::types::AttributeValue;
use lambda_http::request::RequestContext;
use lambda_http::{Error, Request, RequestExt};

/// One `GetItem` on `USERS_TABLE` when the event carries the JWT authorizer's claims.
pub async fn read_if_authenticated(dynamodb: &aws_sdk_dynamodb::Client, request: &Request) -> Result<(), Error> {
    let authenticated = matches!(
        request.request_context_ref(),
        Some(RequestContext::ApiGatewayV2(context)) if context.authorizer.as_ref().is_some_and(|authorizer| authorizer.jwt.is_some())
    );
    if authenticated {
        read_one(dynamodb).await?;
    }
    Ok(())
}

/// One `GetItem` on `USERS_TABLE` (of an item that does not exist).
pub async fn read_one(dynamodb: &aws_sdk_dynamodb::Client) -> Result<(), Error> {
    let key = AttributeValue::S("floor".to_owned());
    dynamodb.get_item().table_name(std::env::var("USERS_TABLE")?).key("pk", key.clone()).key("sk", key).send().await?;
    Ok(())
}
