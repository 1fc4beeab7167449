//! Modifying user data without re-creating the account. Job title, language and
//! notification settings apply at once. A new email or mobile stays *pending* until its
//! owner proves it with a code sent to it; until then every message keeps going to the
//! old one, and once confirmed the old one is told of the change. Roles, grants and the
//! seat are never touched here.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use super::activate::{code_locked, wrong_code};
use super::{Delivery, Scene, SeatView};
use crate::audit::AuditAction;
use crate::contact::{Email, Language, SaudiMobile};
use crate::entropy::Fresh;
use crate::env::Env;
use crate::error::{Error, Kind, Rejection};
use crate::identity::PersonId;
use crate::organization::{EstablishmentId, OrganizationId};
use crate::outbox::{DeliveryRecord, DeliveryState, Message, Slot};
use crate::person::PersonName;
use crate::pipeline::{Command, Decision, Reads, RequestMeta, audit_entry};
use crate::policy::{Action, OnUser, Standing, acting_on_own_account, authorize};
use crate::secrets::{CodeCheck, CodeKey, CodePurpose, new_code};
use crate::store::{Contact, Key, Record, Write};
use crate::user::{NotificationSettings, PendingContact, Role, User, UserStatus, UserType};

/// Which contact a verification or cancellation is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Email,
    Mobile,
}

impl Channel {
    pub fn parse(raw: &str) -> Option<Channel> {
        match raw {
            "email" => Some(Channel::Email),
            "mobile" => Some(Channel::Mobile),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PendingView {
    pub value: String,
    #[serde(with = "crate::clock::utc")]
    pub code_expires_at: OffsetDateTime,
    #[serde(with = "crate::clock::utc")]
    pub requested_at: OffsetDateTime,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct PendingChanges {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<PendingView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mobile: Option<PendingView>,
}

/// Where the latest message of a kind stands.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MessageView {
    pub state: DeliveryState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub attempts: u32,
    #[serde(with = "crate::clock::utc")]
    pub updated_at: OffsetDateTime,
}

impl From<&DeliveryRecord> for MessageView {
    fn from(record: &DeliveryRecord) -> Self {
        MessageView {
            state: record.state,
            message_id: record.message_id.clone(),
            reason: record.reason.clone(),
            attempts: record.attempts,
            updated_at: record.updated_at,
        }
    }
}

/// A user's profile as the API shows it. `version` is what a change must send back.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProfileView {
    pub organization_id: OrganizationId,
    pub id: PersonId,
    pub role: Role,
    pub status: UserStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_type: Option<UserType>,
    pub name: PersonName,
    pub email: Email,
    pub mobile: SaudiMobile,
    pub language: Language,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_title: Option<String>,
    pub notifications: NotificationSettings,
    pub establishments: BTreeSet<EstablishmentId>,
    /// The paid period that covers now (or the one that ended last).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seat: Option<SeatView>,
    /// A renewal bought ahead, which follows `seat` without a gap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_seat: Option<SeatView>,
    /// A resident's iqama expiry (Saudi date); access ends after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iqama_expiry: Option<String>,
    /// Whether each channel of activation is confirmed.
    pub activation: ActivationView,
    pub pending: PendingChanges,
    /// Where the latest message of each kind stands: queued, sent (with the provider's
    /// message id) or failed (with the reason).
    pub messages: BTreeMap<Slot, MessageView>,
    pub version: u64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct ActivationView {
    pub email_confirmed: bool,
    pub mobile_confirmed: bool,
}

impl ProfileView {
    pub fn of(user: &User, now: OffsetDateTime) -> Self {
        ProfileView {
            organization_id: user.organization.clone(),
            id: user.id.clone(),
            role: user.role,
            status: user.effective_status(now),
            user_type: user.user_type,
            name: user.name.clone(),
            email: user.email.clone(),
            mobile: user.mobile.clone(),
            language: user.language,
            job_title: user.job_title.clone(),
            notifications: user.notifications,
            establishments: user.establishments.clone(),
            seat: user.current_seat(now).map(SeatView::from),
            next_seat: user.upcoming_seat(now).map(SeatView::from),
            iqama_expiry: user.iqama_expiry.map(|date| date.to_string()),
            activation: ActivationView {
                email_confirmed: user.activation.email_confirmed_at.is_some(),
                mobile_confirmed: user.activation.mobile_confirmed_at.is_some(),
            },
            pending: PendingChanges {
                email: user.pending_email.as_ref().map(|p| PendingView {
                    value: p.value.as_str().to_owned(),
                    code_expires_at: p.code.expires_at,
                    requested_at: p.requested_at,
                }),
                mobile: user.pending_mobile.as_ref().map(|p| PendingView {
                    value: p.value.as_str().to_owned(),
                    code_expires_at: p.code.expires_at,
                    requested_at: p.requested_at,
                }),
            },
            messages: user.deliveries.iter().map(|(slot, record)| (*slot, MessageView::from(record))).collect(),
            version: user.profile_version,
        }
    }
}

/// A user's profile, with any pending contact change and where its messages stand
/// (manager, delegated admin of the user's establishments, or the user).
pub async fn profile(env: &Env, meta: &RequestMeta, organization: &OrganizationId, user: &PersonId) -> Result<ProfileView, Error> {
    let now = env.clock.now();
    let scene = Scene::read(env.store.as_ref(), meta, organization, [Key::User(organization.clone(), user.clone())]).await?;
    let standing = scene.standing(meta, now)?;
    let target = scene.target(standing, OnUser::View, user)?;
    authorize(standing, Action::ViewUser(target))?;
    Ok(ProfileView::of(target, now))
}

/// The scene of an action on one user, and who already uses the contact values it is about.
pub struct OnOneUser {
    scene: Scene,
    /// Other users of the organization (not suspended) that use a new email, a new mobile.
    email_taken: bool,
    mobile_taken: bool,
}

/// Whether another (not suspended) user of the organization uses `contact`.
async fn taken(reads: &Reads<'_>, organization: &OrganizationId, owner: &PersonId, contact: Contact) -> Result<bool, Error> {
    let holders = reads.query(reads.store().users_with_contact(organization, &contact)).await?;
    Ok(holders.iter().any(|user| &user.id != owner && user.status != UserStatus::Suspended))
}

fn in_use(field: &str) -> Rejection {
    Rejection::new(Kind::ContactInUse, "another user of the organization already uses this").field(field)
}

fn refuse_if_suspended(target: &User) -> Result<(), Rejection> {
    if target.status == UserStatus::Suspended {
        return Err(Rejection::new(Kind::UserSuspended, "a suspended user's data cannot be changed"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Modify

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct VerificationMessages {
    pub email: Delivery,
    pub sms: Delivery,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Modified {
    pub profile: ProfileView,
    /// Codes queued for new contact values, if any.
    pub verification_messages: VerificationMessages,
}

/// Changes a user's data. Contact changes become pending and a code goes to the new value.
pub struct Modify {
    pub organization: OrganizationId,
    pub user: PersonId,
    /// The profile `version` the change is based on.
    pub version: u64,
    pub email: Option<Email>,
    pub mobile: Option<SaudiMobile>,
    /// `Some(None)` clears the title.
    pub job_title: Option<Option<String>>,
    pub language: Option<Language>,
    pub notifications: Option<NotificationSettings>,
    pub key: CodeKey,
}

impl Modify {
    /// Refuses a change that changes nothing before anything is read.
    pub fn check(self) -> Result<Self, Rejection> {
        let empty = self.email.is_none()
            && self.mobile.is_none()
            && self.job_title.is_none()
            && self.language.is_none()
            && self.notifications.is_none();
        if empty {
            return Err(Rejection::invalid_request("body", "nothing to change: send email, mobile, job_title, language or notifications"));
        }
        Ok(self)
    }
}

impl Command for Modify {
    type State = OnOneUser;
    type Answer = Modified;

    async fn load(&self, meta: &RequestMeta, reads: &mut Reads<'_>) -> Result<OnOneUser, Error> {
        let scene = Scene::load_with_user(meta, reads, &self.organization, &self.user).await?;
        let current = scene.user(&self.user);
        // One index query per new contact value, only when it differs from the current one.
        let email_taken = match self.email.as_ref().filter(|email| current.is_some_and(|user| &user.email != *email)) {
            Some(email) => taken(reads, &self.organization, &self.user, Contact::Email(email.clone())).await?,
            None => false,
        };
        let mobile_taken = match self.mobile.as_ref().filter(|mobile| current.is_some_and(|user| &user.mobile != *mobile)) {
            Some(mobile) => taken(reads, &self.organization, &self.user, Contact::Mobile(mobile.clone())).await?,
            None => false,
        };
        Ok(OnOneUser { scene, email_taken, mobile_taken })
    }

    fn authorize(&self, meta: &RequestMeta, state: &OnOneUser, now: OffsetDateTime) -> Result<(), Rejection> {
        let standing = state.scene.standing(meta, now)?;
        let target = state.scene.target(standing, OnUser::Modify, &self.user)?;
        authorize(standing, Action::ModifyUser(target)).map(drop)
    }

    fn decide(&self, meta: &RequestMeta, state: &OnOneUser, now: OffsetDateTime, fresh: &mut Fresh) -> Result<Decision<Modified>, Error> {
        let target = state.scene.user(&self.user).ok_or_else(Rejection::user_not_found)?;
        refuse_if_suspended(target)?;
        if self.version != target.profile_version {
            return Err(Rejection::new(Kind::VersionConflict, "the profile changed since it was read; read it again")
                .detail("current_version", target.profile_version)
                .into());
        }
        if state.email_taken {
            return Err(in_use("email").into());
        }
        if state.mobile_taken {
            return Err(in_use("mobile").into());
        }
        let new_email = self.email.clone().filter(|email| email != &target.email);
        let new_mobile = self.mobile.clone().filter(|mobile| mobile != &target.mobile);
        let requester = meta.caller.person().cloned().unwrap_or_else(|| target.id.clone());
        let mut decision = Decision::answer(());
        let mut next = target.clone();
        let mut changes = Map::new();
        if let Some(email) = &new_email {
            let code = new_code(&self.key, &self.organization, &target.id, CodePurpose::VerifyEmail(email.as_str()), now, fresh);
            next.pending_email =
                Some(PendingContact { value: email.clone(), code: code.digest, requested_by: requester.clone(), requested_at: now });
            decision.notify(meta, &mut next, Message::EmailVerification { nonce: code.nonce }, now, fresh);
            changes.insert("email".into(), json!({ "current": target.email.masked(), "pending": email.masked() }));
        }
        if let Some(mobile) = &new_mobile {
            let code = new_code(&self.key, &self.organization, &target.id, CodePurpose::VerifyMobile(mobile.as_str()), now, fresh);
            next.pending_mobile =
                Some(PendingContact { value: mobile.clone(), code: code.digest, requested_by: requester.clone(), requested_at: now });
            decision.notify(meta, &mut next, Message::MobileVerification { nonce: code.nonce }, now, fresh);
            changes.insert("mobile".into(), json!({ "current": target.mobile.masked(), "pending": mobile.masked() }));
        }
        if let Some(title) = &self.job_title
            && title != &target.job_title
        {
            next.job_title = title.clone();
            changes.insert("job_title".into(), json!({ "before": target.job_title, "after": title }));
        }
        if let Some(language) = self.language
            && language != target.language
        {
            next.language = language;
            changes.insert("language".into(), json!({ "before": target.language, "after": language }));
        }
        if let Some(settings) = self.notifications
            && settings != target.notifications
        {
            next.notifications = settings;
            changes.insert("notifications".into(), json!({ "before": target.notifications, "after": settings }));
        }
        let messages = VerificationMessages { email: Delivery::of(new_email.is_some()), sms: Delivery::of(new_mobile.is_some()) };
        if changes.is_empty() {
            return Ok(Decision::answer(Modified { profile: ProfileView::of(target, now), verification_messages: messages }));
        }
        next.profile_version = target.profile_version + 1;
        next.updated_at = now;
        next.version = target.version + 1;
        let audit = audit_entry(meta, &self.organization, AuditAction::UserModified, Some(&next), Value::Object(changes), now, fresh);
        let answer = Modified { profile: ProfileView::of(&next, now), verification_messages: messages };
        Ok(decision.with_answer(answer).write(Write::replace(Record::User(next), target.version)).audit(audit))
    }
}

// ---------------------------------------------------------------------------------------
// Confirming a contact change

/// The user proves a pending contact with its code; the new value replaces the old one,
/// and the old one is told.
pub struct ConfirmContact {
    pub organization: OrganizationId,
    pub user: PersonId,
    pub channel: Channel,
    code: String,
    key: CodeKey,
}

impl ConfirmContact {
    pub fn new(organization: OrganizationId, user: PersonId, channel: Channel, code: &str, key: CodeKey) -> Result<Self, Rejection> {
        let code = crate::parse::code("code", code)?;
        Ok(ConfirmContact { organization, user, channel, code, key })
    }

    fn pending(&self, target: &User) -> Option<(crate::secrets::CodeDigest, Contact)> {
        match self.channel {
            Channel::Email => target.pending_email.as_ref().map(|p| (p.code.clone(), Contact::Email(p.value.clone()))),
            Channel::Mobile => target.pending_mobile.as_ref().map(|p| (p.code.clone(), Contact::Mobile(p.value.clone()))),
        }
    }
}

impl Command for ConfirmContact {
    type State = OnOneUser;
    type Answer = ProfileView;

    async fn load(&self, meta: &RequestMeta, reads: &mut Reads<'_>) -> Result<OnOneUser, Error> {
        let scene = Scene::load_with_user(meta, reads, &self.organization, &self.user).await?;
        // Whether someone else took the pending value while it waited for its code.
        let pending = scene.user(&self.user).and_then(|target| self.pending(target));
        let now_taken = match pending {
            Some((_, contact)) => taken(reads, &self.organization, &self.user, contact).await?,
            None => false,
        };
        Ok(OnOneUser {
            scene,
            email_taken: now_taken && self.channel == Channel::Email,
            mobile_taken: now_taken && self.channel == Channel::Mobile,
        })
    }

    fn authorize(&self, meta: &RequestMeta, state: &OnOneUser, now: OffsetDateTime) -> Result<(), Rejection> {
        acting_on_own_account(&meta.caller)?;
        let standing = state.scene.standing(meta, now)?;
        let target = state.scene.target(standing, OnUser::ConfirmOwnContact, &self.user)?;
        authorize(standing, Action::ConfirmOwnContact(target)).map(drop)
    }

    fn decide(
        &self,
        meta: &RequestMeta,
        state: &OnOneUser,
        now: OffsetDateTime,
        fresh: &mut Fresh,
    ) -> Result<Decision<ProfileView>, Error> {
        let target = state.scene.user(&self.user).ok_or_else(Rejection::user_not_found)?;
        refuse_if_suspended(target)?;
        let Some((mut digest, value)) = self.pending(target) else {
            return Err(no_pending_change().into());
        };
        let purpose = match &value {
            Contact::Email(email) => CodePurpose::VerifyEmail(email.as_str()),
            Contact::Mobile(mobile) => CodePurpose::VerifyMobile(mobile.as_str()),
        };
        let tries_before = digest.failed_attempts;
        let outcome = digest.check(&self.key, &self.organization, &self.user, purpose, &self.code, now);
        let mut next = target.clone();
        next.updated_at = now;
        next.version = target.version + 1;
        let (mut decision, action, changes) = match outcome {
            CodeCheck::Expired => {
                return Err(Rejection::new(Kind::CodeExpired, "the code has expired; ask an administrator to make the change again").into());
            }
            CodeCheck::Locked if digest.failed_attempts == tries_before => return Err(code_locked().into()),
            CodeCheck::Wrong { .. } | CodeCheck::Locked => {
                let failed = digest.failed_attempts;
                match self.channel {
                    Channel::Email => next.pending_email.as_mut().expect("pending").code = digest,
                    Channel::Mobile => next.pending_mobile.as_mut().expect("pending").code = digest,
                }
                let refusal = match outcome {
                    CodeCheck::Wrong { remaining } => wrong_code(remaining),
                    _ => code_locked(),
                };
                (
                    Decision::refuse_after_writing(refusal),
                    AuditAction::ContactCodeRejected,
                    json!({ "channel": self.channel, "failed_attempts": failed }),
                )
            }
            CodeCheck::Accepted => {
                if state.email_taken || state.mobile_taken {
                    return Err(in_use("code").into());
                }
                let mut decision = Decision::answer(());
                let changes = match &value {
                    Contact::Email(email) => {
                        next.email = email.clone();
                        next.pending_email = None;
                        decision.notify(meta, &mut next, Message::EmailChanged { old: target.email.clone() }, now, fresh);
                        json!({ "channel": self.channel, "before": target.email.masked(), "after": email.masked() })
                    }
                    Contact::Mobile(mobile) => {
                        next.mobile = mobile.clone();
                        next.pending_mobile = None;
                        decision.notify(meta, &mut next, Message::MobileChanged { old: target.mobile.clone() }, now, fresh);
                        json!({ "channel": self.channel, "before": target.mobile.masked(), "after": mobile.masked() })
                    }
                };
                next.profile_version = target.profile_version + 1;
                (decision.with_answer(ProfileView::of(&next, now)), AuditAction::ContactChangeConfirmed, changes)
            }
        };
        let audit = audit_entry(meta, &self.organization, action, Some(&next), changes, now, fresh);
        decision.push_write(Write::replace(Record::User(next), target.version));
        decision.push_audit(audit);
        Ok(decision)
    }
}

fn no_pending_change() -> Rejection {
    Rejection::new(Kind::NoPendingChange, "there is no pending change of this contact")
}

// ---------------------------------------------------------------------------------------
// Withdrawing a pending change

/// An administrator withdraws a pending contact change. The manager may do it even for a
/// suspended user.
pub struct CancelPending {
    pub organization: OrganizationId,
    pub user: PersonId,
    pub channel: Channel,
}

impl Command for CancelPending {
    type State = Scene;
    type Answer = ProfileView;

    async fn load(&self, meta: &RequestMeta, reads: &mut Reads<'_>) -> Result<Scene, Error> {
        Scene::load_with_user(meta, reads, &self.organization, &self.user).await
    }

    fn authorize(&self, meta: &RequestMeta, scene: &Scene, now: OffsetDateTime) -> Result<(), Rejection> {
        let standing = scene.standing(meta, now)?;
        let target = scene.target(standing, OnUser::CancelPendingChange, &self.user)?;
        authorize(standing, Action::CancelPendingChange(target))?;
        if target.status == UserStatus::Suspended && !matches!(standing, Standing::Manager(_)) {
            return Err(Rejection::new(Kind::UserSuspended, "only the manager acts on a suspended user"));
        }
        Ok(())
    }

    fn decide(&self, meta: &RequestMeta, scene: &Scene, now: OffsetDateTime, fresh: &mut Fresh) -> Result<Decision<ProfileView>, Error> {
        let target = scene.user(&self.user).ok_or_else(Rejection::user_not_found)?;
        let mut next = target.clone();
        let cancelled = match self.channel {
            Channel::Email => next.pending_email.take().map(|p| p.value.masked()),
            Channel::Mobile => next.pending_mobile.take().map(|p| p.value.masked()),
        };
        let Some(cancelled) = cancelled else {
            return Err(no_pending_change().into());
        };
        // A verification code still queued for the withdrawn value is not sent.
        let slot = match self.channel {
            Channel::Email => Slot::VerificationEmail,
            Channel::Mobile => Slot::VerificationSms,
        };
        if let Some(record) = next.deliveries.get_mut(&slot).filter(|record| record.state == DeliveryState::Queued) {
            record.state = DeliveryState::Superseded;
            record.updated_at = now;
        }
        next.profile_version = target.profile_version + 1;
        next.updated_at = now;
        next.version = target.version + 1;
        let audit = audit_entry(
            meta,
            &self.organization,
            AuditAction::ContactChangeCancelled,
            Some(&next),
            json!({ "channel": self.channel, "cancelled": cancelled }),
            now,
            fresh,
        );
        Ok(Decision::answer(ProfileView::of(&next, now)).write(Write::replace(Record::User(next), target.version)).audit(audit))
    }
}
