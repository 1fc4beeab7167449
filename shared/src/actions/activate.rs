//! Activation: a new user confirms the emailed link and the SMS code, in either order; the
//! account is active once both are confirmed. Administrators can resend fresh secrets,
//! which kills the old ones, at most three times per user in fifteen minutes.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::json;
use time::{Duration, OffsetDateTime};

use super::{Delivery, Scene};
use crate::audit::AuditAction;
use crate::clock::Timestamp;
use crate::entropy::Fresh;
use crate::error::{Error, Kind, Rejection};
use crate::identity::PersonId;
use crate::metrics::Metric;
use crate::organization::OrganizationId;
use crate::outbox::Message;
use crate::pipeline::{Command, Decision, Reads, RequestMeta, audit_entry};
use crate::policy::{Action, Caller, OnUser, acting_on_own_account, authorize};
use crate::secrets::{CodeCheck, CodeKey, CodePurpose, new_code, new_link_token, token_sha256};
use crate::store::{Key, Record, Write};
use crate::user::{User, UserStatus};

/// At most this many resends per user within `RESEND_WINDOW`.
pub const RESEND_LIMIT: usize = 3;
pub const RESEND_WINDOW: Duration = Duration::minutes(15);

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ActivationState {
    pub organization_id: OrganizationId,
    pub status: UserStatus,
    pub email_confirmed: bool,
    pub mobile_confirmed: bool,
}

impl ActivationState {
    fn of(user: &User) -> Self {
        ActivationState {
            organization_id: user.organization.clone(),
            status: user.status,
            email_confirmed: user.activation.email_confirmed_at.is_some(),
            mobile_confirmed: user.activation.mobile_confirmed_at.is_some(),
        }
    }
}

/// Suspended and expired users cannot activate, nor anyone whose iqama has expired.
fn may_activate(user: &User, now: OffsetDateTime) -> Result<(), Rejection> {
    if !user.iqama_valid_at(now) {
        return Err(crate::policy::iqama_expired());
    }
    match user.effective_status(now) {
        UserStatus::Suspended => Err(Rejection::new(Kind::UserSuspended, "this account was suspended and cannot be activated")),
        UserStatus::Expired => Err(Rejection::new(Kind::SeatExpired, "the subscription of this account has ended")),
        UserStatus::Active | UserStatus::PendingActivation => Ok(()),
    }
}

/// Marks one channel confirmed; the user becomes active when both are (counted).
fn confirmed(user: &User, now: OffsetDateTime, email: bool) -> Decision<ActivationState> {
    let mut next = user.clone();
    if email {
        next.activation.email_confirmed_at = Some(now);
    } else {
        next.activation.mobile_confirmed_at = Some(now);
        next.activation.mobile_code = None;
    }
    let activated = next.status == UserStatus::PendingActivation && next.activation.is_complete();
    if activated {
        next.status = UserStatus::Active;
    }
    next.updated_at = now;
    next.version = user.version + 1;
    let mut decision = Decision::answer(ActivationState::of(&next)).write(Write::replace(Record::User(next), user.version));
    if activated {
        decision.count(Metric::ActivationsCompleted(1));
    }
    decision
}

fn invalid_link() -> Rejection {
    Rejection::new(Kind::InvalidActivationLink, "this activation link is not valid")
}

// ---------------------------------------------------------------------------------------
// The link

/// Confirms the emailed link. The token is the proof; no login is needed. Answers never
/// include who the account belongs to.
pub struct ConfirmEmail {
    sha256: String,
    /// The user the token led to: later attempts read them by key (strongly consistent)
    /// rather than through the index.
    found: Mutex<Option<(OrganizationId, PersonId)>>,
}

impl ConfirmEmail {
    pub fn new(token: &str) -> Result<Self, Rejection> {
        let token = token.trim_ascii();
        let well_formed = token.len() == 43 && token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !well_formed {
            return Err(invalid_link());
        }
        Ok(ConfirmEmail { sha256: token_sha256(token), found: Mutex::new(None) })
    }
}

impl Command for ConfirmEmail {
    type State = Option<User>;
    type Answer = ActivationState;

    async fn load(&self, _: &RequestMeta, reads: &mut Reads<'_>) -> Result<Option<User>, Error> {
        let known = self.found.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        let user = match known {
            None => reads.query(reads.store().user_by_link_token(&self.sha256)).await?,
            Some((organization, id)) => reads.load([Key::User(organization.clone(), id.clone())]).await?.user(&organization, &id).cloned(),
        };
        let user = user.filter(|user| user.activation.email_token.as_ref().is_some_and(|t| t.sha256 == self.sha256));
        if let Some(user) = &user {
            *self.found.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some((user.organization.clone(), user.id.clone()));
        }
        Ok(user)
    }

    fn authorize(&self, _: &RequestMeta, _: &Option<User>, _: OffsetDateTime) -> Result<(), Rejection> {
        // The link is the proof: whoever holds it may confirm it.
        Ok(())
    }

    fn decide(
        &self,
        meta: &RequestMeta,
        user: &Option<User>,
        now: OffsetDateTime,
        fresh: &mut Fresh,
    ) -> Result<Decision<ActivationState>, Error> {
        let user = user.as_ref().ok_or_else(invalid_link)?;
        may_activate(user, now)?;
        if user.activation.email_confirmed_at.is_some() {
            return Err(Rejection::new(Kind::ActivationLinkUsed, "this activation link was already used").into());
        }
        if user.activation.email_token.as_ref().is_some_and(|t| now >= t.expires_at) {
            return Err(Rejection::new(
                Kind::ActivationLinkExpired,
                "this activation link has expired; ask your administrator to resend it",
            )
            .into());
        }
        let decision = confirmed(user, now, true);
        let after = decision.answer_ref().map_or(user.status, |state| state.status);
        // The user confirms their own link: the audit names them, whoever carried the token.
        let meta = RequestMeta { caller: Caller::Person(user.id.clone()), ..meta.clone() };
        let audit = audit_entry(
            &meta,
            &user.organization,
            AuditAction::ActivationEmailConfirmed,
            Some(user),
            json!({ "status": { "before": user.status, "after": after } }),
            now,
            fresh,
        );
        Ok(decision.audit(audit))
    }
}

// ---------------------------------------------------------------------------------------
// The code

/// Confirms the SMS code. The caller is the user (token `sub`); wrong tries are counted
/// atomically, so parallel guesses cannot get past the limit.
pub struct ConfirmMobile {
    pub organization: OrganizationId,
    code: String,
    key: CodeKey,
}

impl ConfirmMobile {
    pub fn new(organization: OrganizationId, code: &str, key: CodeKey) -> Result<Self, Rejection> {
        let code = crate::parse::code("code", code)?;
        Ok(ConfirmMobile { organization, code, key })
    }
}

impl Command for ConfirmMobile {
    type State = Option<User>;
    type Answer = ActivationState;

    async fn load(&self, meta: &RequestMeta, reads: &mut Reads<'_>) -> Result<Option<User>, Error> {
        let Some(me) = meta.caller.person() else { return Ok(None) };
        Ok(reads.load([Key::User(self.organization.clone(), me.clone())]).await?.user(&self.organization, me).cloned())
    }

    fn authorize(&self, meta: &RequestMeta, _: &Option<User>, _: OffsetDateTime) -> Result<(), Rejection> {
        acting_on_own_account(&meta.caller).map(drop)
    }

    fn decide(
        &self,
        meta: &RequestMeta,
        user: &Option<User>,
        now: OffsetDateTime,
        fresh: &mut Fresh,
    ) -> Result<Decision<ActivationState>, Error> {
        let user = user.as_ref().ok_or_else(Rejection::not_found)?;
        may_activate(user, now)?;
        if user.activation.mobile_confirmed_at.is_some() {
            return Err(Rejection::new(Kind::AlreadyConfirmed, "the mobile number is already confirmed").into());
        }
        let Some(mut digest) = user.activation.mobile_code.clone() else {
            return Err(Rejection::new(Kind::NoPendingCode, "there is no code to confirm; ask your administrator to resend one").into());
        };
        let tries_before = digest.failed_attempts;
        let outcome = digest.check(&self.key, &self.organization, &user.id, CodePurpose::ActivateMobile, &self.code, now);
        let (after, action, mut decision) = match outcome {
            CodeCheck::Accepted => {
                let decision = confirmed(user, now, false);
                let after = decision.answer_ref().map_or(user.status, |state| state.status);
                (after, AuditAction::ActivationMobileConfirmed, decision)
            }
            CodeCheck::Expired => {
                return Err(Rejection::new(Kind::CodeExpired, "the code has expired; ask your administrator to resend one").into());
            }
            // Already dead before this try: nothing to record.
            CodeCheck::Locked if digest.failed_attempts == tries_before => return Err(code_locked().into()),
            CodeCheck::Wrong { .. } | CodeCheck::Locked => {
                let refusal = match outcome {
                    CodeCheck::Wrong { remaining } => wrong_code(remaining),
                    _ => code_locked(),
                };
                let failed = digest.failed_attempts;
                let mut next = user.clone();
                next.activation.mobile_code = Some(digest);
                next.updated_at = now;
                next.version = user.version + 1;
                let decision = Decision::refuse_after_writing(refusal).write(Write::replace(Record::User(next), user.version));
                let audit = audit_entry(
                    meta,
                    &self.organization,
                    AuditAction::ActivationMobileCodeRejected,
                    Some(user),
                    json!({ "status": { "before": user.status, "after": user.status }, "failed_attempts": failed }),
                    now,
                    fresh,
                );
                return Ok(decision.audit(audit));
            }
        };
        let audit = audit_entry(
            meta,
            &self.organization,
            action,
            Some(user),
            json!({ "status": { "before": user.status, "after": after }, "failed_attempts": null }),
            now,
            fresh,
        );
        decision.push_audit(audit);
        Ok(decision)
    }
}

pub(crate) fn wrong_code(remaining: u8) -> Rejection {
    Rejection::new(Kind::WrongCode, format!("wrong code; {remaining} tries left")).detail("remaining_tries", remaining)
}

pub(crate) fn code_locked() -> Rejection {
    Rejection::new(Kind::CodeLocked, "too many wrong tries; this code no longer works until a new one is sent")
}

// ---------------------------------------------------------------------------------------
// Resending

/// The user's resends within `RESEND_WINDOW`, or 429 `too_many_resends` (with when to try
/// again) when they are at `RESEND_LIMIT` already. Every kind of resend counts.
pub(crate) fn recent_resends(target: &User, now: OffsetDateTime) -> Result<Vec<Timestamp>, Rejection> {
    let recent: Vec<Timestamp> = target.recent_resends.iter().copied().filter(|t| now - t.0 < RESEND_WINDOW).collect();
    if recent.len() >= RESEND_LIMIT {
        let oldest = recent.iter().min().map_or(now, |t| t.0);
        let wait = (oldest + RESEND_WINDOW - now).whole_seconds().max(1) as u64;
        return Err(
            Rejection::new(Kind::TooManyResends, format!("at most {RESEND_LIMIT} resends per user in 15 minutes")).retry_after(wait)
        );
    }
    Ok(recent)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ResendChannels {
    pub email: bool,
    pub sms: bool,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Resent {
    pub email: Delivery,
    pub sms: Delivery,
}

/// Sends a fresh link and/or code (those not yet confirmed, or the ones asked for),
/// invalidating the previous ones.
pub struct Resend {
    pub organization: OrganizationId,
    pub user: PersonId,
    /// `None`: whatever is not confirmed yet.
    pub asked: Option<ResendChannels>,
    pub key: CodeKey,
}

impl Command for Resend {
    type State = Scene;
    type Answer = Resent;

    async fn load(&self, meta: &RequestMeta, reads: &mut Reads<'_>) -> Result<Scene, Error> {
        Scene::load_with_user(meta, reads, &self.organization, &self.user).await
    }

    fn authorize(&self, meta: &RequestMeta, scene: &Scene, now: OffsetDateTime) -> Result<(), Rejection> {
        let standing = scene.standing(meta, now)?;
        let target = scene.target(standing, OnUser::ResendActivation, &self.user)?;
        authorize(standing, Action::ResendActivation(target)).map(drop)
    }

    fn decide(&self, meta: &RequestMeta, scene: &Scene, now: OffsetDateTime, fresh: &mut Fresh) -> Result<Decision<Resent>, Error> {
        let target = scene.user(&self.user).ok_or_else(Rejection::user_not_found)?;
        may_activate(target, now)?;
        if target.status == UserStatus::Active {
            return Err(Rejection::new(Kind::AlreadyActive, "this account is already active").into());
        }
        let pending =
            ResendChannels { email: target.activation.email_confirmed_at.is_none(), sms: target.activation.mobile_confirmed_at.is_none() };
        let wanted = self.asked.unwrap_or(pending);
        let channels = ResendChannels { email: wanted.email && pending.email, sms: wanted.sms && pending.sms };
        if !channels.email && !channels.sms {
            return Err(Rejection::new(Kind::AlreadyConfirmed, "what was asked for is already confirmed").into());
        }
        let recent = recent_resends(target, now)?;
        let mut decision = Decision::answer(Resent { email: Delivery::of(channels.email), sms: Delivery::of(channels.sms) });
        let mut next = target.clone();
        if channels.email {
            let link = new_link_token(&self.key, now, fresh);
            next.activation.email_token = Some(link.digest);
            decision.notify(meta, &mut next, Message::ActivationLink { nonce: link.nonce }, now, fresh);
        }
        if channels.sms {
            let code = new_code(&self.key, &self.organization, &self.user, CodePurpose::ActivateMobile, now, fresh);
            next.activation.mobile_code = Some(code.digest);
            decision.notify(meta, &mut next, Message::ActivationCode { nonce: code.nonce }, now, fresh);
        }
        next.recent_resends = recent;
        next.recent_resends.push(Timestamp(now));
        next.updated_at = now;
        next.version = target.version + 1;
        let audit = audit_entry(
            meta,
            &self.organization,
            AuditAction::ActivationResent,
            Some(&next),
            json!({ "email": channels.email, "sms": channels.sms }),
            now,
            fresh,
        );
        Ok(decision.write(Write::replace(Record::User(next), target.version)).audit(audit))
    }
}
