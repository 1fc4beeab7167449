//! The activate function: the user confirms the emailed link and the SMS code; an admin
//! can resend fresh ones.

use domain::actions::activate::{ConfirmEmail, ConfirmMobile, Resend, ResendChannels};
use domain::env::{Env, SecretSource};
use domain::error::Error;
use domain::parse;
use domain::pipeline::run;
use gateway::routes::ActivateRoute;
use gateway::{Incoming, Reply};
use lambda_http::{Body, Request, Response};
use serde::Deserialize;

pub async fn handle(env: &Env, secrets: &dyn SecretSource, request: Request) -> Response<Body> {
    gateway::serve(request, async |incoming: Incoming<ActivateRoute>| route(env, secrets, incoming).await).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EmailInput {
    token: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MobileInput {
    organization_id: String,
    code: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ResendInput {
    #[serde(default, deserialize_with = "gateway::not_null")]
    email: Option<bool>,
    #[serde(default, deserialize_with = "gateway::not_null")]
    sms: Option<bool>,
}

async fn route(env: &Env, secrets: &dyn SecretSource, incoming: Incoming<ActivateRoute>) -> Result<Reply, Error> {
    let meta = incoming.meta();
    match incoming.route {
        ActivateRoute::ConfirmEmail => {
            let input: EmailInput = incoming.json()?;
            Reply::json(200, &run(env, &meta, &ConfirmEmail::new(&input.token)?).await?.answer)
        }
        ActivateRoute::ConfirmMobile => {
            let input: MobileInput = incoming.json()?;
            let organization = parse::organization_id("organization_id", &input.organization_id)?;
            let command = ConfirmMobile::new(organization, &input.code, secrets.code_key().await?)?;
            Reply::json(200, &run(env, &meta, &command).await?.answer)
        }
        ActivateRoute::ResendActivation => {
            let input: ResendInput = if incoming.body_is_empty() { ResendInput::default() } else { incoming.json()? };
            let asked = match (input.email, input.sms) {
                (None, None) => None,
                (email, sms) => Some(ResendChannels { email: email.unwrap_or(false), sms: sms.unwrap_or(false) }),
            };
            let command =
                Resend { organization: incoming.organization()?, user: incoming.user_id()?, asked, key: secrets.code_key().await? };
            Reply::json(200, &run(env, &meta, &command).await?.answer)
        }
    }
}
