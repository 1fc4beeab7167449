//! The grant function: the service catalog, each user's permissions per establishment and
//! service, and the organization's settings on who may subscribe (the manager's rules).

use std::collections::{BTreeMap, BTreeSet};

use domain::app::App;
use domain::error::{Error, Rejection};
use domain::parse;
use domain::usecases::{organizations, permissions};
use gateway::routes::{CATALOG, CHANGE_SETTINGS, GRANT, READ_PERMISSIONS, SET_PERMISSIONS};
use gateway::{Incoming, Reply};
use lambda_http::{Body, Request, Response};
use serde::Deserialize;

pub async fn handle(app: &App, request: Request) -> Response<Body> {
    gateway::serve(request, GRANT, async |incoming| route(app, incoming).await).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetPermissions {
    version: u64,
    grants: BTreeMap<String, Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeSettings {
    version: u64,
    employee_self_subscription: Option<bool>,
}

async fn route(app: &App, incoming: Incoming) -> Result<Reply, Error> {
    match incoming.route.key {
        CATALOG => Reply::json(200, app.settings.catalog.as_ref()),
        READ_PERMISSIONS => {
            let organization = incoming.organization()?;
            let user = incoming.user_id()?;
            Reply::json(200, &permissions::permissions(app, &incoming.meta(), &organization, &user).await?)
        }
        SET_PERMISSIONS => {
            let organization = incoming.organization()?;
            let user = incoming.user_id()?;
            let input: SetPermissions = incoming.json()?;
            let mut matrix = BTreeMap::new();
            for (establishment, services) in input.grants {
                let id = parse::establishment_id(&format!("grants.{establishment}"), &establishment)?;
                let services: BTreeSet<String> = services.into_iter().collect();
                if matrix.insert(id, services).is_some() {
                    return Err(Rejection::invalid_request(&format!("grants.{establishment}"), "an establishment is listed twice").into());
                }
            }
            let command = permissions::SetGrants { organization, user, version: input.version, matrix };
            Reply::json(200, &permissions::set_grants(app, &incoming.meta(), command).await?)
        }
        CHANGE_SETTINGS => {
            let input: ChangeSettings = incoming.json()?;
            if input.employee_self_subscription.is_none() {
                return Err(Rejection::invalid_request("body", "nothing to change: send employee_self_subscription").into());
            }
            let command = organizations::ChangeSettings {
                organization: incoming.organization()?,
                version: input.version,
                employee_self_subscription: input.employee_self_subscription,
            };
            Reply::json(200, &organizations::change_settings(app, &incoming.meta(), command).await?)
        }
        other => unreachable!("route {other} is not served here"),
    }
}
