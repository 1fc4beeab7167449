//! Reading: the organization, the balance and its ledger, the organization's users, the
//! audit trail — and exporting them. Reading is not audited; exporting is, through the
//! pipeline (the export's audit entry commits before the rows are given out).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;

use super::Scene;
use crate::audit::{AuditAction, AuditEntry, AuditScope};
use crate::cursor::{Cursors, Listing, PageAsked};
use crate::entropy::Fresh;
use crate::env::Env;
use crate::error::{Error, Kind, Rejection};
use crate::identity::PersonId;
use crate::ledger::{LedgerEntry, LedgerReason};
use crate::money::Halalas;
use crate::organization::{Establishment, EstablishmentId, Organization, OrganizationId, OrganizationSettings, PricingPlan};
use crate::person::PersonName;
use crate::pipeline::{Command, Decision, Reads, RequestMeta, audit_entry};
use crate::policy::{Action, OnUser, Standing, Visibility, authorize};
use crate::store::{AuditQuery, Key, PageRequest, Position, Record, Store, StoreError, UserFilter};
use crate::user::{Role, User, UserStatus, UserType};

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
pub async fn organization(env: &Env, meta: &RequestMeta, organization: &OrganizationId) -> Result<OrganizationView, Error> {
    let now = env.clock.now();
    let scene = Scene::read(env.store.as_ref(), meta, organization, []).await?;
    authorize(scene.standing(meta, now)?, Action::ViewOrganization)?;
    Ok(OrganizationView::of(scene.organization()?))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BalanceView {
    pub organization_id: OrganizationId,
    pub available_halalas: Halalas,
    pub total_credited_halalas: Halalas,
    pub total_debited_halalas: Halalas,
    pub seats_sold: u64,
    /// Newest first.
    pub ledger: Vec<LedgerEntry>,
    /// The names of the people the page's entries mention.
    #[serde(default)]
    pub people: People,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The names of the people a page mentions (actors and targets of audit entries, people
/// and actors of ledger entries), by ID, so that a reader sees names without asking for
/// each. Read from their user records in the organization, in one request per 100 people;
/// only the people the caller may see (`Action::ViewUser`: the manager everyone, a delegated
/// admin the users of its establishments, a member themselves) are named, and someone
/// without a record there (a person who left, an operator) is left out.
pub type People = BTreeMap<PersonId, PersonName>;

/// Reads the names of `ids` that `standing` may see (see `People`).
pub async fn people(
    store: &dyn Store,
    organization: &OrganizationId,
    standing: Standing<'_>,
    ids: impl IntoIterator<Item = PersonId>,
) -> Result<People, StoreError> {
    let keys: Vec<Key> = ids.into_iter().collect::<BTreeSet<_>>().into_iter().map(|id| Key::User(organization.clone(), id)).collect();
    if keys.is_empty() {
        return Ok(People::new());
    }
    let loaded = store.load(&keys).await?;
    Ok(keys
        .iter()
        .filter_map(|key| match loaded.record(key) {
            Some(Record::User(user)) if authorize(standing, Action::ViewUser(user)).is_ok() => Some((user.id.clone(), user.name.clone())),
            _ => None,
        })
        .collect())
}

/// The people audit entries mention: who acted, and about whom.
pub fn mentioned_in_audit(entries: &[AuditEntry]) -> impl Iterator<Item = PersonId> + '_ {
    entries.iter().flat_map(|entry| entry.actor.person().cloned().into_iter().chain(entry.target.clone()))
}

/// The people ledger entries mention: whose seat, and who acted.
pub fn mentioned_in_ledger(entries: &[LedgerEntry]) -> impl Iterator<Item = PersonId> + '_ {
    entries.iter().flat_map(|entry| {
        let seat = match &entry.reason {
            LedgerReason::Seat { person, .. } => Some(person.clone()),
            LedgerReason::Credit { .. } => None,
        };
        entry.actor.person().cloned().into_iter().chain(seat)
    })
}

/// The page a client asked for, from its cursor: one sealed for this very listing, or
/// `invalid_cursor`.
fn page_of(cursors: &Cursors, listing: &Listing, asked: &PageAsked) -> Result<PageRequest, Error> {
    let cursor = match &asked.cursor {
        None => None,
        Some(text) => Some(cursors.open(listing, text).map_err(|_| Error::from(StoreError::InvalidCursor))?),
    };
    Ok(PageRequest { cursor, limit: asked.limit })
}

/// The cursor a client gets to continue from `next`.
fn cursor_of(cursors: &Cursors, listing: &Listing, next: Option<&Position>) -> Option<String> {
    next.map(|position| cursors.seal(listing, position))
}

fn ledger_listing(meta: &RequestMeta, organization: &OrganizationId) -> Listing {
    Listing::new("ledger", [organization.as_str(), meta.caller.key_owner().as_str()])
}

/// The balance with a page of its ledger (manager or operator).
pub async fn balance(
    env: &Env,
    meta: &RequestMeta,
    organization: &OrganizationId,
    asked: &PageAsked,
    cursors: &Cursors,
) -> Result<BalanceView, Error> {
    let now = env.clock.now();
    let scene = Scene::read(env.store.as_ref(), meta, organization, [Key::Balance(organization.clone())]).await?;
    let standing = scene.standing(meta, now)?;
    authorize(standing, Action::ReadBalance)?;
    let balance = scene.loaded.balance(organization).ok_or_else(Rejection::not_found)?;
    let listing = ledger_listing(meta, organization);
    let ledger = env.store.ledger(organization, page_of(cursors, &listing, asked)?).await?;
    let people = people(env.store.as_ref(), organization, standing, mentioned_in_ledger(&ledger.items)).await?;
    Ok(BalanceView {
        organization_id: organization.clone(),
        available_halalas: balance.available,
        total_credited_halalas: balance.total_credited,
        total_debited_halalas: balance.total_debited,
        seats_sold: balance.seats_sold,
        ledger: ledger.items,
        people,
        next_cursor: cursor_of(cursors, &listing, ledger.next.as_ref()),
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
    env: &Env,
    meta: &RequestMeta,
    organization: &OrganizationId,
    query: UserQuery,
    asked: &PageAsked,
    cursors: &Cursors,
) -> Result<UserListing, Error> {
    let now = env.clock.now();
    let scene = Scene::read(env.store.as_ref(), meta, organization, []).await?;
    let visibility = authorize(scene.standing(meta, now)?, Action::ListUsers)?;
    let establishments = visible_establishments(&visibility, query.establishment.as_ref())?;
    let search = query.search.as_deref().map(crate::search::normalize).filter(|text| !text.is_empty());
    let listing = Listing::new(
        "users",
        [
            organization.as_str(),
            meta.caller.key_owner().as_str(),
            query.status.map_or("", UserStatus::as_str),
            &establishments.iter().flatten().map(EstablishmentId::as_str).collect::<Vec<_>>().join(","),
            search.as_deref().unwrap_or(""),
        ],
    );
    let filter = UserFilter { status: query.status, search, establishments, now };
    let listed = env.store.users(organization, &filter, page_of(cursors, &listing, asked)?).await?;
    Ok(UserListing {
        users: listed.items.iter().map(|user| UserSummary::of(user, now)).collect(),
        next_cursor: cursor_of(cursors, &listing, listed.next.as_ref()),
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
    /// The names of the people the page's entries mention.
    #[serde(default)]
    pub people: People,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Which entries the caller may read: the whole organization's (`user: None`) or one
/// user's.
fn audit_query(
    meta: &RequestMeta,
    scene: &Scene,
    user: Option<&PersonId>,
    filter: &AuditFilter,
    now: OffsetDateTime,
) -> Result<AuditQuery, Rejection> {
    if let (Some(from), Some(to)) = (filter.from, filter.to)
        && from > to
    {
        return Err(Rejection::new(Kind::InvalidField, "from is after to").field("from"));
    }
    let organization = &scene.organization;
    let standing = scene.standing(meta, now)?;
    let visibility = match user {
        None => authorize(standing, Action::ReadOrganizationAudit)?,
        Some(target) => authorize(standing, Action::ViewUser(scene.target(standing, OnUser::View, target)?))?,
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

/// An audit listing, as far as its cursors belong to it.
fn audit_listing(meta: &RequestMeta, query: &AuditQuery) -> Listing {
    let scope = match &query.scope {
        AuditScope::Organization(organization) => organization.as_str().to_owned(),
        AuditScope::Platform => "platform".to_owned(),
    };
    let actions = query.actions.iter().flatten().map(|a| a.as_str()).collect::<Vec<_>>().join(",");
    let instant = |at: Option<OffsetDateTime>| at.map(crate::clock::key_timestamp).unwrap_or_default();
    let establishments = query.establishments.iter().flatten().map(EstablishmentId::as_str).collect::<Vec<_>>().join(",");
    Listing::new(
        "audit",
        [
            scope.as_str(),
            meta.caller.key_owner().as_str(),
            query.target.as_ref().map_or("", PersonId::as_str),
            &actions,
            &instant(query.from),
            &instant(query.to),
            &establishments,
        ],
    )
}

/// Audit entries, newest first. The manager reads everything; a delegated admin the
/// entries about users of its establishments; a user (on their own route) their own.
pub async fn audit(
    env: &Env,
    meta: &RequestMeta,
    organization: &OrganizationId,
    user: Option<&PersonId>,
    filter: &AuditFilter,
    asked: &PageAsked,
    cursors: &Cursors,
) -> Result<AuditListing, Error> {
    let extra = user.map(|user| Key::User(organization.clone(), user.clone()));
    let scene = Scene::read(env.store.as_ref(), meta, organization, extra).await?;
    let now = env.clock.now();
    let query = audit_query(meta, &scene, user, filter, now)?;
    let listing = audit_listing(meta, &query);
    let listed = env.store.audit(&query, page_of(cursors, &listing, asked)?).await?;
    let people = people(env.store.as_ref(), organization, scene.standing(meta, now)?, mentioned_in_audit(&listed.items)).await?;
    Ok(AuditListing { entries: listed.items, people, next_cursor: cursor_of(cursors, &listing, listed.next.as_ref()) })
}

/// The most rows one export answer carries; a `next_cursor` continues it.
pub const EXPORT_ROWS: usize = 5_000;

/// What was exported, for the export's own audit entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Exported<T> {
    pub rows: Vec<T>,
    /// The names of the people the rows mention.
    pub people: People,
    pub next_cursor: Option<String>,
}

/// Audit entries for an export (same rights as reading), recorded in the audit trail
/// before they are given out.
pub struct ExportAudit {
    pub organization: OrganizationId,
    pub user: Option<PersonId>,
    pub filter: AuditFilter,
    /// The client's cursor, to continue an export.
    pub cursor: Option<String>,
    pub cursors: Cursors,
}

pub struct Listed<T> {
    scene: Scene,
    rows: Vec<T>,
    people: People,
    /// The cursor to continue from, sealed for the listing.
    next: Option<String>,
}

impl Command for ExportAudit {
    type State = Listed<AuditEntry>;
    type Answer = Exported<AuditEntry>;

    async fn load(&self, meta: &RequestMeta, reads: &mut Reads<'_>) -> Result<Listed<AuditEntry>, Error> {
        let extra = self.user.as_ref().map(|user| Key::User(self.organization.clone(), user.clone()));
        let scene = Scene::load(meta, reads, &self.organization, extra).await?;
        // The rows are read only for a caller who may read them.
        let query = audit_query(meta, &scene, self.user.as_ref(), &self.filter, reads.now())?;
        let listing = audit_listing(meta, &query);
        let page = page_of(&self.cursors, &listing, &PageAsked { limit: EXPORT_ROWS, cursor: self.cursor.clone() })?;
        let listed = reads.query(reads.store().audit(&query, page)).await?;
        let standing = scene.standing(meta, reads.now())?;
        let people = reads.query(people(reads.store(), &self.organization, standing, mentioned_in_audit(&listed.items))).await?;
        Ok(Listed { scene, rows: listed.items, people, next: cursor_of(&self.cursors, &listing, listed.next.as_ref()) })
    }

    fn authorize(&self, meta: &RequestMeta, state: &Listed<AuditEntry>, now: OffsetDateTime) -> Result<(), Rejection> {
        audit_query(meta, &state.scene, self.user.as_ref(), &self.filter, now).map(drop)
    }

    fn decide(
        &self,
        meta: &RequestMeta,
        state: &Listed<AuditEntry>,
        now: OffsetDateTime,
        fresh: &mut Fresh,
    ) -> Result<Decision<Exported<AuditEntry>>, Error> {
        let changes = json!({
            "format": "csv",
            "user": self.user,
            "from": self.filter.from.map(crate::clock::key_timestamp),
            "to": self.filter.to.map(crate::clock::key_timestamp),
            "actions": self.filter.actions,
            "rows": state.rows.len(),
        });
        let entry = audit_entry(meta, &self.organization, AuditAction::AuditExported, None, changes, now, fresh);
        let exported = Exported { rows: state.rows.clone(), people: state.people.clone(), next_cursor: state.next.clone() };
        Ok(Decision::answer(exported).audit(entry))
    }
}

/// Ledger entries for an export (manager or operator), recorded in the audit trail before
/// they are given out.
pub struct ExportLedger {
    pub organization: OrganizationId,
    /// The client's cursor, to continue an export.
    pub cursor: Option<String>,
    pub cursors: Cursors,
}

impl Command for ExportLedger {
    type State = Listed<LedgerEntry>;
    type Answer = Exported<LedgerEntry>;

    async fn load(&self, meta: &RequestMeta, reads: &mut Reads<'_>) -> Result<Listed<LedgerEntry>, Error> {
        let scene = Scene::load(meta, reads, &self.organization, []).await?;
        let standing = scene.standing(meta, reads.now())?;
        authorize(standing, Action::ReadBalance)?;
        let listing = ledger_listing(meta, &self.organization);
        let page = page_of(&self.cursors, &listing, &PageAsked { limit: EXPORT_ROWS, cursor: self.cursor.clone() })?;
        let listed = reads.query(reads.store().ledger(&self.organization, page)).await?;
        let people = reads.query(people(reads.store(), &self.organization, standing, mentioned_in_ledger(&listed.items))).await?;
        Ok(Listed { scene, rows: listed.items, people, next: cursor_of(&self.cursors, &listing, listed.next.as_ref()) })
    }

    fn authorize(&self, meta: &RequestMeta, state: &Listed<LedgerEntry>, now: OffsetDateTime) -> Result<(), Rejection> {
        authorize(state.scene.standing(meta, now)?, Action::ReadBalance).map(drop)
    }

    fn decide(
        &self,
        meta: &RequestMeta,
        state: &Listed<LedgerEntry>,
        now: OffsetDateTime,
        fresh: &mut Fresh,
    ) -> Result<Decision<Exported<LedgerEntry>>, Error> {
        let entry = audit_entry(
            meta,
            &self.organization,
            AuditAction::LedgerExported,
            None,
            json!({ "format": "csv", "rows": state.rows.len() }),
            now,
            fresh,
        );
        let exported = Exported { rows: state.rows.clone(), people: state.people.clone(), next_cursor: state.next.clone() };
        Ok(Decision::answer(exported).audit(entry))
    }
}
