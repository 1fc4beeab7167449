//! The suspend function: stops a user for good.

use domain::app::App;
use domain::error::Error;
use domain::usecases::lifecycle;
use gateway::routes::{SUSPEND, SUSPEND_USER};
use gateway::{Incoming, Reply};
use lambda_http::{Body, Request, Response};
use serde::Deserialize;

pub async fn handle(app: &App, request: Request) -> Response<Body> {
    gateway::serve(request, SUSPEND, async |incoming| route(app, incoming).await).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SuspendInput {
    reason: String,
}

async fn route(app: &App, incoming: Incoming) -> Result<Reply, Error> {
    match incoming.route.key {
        SUSPEND_USER => {
            let input: SuspendInput = incoming.json()?;
            let command = lifecycle::Suspend { organization: incoming.organization()?, user: incoming.user_id()?, reason: input.reason };
            Reply::json(200, &lifecycle::suspend(app, &incoming.meta(), command).await?)
        }
        other => unreachable!("route {other} is not served here"),
    }
}
