//! Modifying user data without re-creating the account. Job title, language and
//! notification settings apply at once. A new email or mobile stays *pending* until its
//! owner proves it with a code sent to it; until then every message keeps going to the
//! old one, and once confirmed the old one is told of the change. Roles, grants and the
//! seat are never touched here.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use super::activation::{code_locked, wrong_code};
use super::billing::SeatView;
use super::permissions::load_scene;
use super::{Attempt, Committed, Delivery, RequestMeta, audit_entry, commit, display_name, send_email, send_sms};
use crate::app::App;
use crate::audit::AuditAction;
use crate::contact::{Email, Language, SaudiMobile};
use crate::error::{Error, Kind, Rejection};
use crate::identity::PersonId;
use crate::messaging::{EmailMessage, SmsMessage, Template, channel_name};
use crate::organization::{EstablishmentId, Organization, OrganizationId};
use crate::person::PersonName;
use crate::policy::{Action, OnUser, Standing, acting_on_own_account, authorize};
use crate::secrets::{CodeCheck, CodePurpose, new_code};
use crate::store::{Contact, Record, Write};
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
    pub pending: PendingChanges,
    pub version: u64,
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
            version: user.profile_version,
        }
    }
}

/// A user's profile, with any pending contact change (manager, delegated admin of the
/// user's establishments, or the user).
pub async fn profile(app: &App, meta: &RequestMeta, organization: &OrganizationId, user: &PersonId) -> Result<ProfileView, Error> {
    let now = app.clock.now();
    let scene = load_scene(app, meta, organization, user).await?;
    let standing = scene.standing(meta, organization, now)?;
    let target = scene.target(standing, OnUser::View, organization, user)?;
    authorize(standing, Action::ViewUser(target))?;
    Ok(ProfileView::of(target, now))
}

#[derive(Debug, Clone)]
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
}

impl Modify {
    fn is_empty(&self) -> bool {
        self.email.is_none() && self.mobile.is_none() && self.job_title.is_none() && self.language.is_none() && self.notifications.is_none()
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct VerificationMessages {
    pub email: Delivery,
    pub sms: Delivery,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Modified {
    pub profile: ProfileView,
    /// Codes sent to new contact values, if any.
    pub verification_messages: VerificationMessages,
}

/// Refuses a contact value another (not suspended) user of the organization already has.
async fn refuse_if_taken(app: &App, organization: &OrganizationId, owner: &PersonId, contact: Contact, field: &str) -> Result<(), Error> {
    let holders = app.store.users_with_contact(organization, &contact).await?;
    if holders.iter().any(|user| &user.id != owner && user.status != UserStatus::Suspended) {
        return Err(Rejection::new(Kind::ContactInUse, "another user of the organization already uses this").field(field).into());
    }
    Ok(())
}

fn refuse_if_suspended(target: &User) -> Result<(), Rejection> {
    if target.status == UserStatus::Suspended {
        return Err(Rejection::new(Kind::UserSuspended, "a suspended user's data cannot be changed"));
    }
    Ok(())
}

fn version_conflict(current: u64) -> Error {
    Rejection::new(Kind::VersionConflict, "the profile changed since it was read; read it again").detail("current_version", current).into()
}

/// Changes a user's data. Contact changes become pending and a code goes to the new value.
pub async fn modify(app: &App, meta: &RequestMeta, command: Modify) -> Result<Modified, Error> {
    if command.is_empty() {
        return Err(
            Rejection::invalid_request("body", "nothing to change: send email, mobile, job_title, language or notifications").into()
        );
    }
    let organization = &command.organization;
    let key = app.settings.code_key()?;
    let (organization_record, user, email_code, mobile_code) = retrying!(app, {
        let now = app.clock.now();
        let scene = load_scene(app, meta, organization, &command.user).await?;
        let standing = scene.standing(meta, organization, now)?;
        let target = scene.target(standing, OnUser::Modify, organization, &command.user)?;
        authorize(standing, Action::ModifyUser(target))?;
        refuse_if_suspended(target)?;
        if command.version != target.profile_version {
            return Err(version_conflict(target.profile_version));
        }
        let org = scene.loaded.organization(organization).ok_or_else(Rejection::not_found)?.clone();
        let new_email = command.email.clone().filter(|email| email != &target.email);
        let new_mobile = command.mobile.clone().filter(|mobile| mobile != &target.mobile);
        if let Some(email) = &new_email {
            refuse_if_taken(app, organization, &target.id, Contact::Email(email.clone()), "email").await?;
        }
        if let Some(mobile) = &new_mobile {
            refuse_if_taken(app, organization, &target.id, Contact::Mobile(mobile.clone()), "mobile").await?;
        }
        let requester = meta.caller.person().cloned().unwrap_or_else(|| target.id.clone());
        let mut next = target.clone();
        let mut changes = Map::new();
        let email_code =
            new_email.as_ref().map(|email| new_code(key, organization, &target.id, CodePurpose::VerifyEmail(email.as_str()), now));
        if let (Some(email), Some(code)) = (&new_email, &email_code) {
            next.pending_email = Some(PendingContact {
                value: email.clone(),
                code: code.digest.clone(),
                requested_by: requester.clone(),
                requested_at: now,
            });
            changes.insert("email".into(), json!({ "current": target.email.masked(), "pending": email.masked() }));
        }
        let mobile_code =
            new_mobile.as_ref().map(|mobile| new_code(key, organization, &target.id, CodePurpose::VerifyMobile(mobile.as_str()), now));
        if let (Some(mobile), Some(code)) = (&new_mobile, &mobile_code) {
            next.pending_mobile = Some(PendingContact {
                value: mobile.clone(),
                code: code.digest.clone(),
                requested_by: requester.clone(),
                requested_at: now,
            });
            changes.insert("mobile".into(), json!({ "current": target.mobile.masked(), "pending": mobile.masked() }));
        }
        if let Some(title) = &command.job_title
            && title != &target.job_title
        {
            next.job_title = title.clone();
            changes.insert("job_title".into(), json!({ "before": target.job_title, "after": title }));
        }
        if let Some(language) = command.language
            && language != target.language
        {
            next.language = language;
            changes.insert("language".into(), json!({ "before": target.language, "after": language }));
        }
        if let Some(settings) = command.notifications
            && settings != target.notifications
        {
            next.notifications = settings;
            changes.insert("notifications".into(), json!({ "before": target.notifications, "after": settings }));
        }
        if changes.is_empty() {
            return Ok(Attempt::Done((org, target.clone(), None, None)));
        }
        next.profile_version = target.profile_version + 1;
        next.updated_at = now;
        next.version = target.version + 1;
        let audit = audit_entry(meta, organization, AuditAction::UserModified, Some(&next), Value::Object(changes), now);
        match commit(app, vec![Write::replace(Record::User(next.clone()), target.version), Write::create(Record::Audit(audit))]).await? {
            Committed::Yes => Ok(Attempt::Done((org, next, email_code.map(|c| c.raw), mobile_code.map(|c| c.raw)))),
            Committed::Conflict(_) | Committed::Unknown => Ok(Attempt::Retry),
        }
    });

    let name = display_name(&user);
    let email = match (&email_code, &user.pending_email) {
        (Some(code), Some(pending)) => {
            let values = [("name", name.as_str()), ("organization", organization_record.name.as_str()), ("code", code.as_str())];
            send_email(app, &EmailMessage::new(&pending.value, Template::ContactVerificationEmail, user.language, &values)).await
        }
        _ => Delivery::NotNeeded,
    };
    let sms = match (&mobile_code, &user.pending_mobile) {
        (Some(code), Some(pending)) => {
            send_sms(app, &SmsMessage::new(&pending.value, Template::ContactVerificationSms, user.language, &[("code", code)])).await
        }
        _ => Delivery::NotNeeded,
    };
    Ok(Modified { profile: ProfileView::of(&user, app.clock.now()), verification_messages: VerificationMessages { email, sms } })
}

/// The user proves a pending contact with its code; the new value replaces the old one,
/// and the old one is told.
pub async fn confirm_contact(
    app: &App,
    meta: &RequestMeta,
    organization: &OrganizationId,
    user: &PersonId,
    channel: Channel,
    code: &str,
) -> Result<ProfileView, Error> {
    acting_on_own_account(&meta.caller)?;
    let code: String = code.trim().chars().map(crate::identity::ascii_digit).collect();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Rejection::invalid_request("code", "the code is six digits").into());
    }
    let key = app.settings.code_key()?;
    let (organization_record, before, after) = retrying!(app, {
        let now = app.clock.now();
        let scene = load_scene(app, meta, organization, user).await?;
        let standing = scene.standing(meta, organization, now)?;
        let target = scene.target(standing, OnUser::ConfirmOwnContact, organization, user)?;
        authorize(standing, Action::ConfirmOwnContact(target))?;
        refuse_if_suspended(target)?;
        let (mut digest, value, purpose) = match channel {
            Channel::Email => match &target.pending_email {
                Some(pending) => {
                    (pending.code.clone(), Contact::Email(pending.value.clone()), CodePurpose::VerifyEmail(pending.value.as_str()))
                }
                None => return Err(no_pending_change()),
            },
            Channel::Mobile => match &target.pending_mobile {
                Some(pending) => {
                    (pending.code.clone(), Contact::Mobile(pending.value.clone()), CodePurpose::VerifyMobile(pending.value.as_str()))
                }
                None => return Err(no_pending_change()),
            },
        };
        let previous_attempts = digest.failed_attempts;
        let outcome = digest.check(key, organization, user, purpose, &code, now);
        let mut next = target.clone();
        let (action, changes, answer) = match outcome {
            CodeCheck::Expired => {
                return Err(Rejection::new(Kind::CodeExpired, "the code has expired; ask an administrator to make the change again").into());
            }
            CodeCheck::Locked if digest.failed_attempts == previous_attempts => return Err(code_locked()),
            CodeCheck::Wrong { .. } | CodeCheck::Locked => {
                match channel {
                    Channel::Email => next.pending_email.as_mut().expect("pending").code = digest.clone(),
                    Channel::Mobile => next.pending_mobile.as_mut().expect("pending").code = digest.clone(),
                }
                let answer = match outcome {
                    CodeCheck::Wrong { remaining } => Err(wrong_code(remaining)),
                    _ => Err(code_locked()),
                };
                (AuditAction::ContactCodeRejected, json!({ "channel": channel, "failed_attempts": digest.failed_attempts }), answer)
            }
            CodeCheck::Accepted => {
                refuse_if_taken(app, organization, user, value.clone(), "code").await?;
                let changes = match &value {
                    Contact::Email(email) => {
                        next.email = email.clone();
                        next.pending_email = None;
                        json!({ "channel": channel, "before": target.email.masked(), "after": email.masked() })
                    }
                    Contact::Mobile(mobile) => {
                        next.mobile = mobile.clone();
                        next.pending_mobile = None;
                        json!({ "channel": channel, "before": target.mobile.masked(), "after": mobile.masked() })
                    }
                };
                next.profile_version = target.profile_version + 1;
                (AuditAction::ContactChangeConfirmed, changes, Ok(()))
            }
        };
        next.updated_at = now;
        next.version = target.version + 1;
        let audit = audit_entry(meta, organization, action, Some(&next), changes, now);
        match commit(app, vec![Write::replace(Record::User(next.clone()), target.version), Write::create(Record::Audit(audit))]).await? {
            Committed::Yes => answer.map(|()| {
                let org = scene.loaded.organization(organization).cloned().expect("the standing found it");
                Attempt::Done((org, target.clone(), next))
            }),
            Committed::Conflict(_) | Committed::Unknown => Ok(Attempt::Retry),
        }
    });
    notify_old_contact(app, &organization_record, &before, &after, channel).await;
    Ok(ProfileView::of(&after, app.clock.now()))
}

/// Tells the old address or number that it is no longer the user's.
async fn notify_old_contact(app: &App, organization: &Organization, before: &User, after: &User, channel: Channel) {
    let name = display_name(before);
    let language = before.language;
    let what = channel_name(channel == Channel::Email, language);
    match channel {
        Channel::Email => {
            let new_value = after.email.masked();
            let values = [
                ("name", name.as_str()),
                ("organization", organization.name.as_str()),
                ("channel", what),
                ("new_value", new_value.as_str()),
            ];
            send_email(app, &EmailMessage::new(&before.email, Template::ContactChangedEmail, language, &values)).await;
        }
        Channel::Mobile => {
            send_sms(app, &SmsMessage::new(&before.mobile, Template::ContactChangedSms, language, &[("channel", what)])).await;
        }
    }
}

fn no_pending_change() -> Error {
    Rejection::new(Kind::NoPendingChange, "there is no pending change of this contact").into()
}

/// An administrator withdraws a pending contact change. The manager may do it even for a
/// suspended user.
pub async fn cancel_pending(
    app: &App,
    meta: &RequestMeta,
    organization: &OrganizationId,
    user: &PersonId,
    channel: Channel,
) -> Result<ProfileView, Error> {
    Ok(retrying!(app, {
        let now = app.clock.now();
        let scene = load_scene(app, meta, organization, user).await?;
        let standing = scene.standing(meta, organization, now)?;
        let target = scene.target(standing, OnUser::CancelPendingChange, organization, user)?;
        authorize(standing, Action::CancelPendingChange(target))?;
        if target.status == UserStatus::Suspended && !matches!(standing, Standing::Manager(_)) {
            return Err(Rejection::new(Kind::UserSuspended, "only the manager acts on a suspended user").into());
        }
        let mut next = target.clone();
        let cancelled = match channel {
            Channel::Email => next.pending_email.take().map(|p| p.value.masked()),
            Channel::Mobile => next.pending_mobile.take().map(|p| p.value.masked()),
        };
        let Some(cancelled) = cancelled else {
            return Err(no_pending_change());
        };
        next.profile_version = target.profile_version + 1;
        next.updated_at = now;
        next.version = target.version + 1;
        let audit = audit_entry(
            meta,
            organization,
            AuditAction::ContactChangeCancelled,
            Some(&next),
            json!({ "channel": channel, "cancelled": cancelled }),
            now,
        );
        match commit(app, vec![Write::replace(Record::User(next.clone()), target.version), Write::create(Record::Audit(audit))]).await? {
            Committed::Yes => Ok(Attempt::Done(ProfileView::of(&next, now))),
            Committed::Conflict(_) | Committed::Unknown => Ok(Attempt::Retry),
        }
    }))
}
