//! Resending one message a user can miss, by its slot on the user (`messages` in the
//! user's view):
//!
//! - a **contact verification code** (`verification_email`, `verification_sms`): a fresh
//!   code for the pending change, whatever became of the last one (the old code stops
//!   working);
//! - an **expiry reminder, a suspension notice or a contact-changed notice** that ended
//!   `failed` or `undeliverable`: the same message, read back from its intent, queued again —
//!   while it is still true (the seat still ends then, the user is still suspended);
//! - the **activation link and code** have their own resend (`activation/resend`), which
//!   issues fresh secrets.
//!
//! Resends of every kind share a user's limit (`RESEND_LIMIT` in `RESEND_WINDOW`), and
//! each is audited (`message.resent`).

use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;

use super::Scene;
use super::activate::recent_resends;
use crate::audit::AuditAction;
use crate::clock::Timestamp;
use crate::entropy::Fresh;
use crate::error::{Error, Kind, Rejection};
use crate::identity::PersonId;
use crate::organization::OrganizationId;
use crate::outbox::{DeliveryState, Intent, Message, Slot};
use crate::pipeline::{Command, Decision, Reads, RequestMeta, audit_entry};
use crate::policy::{Action, OnUser, authorize};
use crate::secrets::{CodeKey, CodePurpose, new_code};
use crate::store::{Key, Record, Write, intent_key};
use crate::user::{User, UserStatus};

/// What a resend queued.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ResentMessage {
    pub slot: Slot,
    pub state: DeliveryState,
}

/// Resends the message of `slot` to `user`.
pub struct ResendMessage {
    pub organization: OrganizationId,
    pub user: PersonId,
    pub slot: Slot,
    pub key: CodeKey,
}

/// The scene, and the intent the slot's last message belongs to (when it is still kept).
pub struct Resending {
    scene: Scene,
    intent: Option<Intent>,
}

impl Command for ResendMessage {
    type State = Resending;
    type Answer = ResentMessage;

    async fn load(&self, meta: &RequestMeta, reads: &mut Reads<'_>) -> Result<Resending, Error> {
        let scene = Scene::load_with_user(meta, reads, &self.organization, &self.user).await?;
        let key = scene
            .user(&self.user)
            .and_then(|user| user.deliveries.get(&self.slot))
            .and_then(|record| record.queued_at.map(|at| Key::At(intent_key(&self.organization, at, &record.intent))));
        let intent = match key {
            Some(key) => match reads.load([key.clone()]).await?.record(&key) {
                Some(Record::Intent(intent)) => Some(intent.clone()),
                _ => None,
            },
            None => None,
        };
        Ok(Resending { scene, intent })
    }

    fn authorize(&self, meta: &RequestMeta, state: &Resending, now: OffsetDateTime) -> Result<(), Rejection> {
        let standing = state.scene.standing(meta, now)?;
        let target = state.scene.target(standing, OnUser::ResendActivation, &self.user)?;
        authorize(standing, Action::ResendActivation(target)).map(drop)
    }

    fn decide(
        &self,
        meta: &RequestMeta,
        state: &Resending,
        now: OffsetDateTime,
        fresh: &mut Fresh,
    ) -> Result<Decision<ResentMessage>, Error> {
        let target = state.scene.user(&self.user).ok_or_else(Rejection::user_not_found)?;
        let record = target.deliveries.get(&self.slot).ok_or_else(|| {
            Rejection::new(Kind::MessageNotResendable, "no message of this kind was sent to this user").detail("slot", json!(self.slot))
        })?;
        let recent = recent_resends(target, now)?;
        let mut next = target.clone();
        let message = match self.slot {
            Slot::ActivationEmail | Slot::ActivationSms => {
                return Err(Rejection::new(
                    Kind::MessageNotResendable,
                    "the activation link and code are resent with POST .../activation/resend, which issues new ones",
                )
                .detail("slot", json!(self.slot))
                .into());
            }
            Slot::VerificationEmail => {
                let pending = next.pending_email.as_mut().ok_or_else(no_pending_change)?;
                let code =
                    new_code(&self.key, &self.organization, &target.id, CodePurpose::VerifyEmail(pending.value.as_str()), now, fresh);
                pending.code = code.digest;
                Message::EmailVerification { nonce: code.nonce }
            }
            Slot::VerificationSms => {
                let pending = next.pending_mobile.as_mut().ok_or_else(no_pending_change)?;
                let code =
                    new_code(&self.key, &self.organization, &target.id, CodePurpose::VerifyMobile(pending.value.as_str()), now, fresh);
                pending.code = code.digest;
                Message::MobileVerification { nonce: code.nonce }
            }
            _ => {
                if !matches!(record.state, DeliveryState::Failed | DeliveryState::Undeliverable) {
                    return Err(Rejection::new(
                        Kind::MessageNotResendable,
                        "only a message that failed or was undeliverable is sent again; this one is not",
                    )
                    .detail("slot", json!(self.slot))
                    .detail("state", json!(record.state))
                    .into());
                }
                // An intent past its lifetime is gone, whether or not the table's TTL has
                // removed it yet (TTL deletes within days, not at the instant).
                let message = state
                    .intent
                    .as_ref()
                    .filter(|intent| intent.id == record.intent && now < crate::pipeline::intent_expiry(intent))
                    .and_then(|intent| intent.notices.iter().find(|n| n.user == target.id && n.message.slot() == self.slot))
                    .map(|notice| notice.message.clone())
                    .ok_or_else(|| {
                        Rejection::new(Kind::MessageGone, "the message is no longer kept (messages are kept 30 days)")
                            .detail("slot", json!(self.slot))
                    })?;
                still_true(&message, target)?;
                message
            }
        };
        let mut decision = Decision::answer(ResentMessage { slot: self.slot, state: DeliveryState::Queued });
        decision.notify(meta, &mut next, message, now, fresh);
        next.recent_resends = recent;
        next.recent_resends.push(Timestamp(now));
        next.updated_at = now;
        next.version = target.version + 1;
        let audit =
            audit_entry(meta, &self.organization, AuditAction::MessageResent, Some(&next), json!({ "slot": self.slot }), now, fresh);
        Ok(decision.write(Write::replace(Record::User(next), target.version)).audit(audit))
    }
}

fn no_pending_change() -> Rejection {
    Rejection::new(Kind::NoPendingChange, "there is no pending change to verify")
}

/// A notice is sent again only while what it says still holds.
fn still_true(message: &Message, user: &User) -> Result<(), Rejection> {
    let holds = match message {
        Message::ExpiryReminder { ends_at, .. } => user.expiry() == Some(*ends_at) && user.status != UserStatus::Suspended,
        Message::AccountSuspended { .. } => user.status == UserStatus::Suspended,
        _ => true,
    };
    if holds {
        Ok(())
    } else {
        Err(Rejection::new(Kind::MessageOutdated, "what the message says no longer holds (the seat was renewed, or the suspension lifted)"))
    }
}
