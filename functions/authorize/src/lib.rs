//! The authorize function: the check API other platform services ask — may this user use
//! this service on this establishment now? One DynamoDB read per check.

use domain::actions::authorize::{Check, check};
use domain::env::Env;
use domain::error::Error;
use domain::parse;
use gateway::routes::AuthorizeRoute;
use gateway::{Incoming, Reply};
use lambda_http::{Body, Request, Response};
use serde::Deserialize;

pub async fn handle(env: &Env, request: Request) -> Response<Body> {
    gateway::serve(request, async |incoming: Incoming<AuthorizeRoute>| route(env, incoming).await).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckInput {
    organization_id: String,
    user_id: String,
    establishment_id: String,
    service: String,
}

async fn route(env: &Env, incoming: Incoming<AuthorizeRoute>) -> Result<Reply, Error> {
    match incoming.route {
        AuthorizeRoute::Check => {
            let input: CheckInput = incoming.json()?;
            let command = Check {
                organization: parse::organization_id("organization_id", &input.organization_id)?,
                user: parse::person_id("user_id", &input.user_id)?,
                establishment: parse::establishment_id("establishment_id", &input.establishment_id)?,
                service: input.service,
            };
            Reply::json(200, &check(env, &incoming.meta(), command).await?)
        }
    }
}
