//! Activation: a new user confirms the emailed link and the SMS code, in either order; the
//! account is active once both are confirmed. Administrators can resend fresh secrets,
//! which kills the old ones, at most three times per user in fifteen minutes.

use serde::{Deserialize, Serialize};
use serde_json::json;
use time::{Duration, OffsetDateTime};

use super::billing::activation_messages;
use super::{Attempt, Committed, Delivery, RequestMeta, audit_entry, commit, send_email, send_sms};
use crate::app::App;
use crate::audit::AuditAction;
use crate::clock::Timestamp;
use crate::error::{Error, Kind, Rejection};
use crate::identity::PersonId;
use crate::organization::OrganizationId;
use crate::policy::{Action, Caller, OnUser, Standing, acting_on_own_account, authorize, target_of};
use crate::secrets::{CodeCheck, CodePurpose, new_code, new_link_token, token_sha256};
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

/// Marks one channel confirmed; the user becomes active when both are.
fn confirmed(user: &User, now: OffsetDateTime, email: bool) -> User {
    let mut next = user.clone();
    if email {
        next.activation.email_confirmed_at = Some(now);
    } else {
        next.activation.mobile_confirmed_at = Some(now);
        next.activation.mobile_code = None;
    }
    if next.status == UserStatus::PendingActivation && next.activation.is_complete() {
        next.status = UserStatus::Active;
    }
    next.updated_at = now;
    next.version = user.version + 1;
    next
}

fn invalid_link() -> Error {
    Rejection::new(Kind::InvalidActivationLink, "this activation link is not valid").into()
}

/// Confirms the emailed link. The token is the proof; no login is needed. Answers never
/// include who the account belongs to.
pub async fn confirm_email(app: &App, request_id: &str, token: &str) -> Result<ActivationState, Error> {
    let token = token.trim();
    let well_formed = token.len() == 43 && token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !well_formed {
        return Err(invalid_link());
    }
    let sha256 = token_sha256(token);
    // The first read goes through the token index; after a conflict we re-read the user by
    // key, which is strongly consistent.
    let mut known: Option<(OrganizationId, PersonId)> = None;
    Ok(retrying!(app, {
        let now = app.clock.now();
        let user = match &known {
            None => app.store.user_by_link_token(&sha256).await?,
            Some((organization, id)) => {
                let loaded = app.store.load(&[Key::User(organization.clone(), id.clone())]).await?;
                loaded.user(organization, id).cloned()
            }
        };
        let Some(user) = user.filter(|u| u.activation.email_token.as_ref().is_some_and(|t| t.sha256 == sha256)) else {
            return Err(invalid_link());
        };
        known = Some((user.organization.clone(), user.id.clone()));
        may_activate(&user, now)?;
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
        let next = confirmed(&user, now, true);
        let meta = RequestMeta { caller: Caller::Person(user.id.clone()), request_id: request_id.to_owned() };
        let audit = audit_entry(
            &meta,
            &user.organization,
            AuditAction::ActivationEmailConfirmed,
            Some(&next),
            json!({ "status": { "before": user.status, "after": next.status } }),
            now,
        );
        match commit(app, vec![Write::replace(Record::User(next.clone()), user.version), Write::create(Record::Audit(audit))]).await? {
            Committed::Yes => Ok(Attempt::Done(ActivationState::of(&next))),
            Committed::Conflict(_) | Committed::Unknown => Ok(Attempt::Retry),
        }
    }))
}

/// Confirms the SMS code. The caller is the user (token `sub`); wrong tries are counted
/// atomically, so parallel guesses cannot get past the limit.
pub async fn confirm_mobile(app: &App, meta: &RequestMeta, organization: &OrganizationId, code: &str) -> Result<ActivationState, Error> {
    let me = acting_on_own_account(&meta.caller)?;
    let code: String = code.trim().chars().map(crate::identity::ascii_digit).collect();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Rejection::invalid_request("code", "the code is six digits").into());
    }
    let key = app.settings.code_key()?;
    Ok(retrying!(app, {
        let now = app.clock.now();
        let loaded = app.store.load(&[Key::User(organization.clone(), me.clone())]).await?;
        let Some(user) = loaded.user(organization, me) else {
            return Err(Rejection::not_found().into());
        };
        may_activate(user, now)?;
        if user.activation.mobile_confirmed_at.is_some() {
            return Err(Rejection::new(Kind::AlreadyConfirmed, "the mobile number is already confirmed").into());
        }
        let Some(mut digest) = user.activation.mobile_code.clone() else {
            return Err(Rejection::new(Kind::NoPendingCode, "there is no code to confirm; ask your administrator to resend one").into());
        };
        let outcome = digest.check(key, organization, me, CodePurpose::ActivateMobile, &code, now);
        let (next, action, answer) = match outcome {
            CodeCheck::Accepted => {
                let next = confirmed(user, now, false);
                let state = ActivationState::of(&next);
                (next, AuditAction::ActivationMobileConfirmed, Ok(state))
            }
            CodeCheck::Expired => {
                return Err(Rejection::new(Kind::CodeExpired, "the code has expired; ask your administrator to resend one").into());
            }
            CodeCheck::Locked if digest.failed_attempts == user.activation.mobile_code.as_ref().map_or(0, |d| d.failed_attempts) => {
                // Already dead before this try: nothing to record.
                return Err(code_locked());
            }
            CodeCheck::Wrong { .. } | CodeCheck::Locked => {
                let mut next = user.clone();
                next.activation.mobile_code = Some(digest.clone());
                next.updated_at = now;
                next.version = user.version + 1;
                let answer = match outcome {
                    CodeCheck::Wrong { remaining } => Err(wrong_code(remaining)),
                    _ => Err(code_locked()),
                };
                (next, AuditAction::ActivationMobileCodeRejected, answer)
            }
        };
        let audit = audit_entry(
            meta,
            organization,
            action,
            Some(&next),
            json!({
                "status": { "before": user.status, "after": next.status },
                "failed_attempts": next.activation.mobile_code.as_ref().map(|d| d.failed_attempts),
            }),
            now,
        );
        match commit(app, vec![Write::replace(Record::User(next), user.version), Write::create(Record::Audit(audit))]).await? {
            Committed::Yes => answer.map(Attempt::Done),
            Committed::Conflict(_) | Committed::Unknown => Ok(Attempt::Retry),
        }
    }))
}

pub(crate) fn wrong_code(remaining: u8) -> Error {
    Rejection::new(Kind::WrongCode, format!("wrong code; {remaining} tries left")).detail("remaining_tries", remaining).into()
}

pub(crate) fn code_locked() -> Error {
    Rejection::new(Kind::CodeLocked, "too many wrong tries; this code no longer works until a new one is sent").into()
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
pub async fn resend(
    app: &App,
    meta: &RequestMeta,
    organization_id: &OrganizationId,
    user_id: &PersonId,
    asked: Option<ResendChannels>,
) -> Result<Resent, Error> {
    let mut keys = vec![Key::Organization(organization_id.clone()), Key::User(organization_id.clone(), user_id.clone())];
    if let Some(me) = meta.caller.person() {
        keys.push(Key::User(organization_id.clone(), me.clone()));
    }
    let key = app.settings.code_key()?;
    let (organization, user, token, code) = retrying!(app, {
        let now = app.clock.now();
        let loaded = app.store.load(&keys).await?;
        let caller_user = meta.caller.person().and_then(|me| loaded.user(organization_id, me));
        let standing = Standing::of(&meta.caller, loaded.organization(organization_id), caller_user, now)?;
        let target = target_of(standing, OnUser::ResendActivation, user_id, loaded.user(organization_id, user_id))?;
        authorize(standing, Action::ResendActivation(target))?;
        let organization = loaded.organization(organization_id).ok_or_else(Rejection::not_found)?;
        may_activate(target, now)?;
        if target.status == UserStatus::Active {
            return Err(Rejection::new(Kind::AlreadyActive, "this account is already active").into());
        }
        let pending =
            ResendChannels { email: target.activation.email_confirmed_at.is_none(), sms: target.activation.mobile_confirmed_at.is_none() };
        let wanted = asked.unwrap_or(pending);
        let channels = ResendChannels { email: wanted.email && pending.email, sms: wanted.sms && pending.sms };
        if !channels.email && !channels.sms {
            return Err(Rejection::new(Kind::AlreadyConfirmed, "what was asked for is already confirmed").into());
        }
        let recent: Vec<Timestamp> = target.recent_resends.iter().copied().filter(|t| now - t.0 < RESEND_WINDOW).collect();
        if recent.len() >= RESEND_LIMIT {
            let oldest = recent.iter().min().map_or(now, |t| t.0);
            let wait = (oldest + RESEND_WINDOW - now).whole_seconds().max(1) as u64;
            return Err(Rejection::new(Kind::TooManyResends, format!("at most {RESEND_LIMIT} resends per user in 15 minutes"))
                .retry_after(wait)
                .into());
        }
        let mut next = target.clone();
        let token = channels.email.then(|| new_link_token(now));
        let code = channels.sms.then(|| new_code(key, organization_id, user_id, crate::secrets::CodePurpose::ActivateMobile, now));
        if let Some(token) = &token {
            next.activation.email_token = Some(token.digest.clone());
        }
        if let Some(code) = &code {
            next.activation.mobile_code = Some(code.digest.clone());
        }
        next.recent_resends = recent;
        next.recent_resends.push(Timestamp(now));
        next.updated_at = now;
        next.version = target.version + 1;
        let audit = audit_entry(
            meta,
            organization_id,
            AuditAction::ActivationResent,
            Some(&next),
            json!({ "email": channels.email, "sms": channels.sms }),
            now,
        );
        match commit(app, vec![Write::replace(Record::User(next.clone()), target.version), Write::create(Record::Audit(audit))]).await? {
            Committed::Yes => Ok(Attempt::Done((organization.clone(), next, token, code))),
            Committed::Conflict(_) | Committed::Unknown => Ok(Attempt::Retry),
        }
    });

    let raw_token = token.as_ref().map_or("", |t| t.raw.as_str());
    let raw_code = code.as_ref().map_or("", |c| c.raw.as_str());
    let (email, sms) = activation_messages(app, &organization, &user, raw_token, raw_code);
    let email = match token {
        Some(_) => send_email(app, &email).await,
        None => Delivery::NotNeeded,
    };
    let sms = match code {
        Some(_) => send_sms(app, &sms).await,
        None => Delivery::NotNeeded,
    };
    Ok(Resent { email, sms })
}
