//! Permissions: each user's grant matrix (establishment → services), and the settings the
//! manager decides for the whole organization (who may subscribe).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;

use super::Scene;
use super::directory::OrganizationView;
use crate::audit::AuditAction;
use crate::catalog::{Catalog, ServiceCode};
use crate::entropy::Fresh;
use crate::env::Env;
use crate::error::{Error, Kind, Rejection};
use crate::grants::Grants;
use crate::identity::PersonId;
use crate::organization::{EstablishmentId, Organization, OrganizationId};
use crate::pipeline::{Command, Decision, Reads, RequestMeta, audit_entry};
use crate::policy::{Action, OnUser, authorize};
use crate::store::{Key, Record, Write};
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

/// A user's grants (the manager, a delegated admin of one of the user's establishments,
/// or the user).
pub async fn permissions(env: &Env, meta: &RequestMeta, organization: &OrganizationId, user: &PersonId) -> Result<PermissionsView, Error> {
    let now = env.clock.now();
    let scene = Scene::read(env.store.as_ref(), meta, organization, [Key::User(organization.clone(), user.clone())]).await?;
    let standing = scene.standing(meta, now)?;
    let target = scene.target(standing, OnUser::View, user)?;
    authorize(standing, Action::ViewUser(target))?;
    Ok(PermissionsView::of(target))
}

/// Replaces a user's grant matrix.
///
/// Refusals, in order: unknown services or establishments (422, naming them); a caller
/// who may not (403, naming the rule); a suspended or expired user, an establishment
/// the user was not given, a Saudi-only service for an iqama holder (422); a stale
/// version (409). Nothing is written on any of them.
pub struct SetGrants {
    pub organization: OrganizationId,
    pub user: PersonId,
    /// The `version` of the permissions the change is based on.
    pub version: u64,
    after: Grants,
    catalog: std::sync::Arc<Catalog>,
    asked: BTreeSet<EstablishmentId>,
}

impl SetGrants {
    /// Parses the matrix against the catalog (unknown services are refused here).
    pub fn new(
        organization: OrganizationId,
        user: PersonId,
        version: u64,
        matrix: BTreeMap<EstablishmentId, BTreeSet<String>>,
        catalog: std::sync::Arc<Catalog>,
    ) -> Result<Self, Rejection> {
        let mut parsed = BTreeMap::new();
        for (establishment, services) in &matrix {
            let mut codes = BTreeSet::new();
            for service in services {
                codes.insert(crate::parse::service(&catalog, &format!("grants.{establishment}"), service)?);
            }
            parsed.insert(establishment.clone(), codes);
        }
        Ok(SetGrants { organization, user, version, after: Grants::new(parsed), catalog, asked: matrix.into_keys().collect() })
    }
}

impl Command for SetGrants {
    type State = Scene;
    type Answer = PermissionsView;

    async fn load(&self, meta: &RequestMeta, reads: &mut Reads<'_>) -> Result<Scene, Error> {
        Scene::load_with_user(meta, reads, &self.organization, &self.user).await
    }

    fn authorize(&self, meta: &RequestMeta, scene: &Scene, now: OffsetDateTime) -> Result<(), Rejection> {
        let standing = scene.standing(meta, now)?;
        let organization = scene.organization()?;
        for establishment in &self.asked {
            if !organization.has_establishment(establishment) {
                return Err(Rejection::new(Kind::UnknownEstablishment, "this establishment is not part of the organization")
                    .field(format!("grants.{establishment}"))
                    .detail("establishment", establishment.as_str()));
            }
        }
        for (establishment, service) in self.after.cells() {
            let entry = self.catalog.service(service.as_str()).expect("parsed against the catalog");
            if !entry.platform.serves(organization.plan) {
                return Err(Rejection::new(Kind::ServiceNotOnPlatform, "this service belongs to the other platform")
                    .field(format!("grants.{establishment}"))
                    .detail("service", service.as_str()));
            }
        }
        let target = scene.target(standing, OnUser::SetGrants, &self.user)?;
        authorize(standing, Action::SetGrants { target, after: &self.after }).map(drop)
    }

    fn decide(
        &self,
        meta: &RequestMeta,
        scene: &Scene,
        now: OffsetDateTime,
        fresh: &mut Fresh,
    ) -> Result<Decision<PermissionsView>, Error> {
        let target = scene.user(&self.user).ok_or_else(Rejection::user_not_found)?;
        refuse_unless_grantable(target, now)?;
        for establishment in self.after.establishments() {
            if !target.establishments.contains(establishment) {
                return Err(Rejection::new(Kind::EstablishmentNotAssigned, "the user was not given access to this establishment")
                    .field(format!("grants.{establishment}"))
                    .detail("establishment", establishment.as_str())
                    .into());
            }
        }
        if !target.id.is_citizen() {
            for (establishment, service) in self.after.cells() {
                if self.catalog.service(service.as_str()).is_some_and(|s| s.saudi_only) {
                    return Err(Rejection::new(Kind::SaudiOnlyService, "this service is for Saudi citizens only; the user holds an iqama")
                        .field(format!("grants.{establishment}"))
                        .detail("service", service.as_str())
                        .into());
                }
            }
        }
        if self.version != target.grants_version {
            return Err(Rejection::new(Kind::VersionConflict, "the permissions changed since they were read; read them again")
                .detail("current_version", target.grants_version)
                .into());
        }
        let (added, removed) = target.grants.diff(&self.after);
        if added.is_empty() && removed.is_empty() {
            return Ok(Decision::answer(PermissionsView::of(target)));
        }
        let mut next = target.clone();
        next.grants = self.after.clone();
        next.grants_version = target.grants_version + 1;
        next.updated_at = now;
        next.version = target.version + 1;
        let cells = |set: &BTreeSet<(EstablishmentId, ServiceCode)>| {
            set.iter().map(|(e, s)| json!({ "establishment": e, "service": s })).collect::<Vec<_>>()
        };
        let audit = audit_entry(
            meta,
            &self.organization,
            AuditAction::PermissionsChanged,
            Some(&next),
            json!({
                "before": target.grants.matrix(),
                "after": next.grants.matrix(),
                "added": cells(&added),
                "removed": cells(&removed),
                "version": { "before": target.grants_version, "after": next.grants_version },
            }),
            now,
            fresh,
        );
        Ok(Decision::answer(PermissionsView::of(&next)).write(Write::replace(Record::User(next), target.version)).audit(audit))
    }
}

/// Grants go only to users who can still use them.
fn refuse_unless_grantable(target: &User, now: OffsetDateTime) -> Result<(), Rejection> {
    if !target.iqama_valid_at(now) {
        return Err(crate::policy::iqama_expired());
    }
    match target.effective_status(now) {
        UserStatus::Suspended => Err(Rejection::new(Kind::UserSuspended, "the user is suspended; grants cannot be changed")),
        UserStatus::Expired => Err(Rejection::new(Kind::SeatExpired, "the user's seat has ended; renew it first")),
        UserStatus::Active | UserStatus::PendingActivation => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------
// The organization's settings

/// The manager changes the organization's settings.
pub struct ChangeSettings {
    pub organization: OrganizationId,
    /// The organization `version` the change is based on.
    pub version: u64,
    pub employee_self_subscription: Option<bool>,
}

impl Command for ChangeSettings {
    type State = Scene;
    type Answer = OrganizationView;

    async fn load(&self, meta: &RequestMeta, reads: &mut Reads<'_>) -> Result<Scene, Error> {
        Scene::load(meta, reads, &self.organization, []).await
    }

    fn authorize(&self, meta: &RequestMeta, scene: &Scene, now: OffsetDateTime) -> Result<(), Rejection> {
        authorize(scene.standing(meta, now)?, Action::ChangeSettings).map(drop)
    }

    fn decide(
        &self,
        meta: &RequestMeta,
        scene: &Scene,
        now: OffsetDateTime,
        fresh: &mut Fresh,
    ) -> Result<Decision<OrganizationView>, Error> {
        let current = scene.organization()?;
        if self.version != current.version {
            return Err(Rejection::new(Kind::VersionConflict, "the organization changed since it was read; read it again")
                .detail("current_version", current.version)
                .into());
        }
        let mut settings = current.settings;
        if let Some(allowed) = self.employee_self_subscription {
            settings.employee_self_subscription = allowed;
        }
        if settings == current.settings {
            return Ok(Decision::answer(OrganizationView::of(current)));
        }
        let next = Organization { settings, version: current.version + 1, ..current.clone() };
        let audit = audit_entry(
            meta,
            &self.organization,
            AuditAction::OrganizationSettingsChanged,
            None,
            json!({ "settings": { "before": current.settings, "after": settings } }),
            now,
            fresh,
        );
        Ok(Decision::answer(OrganizationView::of(&next)).write(Write::replace(Record::Organization(next), current.version)).audit(audit))
    }
}
