//! Operator work: onboarding organizations and keeping the person registry.

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::json;
use time::Date;

use super::{Attempt, Committed, RequestMeta, commit, new_id};
use crate::app::App;
use crate::audit::{AuditAction, AuditEntry, AuditScope};
use crate::contact::{Email, Language, SaudiMobile};
use crate::error::{Error, Kind, Rejection};
use crate::identity::PersonId;
use crate::ledger::Balance;
use crate::organization::{Establishment, EstablishmentId, Organization, OrganizationId, PricingPlan};
use crate::person::{Nationality, Person, PersonName};
use crate::policy::{PlatformAction, authorize_platform};
use crate::store::{Key, Record, Write};
use crate::user::{Activation, NotificationSettings, Role, User, UserStatus};

#[derive(Debug, Clone)]
pub struct Onboard {
    pub id: OrganizationId,
    pub name: String,
    pub plan: PricingPlan,
    pub manager: PersonId,
    pub establishments: Vec<Establishment>,
}

/// Creates the organization, its empty balance and the manager's account, in one write.
/// The manager must be in the registry (their contact details come from it).
pub async fn onboard(app: &App, meta: &RequestMeta, command: Onboard) -> Result<Organization, Error> {
    authorize_platform(&meta.caller, PlatformAction::OnboardOrganization)?;
    let mut seen = BTreeSet::new();
    for (position, establishment) in command.establishments.iter().enumerate() {
        if !seen.insert(&establishment.id) {
            return Err(Rejection::new(Kind::InvalidField, "an establishment is listed twice")
                .field(format!("establishments[{position}].id"))
                .into());
        }
    }
    if command.establishments.is_empty() {
        return Err(Rejection::new(Kind::InvalidField, "an organization has at least one establishment").field("establishments").into());
    }

    // Set when a commit's outcome was unknown: finding our own organization then is success.
    let mut maybe_committed = false;
    Ok(retrying!(app, {
        let now = app.clock.now();
        let loaded = app.store.load(&[Key::Organization(command.id.clone()), Key::Person(command.manager.clone())]).await?;
        if let Some(existing) = loaded.organization(&command.id) {
            let ours = existing.name == command.name
                && existing.plan == command.plan
                && existing.manager == command.manager
                && existing.establishments == command.establishments;
            if maybe_committed && ours {
                return Ok(Attempt::Done(existing.clone()));
            }
            return Err(organization_exists());
        }
        let Some(manager) = loaded.person(&command.manager) else {
            return Err(Rejection::new(Kind::PersonNotRegistered, "the manager is not in the person registry").field("manager_id").into());
        };
        let organization = Organization {
            id: command.id.clone(),
            name: command.name.clone(),
            plan: command.plan,
            manager: command.manager.clone(),
            establishments: command.establishments.clone(),
            settings: Default::default(),
            created_at: now,
            version: 1,
        };
        let manager_user = User {
            organization: organization.id.clone(),
            id: manager.id.clone(),
            role: Role::Manager,
            plan: organization.plan,
            status: UserStatus::Active,
            user_type: None,
            name: manager.name.clone(),
            email: manager.email.clone(),
            mobile: manager.mobile.clone(),
            language: Language::default(),
            job_title: None,
            notifications: NotificationSettings::default(),
            establishments: organization.establishment_ids(),
            grants: Default::default(),
            grants_version: 1,
            profile_version: 1,
            seat: None,
            next_seat: None,
            iqama_expiry: manager.iqama_expiry,
            past_seats: vec![],
            activation: Activation::default(),
            pending_email: None,
            pending_mobile: None,
            recent_resends: vec![],
            suspension: None,
            created_at: now,
            updated_at: now,
            version: 1,
        };
        let audit = super::audit_entry(
            meta,
            &organization.id,
            AuditAction::OrganizationOnboarded,
            Some(&manager_user),
            json!({
                "name": organization.name,
                "plan": organization.plan,
                "establishments": organization.establishments.iter().map(|e| json!({"id": e.id, "size": e.size})).collect::<Vec<_>>(),
            }),
            now,
        );
        let writes = vec![
            Write::create(Record::Organization(organization.clone())),
            Write::create(Record::Balance(Balance::opening(organization.id.clone()))),
            Write::create(Record::User(manager_user)),
            Write::create(Record::Audit(audit)),
        ];
        match commit(app, writes).await? {
            Committed::Yes => Ok(Attempt::Done(organization)),
            Committed::Conflict(failed) if failed.contains(&0) => Err(organization_exists()),
            Committed::Conflict(_) => Ok(Attempt::Retry),
            Committed::Unknown => {
                maybe_committed = true;
                Ok(Attempt::Retry)
            }
        }
    }))
}

fn organization_exists() -> Error {
    Rejection::new(Kind::OrganizationExists, "an organization with this unified number exists").into()
}

#[derive(Debug, Clone)]
pub struct SavePerson {
    pub id: PersonId,
    pub name: PersonName,
    pub nationality: Nationality,
    pub iqama_expiry: Option<Date>,
    pub employers: BTreeSet<EstablishmentId>,
    pub email: Email,
    pub mobile: SaudiMobile,
}

#[derive(Debug, Clone, Serialize)]
pub struct Saved {
    pub person: Person,
    pub created: bool,
}

/// Creates or replaces a registry entry (the stand-in for the ministry's registry).
pub async fn save_person(app: &App, meta: &RequestMeta, command: SavePerson) -> Result<Saved, Error> {
    authorize_platform(&meta.caller, PlatformAction::SaveRegistryPerson)?;
    if command.name.ar.as_deref().unwrap_or("").trim().is_empty() && command.name.en.as_deref().unwrap_or("").trim().is_empty() {
        return Err(Rejection::new(Kind::InvalidField, "a name in Arabic or English is required").field("name").into());
    }
    match (&command.id, command.nationality.is_saudi()) {
        (PersonId::National(_), false) | (PersonId::Iqama(_), true) => {
            return Err(Rejection::new(
                Kind::NationalityMismatch,
                "national IDs belong to Saudi citizens (SA) and iqamas to residents of other nationalities",
            )
            .field("nationality")
            .into());
        }
        _ => {}
    }
    match (&command.id, command.iqama_expiry) {
        (PersonId::Iqama(_), None) => {
            return Err(Rejection::new(Kind::IqamaExpiryRequired, "a resident's iqama expiry date is required")
                .field("iqama_expiry")
                .into());
        }
        (PersonId::National(_), Some(_)) => {
            return Err(Rejection::new(Kind::InvalidField, "citizens have no iqama expiry").field("iqama_expiry").into());
        }
        _ => {}
    }

    Ok(retrying!(app, {
        let now = app.clock.now();
        // The person's user records, in every organization: a renewed (or corrected) iqama
        // reaches them in the same write, so the check API keeps deciding from one read.
        let organizations = app.store.memberships(&command.id).await?;
        let mut keys = vec![Key::Person(command.id.clone())];
        keys.extend(organizations.iter().map(|organization| Key::User(organization.clone(), command.id.clone())));
        let loaded = app.store.load(&keys).await?;
        let existing = loaded.person(&command.id);
        let person = Person {
            id: command.id.clone(),
            name: command.name.clone(),
            nationality: command.nationality.clone(),
            iqama_expiry: command.iqama_expiry,
            employers: command.employers.clone(),
            email: command.email.clone(),
            mobile: command.mobile.clone(),
            updated_at: now,
            version: existing.map_or(1, |p| p.version + 1),
        };
        let audit = AuditEntry {
            scope: AuditScope::Platform,
            id: new_id("audit"),
            at: now,
            actor: meta.caller.actor(),
            action: AuditAction::RegistryPersonSaved,
            target: Some(person.id.clone()),
            establishments: person.employers.clone(),
            changes: json!({
                "created": existing.is_none(),
                "nationality": person.nationality,
                "iqama_expiry": person.iqama_expiry.map(|d| d.to_string()),
                "email": person.email.masked(),
                "mobile": person.mobile.masked(),
            }),
            request_id: meta.request_id.clone(),
        };
        let mut writes = vec![
            match existing {
                Some(previous) => Write::replace(Record::Person(person.clone()), previous.version),
                None => Write::create(Record::Person(person.clone())),
            },
            Write::create(Record::Audit(audit)),
        ];
        for organization in &organizations {
            let Some(user) = loaded.user(organization, &command.id).filter(|user| user.iqama_expiry != person.iqama_expiry) else {
                continue;
            };
            let mut next = user.clone();
            next.iqama_expiry = person.iqama_expiry;
            next.updated_at = now;
            next.version = user.version + 1;
            writes.push(Write::create(Record::Audit(super::audit_entry(
                meta,
                organization,
                AuditAction::UserIqamaUpdated,
                Some(&next),
                json!({ "iqama_expiry": { "before": user.iqama_expiry.map(|d| d.to_string()), "after": next.iqama_expiry.map(|d| d.to_string()) } }),
                now,
            ))));
            writes.push(Write::replace(Record::User(next), user.version));
        }
        if writes.len() > crate::store::MAX_WRITES {
            // Two items per organization the person is a user of: beyond 49 organizations
            // one transaction cannot hold them, and a partial update is not an option.
            return Err(Error::internal(format!(
                "a person with a user record in {} organizations cannot be updated at once",
                organizations.len()
            )));
        }
        match commit(app, writes).await? {
            Committed::Yes => Ok(Attempt::Done(Saved { created: existing.is_none(), person })),
            Committed::Conflict(_) | Committed::Unknown => Ok(Attempt::Retry),
        }
    }))
}
