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

/// Every kind of change. The string forms are part of the API (filters, CSV).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum AuditAction {
    #[serde(rename = "organization.onboarded")]
    OrganizationOnboarded,
    #[serde(rename = "registry.person_saved")]
    RegistryPersonSaved,
    #[serde(rename = "balance.credited")]
    BalanceCredited,
    #[serde(rename = "user.subscribed")]
    UserSubscribed,
    #[serde(rename = "activation.email_confirmed")]
    ActivationEmailConfirmed,
    #[serde(rename = "activation.mobile_confirmed")]
    ActivationMobileConfirmed,
    #[serde(rename = "activation.mobile_code_rejected")]
    ActivationMobileCodeRejected,
    #[serde(rename = "activation.resent")]
    ActivationResent,
    #[serde(rename = "permissions.changed")]
    PermissionsChanged,
    #[serde(rename = "user.modified")]
    UserModified,
    #[serde(rename = "contact.change_confirmed")]
    ContactChangeConfirmed,
    #[serde(rename = "contact.code_rejected")]
    ContactCodeRejected,
    #[serde(rename = "contact.change_cancelled")]
    ContactChangeCancelled,
    #[serde(rename = "user.suspended")]
    UserSuspended,
    #[serde(rename = "seat.renewed")]
    SeatRenewed,
    #[serde(rename = "seat.reminder_sent")]
    SeatReminderSent,
    #[serde(rename = "seat.reminder_failed")]
    SeatReminderFailed,
    #[serde(rename = "seat.expired")]
    SeatExpired,
    #[serde(rename = "audit.exported")]
    AuditExported,
    #[serde(rename = "ledger.exported")]
    LedgerExported,
}

impl AuditAction {
    pub const ALL: [AuditAction; 20] = [
        AuditAction::OrganizationOnboarded,
        AuditAction::RegistryPersonSaved,
        AuditAction::BalanceCredited,
        AuditAction::UserSubscribed,
        AuditAction::ActivationEmailConfirmed,
        AuditAction::ActivationMobileConfirmed,
        AuditAction::ActivationMobileCodeRejected,
        AuditAction::ActivationResent,
        AuditAction::PermissionsChanged,
        AuditAction::UserModified,
        AuditAction::ContactChangeConfirmed,
        AuditAction::ContactCodeRejected,
        AuditAction::ContactChangeCancelled,
        AuditAction::UserSuspended,
        AuditAction::SeatRenewed,
        AuditAction::SeatReminderSent,
        AuditAction::SeatReminderFailed,
        AuditAction::SeatExpired,
        AuditAction::AuditExported,
        AuditAction::LedgerExported,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::OrganizationOnboarded => "organization.onboarded",
            AuditAction::RegistryPersonSaved => "registry.person_saved",
            AuditAction::BalanceCredited => "balance.credited",
            AuditAction::UserSubscribed => "user.subscribed",
            AuditAction::ActivationEmailConfirmed => "activation.email_confirmed",
            AuditAction::ActivationMobileConfirmed => "activation.mobile_confirmed",
            AuditAction::ActivationMobileCodeRejected => "activation.mobile_code_rejected",
            AuditAction::ActivationResent => "activation.resent",
            AuditAction::PermissionsChanged => "permissions.changed",
            AuditAction::UserModified => "user.modified",
            AuditAction::ContactChangeConfirmed => "contact.change_confirmed",
            AuditAction::ContactCodeRejected => "contact.code_rejected",
            AuditAction::ContactChangeCancelled => "contact.change_cancelled",
            AuditAction::UserSuspended => "user.suspended",
            AuditAction::SeatRenewed => "seat.renewed",
            AuditAction::SeatReminderSent => "seat.reminder_sent",
            AuditAction::SeatReminderFailed => "seat.reminder_failed",
            AuditAction::SeatExpired => "seat.expired",
            AuditAction::AuditExported => "audit.exported",
            AuditAction::LedgerExported => "ledger.exported",
        }
    }

    pub fn parse(input: &str) -> Option<Self> {
        AuditAction::ALL.into_iter().find(|action| action.as_str() == input)
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
        for action in AuditAction::ALL {
            assert_eq!(serde_json::to_value(action).unwrap(), Value::String(action.as_str().to_owned()));
            assert_eq!(AuditAction::parse(action.as_str()), Some(action));
            assert!(seen.insert(action.as_str()), "{} listed twice", action.as_str());
        }
    }
}
