//! Who may do what. Every use case asks this module; no route decides rights on its own.
//!
//! A caller's standing in an organization comes from its user record there:
//! - no record (another organization's user, or a stranger): an outsider, to whom the
//!   organization does not exist — 404, never 403 — except that a registered employee of
//!   one of its establishments may buy their own seat there (Qiwa: "the user can subscribe
//!   by himself"), unless the manager turned that off;
//! - anyone whose iqama has expired: refused with `iqama_expired`, whatever they ask;
//! - the manager: everything in the organization;
//! - a delegated admin (an active member whose grants include `user_management` on some
//!   establishments): user management on those establishments only;
//! - any other member: only their own things.
//!
//! Operators onboard organizations and credit balances; platform services ask the check API.
//!
//! A caller who may not act on users gets one answer whatever the target: the target is
//! looked up only after the caller's right to that kind of action is established, and a
//! user the caller may not see answers exactly as a user that does not exist
//! (`target_of`). No route tells a member, or an outsider, which users exist.

use std::collections::BTreeSet;

use time::OffsetDateTime;

use crate::audit::Actor;
use crate::catalog::Service;
use crate::error::{Kind, Rejection};
use crate::grants::Grants;
use crate::identity::PersonId;
use crate::organization::{EstablishmentId, Organization};
use crate::person::Person;
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
    /// Who owns an idempotency key: the full identity, never logged. Keys of different
    /// callers never meet, even when the text is the same (as Stripe scopes keys to the
    /// account).
    pub fn key_owner(&self) -> String {
        match self {
            Caller::Person(id) => format!("person:{}", id.as_str()),
            Caller::Operator(subject) => format!("operator:{subject}"),
            Caller::Service(subject) => format!("service:{subject}"),
            Caller::Anonymous => "anonymous".to_owned(),
        }
    }
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
    /// A person with no user record in the organization.
    Outsider(&'a PersonId),
}

impl<'a> Standing<'a> {
    /// Works out the standing. `organization` and `caller_user` are what the store holds
    /// (the caller's own user record in that organization, if any). A person with no record
    /// there is refused as if the organization did not exist.
    pub fn of(
        caller: &'a Caller,
        organization: Option<&Organization>,
        caller_user: Option<&'a User>,
        now: OffsetDateTime,
    ) -> Result<Standing<'a>, Rejection> {
        match Standing::with_outsiders(caller, organization, caller_user, now)? {
            Standing::Outsider(_) => Err(Rejection::not_found()),
            standing => Ok(standing),
        }
    }

    /// As `of`, but a person with no record in the organization is an `Outsider` rather
    /// than refused: only for actions an outsider may take (buying their own seat), which
    /// `authorize` judges.
    pub fn with_outsiders(
        caller: &'a Caller,
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
                    return Ok(Standing::Outsider(id));
                };
                if !user.iqama_valid_at(now) {
                    return Err(iqama_expired());
                }
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
            Standing::Operator | Standing::Outsider(_) => None,
            Standing::Manager(user) | Standing::DelegatedAdmin(user) | Standing::Member(user) => Some(user),
        }
    }

    /// Whether this caller can see `target` at all: the manager sees everyone, a delegated
    /// admin itself, the manager and the users of its establishments, anyone else only
    /// themselves.
    pub fn sees(&self, target: &User) -> bool {
        match self {
            Standing::Operator | Standing::Outsider(_) => false,
            Standing::Manager(_) => true,
            Standing::DelegatedAdmin(admin) => {
                target.id == admin.id || target.is_manager() || shares_establishment(&admin.grants.administered(), target)
            }
            Standing::Member(me) => target.id == me.id,
        }
    }
}

/// The refusal of anyone whose iqama has expired.
pub fn iqama_expired() -> Rejection {
    Rejection::new(Kind::IqamaExpired, "the iqama has expired; access returns when the registry shows a renewed iqama")
}

/// A kind of action on one user, before the user is looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnUser {
    View,
    Modify,
    ConfirmOwnContact,
    CancelPendingChange,
    ResendActivation,
    Suspend,
    Renew,
    SetGrants,
}

/// Finds the user an action is about, in the order that reveals nothing: first whether the
/// caller may take this kind of action on anyone (an outsider gets 404 `not_found`, a
/// member asking for an administrator's action 403 `not_an_administrator`, whatever the
/// target); then the target, where one the caller may not see is as absent as one that does
/// not exist (404 `user_not_found`). What the caller may do to the target found is then
/// `authorize`'s to say.
pub fn target_of<'a>(standing: Standing<'_>, kind: OnUser, id: &PersonId, found: Option<&'a User>) -> Result<&'a User, Rejection> {
    match standing {
        Standing::Operator => return Err(refuse(Kind::Forbidden, "operators do not act inside organizations")),
        Standing::Outsider(_) => return Err(Rejection::not_found()),
        Standing::Member(me) => match kind {
            OnUser::View => {}
            OnUser::ConfirmOwnContact => {
                if &me.id != id {
                    return Err(only_the_user());
                }
            }
            // A new user may ask for a fresh link or code of their own (the activation page).
            OnUser::ResendActivation if &me.id == id => {}
            _ => return Err(not_an_administrator()),
        },
        Standing::Manager(me) | Standing::DelegatedAdmin(me) => {
            if kind == OnUser::ConfirmOwnContact && &me.id != id {
                return Err(only_the_user());
            }
        }
    }
    found.filter(|target| standing.sees(target)).ok_or_else(Rejection::user_not_found)
}

fn only_the_user() -> Rejection {
    refuse(Kind::Forbidden, "only the user confirms their own contact details")
}

fn not_an_administrator() -> Rejection {
    refuse(Kind::NotAnAdministrator, "this needs the manager or user management rights")
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
    /// Reading the organization's profile: its name, establishments and settings.
    ViewOrganization,
    ChangeSettings,
    Subscribe {
        establishments: &'a BTreeSet<EstablishmentId>,
    },
    /// A person buying their own seat, for establishments of the organization.
    SubscribeSelf {
        organization: &'a Organization,
        person: Option<&'a Person>,
        establishments: &'a BTreeSet<EstablishmentId>,
    },
    ListUsers,
    ReadOrganizationAudit,
    ViewUser(&'a User),
    ModifyUser(&'a User),
    ConfirmOwnContact(&'a User),
    CancelPendingChange(&'a User),
    ResendActivation(&'a User),
    Suspend(&'a User),
    Renew(&'a User),
    SetGrants {
        target: &'a User,
        after: &'a Grants,
    },
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
    let not_admin = not_an_administrator;
    match (standing, action) {
        (Operator, CreditBalance | ReadBalance | ViewOrganization) => Ok(Visibility::Everything),
        (Operator, _) => Err(refuse(Kind::Forbidden, "operators do not act inside organizations")),
        (Outsider(me), SubscribeSelf { organization, person, establishments }) => {
            self_subscription(me, organization, person, establishments)
        }
        (Outsider(_), _) => Err(Rejection::not_found()),
        (_, CreditBalance) => Err(refuse(Kind::OperatorOnly, "only a platform operator credits balances")),
        (Manager(_), ReadBalance | ChangeSettings) => Ok(Visibility::Everything),
        (_, ReadBalance) => Err(refuse(Kind::ManagerOnly, "only the manager sees the balance")),
        (_, ChangeSettings) => Err(refuse(Kind::ManagerOnly, "only the manager changes the organization's settings")),
        (Manager(_), ViewOrganization) => Ok(Visibility::Everything),
        (DelegatedAdmin(admin), ViewOrganization) => Ok(Visibility::Establishments(admin.grants.administered())),
        (Member(me), ViewOrganization) => Ok(Visibility::OwnEntries(me.id.clone())),
        (Manager(_), SubscribeSelf { .. }) => Ok(Visibility::Everything),
        (DelegatedAdmin(admin), SubscribeSelf { establishments, .. }) => authorize(DelegatedAdmin(admin), Subscribe { establishments }),
        (Member(me), SubscribeSelf { organization, person, establishments }) => {
            self_subscription(&me.id, organization, person, establishments)
        }

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

        // The manager changes their own data and has their own messages sent again (a code
        // for their own contact change); it never suspends itself.
        (Manager(manager), ModifyUser(target) | CancelPendingChange(target) | ResendActivation(target)) => {
            manager_may_manage(manager, target, true).map(|()| Visibility::Everything)
        }
        (Manager(manager), Suspend(target) | Renew(target)) => {
            manager_may_manage(manager, target, matches!(action, Renew(_))).map(|()| Visibility::Everything)
        }
        (DelegatedAdmin(admin), ModifyUser(target) | CancelPendingChange(target) | ResendActivation(target)) => {
            delegated_admin_may_manage(admin, target, false).map(|()| Visibility::Establishments(admin.grants.administered()))
        }
        (DelegatedAdmin(admin), Suspend(target) | Renew(target)) => {
            delegated_admin_may_manage(admin, target, true).map(|()| Visibility::Establishments(admin.grants.administered()))
        }
        (Member(me), ResendActivation(target)) if target.id == me.id => Ok(Visibility::OwnEntries(me.id.clone())),
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

/// A registered employee buying their own seat: only for establishments that employ them,
/// and only while the organization allows it. To someone employed by none of the
/// organization's establishments, the organization does not exist.
fn self_subscription(
    me: &PersonId,
    organization: &Organization,
    person: Option<&Person>,
    establishments: &BTreeSet<EstablishmentId>,
) -> Result<Visibility, Rejection> {
    let employed_here =
        person.filter(|p| &p.id == me).is_some_and(|p| organization.establishments.iter().any(|e| p.employers.contains(&e.id)));
    if !employed_here {
        return Err(Rejection::not_found());
    }
    if !organization.settings.employee_self_subscription {
        return Err(refuse(
            Kind::SelfSubscriptionDisabled,
            "the manager has turned off employees subscribing themselves; ask an administrator to add you",
        ));
    }
    let person = person.expect("checked above");
    if let Some(outside) = establishments.iter().find(|e| !person.employers.contains(*e)) {
        return Err(refuse(Kind::NotAnEmployee, "you can subscribe yourself only to establishments that employ you")
            .field("persons[0].establishments")
            .detail("establishment", outside.as_str()));
    }
    Ok(Visibility::OwnEntries(me.clone()))
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
    IqamaExpired,
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
    if !user.iqama_valid_at(now) {
        return CheckReason::IqamaExpired;
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
