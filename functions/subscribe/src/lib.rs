//! The subscribe function: quotes and buys annual seats from the organization's balance.

use std::collections::BTreeSet;

use domain::actions::renew::{QuoteRenewal, Renew};
use domain::actions::subscribe::{QuoteSubscription, Subscribe, SubscribePerson, Subscription};
use domain::env::{Env, SecretSource};
use domain::error::{Error, Rejection};
use domain::organization::OrganizationId;
use domain::parse;
use domain::pipeline::run;
use gateway::routes::SubscribeRoute;
use gateway::{Incoming, Reply};
use lambda_http::{Body, Request, Response};
use serde::Deserialize;

pub async fn handle(env: &Env, secrets: &dyn SecretSource, request: Request) -> Response<Body> {
    gateway::serve(request, async |incoming: Incoming<SubscribeRoute>| route(env, secrets, incoming).await).await
}

async fn route(env: &Env, secrets: &dyn SecretSource, incoming: Incoming<SubscribeRoute>) -> Result<Reply, Error> {
    let meta = incoming.meta();
    let pricing = env.settings.pricing.clone();
    match incoming.route {
        SubscribeRoute::Quote => {
            let command = QuoteSubscription { subscription: subscription(&incoming)?, pricing };
            Reply::json(200, &run(env, &meta, &command).await?.answer)
        }
        SubscribeRoute::Subscribe => {
            let key = incoming.idempotency_key()?;
            let subscription = subscription(&incoming)?;
            let digest = domain::idempotency::request_digest(&incoming.json_value()?);
            let expected = incoming.json::<SubscriptionInput>()?.expected_total_halalas.map(domain::money::Halalas::new);
            let command = Subscribe::new(&meta, subscription, pricing, secrets.code_key().await?, key, digest).expecting(expected);
            Reply::outcome(201, &run(env, &meta, &command).await?)
        }
        SubscribeRoute::RenewalQuote => {
            let command = QuoteRenewal { organization: incoming.organization()?, user: incoming.user_id()?, pricing };
            Reply::json(200, &run(env, &meta, &command).await?.answer)
        }
        SubscribeRoute::Renew => {
            let key = incoming.idempotency_key()?;
            if !incoming.body_is_empty() {
                incoming.json::<RenewInput>()?;
            }
            let command = Renew::new(&meta, incoming.organization()?, incoming.user_id()?, pricing, key);
            Reply::outcome(201, &run(env, &meta, &command).await?)
        }
    }
}

/// A renewal has nothing to say beyond its path; an empty object is accepted.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RenewInput {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PersonInput {
    id: String,
    establishments: Vec<String>,
    #[serde(default, deserialize_with = "gateway::not_null")]
    user_type: Option<String>,
    #[serde(default, deserialize_with = "gateway::not_null")]
    language: Option<String>,
    #[serde(default, deserialize_with = "gateway::not_null")]
    job_title: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscriptionInput {
    persons: Vec<PersonInput>,
    /// The total the caller's quote showed (subscribe only).
    #[serde(default, deserialize_with = "gateway::not_null")]
    expected_total_halalas: Option<u64>,
}

fn subscription(incoming: &Incoming<SubscribeRoute>) -> Result<Subscription, Rejection> {
    let organization: OrganizationId = incoming.organization()?;
    let input: SubscriptionInput = incoming.json()?;
    let persons = input
        .persons
        .iter()
        .enumerate()
        .map(|(n, person)| {
            let field = |name: &str| format!("persons[{n}].{name}");
            Ok(SubscribePerson {
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
    Subscription::new(organization, persons)
}
