//! An organization as its people see it, and the settings its manager decides.

use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;

use super::permissions::Scene;
use super::{Attempt, Committed, RequestMeta, audit_entry, commit};
use crate::app::App;
use crate::audit::AuditAction;
use crate::error::{Error, Rejection};
use crate::organization::{Establishment, Organization, OrganizationId, OrganizationSettings, PricingPlan};
use crate::policy::{Action, authorize};
use crate::store::{Record, Write};

/// An organization as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrganizationView {
    pub id: OrganizationId,
    pub name: String,
    pub pricing_plan: PricingPlan,
    pub manager_id: String,
    pub establishments: Vec<Establishment>,
    pub settings: OrganizationSettings,
    #[serde(with = "crate::clock::utc")]
    pub created_at: OffsetDateTime,
    /// What a settings change must send back.
    pub version: u64,
}

impl OrganizationView {
    pub fn of(organization: &Organization) -> Self {
        OrganizationView {
            id: organization.id.clone(),
            name: organization.name.clone(),
            pricing_plan: organization.plan,
            manager_id: organization.manager.as_str().to_owned(),
            establishments: organization.establishments.clone(),
            settings: organization.settings,
            created_at: organization.created_at,
            version: organization.version,
        }
    }
}

/// The organization's profile: name, plan, establishments and settings (anyone with a
/// standing in it, and operators).
pub async fn organization(app: &App, meta: &RequestMeta, organization: &OrganizationId) -> Result<OrganizationView, Error> {
    let now = app.clock.now();
    let scene = Scene::load(app, meta, organization, &[]).await?;
    authorize(scene.standing(meta, organization, now)?, Action::ViewOrganization)?;
    let found = scene.loaded.organization(organization).ok_or_else(Rejection::not_found)?;
    Ok(OrganizationView::of(found))
}

#[derive(Debug, Clone)]
pub struct ChangeSettings {
    pub organization: OrganizationId,
    /// The organization `version` the change is based on.
    pub version: u64,
    pub employee_self_subscription: Option<bool>,
}

/// The manager changes the organization's settings.
pub async fn change_settings(app: &App, meta: &RequestMeta, command: ChangeSettings) -> Result<OrganizationView, Error> {
    let id = &command.organization;
    Ok(retrying!(app, {
        let now = app.clock.now();
        let scene = Scene::load(app, meta, id, &[]).await?;
        authorize(scene.standing(meta, id, now)?, Action::ChangeSettings)?;
        let current = scene.loaded.organization(id).ok_or_else(Rejection::not_found)?;
        if command.version != current.version {
            return Err(Rejection::new(crate::error::Kind::VersionConflict, "the organization changed since it was read; read it again")
                .detail("current_version", current.version)
                .into());
        }
        let mut settings = current.settings;
        if let Some(allowed) = command.employee_self_subscription {
            settings.employee_self_subscription = allowed;
        }
        if settings == current.settings {
            return Ok(Attempt::Done(OrganizationView::of(current)));
        }
        let next = Organization { settings, version: current.version + 1, ..current.clone() };
        let audit = audit_entry(
            meta,
            id,
            AuditAction::OrganizationSettingsChanged,
            None,
            json!({ "settings": { "before": current.settings, "after": settings } }),
            now,
        );
        match commit(app, vec![Write::replace(Record::Organization(next.clone()), current.version), Write::create(Record::Audit(audit))])
            .await?
        {
            Committed::Yes => Ok(Attempt::Done(OrganizationView::of(&next))),
            Committed::Conflict(_) | Committed::Unknown => Ok(Attempt::Retry),
        }
    }))
}
