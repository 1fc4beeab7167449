//! The grant function: the service catalog, each user's permissions per establishment and
//! service, and the organization's settings on who may subscribe (the manager's rules).

use std::collections::{BTreeMap, BTreeSet};

use domain::actions::grant::{self, ChangeSettings, SetGrants};
use domain::env::Env;
use domain::error::{Error, Kind, Rejection};
use domain::parse;
use domain::pipeline::run;
use gateway::routes::GrantRoute;
use gateway::{Incoming, Reply};
use lambda_http::{Body, Request, Response};
use serde::Deserialize;

pub async fn handle(env: &Env, request: Request) -> Response<Body> {
    gateway::serve(request, async |incoming: Incoming<GrantRoute>| route(env, incoming).await).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetPermissions {
    version: u64,
    grants: BTreeMap<String, Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsInput {
    version: u64,
    employee_self_subscription: Option<bool>,
}

async fn route(env: &Env, incoming: Incoming<GrantRoute>) -> Result<Reply, Error> {
    match incoming.route {
        GrantRoute::Catalog => Reply::json(200, env.settings.catalog.as_ref()),
        GrantRoute::ReadPermissions => {
            let organization = incoming.organization()?;
            let user = incoming.user_id()?;
            Reply::json(200, &grant::permissions(env, &incoming.meta(), &organization, &user).await?)
        }
        GrantRoute::SetPermissions => {
            let organization = incoming.organization()?;
            let user = incoming.user_id()?;
            let input: SetPermissions = incoming.json()?;
            let mut matrix = BTreeMap::new();
            for (establishment, services) in input.grants {
                let id = parse::establishment_id(&format!("grants.{establishment}"), &establishment)?;
                let services: BTreeSet<String> = services.into_iter().collect();
                if matrix.insert(id, services).is_some() {
                    // Two spellings of one number (`1-5`, `١-٥`): valid JSON, so a rule's 422.
                    return Err(Rejection::new(Kind::InvalidField, "an establishment is listed twice")
                        .field(format!("grants.{establishment}"))
                        .into());
                }
            }
            let command = SetGrants::new(organization, user, input.version, matrix, env.settings.catalog.clone())?;
            Reply::json(200, &run(env, &incoming.meta(), &command).await?.answer)
        }
        GrantRoute::ChangeSettings => {
            let input: SettingsInput = incoming.json()?;
            if input.employee_self_subscription.is_none() {
                return Err(Rejection::invalid_request("body", "nothing to change: send employee_self_subscription").into());
            }
            let command = ChangeSettings {
                organization: incoming.organization()?,
                version: input.version,
                employee_self_subscription: input.employee_self_subscription,
            };
            Reply::json(200, &run(env, &incoming.meta(), &command).await?.answer)
        }
    }
}
