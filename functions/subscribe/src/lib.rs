//! The subscribe function: quotes and buys annual seats from the organization's balance.

use std::collections::BTreeSet;

use domain::app::App;
use domain::error::{Error, Rejection};
use domain::organization::OrganizationId;
use domain::parse;
use domain::usecases::billing;
use gateway::routes::{QUOTE, RENEW, SUBSCRIBE, SUBSCRIBE_FUNCTION};
use gateway::{Incoming, Reply, keyed_reply};
use lambda_http::{Body, Request, Response};
use serde::Deserialize;

pub async fn handle(app: &App, request: Request) -> Response<Body> {
    gateway::serve(request, SUBSCRIBE_FUNCTION, async |incoming| route(app, incoming).await).await
}

async fn route(app: &App, incoming: Incoming) -> Result<Reply, Error> {
    match incoming.route.key {
        QUOTE => {
            let command = subscription(&incoming)?;
            Reply::json(200, &billing::quote(app, &incoming.meta(), command).await?)
        }
        SUBSCRIBE => {
            let key = incoming.idempotency_key()?;
            let command = subscription(&incoming)?;
            let digest = domain::idempotency::request_digest(&incoming.json_value()?);
            Ok(keyed_reply(billing::subscribe(app, &incoming.meta(), command, key, &digest).await?))
        }
        RENEW => {
            let key = incoming.idempotency_key()?;
            let command = billing::Renew { organization: incoming.organization()?, user: incoming.user_id()? };
            // The key covers the user renewed: the same key for another user is a reuse.
            let body = if incoming.body_is_empty() { serde_json::json!({}) } else { incoming.json_value()? };
            let digest = domain::idempotency::request_digest(&serde_json::json!({ "user": command.user, "body": body }));
            Ok(keyed_reply(billing::renew(app, &incoming.meta(), command, key, &digest).await?))
        }
        other => unreachable!("route {other} is not served here"),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PersonInput {
    id: String,
    establishments: Vec<String>,
    user_type: Option<String>,
    language: Option<String>,
    job_title: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscriptionInput {
    persons: Vec<PersonInput>,
}

fn subscription(incoming: &Incoming) -> Result<billing::Subscribe, Rejection> {
    let organization: OrganizationId = incoming.organization()?;
    let input: SubscriptionInput = incoming.json()?;
    let persons = input
        .persons
        .iter()
        .enumerate()
        .map(|(n, person)| {
            let field = |name: &str| format!("persons[{n}].{name}");
            Ok(billing::SubscribePerson {
                id: parse::person_id(&field("id"), &person.id)?,
                establishments: person
                    .establishments
                    .iter()
                    .map(|e| parse::establishment_id(&field("establishments"), e))
                    .collect::<Result<BTreeSet<_>, _>>()?,
                user_type: person.user_type.as_deref().map(|t| parse::user_type(&field("user_type"), t)).transpose()?,
                language: person.language.as_deref().map(|l| parse::language(&field("language"), l)).transpose()?,
                job_title: person.job_title.as_deref().map(|t| parse::text(&field("job_title"), t, 100)).transpose()?,
            })
        })
        .collect::<Result<Vec<_>, Rejection>>()?;
    Ok(billing::Subscribe { organization, persons })
}
