//! The operator function: onboards organizations, keeps the person registry, credits
//! balances. Callers carry the `operator` role claim.

use std::collections::BTreeSet;

use domain::actions::directory::OrganizationView;
use domain::actions::operator;
use domain::env::Env;
use domain::error::Error;
use domain::organization::{Establishment, PricingPlan, SizeTier};
use domain::parse;
use domain::person::{Person, PersonName};
use domain::pipeline::run;
use gateway::routes::OperatorRoute;
use gateway::{Incoming, Reply};
use lambda_http::{Body, Request, Response};
use serde::{Deserialize, Serialize};

pub async fn handle(env: &Env, request: Request) -> Response<Body> {
    gateway::serve(request, async |incoming: Incoming<OperatorRoute>| route(env, incoming).await).await
}

async fn route(env: &Env, incoming: Incoming<OperatorRoute>) -> Result<Reply, Error> {
    match incoming.route {
        OperatorRoute::CreateOrganization => create_organization(env, &incoming).await,
        OperatorRoute::SavePerson => save_person(env, &incoming).await,
        OperatorRoute::CreditBalance => credit(env, &incoming).await,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EstablishmentInput {
    id: String,
    name: String,
    size: SizeTier,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateOrganization {
    unified_number: String,
    name: String,
    pricing_plan: PricingPlan,
    manager_id: String,
    establishments: Vec<EstablishmentInput>,
}

async fn create_organization(env: &Env, incoming: &Incoming<OperatorRoute>) -> Result<Reply, Error> {
    let input: CreateOrganization = incoming.json()?;
    let establishments = input
        .establishments
        .iter()
        .enumerate()
        .map(|(n, e)| {
            Ok(Establishment {
                id: parse::establishment_id(&format!("establishments[{n}].id"), &e.id)?,
                name: parse::text(&format!("establishments[{n}].name"), &e.name, 200)?,
                size: e.size,
            })
        })
        .collect::<Result<Vec<_>, domain::error::Rejection>>()?;
    let command = operator::Onboard::new(
        parse::organization_id("unified_number", &input.unified_number)?,
        parse::text("name", &input.name, 200)?,
        input.pricing_plan,
        parse::person_id("manager_id", &input.manager_id)?,
        establishments,
    )?;
    let organization = run(env, &incoming.meta(), &command).await?.answer;
    Reply::json(201, &OrganizationView::of(&organization))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NameInput {
    ar: Option<String>,
    en: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SavePerson {
    name: NameInput,
    nationality: String,
    iqama_expiry: Option<String>,
    #[serde(default)]
    employers: Vec<String>,
    email: String,
    mobile: String,
}

/// A registry entry as the API shows it.
#[derive(Serialize)]
struct PersonView<'a> {
    id: &'a str,
    name: &'a PersonName,
    nationality: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    iqama_expiry: Option<String>,
    employers: Vec<&'a str>,
    email: &'a str,
    mobile: &'a str,
    updated_at: String,
}

impl<'a> From<&'a Person> for PersonView<'a> {
    fn from(person: &'a Person) -> Self {
        PersonView {
            id: person.id.as_str(),
            name: &person.name,
            nationality: person.nationality.as_str(),
            iqama_expiry: person.iqama_expiry.map(|d| d.to_string()),
            employers: person.employers.iter().map(|e| e.as_str()).collect(),
            email: person.email.as_str(),
            mobile: person.mobile.as_str(),
            updated_at: domain::clock::key_timestamp(person.updated_at),
        }
    }
}

async fn save_person(env: &Env, incoming: &Incoming<OperatorRoute>) -> Result<Reply, Error> {
    let id = parse::person_id("id", incoming.param("id"))?;
    let input: SavePerson = incoming.json()?;
    let optional_text = |field: &str, value: &Option<String>| value.as_deref().map(|v| parse::text(field, v, 200)).transpose();
    let employers = input
        .employers
        .iter()
        .enumerate()
        .map(|(n, e)| parse::establishment_id(&format!("employers[{n}]"), e))
        .collect::<Result<BTreeSet<_>, _>>()?;
    let command = operator::SavePerson {
        id,
        name: PersonName { ar: optional_text("name.ar", &input.name.ar)?, en: optional_text("name.en", &input.name.en)? },
        nationality: parse::nationality("nationality", &input.nationality)?,
        iqama_expiry: input.iqama_expiry.as_deref().map(|d| parse::date("iqama_expiry", d)).transpose()?,
        employers,
        email: parse::email("email", &input.email)?,
        mobile: parse::mobile("mobile", &input.mobile)?,
    }
    .check()?;
    let saved = run(env, &incoming.meta(), &command).await?.answer;
    Reply::json(if saved.created { 201 } else { 200 }, &PersonView::from(&saved.person))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreditInput {
    amount_halalas: u64,
    payment_reference: String,
}

async fn credit(env: &Env, incoming: &Incoming<OperatorRoute>) -> Result<Reply, Error> {
    let organization = incoming.organization()?;
    let input: CreditInput = incoming.json()?;
    let command = operator::Credit::new(organization, domain::money::Halalas::new(input.amount_halalas), &input.payment_reference)?;
    Reply::outcome(201, &run(env, &incoming.meta(), &command).await?)
}
