//! Who may do what. Every use case asks this module; no route decides rights on its own.
//!
//! A caller's standing in an organization comes from its user record there:
//! - no record (another organization's user, or a stranger): the organization does not
//!   exist as far as the caller can tell — 404, never 403;
//! - the manager: everything in the organization;
//! - a delegated admin (an active member whose grants include `user_management` on some
//!   establishments): user management on those establishments only;
//! - any other member: only their own things.
//!
//! Operators onboard organizations and credit balances; platform services ask the check API.

use std::collections::BTreeSet;

use time::OffsetDateTime;

use crate::audit::Actor;
use crate::catalog::Service;
use crate::error::{Kind, Rejection};
use crate::grants::Grants;
use crate::identity::PersonId;
use crate::organization::{EstablishmentId, Organization};
use crate::user::User;

/// The authenticated caller, from the verified token's claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A person, identified by their national ID or iqama (`sub`).
    Person(PersonId),
    /// A platform operator (role claim `operator`); the string is the token's subject.
    Operator(String),
    /// Another platform service (role claim `service`).
    Service(String),
    /// No token: only the email activation route accepts this (the link is the proof).
    Anonymous,
}

impl Caller {
    pub fn actor(&self) -> Actor {
        match self {
            Caller::Person(id) => Actor::Person(id.clone()),
            Caller::Operator(subject) => Actor::Operator(subject.clone()),
            Caller::Service(subject) => Actor::Service(subject.clone()),
            Caller::Anonymous => Actor::System("anonymous".to_owned()),
        }
    }

    pub fn person(&self) -> Option<&PersonId> {
        match self {
            Caller::Person(id) => Some(id),
            _ => None,
        }
    }
}

/// The caller's standing within one organization.
#[derive(Debug, Clone, Copy)]
pub enum Standing<'a> {
    Operator,
    Manager(&'a User),
    DelegatedAdmin(&'a User),
    Member(&'a User),
}

impl<'a> Standing<'a> {
    /// Works out the standing. `organization` and `caller_user` are what the store holds
    /// (the caller's own user record in that organization, if any).
    pub fn of(
        caller: &Caller,
        organization: Option<&Organization>,
        caller_user: Option<&'a User>,
        now: OffsetDateTime,
    ) -> Result<Standing<'a>, Rejection> {
        let Some(organization) = organization else {
            return Err(Rejection::not_found());
        };
        match caller {
            Caller::Operator(_) => Ok(Standing::Operator),
            Caller::Service(_) | Caller::Anonymous => Err(Rejection::not_found()),
            Caller::Person(id) => {
                let user = caller_user.filter(|user| &user.id == id && user.organization == organization.id);
                let Some(user) = user else {
                    return Err(Rejection::not_found());
                };
                if user.is_manager() {
                    Ok(Standing::Manager(user))
                } else if user.can_act_at(now) && !user.grants.administered().is_empty() {
                    Ok(Standing::DelegatedAdmin(user))
                } else {
                    Ok(Standing::Member(user))
                }
            }
        }
    }

    pub fn user(&self) -> Option<&'a User> {
        match self {
            Standing::Operator => None,
            Standing::Manager(user) | Standing::DelegatedAdmin(user) | Standing::Member(user) => Some(user),
        }
    }
}

/// Actions outside any one organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlatformAction {
    OnboardOrganization,
    SaveRegistryPerson,
    /// Asking the check API about someone's access.
    CheckAccess,
}

/// Decides platform-level actions, which depend on the caller's role alone.
pub fn authorize_platform(caller: &Caller, action: PlatformAction) -> Result<(), Rejection> {
    match (action, caller) {
        (PlatformAction::OnboardOrganization | PlatformAction::SaveRegistryPerson, Caller::Operator(_)) => Ok(()),
        (PlatformAction::OnboardOrganization | PlatformAction::SaveRegistryPerson, _) => {
            Err(refuse(Kind::OperatorOnly, "only a platform operator can do this"))
        }
        (PlatformAction::CheckAccess, Caller::Service(_) | Caller::Operator(_)) => Ok(()),
        (PlatformAction::CheckAccess, _) => Err(refuse(Kind::Forbidden, "the check API is for platform services")),
    }
}

/// The person acting on their own account (confirming their activation code): only a
/// person can, and only on the record keyed by their own ID.
pub fn acting_on_own_account(caller: &Caller) -> Result<&PersonId, Rejection> {
    caller.person().ok_or_else(|| refuse(Kind::Forbidden, "only the user can do this, for their own account"))
}

/// What the caller wants to do.
#[derive(Debug, Clone, Copy)]
pub enum Action<'a> {
    ReadBalance,
    CreditBalance,
    Subscribe { establishments: &'a BTreeSet<EstablishmentId> },
    ListUsers,
    ReadOrganizationAudit,
    ViewUser(&'a User),
    ModifyUser(&'a User),
    ConfirmOwnContact(&'a User),
    CancelPendingChange(&'a User),
    ResendActivation(&'a User),
    Suspend(&'a User),
    Renew(&'a User),
    SetGrants { target: &'a User, after: &'a Grants },
}

/// What a permitted caller may see in listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Visibility {
    Everything,
    Establishments(BTreeSet<EstablishmentId>),
    /// Only entries about this user.
    OwnEntries(PersonId),
}

fn refuse(kind: Kind, message: &str) -> Rejection {
    Rejection::new(kind, message)
}

fn shares_establishment(administered: &BTreeSet<EstablishmentId>, target: &User) -> bool {
    target.establishments.iter().any(|e| administered.contains(e))
}

/// Checks the rules common to acting on another user: a delegated admin never acts on
/// itself or on the manager, and only on users of its establishments (`every`: all of the
/// target's establishments must be administered; otherwise one is enough).
fn delegated_admin_may_manage(admin: &User, target: &User, every: bool) -> Result<(), Rejection> {
    if target.id == admin.id {
        return Err(refuse(Kind::CannotManageSelf, "a delegated admin cannot manage its own account"));
    }
    if target.is_manager() {
        return Err(refuse(Kind::CannotManageManager, "nobody but the manager acts on the manager's account"));
    }
    let administered = admin.grants.administered();
    let allowed =
        if every { target.establishments.iter().all(|e| administered.contains(e)) } else { shares_establishment(&administered, target) };
    if allowed {
        Ok(())
    } else {
        Err(refuse(
            Kind::OutsideAdministeredEstablishments,
            if every {
                "the user belongs to establishments you do not administer"
            } else {
                "the user belongs to none of the establishments you administer"
            },
        ))
    }
}

fn manager_may_manage(manager: &User, target: &User, allow_self: bool) -> Result<(), Rejection> {
    if target.is_manager() && !(allow_self && target.id == manager.id) {
        return Err(refuse(Kind::CannotManageManager, "the manager's account cannot be changed this way"));
    }
    Ok(())
}

/// Decides whether the caller may take the action; on success says what it may see.
pub fn authorize(standing: Standing<'_>, action: Action<'_>) -> Result<Visibility, Rejection> {
    use Action::*;
    use Standing::*;
    let not_admin = || refuse(Kind::NotAnAdministrator, "this needs the manager or user management rights");
    match (standing, action) {
        (Operator, CreditBalance | ReadBalance) => Ok(Visibility::Everything),
        (Operator, _) => Err(refuse(Kind::Forbidden, "operators do not act inside organizations")),
        (_, CreditBalance) => Err(refuse(Kind::OperatorOnly, "only a platform operator credits balances")),
        (Manager(_), ReadBalance) => Ok(Visibility::Everything),
        (_, ReadBalance) => Err(refuse(Kind::ManagerOnly, "only the manager sees the balance")),

        (Manager(_), Subscribe { .. } | ListUsers | ReadOrganizationAudit) => Ok(Visibility::Everything),
        (DelegatedAdmin(admin), Subscribe { establishments }) => {
            let administered = admin.grants.administered();
            if !establishments.is_empty() && establishments.iter().all(|e| administered.contains(e)) {
                Ok(Visibility::Establishments(administered))
            } else {
                Err(refuse(Kind::OutsideAdministeredEstablishments, "you may subscribe users only to establishments you administer"))
            }
        }
        (DelegatedAdmin(admin), ListUsers | ReadOrganizationAudit) => Ok(Visibility::Establishments(admin.grants.administered())),
        (Member(_), Subscribe { .. } | ListUsers | ReadOrganizationAudit) => Err(not_admin()),

        (Manager(_), ViewUser(_)) => Ok(Visibility::Everything),
        (DelegatedAdmin(admin), ViewUser(target)) => {
            if target.id == admin.id || (!target.is_manager() && shares_establishment(&admin.grants.administered(), target)) {
                Ok(Visibility::Establishments(admin.grants.administered()))
            } else {
                // Within the organization a delegated admin sees only its establishments'
                // users; others look absent, as in the listing.
                Err(Rejection::user_not_found())
            }
        }
        (Member(me), ViewUser(target)) => {
            if target.id == me.id {
                Ok(Visibility::OwnEntries(me.id.clone()))
            } else {
                Err(Rejection::user_not_found())
            }
        }

        (_, ConfirmOwnContact(target)) => match standing.user() {
            Some(me) if me.id == target.id => Ok(Visibility::OwnEntries(me.id.clone())),
            _ => Err(refuse(Kind::Forbidden, "only the user can confirm their own contact details")),
        },

        (Manager(manager), ModifyUser(target) | CancelPendingChange(target)) => {
            manager_may_manage(manager, target, true).map(|()| Visibility::Everything)
        }
        (Manager(manager), ResendActivation(target) | Suspend(target) | Renew(target)) => {
            manager_may_manage(manager, target, matches!(action, Renew(_))).map(|()| Visibility::Everything)
        }
        (DelegatedAdmin(admin), ModifyUser(target) | CancelPendingChange(target) | ResendActivation(target)) => {
            delegated_admin_may_manage(admin, target, false).map(|()| Visibility::Establishments(admin.grants.administered()))
        }
        (DelegatedAdmin(admin), Suspend(target) | Renew(target)) => {
            delegated_admin_may_manage(admin, target, true).map(|()| Visibility::Establishments(admin.grants.administered()))
        }
        (Member(_), ModifyUser(_) | CancelPendingChange(_) | ResendActivation(_) | Suspend(_) | Renew(_)) => Err(not_admin()),

        (Manager(_), SetGrants { target, .. }) => {
            if target.is_manager() {
                Err(refuse(Kind::CannotManageManager, "the manager holds every right; its grants are not edited"))
            } else {
                Ok(Visibility::Everything)
            }
        }
        (DelegatedAdmin(admin), SetGrants { target, after }) => {
            delegated_admin_may_set_grants(admin, target, after).map(|()| Visibility::Establishments(admin.grants.administered()))
        }
        (Member(_), SetGrants { .. }) => Err(not_admin()),
    }
}

/// A delegated admin may change only cells on establishments where it holds
/// `user_management`, and only for services it holds there itself — adding or removing.
/// So it can never hand out (or take away) more than it has, and `user_management` can
/// spread no wider than its own.
fn delegated_admin_may_set_grants(admin: &User, target: &User, after: &Grants) -> Result<(), Rejection> {
    if target.id == admin.id {
        return Err(refuse(Kind::CannotManageSelf, "nobody changes their own grants"));
    }
    delegated_admin_may_manage(admin, target, false)?;
    let administered = admin.grants.administered();
    let (added, removed) = target.grants.diff(after);
    for (establishment, service) in added.iter().chain(removed.iter()) {
        if !administered.contains(establishment) {
            return Err(refuse(Kind::OutsideAdministeredEstablishments, "you do not administer that establishment")
                .detail("establishment", establishment.as_str())
                .detail("service", service.as_str()));
        }
        if !admin.grants.holds(establishment, service) {
            return Err(refuse(Kind::ServiceNotHeld, "you can only grant or revoke services you hold on that establishment")
                .detail("establishment", establishment.as_str())
                .detail("service", service.as_str()));
        }
    }
    Ok(())
}

/// Answer of the check API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckReason {
    Granted,
    Manager,
    NotSubscribed,
    NotActive,
    Suspended,
    SeatExpired,
    UnknownService,
    ServiceNotOnPlatform,
    SaudiOnly,
    NoGrant,
}

impl CheckReason {
    pub fn allowed(self) -> bool {
        matches!(self, CheckReason::Granted | CheckReason::Manager)
    }
}

/// May `user` use `service` on `establishment` now? Decided from the user record alone, so
/// the check API needs one read. `service` is the catalog entry (`None`: unknown code).
pub fn check_access(user: Option<&User>, establishment: &EstablishmentId, service: Option<&Service>, now: OffsetDateTime) -> CheckReason {
    use crate::user::UserStatus;
    let Some(user) = user else {
        return CheckReason::NotSubscribed;
    };
    if user.status == UserStatus::Suspended {
        return CheckReason::Suspended;
    }
    if !user.is_manager() {
        if user.status == UserStatus::Expired || !user.seat_valid_at(now) {
            return CheckReason::SeatExpired;
        }
        if user.status != UserStatus::Active {
            return CheckReason::NotActive;
        }
    }
    let Some(service) = service else {
        return CheckReason::UnknownService;
    };
    if !service.platform.serves(user.plan) {
        return CheckReason::ServiceNotOnPlatform;
    }
    if service.saudi_only && !user.id.is_citizen() {
        return CheckReason::SaudiOnly;
    }
    if user.is_manager() {
        return if user.establishments.contains(establishment) { CheckReason::Manager } else { CheckReason::NoGrant };
    }
    if user.grants.holds(establishment, &service.code) { CheckReason::Granted } else { CheckReason::NoGrant }
}
