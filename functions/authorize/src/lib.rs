//! The authorize function: the check API other platform services ask — may this user use
//! this service on this establishment now? One DynamoDB read per check.

use domain::app::App;
use domain::error::Error;
use domain::parse;
use domain::usecases::permissions;
use gateway::routes::{AUTHORIZE, CHECK};
use gateway::{Incoming, Reply};
use lambda_http::{Body, Request, Response};
use serde::Deserialize;

pub async fn handle(app: &App, request: Request) -> Response<Body> {
    gateway::serve(request, AUTHORIZE, async |incoming| route(app, incoming).await).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckInput {
    organization_id: String,
    user_id: String,
    establishment_id: String,
    service: String,
}

async fn route(app: &App, incoming: Incoming) -> Result<Reply, Error> {
    match incoming.route.key {
        CHECK => {
            let input: CheckInput = incoming.json()?;
            let command = permissions::Check {
                organization: parse::organization_id("organization_id", &input.organization_id)?,
                user: parse::person_id("user_id", &input.user_id)?,
                establishment: parse::establishment_id("establishment_id", &input.establishment_id)?,
                service: input.service,
            };
            Reply::json(200, &permissions::check(app, &incoming.meta(), command).await?)
        }
        other => unreachable!("route {other} is not served here"),
    }
}
