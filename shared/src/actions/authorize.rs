//! The check API other platform services ask: may this user use this service on this
//! establishment now? Decided from one read, the user's record.

use serde::Serialize;

use crate::env::Env;
use crate::error::Error;
use crate::identity::PersonId;
use crate::organization::{EstablishmentId, OrganizationId};
use crate::pipeline::RequestMeta;
use crate::policy::{CheckReason, PlatformAction, authorize_platform, check_access};
use crate::store::Key;

#[derive(Debug, Clone)]
pub struct Check {
    pub organization: OrganizationId,
    pub user: PersonId,
    pub establishment: EstablishmentId,
    pub service: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CheckAnswer {
    pub allowed: bool,
    pub reason: CheckReason,
}

/// For other platform services (role `service`) and operators. Reads exactly one item.
pub async fn check(env: &Env, meta: &RequestMeta, command: Check) -> Result<CheckAnswer, Error> {
    authorize_platform(&meta.caller, PlatformAction::CheckAccess)?;
    let now = env.clock.now();
    let loaded = env.store.load(&[Key::User(command.organization.clone(), command.user.clone())]).await?;
    let user = loaded.user(&command.organization, &command.user);
    let service = env.settings.catalog.service(&command.service);
    let reason = check_access(user, &command.establishment, service, now);
    Ok(CheckAnswer { allowed: reason.allowed(), reason })
}
