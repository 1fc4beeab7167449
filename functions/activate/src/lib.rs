//! The activate function: the user confirms the emailed link and the SMS code; an admin
//! can resend fresh ones.

use domain::app::App;
use domain::error::Error;
use domain::parse;
use domain::usecases::activation;
use gateway::routes::{ACTIVATE, CONFIRM_EMAIL, CONFIRM_MOBILE, RESEND_ACTIVATION};
use gateway::{Incoming, Reply};
use lambda_http::{Body, Request, Response};
use serde::Deserialize;

pub async fn handle(app: &App, request: Request) -> Response<Body> {
    gateway::serve(request, ACTIVATE, async |incoming| route(app, incoming).await).await
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
    email: Option<bool>,
    sms: Option<bool>,
}

async fn route(app: &App, incoming: Incoming) -> Result<Reply, Error> {
    match incoming.route.key {
        CONFIRM_EMAIL => {
            let input: EmailInput = incoming.json()?;
            Reply::json(200, &activation::confirm_email(app, &incoming.request_id, &input.token).await?)
        }
        CONFIRM_MOBILE => {
            let input: MobileInput = incoming.json()?;
            let organization = parse::organization_id("organization_id", &input.organization_id)?;
            Reply::json(200, &activation::confirm_mobile(app, &incoming.meta(), &organization, &input.code).await?)
        }
        RESEND_ACTIVATION => {
            let organization = incoming.organization()?;
            let user = incoming.user_id()?;
            let input: ResendInput = if incoming.body_is_empty() { ResendInput::default() } else { incoming.json()? };
            let asked = match (input.email, input.sms) {
                (None, None) => None,
                (email, sms) => Some(activation::ResendChannels { email: email.unwrap_or(false), sms: sms.unwrap_or(false) }),
            };
            Reply::json(200, &activation::resend(app, &incoming.meta(), &organization, &user, asked).await?)
        }
        other => unreachable!("route {other} is not served here"),
    }
}
