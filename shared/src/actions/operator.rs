//! Operator work: onboarding organizations, keeping the person registry, crediting
//! balances. Platform-level rights come from the caller's role (`policy::authorize_platform`).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::json;
use time::{Date, OffsetDateTime};

use super::Scene;
use crate::audit::{AuditAction, AuditEntry, AuditScope};
use crate::contact::{Email, SaudiMobile};
use crate::entropy::Fresh;
use crate::error::{Error, Kind, Rejection};
use crate::idempotency::{IdempotencyScope, key_digest, request_digest};
use crate::identity::PersonId;
use crate::ledger::{Balance, Direction, LedgerEntry, LedgerReason, ledger_sequence};
use crate::money::Halalas;
use crate::organization::{Establishment, EstablishmentId, Organization, OrganizationId, PricingPlan};
use crate::person::{Nationality, Person, PersonName};
use crate::pipeline::{Command, Decision, Keyed, Reads, RequestMeta, audit_entry};
use crate::policy::{Action, PlatformAction, authorize, authorize_platform};
use crate::store::{Key, Loaded, MAX_WRITES, Record, Write};
use crate::user::{Role, User, UserStatus};

// ---------------------------------------------------------------------------------------
// Onboarding

#[derive(Debug, Clone)]
pub struct Onboard {
    pub id: OrganizationId,
    pub name: String,
    pub plan: PricingPlan,
    pub manager: PersonId,
    pub establishments: Vec<Establishment>,
}

impl Onboard {
    /// Checks the shape before anything is read.
    pub fn new(
        id: OrganizationId,
        name: String,
        plan: PricingPlan,
        manager: PersonId,
        establishments: Vec<Establishment>,
    ) -> Result<Self, Rejection> {
        let mut seen = BTreeSet::new();
        for (position, establishment) in establishments.iter().enumerate() {
            if !seen.insert(&establishment.id) {
                return Err(
                    Rejection::new(Kind::InvalidField, "an establishment is listed twice").field(format!("establishments[{position}].id"))
                );
            }
        }
        if establishments.is_empty() {
            return Err(Rejection::new(Kind::InvalidField, "an organization has at least one establishment").field("establishments"));
        }
        Ok(Onboard { id, name, plan, manager, establishments })
    }
}

/// Creates the organization, its empty balance and the manager's account, in one write.
/// The manager must be in the registry (their contact details come from it).
impl Command for Onboard {
    type State = Loaded;
    type Answer = Organization;

    async fn load(&self, _: &RequestMeta, reads: &mut Reads<'_>) -> Result<Loaded, Error> {
        reads.load([Key::Organization(self.id.clone()), Key::Person(self.manager.clone())]).await
    }

    fn authorize(&self, meta: &RequestMeta, _: &Loaded, _: OffsetDateTime) -> Result<(), Rejection> {
        authorize_platform(&meta.caller, PlatformAction::OnboardOrganization)
    }

    fn decide(&self, meta: &RequestMeta, loaded: &Loaded, now: OffsetDateTime, fresh: &mut Fresh) -> Result<Decision<Organization>, Error> {
        if loaded.organization(&self.id).is_some() {
            return Err(Rejection::new(Kind::OrganizationExists, "an organization with this unified number exists").into());
        }
        let Some(manager) = loaded.person(&self.manager) else {
            return Err(Rejection::new(Kind::PersonNotRegistered, "the manager is not in the person registry").field("manager_id").into());
        };
        let organization = Organization {
            id: self.id.clone(),
            name: self.name.clone(),
            plan: self.plan,
            manager: self.manager.clone(),
            establishments: self.establishments.clone(),
            settings: Default::default(),
            created_at: now,
            version: 1,
        };
        let manager_user = User {
            establishments: organization.establishment_ids(),
            ..User::new(&organization, manager, Role::Manager, UserStatus::Active, now)
        };
        let audit = audit_entry(
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
            fresh,
        );
        Ok(Decision::answer(organization.clone())
            .write(Write::create(Record::Organization(organization.clone())))
            .write(Write::create(Record::Balance(Balance::opening(organization.id.clone()))))
            .write(Write::create(Record::User(manager_user)))
            .write(Write::replace(Record::Person(manager.joining(&organization.id)), manager.version))
            .audit(audit))
    }
}

// ---------------------------------------------------------------------------------------
// The registry

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

impl SavePerson {
    /// Checks what the registry requires before anything is read.
    pub fn check(self) -> Result<Self, Rejection> {
        if self.name.ar.as_deref().unwrap_or("").trim().is_empty() && self.name.en.as_deref().unwrap_or("").trim().is_empty() {
            return Err(Rejection::new(Kind::InvalidField, "a name in Arabic or English is required").field("name"));
        }
        match (&self.id, self.nationality.is_saudi()) {
            (PersonId::National(_), false) | (PersonId::Iqama(_), true) => {
                return Err(Rejection::new(
                    Kind::NationalityMismatch,
                    "national IDs belong to Saudi citizens (SA) and iqamas to residents of other nationalities",
                )
                .field("nationality"));
            }
            _ => {}
        }
        match (&self.id, self.iqama_expiry) {
            (PersonId::Iqama(_), None) => {
                Err(Rejection::new(Kind::IqamaExpiryRequired, "a resident's iqama expiry date is required").field("iqama_expiry"))
            }
            (PersonId::National(_), Some(_)) => {
                Err(Rejection::new(Kind::InvalidField, "citizens have no iqama expiry").field("iqama_expiry"))
            }
            _ => Ok(self),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Saved {
    pub person: Person,
    pub created: bool,
}

/// The person and their user records in every organization: the organizations are the
/// person record's own list of them (kept by the writes that create user records), read
/// strongly, so a user record committed a moment ago is never missed.
pub struct Registered {
    loaded: Loaded,
    organizations: Vec<OrganizationId>,
}

/// Creates or replaces a registry entry (the stand-in for the ministry's registry). A
/// renewed (or corrected) iqama reaches the person's user records in every organization in
/// the same write, so the check API keeps deciding from one read.
impl Command for SavePerson {
    type State = Registered;
    type Answer = Saved;

    async fn load(&self, _: &RequestMeta, reads: &mut Reads<'_>) -> Result<Registered, Error> {
        let mut loaded = reads.load([Key::Person(self.id.clone())]).await?;
        let organizations: Vec<OrganizationId> =
            loaded.person(&self.id).map(|person| person.memberships.iter().cloned().collect()).unwrap_or_default();
        if !organizations.is_empty() {
            loaded.merge(reads.load(organizations.iter().map(|organization| Key::User(organization.clone(), self.id.clone()))).await?);
        }
        Ok(Registered { loaded, organizations })
    }

    fn authorize(&self, meta: &RequestMeta, _: &Registered, _: OffsetDateTime) -> Result<(), Rejection> {
        authorize_platform(&meta.caller, PlatformAction::SaveRegistryPerson)
    }

    fn decide(&self, meta: &RequestMeta, state: &Registered, now: OffsetDateTime, fresh: &mut Fresh) -> Result<Decision<Saved>, Error> {
        let existing = state.loaded.person(&self.id);
        let person = Person {
            id: self.id.clone(),
            name: self.name.clone(),
            nationality: self.nationality.clone(),
            iqama_expiry: self.iqama_expiry,
            employers: self.employers.clone(),
            email: self.email.clone(),
            mobile: self.mobile.clone(),
            memberships: existing.map(|p| p.memberships.clone()).unwrap_or_default(),
            updated_at: now,
            version: existing.map_or(1, |p| p.version + 1),
        };
        let mut decision = Decision::answer(Saved { created: existing.is_none(), person: person.clone() })
            .write(match existing {
                Some(previous) => Write::replace(Record::Person(person.clone()), previous.version),
                None => Write::create(Record::Person(person.clone())),
            })
            .audit(AuditEntry {
                scope: AuditScope::Platform,
                id: fresh.id("audit"),
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
            });
        // The person, its platform audit entry, and the intent carrying the change events.
        let mut items = 3;
        for organization in &state.organizations {
            let Some(user) = state.loaded.user(organization, &self.id).filter(|user| user.iqama_expiry != person.iqama_expiry) else {
                continue;
            };
            // Two items per organization: beyond 48 organizations one transaction cannot
            // hold them, and a partial update is not an option.
            items += 2;
            if items > MAX_WRITES {
                return Err(Error::internal(format!(
                    "a person with user records in {} organizations cannot be updated at once",
                    state.organizations.len()
                )));
            }
            let mut next = user.clone();
            next.iqama_expiry = person.iqama_expiry;
            next.updated_at = now;
            next.version = user.version + 1;
            let day = |date: Option<Date>| date.map(|d| d.to_string());
            decision.push_audit(audit_entry(
                meta,
                organization,
                AuditAction::UserIqamaUpdated,
                Some(&next),
                json!({ "iqama_expiry": { "before": day(user.iqama_expiry), "after": day(next.iqama_expiry) } }),
                now,
                fresh,
            ));
            decision.push_write(Write::replace(Record::User(next), user.version));
        }
        Ok(decision)
    }
}

// ---------------------------------------------------------------------------------------
// Credits

/// An organization without its balance record: the store is not as onboarding left it.
pub(crate) fn missing_balance(organization: &OrganizationId) -> Error {
    Error::internal(format!("organization {organization} has no balance record"))
}

/// The largest single credit, 100 million riyals: a typo guard, not a business rule.
pub const MAX_CREDIT: Halalas = Halalas::from_riyals(100_000_000);

#[derive(Debug, Clone)]
pub struct Credit {
    pub organization: OrganizationId,
    pub amount: Halalas,
    pub payment_reference: String,
    keyed: Keyed,
}

impl Credit {
    /// A credit of a payment made outside the system. Its payment reference makes it
    /// idempotent forever; the reference belongs to the organization, not to the operator
    /// who enters it, so two operators crediting the same payment meet the same record.
    pub fn new(organization: OrganizationId, amount: Halalas, payment_reference: &str) -> Result<Self, Rejection> {
        if amount.is_zero() || amount > MAX_CREDIT {
            return Err(
                Rejection::new(Kind::InvalidAmount, format!("a credit is between 0.01 SAR and {MAX_CREDIT}")).field("amount_halalas")
            );
        }
        let reference = crate::parse::text("payment_reference", payment_reference, 100)?;
        let keyed = Keyed {
            organization: organization.clone(),
            scope: IdempotencyScope::Credit,
            key_digest: key_digest(&reference),
            request_digest: request_digest(&json!({ "amount_halalas": amount })),
            lifetime: None,
            reused: Kind::PaymentReferenceReused,
        };
        Ok(Credit { organization, amount, payment_reference: reference, keyed })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreditReceipt {
    pub organization_id: OrganizationId,
    pub payment_reference: String,
    pub credited_halalas: Halalas,
    pub balance_halalas: Halalas,
    pub ledger_entry_id: String,
    #[serde(with = "crate::clock::utc")]
    pub credited_at: OffsetDateTime,
}

impl Command for Credit {
    type State = Scene;
    type Answer = CreditReceipt;

    async fn load(&self, meta: &RequestMeta, reads: &mut Reads<'_>) -> Result<Scene, Error> {
        Scene::load(meta, reads, &self.organization, [Key::Balance(self.organization.clone())]).await
    }

    fn authorize(&self, meta: &RequestMeta, scene: &Scene, now: OffsetDateTime) -> Result<(), Rejection> {
        authorize(scene.standing(meta, now)?, Action::CreditBalance).map(drop)
    }

    fn decide(&self, meta: &RequestMeta, scene: &Scene, now: OffsetDateTime, fresh: &mut Fresh) -> Result<Decision<CreditReceipt>, Error> {
        let organization = &self.organization;
        let balance = scene.loaded.balance(organization).ok_or_else(|| missing_balance(organization))?;
        let overflow = || Error::internal("the balance would overflow");
        let available = balance.available.checked_add(self.amount).ok_or_else(overflow)?;
        let entry = LedgerEntry {
            organization: organization.clone(),
            id: fresh.id("entry"),
            sequence: ledger_sequence(balance.version + 1, 0),
            at: now,
            direction: Direction::Credit,
            amount: self.amount,
            balance_after: available,
            reason: LedgerReason::Credit { payment_reference: self.payment_reference.clone() },
            actor: meta.caller.actor(),
            request_id: meta.request_id.clone(),
        };
        let receipt = CreditReceipt {
            organization_id: organization.clone(),
            payment_reference: self.payment_reference.clone(),
            credited_halalas: self.amount,
            balance_halalas: available,
            ledger_entry_id: entry.id.clone(),
            credited_at: now,
        };
        let next = Balance {
            available,
            total_credited: balance.total_credited.checked_add(self.amount).ok_or_else(overflow)?,
            version: balance.version + 1,
            ..balance.clone()
        };
        let audit = audit_entry(
            meta,
            organization,
            AuditAction::BalanceCredited,
            None,
            json!({ "amount_halalas": self.amount, "balance_halalas": available, "payment_reference": self.payment_reference }),
            now,
            fresh,
        );
        Ok(Decision::answer(receipt)
            .write(Write::replace(Record::Balance(next), balance.version))
            .write(Write::create(Record::Ledger(entry)))
            .audit(audit))
    }

    fn keyed(&self) -> Option<&Keyed> {
        Some(&self.keyed)
    }
}
