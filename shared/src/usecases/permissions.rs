//! Permissions: the service catalog, each user's grant matrix (establishment → services),
//! and the check API other platform services ask.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Attempt, Committed, RequestMeta, audit_entry, commit};
use crate::app::App;
use crate::catalog::ServiceCode;
use crate::error::{Error, Kind, Rejection};
use crate::grants::Grants;
use crate::identity::PersonId;
use crate::organization::{EstablishmentId, OrganizationId};
use crate::policy::{Action, CheckReason, OnUser, PlatformAction, Standing, authorize, authorize_platform, check_access, target_of};
use crate::store::{Key, Loaded, Record, Write};
use crate::user::{User, UserStatus};

/// A user's grants as the API shows them. `version` is what a change must send back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PermissionsView {
    pub organization_id: OrganizationId,
    pub user_id: PersonId,
    pub version: u64,
    /// The establishments the user was given at subscription; grants can only be there.
    pub establishments: BTreeSet<EstablishmentId>,
    pub grants: BTreeMap<EstablishmentId, BTreeSet<ServiceCode>>,
}

impl PermissionsView {
    fn of(user: &User) -> Self {
        PermissionsView {
            organization_id: user.organization.clone(),
            user_id: user.id.clone(),
            version: user.grants_version,
            establishments: user.establishments.clone(),
            grants: user.grants.matrix().clone(),
        }
    }
}

/// The caller's standing and the target user, read in one request.
pub(crate) struct Scene {
    pub loaded: Loaded,
}

pub(crate) async fn load_scene(app: &App, meta: &RequestMeta, organization: &OrganizationId, target: &PersonId) -> Result<Scene, Error> {
    Scene::load(app, meta, organization, &[Key::User(organization.clone(), target.clone())]).await
}

impl Scene {
    /// The organization, the calling person's user record (when the caller is a person) and
    /// `extra`, in one read.
    pub async fn load(app: &App, meta: &RequestMeta, organization: &OrganizationId, extra: &[Key]) -> Result<Scene, Error> {
        let mut keys = vec![Key::Organization(organization.clone())];
        if let Some(me) = meta.caller.person() {
            keys.push(Key::User(organization.clone(), me.clone()));
        }
        keys.extend_from_slice(extra);
        Ok(Scene { loaded: app.store.load(&keys).await? })
    }

    pub fn standing<'a>(
        &'a self,
        meta: &'a RequestMeta,
        organization: &OrganizationId,
        now: time::OffsetDateTime,
    ) -> Result<Standing<'a>, Rejection> {
        let caller = meta.caller.person().and_then(|me| self.loaded.user(organization, me));
        Standing::of(&meta.caller, self.loaded.organization(organization), caller, now)
    }

    /// The user an action of `kind` is about, as the policy lets the caller find it.
    pub fn target(
        &self,
        standing: Standing<'_>,
        kind: OnUser,
        organization: &OrganizationId,
        target: &PersonId,
    ) -> Result<&User, Rejection> {
        target_of(standing, kind, target, self.loaded.user(organization, target))
    }
}

/// A user's grants (the manager, a delegated admin of one of the user's establishments,
/// or the user).
pub async fn permissions(app: &App, meta: &RequestMeta, organization: &OrganizationId, user: &PersonId) -> Result<PermissionsView, Error> {
    let now = app.clock.now();
    let scene = load_scene(app, meta, organization, user).await?;
    let standing = scene.standing(meta, organization, now)?;
    let target = scene.target(standing, OnUser::View, organization, user)?;
    authorize(standing, Action::ViewUser(target))?;
    Ok(PermissionsView::of(target))
}

#[derive(Debug, Clone)]
pub struct SetGrants {
    pub organization: OrganizationId,
    pub user: PersonId,
    /// The `version` of the permissions the change is based on.
    pub version: u64,
    /// Establishment → service codes as sent; checked against the catalog here.
    pub matrix: BTreeMap<EstablishmentId, BTreeSet<String>>,
}

/// Replaces a user's grant matrix.
///
/// Refusals, in order: unknown services or establishments (422, naming them); a caller
/// who may not (403, naming the rule); a suspended or expired user, an establishment
/// the user was not given, a Saudi-only service for an iqama holder (422); a stale
/// version (409). Nothing is written on any of them.
pub async fn set_grants(app: &App, meta: &RequestMeta, command: SetGrants) -> Result<PermissionsView, Error> {
    let catalog = &app.settings.catalog;
    let mut matrix = BTreeMap::new();
    for (establishment, services) in &command.matrix {
        let mut codes = BTreeSet::new();
        for service in services {
            codes.insert(crate::parse::service(catalog, &format!("grants.{establishment}"), service)?);
        }
        matrix.insert(establishment.clone(), codes);
    }
    let after = Grants::new(matrix);
    let organization = &command.organization;

    Ok(retrying!(app, {
        let now = app.clock.now();
        let scene = load_scene(app, meta, organization, &command.user).await?;
        let standing = scene.standing(meta, organization, now)?;
        let org = scene.loaded.organization(organization).ok_or_else(Rejection::not_found)?;
        for establishment in command.matrix.keys() {
            if !org.has_establishment(establishment) {
                return Err(Rejection::new(Kind::UnknownEstablishment, "this establishment is not part of the organization")
                    .field(format!("grants.{establishment}"))
                    .detail("establishment", establishment.as_str())
                    .into());
            }
        }
        for (establishment, service) in after.cells() {
            let entry = catalog.service(service.as_str()).expect("parsed against the catalog");
            if !entry.platform.serves(org.plan) {
                return Err(Rejection::new(Kind::ServiceNotOnPlatform, "this service belongs to the other platform")
                    .field(format!("grants.{establishment}"))
                    .detail("service", service.as_str())
                    .into());
            }
        }
        let target = scene.target(standing, OnUser::SetGrants, organization, &command.user)?;
        authorize(standing, Action::SetGrants { target, after: &after })?;
        refuse_unless_grantable(target, now)?;
        for establishment in after.establishments() {
            if !target.establishments.contains(establishment) {
                return Err(Rejection::new(Kind::EstablishmentNotAssigned, "the user was not given access to this establishment")
                    .field(format!("grants.{establishment}"))
                    .detail("establishment", establishment.as_str())
                    .into());
            }
        }
        if !target.id.is_citizen() {
            for (establishment, service) in after.cells() {
                if catalog.service(service.as_str()).is_some_and(|s| s.saudi_only) {
                    return Err(Rejection::new(Kind::SaudiOnlyService, "this service is for Saudi citizens only; the user holds an iqama")
                        .field(format!("grants.{establishment}"))
                        .detail("service", service.as_str())
                        .into());
                }
            }
        }
        if command.version != target.grants_version {
            return Err(Rejection::new(Kind::VersionConflict, "the permissions changed since they were read; read them again")
                .detail("current_version", target.grants_version)
                .into());
        }
        let (added, removed) = target.grants.diff(&after);
        if added.is_empty() && removed.is_empty() {
            return Ok(Attempt::Done(PermissionsView::of(target)));
        }
        let mut next = target.clone();
        next.grants = after.clone();
        next.grants_version = target.grants_version + 1;
        next.updated_at = now;
        next.version = target.version + 1;
        let cells = |set: &BTreeSet<(EstablishmentId, ServiceCode)>| {
            set.iter().map(|(e, s)| json!({ "establishment": e, "service": s })).collect::<Vec<_>>()
        };
        let audit = audit_entry(
            meta,
            organization,
            crate::audit::AuditAction::PermissionsChanged,
            Some(&next),
            json!({
                "before": target.grants.matrix(),
                "after": next.grants.matrix(),
                "added": cells(&added),
                "removed": cells(&removed),
                "version": { "before": target.grants_version, "after": next.grants_version },
            }),
            now,
        );
        match commit(app, vec![Write::replace(Record::User(next.clone()), target.version), Write::create(Record::Audit(audit))]).await? {
            Committed::Yes => Ok(Attempt::Done(PermissionsView::of(&next))),
            Committed::Conflict(_) | Committed::Unknown => Ok(Attempt::Retry),
        }
    }))
}

/// Grants go only to users who can still use them.
fn refuse_unless_grantable(target: &User, now: time::OffsetDateTime) -> Result<(), Rejection> {
    if !target.iqama_valid_at(now) {
        return Err(crate::policy::iqama_expired());
    }
    match target.effective_status(now) {
        UserStatus::Suspended => Err(Rejection::new(Kind::UserSuspended, "the user is suspended; grants cannot be changed")),
        UserStatus::Expired => Err(Rejection::new(Kind::SeatExpired, "the user's seat has ended; renew it first")),
        UserStatus::Active | UserStatus::PendingActivation => Ok(()),
    }
}

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

/// May this user use this service on this establishment now? For other platform
/// services (role `service`) and operators. Reads exactly one item: the user's record.
pub async fn check(app: &App, meta: &RequestMeta, command: Check) -> Result<CheckAnswer, Error> {
    authorize_platform(&meta.caller, PlatformAction::CheckAccess)?;
    let now = app.clock.now();
    let loaded = app.store.load(&[Key::User(command.organization.clone(), command.user.clone())]).await?;
    let user = loaded.user(&command.organization, &command.user);
    let service = app.settings.catalog.service(&command.service);
    let reason = check_access(user, &command.establishment, service, now);
    Ok(CheckAnswer { allowed: reason.allowed(), reason })
}
