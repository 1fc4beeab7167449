//! Reading: the balance and its ledger, the organization's users, the audit trail — and
//! exporting them. Reading is not audited; exporting is.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;

use super::permissions::{Scene, load_scene};
use super::{RequestMeta, audit_entry};
use crate::app::App;
use crate::audit::{AuditAction, AuditEntry, AuditScope};
use crate::error::{Error, Kind, Rejection};
use crate::identity::PersonId;
use crate::ledger::LedgerEntry;
use crate::money::Halalas;
use crate::organization::{EstablishmentId, OrganizationId};
use crate::person::PersonName;
use crate::policy::{Action, OnUser, Visibility, authorize};
use crate::store::{AuditQuery, Key, PageRequest, Record, UserFilter, Write};
use crate::user::{Role, User, UserStatus, UserType};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BalanceView {
    pub organization_id: OrganizationId,
    pub available_halalas: Halalas,
    pub total_credited_halalas: Halalas,
    pub total_debited_halalas: Halalas,
    pub seats_sold: u64,
    /// Newest first.
    pub ledger: Vec<LedgerEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The balance with a page of its ledger (manager or operator).
pub async fn balance(app: &App, meta: &RequestMeta, organization: &OrganizationId, page: PageRequest) -> Result<BalanceView, Error> {
    let now = app.clock.now();
    let scene = Scene::load(app, meta, organization, &[Key::Balance(organization.clone())]).await?;
    authorize(scene.standing(meta, organization, now)?, Action::ReadBalance)?;
    let balance = scene.loaded.balance(organization).ok_or_else(Rejection::not_found)?;
    let ledger = app.store.ledger(organization, page).await?;
    Ok(BalanceView {
        organization_id: organization.clone(),
        available_halalas: balance.available,
        total_credited_halalas: balance.total_credited,
        total_debited_halalas: balance.total_debited,
        seats_sold: balance.seats_sold,
        ledger: ledger.items,
        next_cursor: ledger.next.map(|cursor| cursor.as_str().to_owned()),
    })
}

/// A user in the organization's directory.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UserSummary {
    pub id: PersonId,
    pub name: PersonName,
    pub role: Role,
    pub status: UserStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_type: Option<UserType>,
    pub establishments: BTreeSet<EstablishmentId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_title: Option<String>,
    /// When access ends: the end of the last paid period, renewals included.
    #[serde(default, with = "crate::clock::utc::option", skip_serializing_if = "Option::is_none")]
    pub seat_ends_at: Option<OffsetDateTime>,
}

impl UserSummary {
    fn of(user: &User, now: OffsetDateTime) -> Self {
        UserSummary {
            id: user.id.clone(),
            name: user.name.clone(),
            role: user.role,
            status: user.effective_status(now),
            user_type: user.user_type,
            establishments: user.establishments.clone(),
            job_title: user.job_title.clone(),
            seat_ends_at: user.last_period().map(|seat| seat.ends_at),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserListing {
    pub users: Vec<UserSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Narrows a requested establishment filter to what the caller may see.
fn visible_establishments(
    visibility: &Visibility,
    wanted: Option<&EstablishmentId>,
) -> Result<Option<BTreeSet<EstablishmentId>>, Rejection> {
    match (visibility, wanted) {
        (Visibility::Everything, None) => Ok(None),
        (Visibility::Everything, Some(one)) => Ok(Some(BTreeSet::from([one.clone()]))),
        (Visibility::Establishments(mine), None) => Ok(Some(mine.clone())),
        (Visibility::Establishments(mine), Some(one)) if mine.contains(one) => Ok(Some(BTreeSet::from([one.clone()]))),
        (Visibility::Establishments(_), Some(_)) => {
            Err(Rejection::new(Kind::OutsideAdministeredEstablishments, "you do not administer that establishment").field("establishment"))
        }
        (Visibility::OwnEntries(_), _) => Err(Rejection::new(Kind::NotAnAdministrator, "this needs the manager or user management rights")),
    }
}

/// What a user listing asks for.
#[derive(Debug, Clone, Default)]
pub struct UserQuery {
    pub status: Option<UserStatus>,
    pub establishment: Option<EstablishmentId>,
    /// Text the user's ID or name contains (Arabic or English, any spelling `search` folds).
    pub search: Option<String>,
}

/// The organization's users in ID order, filtered by status, establishment and search
/// text. A delegated admin sees only the users of the establishments it administers.
pub async fn users(
    app: &App,
    meta: &RequestMeta,
    organization: &OrganizationId,
    query: UserQuery,
    page: PageRequest,
) -> Result<UserListing, Error> {
    let now = app.clock.now();
    let scene = Scene::load(app, meta, organization, &[]).await?;
    let visibility = authorize(scene.standing(meta, organization, now)?, Action::ListUsers)?;
    let establishments = visible_establishments(&visibility, query.establishment.as_ref())?;
    let search = query.search.as_deref().map(crate::search::normalize).filter(|text| !text.is_empty());
    let filter = UserFilter { status: query.status, search, establishments, now: Some(now) };
    let listed = app.store.users(organization, &filter, page).await?;
    Ok(UserListing {
        users: listed.items.iter().map(|user| UserSummary::of(user, now)).collect(),
        next_cursor: listed.next.map(|cursor| cursor.as_str().to_owned()),
    })
}

/// Filters of an audit listing or export.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actions: Option<BTreeSet<AuditAction>>,
    pub from: Option<OffsetDateTime>,
    pub to: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditListing {
    /// Newest first.
    pub entries: Vec<AuditEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Works out which entries the caller may read: the whole organization's (`user: None`)
/// or one user's.
async fn audit_query(
    app: &App,
    meta: &RequestMeta,
    organization: &OrganizationId,
    user: Option<&PersonId>,
    filter: &AuditFilter,
) -> Result<AuditQuery, Error> {
    if let (Some(from), Some(to)) = (filter.from, filter.to)
        && from > to
    {
        return Err(Rejection::new(Kind::InvalidField, "from is after to").field("from").into());
    }
    let now = app.clock.now();
    let visibility = match user {
        None => {
            let scene = Scene::load(app, meta, organization, &[]).await?;
            authorize(scene.standing(meta, organization, now)?, Action::ReadOrganizationAudit)?
        }
        Some(target) => {
            let scene = load_scene(app, meta, organization, target).await?;
            let standing = scene.standing(meta, organization, now)?;
            authorize(standing, Action::ViewUser(scene.target(standing, OnUser::View, organization, target)?))?
        }
    };
    let establishments = match (&visibility, user) {
        (Visibility::Establishments(mine), _) => Some(mine.clone()),
        _ => None,
    };
    Ok(AuditQuery {
        scope: AuditScope::Organization(organization.clone()),
        target: user.cloned(),
        actions: filter.actions.clone(),
        from: filter.from,
        to: filter.to,
        establishments,
    })
}

/// Audit entries, newest first. The manager reads everything; a delegated admin the
/// entries about users of its establishments; a user (on their own route) their own.
pub async fn audit(
    app: &App,
    meta: &RequestMeta,
    organization: &OrganizationId,
    user: Option<&PersonId>,
    filter: &AuditFilter,
    page: PageRequest,
) -> Result<AuditListing, Error> {
    let query = audit_query(app, meta, organization, user, filter).await?;
    let listed = app.store.audit(&query, page).await?;
    Ok(AuditListing { entries: listed.items, next_cursor: listed.next.map(|cursor| cursor.as_str().to_owned()) })
}

/// The most rows one export answer carries; a `next_cursor` continues it.
pub const EXPORT_ROWS: usize = 5_000;

/// What was exported, for the export's own audit entry.
pub struct Exported<T> {
    pub rows: Vec<T>,
    pub next_cursor: Option<String>,
}

/// Audit entries for an export (same rights as reading), recorded in the audit trail.
pub async fn export_audit(
    app: &App,
    meta: &RequestMeta,
    organization: &OrganizationId,
    user: Option<&PersonId>,
    filter: &AuditFilter,
    cursor: Option<crate::store::Cursor>,
) -> Result<Exported<AuditEntry>, Error> {
    let query = audit_query(app, meta, organization, user, filter).await?;
    let listed = app.store.audit(&query, PageRequest { cursor, limit: EXPORT_ROWS }).await?;
    let changes = json!({
        "format": "csv",
        "user": user,
        "from": filter.from.map(crate::clock::key_timestamp),
        "to": filter.to.map(crate::clock::key_timestamp),
        "actions": filter.actions,
        "rows": listed.items.len(),
    });
    record_export(app, meta, organization, AuditAction::AuditExported, changes).await?;
    Ok(Exported { rows: listed.items, next_cursor: listed.next.map(|cursor| cursor.as_str().to_owned()) })
}

/// Ledger entries for an export (manager or operator), recorded in the audit trail.
pub async fn export_ledger(
    app: &App,
    meta: &RequestMeta,
    organization: &OrganizationId,
    cursor: Option<crate::store::Cursor>,
) -> Result<Exported<LedgerEntry>, Error> {
    let now = app.clock.now();
    let scene = Scene::load(app, meta, organization, &[]).await?;
    authorize(scene.standing(meta, organization, now)?, Action::ReadBalance)?;
    let listed = app.store.ledger(organization, PageRequest { cursor, limit: EXPORT_ROWS }).await?;
    record_export(app, meta, organization, AuditAction::LedgerExported, json!({ "format": "csv", "rows": listed.items.len() })).await?;
    Ok(Exported { rows: listed.items, next_cursor: listed.next.map(|cursor| cursor.as_str().to_owned()) })
}

/// Writes the audit entry of an export. An export that cannot be recorded is not given out.
async fn record_export(
    app: &App,
    meta: &RequestMeta,
    organization: &OrganizationId,
    action: AuditAction,
    changes: serde_json::Value,
) -> Result<(), Error> {
    let entry = audit_entry(meta, organization, action, None, changes, app.clock.now());
    app.store.commit(vec![Write::create(Record::Audit(entry))]).await.map_err(Error::internal)
}
