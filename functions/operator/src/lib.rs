//! The operator function: onboards organizations, keeps the person registry, credits
//! balances. Callers carry the `operator` role claim.

use std::collections::BTreeSet;

use domain::app::App;
use domain::error::Error;
use domain::organization::{Establishment, PricingPlan, SizeTier};
use domain::parse;
use domain::person::{Person, PersonName};
use domain::usecases::{billing, onboarding};
use gateway::routes::{CREATE_ORGANIZATION, CREDIT_BALANCE, OPERATOR, SAVE_PERSON};
use gateway::{Incoming, Reply, keyed_reply};
use lambda_http::{Body, Request, Response};
use serde::{Deserialize, Serialize};

pub async fn handle(app: &App, request: Request) -> Response<Body> {
    gateway::serve(request, OPERATOR, async |incoming| route(app, incoming).await).await
}

async fn route(app: &App, incoming: Incoming) -> Result<Reply, Error> {
    match incoming.route.key {
        CREATE_ORGANIZATION => create_organization(app, &incoming).await,
        SAVE_PERSON => save_person(app, &incoming).await,
        CREDIT_BALANCE => credit(app, &incoming).await,
        other => unreachable!("route {other} is not served here"),
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

async fn create_organization(app: &App, incoming: &Incoming) -> Result<Reply, Error> {
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
    let command = onboarding::Onboard {
        id: parse::organization_id("unified_number", &input.unified_number)?,
        name: parse::text("name", &input.name, 200)?,
        plan: input.pricing_plan,
        manager: parse::person_id("manager_id", &input.manager_id)?,
        establishments,
    };
    let organization = onboarding::onboard(app, &incoming.meta(), command).await?;
    Reply::json(201, &domain::usecases::organizations::OrganizationView::of(&organization))
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

async fn save_person(app: &App, incoming: &Incoming) -> Result<Reply, Error> {
    let id = parse::person_id("id", incoming.param("id"))?;
    let input: SavePerson = incoming.json()?;
    let optional_text = |field: &str, value: &Option<String>| value.as_deref().map(|v| parse::text(field, v, 200)).transpose();
    let employers = input
        .employers
        .iter()
        .enumerate()
        .map(|(n, e)| parse::establishment_id(&format!("employers[{n}]"), e))
        .collect::<Result<BTreeSet<_>, _>>()?;
    let command = onboarding::SavePerson {
        id,
        name: PersonName { ar: optional_text("name.ar", &input.name.ar)?, en: optional_text("name.en", &input.name.en)? },
        nationality: parse::nationality("nationality", &input.nationality)?,
        iqama_expiry: input.iqama_expiry.as_deref().map(|d| parse::date("iqama_expiry", d)).transpose()?,
        employers,
        email: parse::email("email", &input.email)?,
        mobile: parse::mobile("mobile", &input.mobile)?,
    };
    let saved = onboarding::save_person(app, &incoming.meta(), command).await?;
    Reply::json(if saved.created { 201 } else { 200 }, &PersonView::from(&saved.person))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreditInput {
    amount_halalas: u64,
    payment_reference: String,
}

async fn credit(app: &App, incoming: &Incoming) -> Result<Reply, Error> {
    let organization = incoming.organization()?;
    let input: CreditInput = incoming.json()?;
    let command = billing::Credit {
        organization,
        amount: domain::money::Halalas::new(input.amount_halalas),
        payment_reference: input.payment_reference,
    };
    Ok(keyed_reply(billing::credit(app, &incoming.meta(), command).await?))
}
