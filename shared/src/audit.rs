//! The audit trail. Every change writes one entry in the same atomic write as the change.
//! Entries are immutable: no route updates or deletes them, and the deployed IAM policies
//! deny it.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use crate::identity::{PersonId, mask_id};
use crate::organization::{EstablishmentId, OrganizationId};

/// Who did it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Actor {
    Person(PersonId),
    Operator(String),
    Service(String),
    /// A scheduled job, named.
    System(String),
}

impl Actor {
    /// The person who acted, when a person did.
    pub fn person(&self) -> Option<&PersonId> {
        match self {
            Actor::Person(id) => Some(id),
            _ => None,
        }
    }
}

impl fmt::Display for Actor {
    /// Masked, for logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Person(id) => write!(f, "person:{id}"),
            Actor::Operator(id) => write!(f, "operator:{}", mask_id(id)),
            Actor::Service(id) => write!(f, "service:{}", mask_id(id)),
            Actor::System(name) => write!(f, "system:{name}"),
        }
    }
}

/// Whose trail an entry belongs to: an organization's, or the platform's (registry edits).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditScope {
    Organization(OrganizationId),
    Platform,
}

macro_rules! audit_actions {
    ($($variant:ident => $name:literal),+ $(,)?) => {
        /// Every kind of change. The string forms are part of the API (filters, CSV).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum AuditAction {
            $(#[serde(rename = $name)] $variant),+
        }

        impl AuditAction {
            /// Every action, written once with its name above, so a new one cannot be left out.
            pub const ALL: &'static [AuditAction] = &[$(AuditAction::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $(AuditAction::$variant => $name),+ }
            }
        }
    };
}

audit_actions! {
    OrganizationOnboarded => "organization.onboarded",
    OrganizationSettingsChanged => "organization.settings_changed",
    RegistryPersonSaved => "registry.person_saved",
    BalanceCredited => "balance.credited",
    UserSubscribed => "user.subscribed",
    ActivationEmailConfirmed => "activation.email_confirmed",
    ActivationMobileConfirmed => "activation.mobile_confirmed",
    ActivationMobileCodeRejected => "activation.mobile_code_rejected",
    ActivationResent => "activation.resent",
    MessageResent => "message.resent",
    MessageUndelivered => "message.undelivered",
    PermissionsChanged => "permissions.changed",
    UserModified => "user.modified",
    UserIqamaUpdated => "user.iqama_updated",
    ContactChangeConfirmed => "contact.change_confirmed",
    ContactCodeRejected => "contact.code_rejected",
    ContactChangeCancelled => "contact.change_cancelled",
    UserSuspended => "user.suspended",
    SeatRenewed => "seat.renewed",
    SeatReminderQueued => "seat.reminder_queued",
    SeatExpired => "seat.expired",
    AuditExported => "audit.exported",
    LedgerExported => "ledger.exported",
}

impl AuditAction {
    pub fn parse(input: &str) -> Option<Self> {
        AuditAction::ALL.iter().copied().find(|action| action.as_str() == input)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub scope: AuditScope,
    pub id: String,
    #[serde(with = "crate::clock::utc")]
    pub at: OffsetDateTime,
    pub actor: Actor,
    pub action: AuditAction,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<PersonId>,
    /// The target's establishments when the entry was written: lets a delegated admin read
    /// the entries of its establishments only.
    #[serde(default)]
    pub establishments: BTreeSet<EstablishmentId>,
    /// What changed; personal data in it is masked.
    pub changes: Value,
    pub request_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_has_one_stable_name_used_by_serde_and_filters() {
        let mut seen = BTreeSet::new();
        for &action in AuditAction::ALL {
            assert_eq!(serde_json::to_value(action).unwrap(), Value::String(action.as_str().to_owned()));
            assert_eq!(AuditAction::parse(action.as_str()), Some(action));
            assert!(seen.insert(action.as_str()), "{} listed twice", action.as_str());
        }
    }
}
