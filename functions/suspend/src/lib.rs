//! The suspend function: stops a user for good.

use domain::actions::suspend::Suspend;
use domain::env::Env;
use domain::error::Error;
use domain::pipeline::run;
use gateway::routes::SuspendRoute;
use gateway::{Incoming, Reply};
use lambda_http::{Body, Request, Response};
use serde::Deserialize;

pub async fn handle(env: &Env, request: Request) -> Response<Body> {
    gateway::serve(request, async |incoming: Incoming<SuspendRoute>| route(env, incoming).await).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SuspendInput {
    reason: String,
}

async fn route(env: &Env, incoming: Incoming<SuspendRoute>) -> Result<Reply, Error> {
    match incoming.route {
        SuspendRoute::SuspendUser => {
            let input: SuspendInput = incoming.json()?;
            let command = Suspend::new(incoming.organization()?, incoming.user_id()?, &input.reason)?;
            Reply::json(200, &run(env, &incoming.meta(), &command).await?.answer)
        }
    }
}
