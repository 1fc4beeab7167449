//! The transactional outbox. A command that tells someone something writes an `Intent` —
//! what to send, to whom, never a secret — in the same transaction as the change, and marks
//! each message `queued` on its user's record. `deliver` reads intents from the table's
//! stream, renders each message in the user's language, sends it, and records the outcome
//! on the user (`sent` with the provider's message id, or `failed` with the reason), where
//! the user's view shows it. A change therefore never loses its message, and nothing says
//! "sent" before it was.
//!
//! A message whose slot on the user names another intent was replaced (a resend, a newer
//! contact change) and is not sent; one already `sent` is not sent again, so a stream
//! record delivered twice sends once.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::contact::{Email, SaudiMobile};
use crate::identity::PersonId;
use crate::messaging::{self as messages, Count, EmailMessage, SmsMessage, Template, Unit, channel_name};
use crate::organization::{Organization, OrganizationId};
use crate::secrets::{CodeKey, CodePurpose, Nonce, code_digest, code_for, link_token, token_sha256};
use crate::user::{Reminder, User};

/// How long an intent stays in the table after it was written (the table's TTL removes
/// it); delivery retries end long before.
pub const INTENT_LIFETIME: Duration = Duration::days(30);

/// The messages one command sends, written with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    pub organization: OrganizationId,
    pub id: String,
    #[serde(with = "crate::clock::utc")]
    pub created_at: OffsetDateTime,
    pub request_id: String,
    pub notices: Vec<Notice>,
    /// The change events of the commit (`events`), published by `publish`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<crate::events::ChangeEvent>,
}

/// One message to one user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    pub user: PersonId,
    pub message: Message,
}

/// Which way a notice goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Email,
    Sms,
}

/// What to send. Secrets are nonces; `deliver` derives them under the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Message {
    /// The activation link, to the user's email.
    ActivationLink { nonce: Nonce },
    /// The activation code, to the user's mobile.
    ActivationCode { nonce: Nonce },
    /// A code to the pending new email.
    EmailVerification { nonce: Nonce },
    /// A code to the pending new mobile.
    MobileVerification { nonce: Nonce },
    /// To the old email: it is no longer the user's.
    EmailChanged { old: Email },
    /// To the old mobile: it is no longer the user's.
    MobileChanged { old: SaudiMobile },
    /// A seat ends soon.
    ExpiryReminder {
        reminder: Reminder,
        channel: Channel,
        #[serde(with = "crate::clock::utc")]
        ends_at: OffsetDateTime,
    },
    /// The account was suspended.
    AccountSuspended {
        channel: Channel,
        #[serde(with = "crate::clock::utc")]
        at: OffsetDateTime,
    },
}

/// Where on the user's record a kind of message keeps its delivery state. The names are
/// part of the API (the user's `messages`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Slot {
    ActivationEmail,
    ActivationSms,
    VerificationEmail,
    VerificationSms,
    ContactChangedEmail,
    ContactChangedSms,
    ReminderEmail,
    ReminderSms,
    SuspensionEmail,
    SuspensionSms,
}

impl Message {
    pub fn slot(&self) -> Slot {
        match self {
            Message::ActivationLink { .. } => Slot::ActivationEmail,
            Message::ActivationCode { .. } => Slot::ActivationSms,
            Message::EmailVerification { .. } => Slot::VerificationEmail,
            Message::MobileVerification { .. } => Slot::VerificationSms,
            Message::EmailChanged { .. } => Slot::ContactChangedEmail,
            Message::MobileChanged { .. } => Slot::ContactChangedSms,
            Message::ExpiryReminder { channel: Channel::Email, .. } => Slot::ReminderEmail,
            Message::ExpiryReminder { channel: Channel::Sms, .. } => Slot::ReminderSms,
            Message::AccountSuspended { channel: Channel::Email, .. } => Slot::SuspensionEmail,
            Message::AccountSuspended { channel: Channel::Sms, .. } => Slot::SuspensionSms,
        }
    }
}

/// Where a message stands, as the user's view shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Waiting for a send, or for another try after a transient failure (`reason` says which).
    Queued,
    /// The provider took it (`message_id`).
    Sent,
    /// The provider refused it for good (`reason`: its error code); not retried.
    Failed,
    /// Every try of its budget (`DELIVERY_ATTEMPTS`) failed for a reason that might have
    /// passed (`reason`: the last one); no more tries — an administrator resends.
    Undeliverable,
    /// Replaced before it went out (the data it was about changed); never sent.
    Superseded,
}

impl DeliveryState {
    /// Whether nothing more will happen to the message.
    pub fn is_terminal(self) -> bool {
        !matches!(self, DeliveryState::Queued)
    }
}

/// Tries of one message before it is `undeliverable`: the first delivery and the stream's
/// three retries (`MaximumRetryAttempts: 3` in template.yaml).
pub const DELIVERY_ATTEMPTS: u32 = 4;

/// How long a claim keeps other deliveries from sending a message: longer than a send and
/// its record can take in one invocation (`deliver`'s timeout is 60 seconds).
pub const CLAIM_LEASE: time::Duration = time::Duration::minutes(5);

/// How long a queued message waits, after its last try (or its queuing), before the
/// redrive sends it: the stream delivers within seconds and retries within minutes, so a
/// message still queued 15 minutes on was dropped by the stream (or its delivery died).
/// Each try doubles the wait (15 min, 30 min, 1 h, 2 h, then 4 h).
pub const REDRIVE_AFTER: Duration = Duration::minutes(15);

/// How long a message may stay queued at most: past a day from its queuing (SES's sending
/// quota is a rolling 24-hour window, so a quota spent passes within it; a DynamoDB stream
/// keeps its records 24 hours) it is given up as `undeliverable` (`expired`) rather than
/// sent late. The redrive, every 5 minutes, finds it by then.
pub const DELIVERY_WINDOW: Duration = Duration::hours(24);

/// The reason a message given up by the redrive carries: queued past `DELIVERY_WINDOW`.
pub const EXPIRED: &str = "expired";
/// The reason a message fails without a send when its secret is not the user's (the code
/// key differs from the one that queued it).
pub const SECRET_MISMATCH: &str = "secret_mismatch";
/// The reason when the intent a queued message belongs to is gone (past the outbox's TTL).
pub const INTENT_MISSING: &str = "intent_missing";

/// A delivery's hold on a message, taken with a conditional write before it is sent: while
/// it lasts no other delivery sends the message; once it has run out with no outcome
/// recorded, the send's outcome is unknown and the next delivery sends again (counted as a
/// possible duplicate).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub attempt: String,
    #[serde(with = "crate::clock::utc")]
    pub until: OffsetDateTime,
}

/// The delivery of the latest message of one slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    /// The intent the message belongs to.
    pub intent: String,
    pub state: DeliveryState,
    /// The provider's message id (SES or SNS), once sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// Why the last attempt failed (never personal data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Sends tried.
    #[serde(default)]
    pub attempts: u32,
    #[serde(with = "crate::clock::utc")]
    pub updated_at: OffsetDateTime,
    /// The delivery sending it now, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<Claim>,
    /// When it was queued: its intent's `created_at` (which, with `intent`, is the intent's
    /// key in the outbox table, so the redrive can read it back).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "crate::clock::utc::option")]
    pub queued_at: Option<OffsetDateTime>,
}

impl DeliveryRecord {
    /// When the redrive should take this message up, if it is still queued: a while after
    /// its last try (`REDRIVE_AFTER`, doubled per try), not before a live claim runs out,
    /// and no later than the end of its `DELIVERY_WINDOW`.
    pub fn due_at(&self) -> Option<OffsetDateTime> {
        if self.state != DeliveryState::Queued {
            return None;
        }
        let wait = REDRIVE_AFTER * 2i32.pow(self.attempts.min(4));
        let mut due = self.updated_at + wait;
        if let Some(claim) = &self.claim {
            due = due.max(claim.until);
        }
        if let Some(queued_at) = self.queued_at {
            due = due.min(queued_at + DELIVERY_WINDOW);
        }
        Some(due)
    }

    /// Whether a delivery's claim on it still runs at `now` (it is being sent).
    pub fn claimed_at(&self, now: OffsetDateTime) -> bool {
        self.claim.as_ref().is_some_and(|claim| now < claim.until)
    }

    /// Whether the redrive gives it up rather than send it at `now`.
    pub fn expired_at(&self, now: OffsetDateTime) -> bool {
        self.queued_at.is_none_or(|queued_at| now >= queued_at + DELIVERY_WINDOW)
    }
}

/// When the first of a user's queued messages is due for the redrive (what the sparse
/// `by_undelivered` index sorts by); `None` when nothing is queued.
pub fn redrive_due(deliveries: &Deliveries) -> Option<OffsetDateTime> {
    deliveries.values().filter_map(DeliveryRecord::due_at).min()
}

/// A user's delivery records, by slot.
pub type Deliveries = BTreeMap<Slot, DeliveryRecord>;

/// A message ready for a provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    Email(EmailMessage),
    Sms(SmsMessage),
}

/// Why a queued message is not sent after all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stale {
    /// A later message took the slot, or the intent's commit never happened.
    Replaced,
    /// Already sent (a stream record delivered again).
    AlreadySent,
    /// No longer needed: what it asks to confirm is confirmed already, or the change it is
    /// about was withdrawn. Marked superseded.
    Outdated,
    /// The secret derived from its nonce is not the one the user's record holds: the code
    /// key differs from the one that queued it (a deployment mistake). Marked failed.
    SecretMismatch,
    /// Another delivery holds a live claim on it (it is being sent now).
    Claimed,
    /// It ended: refused for good, or its budget of tries spent.
    Ended,
}

/// What a notice becomes when it is sent at `now`: the message, or why it is not sent.
#[allow(clippy::too_many_arguments)]
pub fn render(
    intent: &Intent,
    notice: &Notice,
    user: &User,
    organization: &Organization,
    key: &CodeKey,
    link_prefix: &str,
    now: OffsetDateTime,
) -> Result<Outgoing, Stale> {
    match user.deliveries.get(&notice.message.slot()) {
        Some(record) if record.intent == intent.id => match record.state {
            DeliveryState::Sent => return Err(Stale::AlreadySent),
            DeliveryState::Superseded => return Err(Stale::Replaced),
            DeliveryState::Failed | DeliveryState::Undeliverable => return Err(Stale::Ended),
            DeliveryState::Queued if record.claimed_at(now) => return Err(Stale::Claimed),
            DeliveryState::Queued => {}
        },
        _ => return Err(Stale::Replaced),
    }
    let name = display_name(user);
    let name = name.as_str();
    let language = user.language;
    let ar = language == crate::contact::Language::Ar;
    let organization = organization.name.as_str();
    let outgoing = match &notice.message {
        Message::ActivationLink { nonce } => {
            let token = link_token(key, nonce);
            if user.activation.email_confirmed_at.is_some() || user.activation.email_token.is_none() {
                return Err(Stale::Outdated);
            }
            if user.activation.email_token.as_ref().is_some_and(|t| t.sha256 != token_sha256(&token)) {
                return Err(Stale::SecretMismatch);
            }
            let link = format!("{link_prefix}{token}");
            let hours = Count { n: crate::secrets::LINK_TOKEN_TTL.whole_hours(), unit: Unit::Hour, language };
            let filled = messages::ActivationEmail { ar, name, organization, link: &link, hours };
            Outgoing::Email(EmailMessage::new(&user.email, Template::ActivationEmail, &filled))
        }
        Message::ActivationCode { nonce } => {
            let code = code_for(key, nonce);
            let digest = code_digest(key, &user.organization, &user.id, CodePurpose::ActivateMobile, &code);
            if user.activation.mobile_confirmed_at.is_some() || user.activation.mobile_code.is_none() {
                return Err(Stale::Outdated);
            }
            if user.activation.mobile_code.as_ref().is_some_and(|c| c.hmac != digest) {
                return Err(Stale::SecretMismatch);
            }
            Outgoing::Sms(SmsMessage::new(&user.mobile, Template::ActivationSms, &messages::ActivationSms { ar, code: &code }))
        }
        Message::EmailVerification { nonce } => {
            let pending = user.pending_email.as_ref().ok_or(Stale::Outdated)?;
            let code = code_for(key, nonce);
            let purpose = CodePurpose::VerifyEmail(pending.value.as_str());
            if code_digest(key, &user.organization, &user.id, purpose, &code) != pending.code.hmac {
                return Err(Stale::SecretMismatch);
            }
            let filled = messages::ContactVerificationEmail { ar, name, organization, code: &code };
            Outgoing::Email(EmailMessage::new(&pending.value, Template::ContactVerificationEmail, &filled))
        }
        Message::MobileVerification { nonce } => {
            let pending = user.pending_mobile.as_ref().ok_or(Stale::Outdated)?;
            let code = code_for(key, nonce);
            let purpose = CodePurpose::VerifyMobile(pending.value.as_str());
            if code_digest(key, &user.organization, &user.id, purpose, &code) != pending.code.hmac {
                return Err(Stale::SecretMismatch);
            }
            Outgoing::Sms(SmsMessage::new(
                &pending.value,
                Template::ContactVerificationSms,
                &messages::ContactVerificationSms { ar, code: &code },
            ))
        }
        Message::EmailChanged { old } => {
            let new_value = user.email.masked();
            let channel = channel_name(true, language);
            let filled = messages::ContactChangedEmail { ar, name, organization, channel, new_value: &new_value };
            Outgoing::Email(EmailMessage::new(old, Template::ContactChangedEmail, &filled))
        }
        Message::MobileChanged { old } => {
            let filled = messages::ContactChangedSms { ar, channel: channel_name(false, language) };
            Outgoing::Sms(SmsMessage::new(old, Template::ContactChangedSms, &filled))
        }
        Message::ExpiryReminder { channel, ends_at, .. } => {
            // Saudi calendar days from the day it is sent to the period's last day: "ends in
            // 30 days" on the day 30 days before.
            let days = (crate::clock::saudi_day(*ends_at) - crate::clock::saudi_day(now)).whole_days();
            let days = Count { n: days, unit: Unit::Day, language };
            let date = crate::clock::saudi_day(*ends_at).to_string();
            match channel {
                Channel::Email => {
                    let filled = messages::ExpiryReminderEmail { ar, name, organization, days, date: &date };
                    Outgoing::Email(EmailMessage::new(&user.email, Template::ExpiryReminderEmail, &filled))
                }
                Channel::Sms => {
                    let filled = messages::ExpiryReminderSms { ar, days, date: &date };
                    Outgoing::Sms(SmsMessage::new(&user.mobile, Template::ExpiryReminderSms, &filled))
                }
            }
        }
        Message::AccountSuspended { channel, at } => {
            let date = crate::clock::saudi_day(*at).to_string();
            match channel {
                Channel::Email => {
                    let filled = messages::AccountSuspendedEmail { ar, name, organization, date: &date };
                    Outgoing::Email(EmailMessage::new(&user.email, Template::AccountSuspendedEmail, &filled))
                }
                Channel::Sms => {
                    let filled = messages::AccountSuspendedSms { ar, date: &date };
                    Outgoing::Sms(SmsMessage::new(&user.mobile, Template::AccountSuspendedSms, &filled))
                }
            }
        }
    };
    Ok(outgoing)
}

/// A name to greet a user by, in their language when available.
pub fn display_name(user: &User) -> String {
    let name = &user.name;
    match user.language {
        crate::contact::Language::Ar => name.ar.clone().or_else(|| name.en.clone()),
        crate::contact::Language::En => name.en.clone().or_else(|| name.ar.clone()),
    }
    .unwrap_or_default()
}
