//! Organizations (unified numbers) and their establishments.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;

use crate::identity::{PersonId, ascii_digit};

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a unified number has 10 digits and starts with 7")]
pub struct InvalidOrganizationId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an establishment file number looks like 1-234567 (office, dash, sequence)")]
pub struct InvalidEstablishmentId;

/// An organization's unified number: ten digits starting with `7`. It is also the tenant
/// key of every record the organization owns.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OrganizationId(String);

impl OrganizationId {
    pub fn parse(input: &str) -> Result<Self, InvalidOrganizationId> {
        let digits: String = input.trim_ascii().chars().map(ascii_digit).collect();
        if digits.len() == 10 && digits.starts_with('7') && digits.bytes().all(|b| b.is_ascii_digit()) {
            Ok(OrganizationId(digits))
        } else {
            Err(InvalidOrganizationId)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An establishment's file number at the labour office: `office-sequence`, e.g. `1-234567`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EstablishmentId(String);

impl EstablishmentId {
    pub fn parse(input: &str) -> Result<Self, InvalidEstablishmentId> {
        let normalized: String = input.trim_ascii().chars().map(ascii_digit).collect();
        let (office, sequence) = normalized.split_once('-').ok_or(InvalidEstablishmentId)?;
        let digits = |part: &str, max: usize| !part.is_empty() && part.len() <= max && part.bytes().all(|b| b.is_ascii_digit());
        if digits(office, 3) && digits(sequence, 9) { Ok(EstablishmentId(normalized)) } else { Err(InvalidEstablishmentId) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! plain_string_serde {
    ($type:ty) => {
        impl fmt::Display for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $type {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(deserializer)?;
                <$type>::parse(&raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

plain_string_serde!(OrganizationId);
plain_string_serde!(EstablishmentId);

/// Establishment size as the labour ministry ranks it; Qiwa prices seats by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SizeTier {
    Micro,
    Small,
    Medium,
    Large,
    Giant,
}

impl SizeTier {
    pub const ALL: [SizeTier; 5] = [SizeTier::Micro, SizeTier::Small, SizeTier::Medium, SizeTier::Large, SizeTier::Giant];
}

/// Which platform's rules and prices an organization follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PricingPlan {
    /// First seat of the organization ever is free, then a fixed price per seat.
    Muqeem,
    /// An annual price per seat by the organization's size tier.
    Qiwa,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Establishment {
    pub id: EstablishmentId,
    pub name: String,
    pub size: SizeTier,
}

/// What the manager decides for the whole organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrganizationSettings {
    /// A registered employee of an establishment may buy their own seat for it, paid from
    /// the organization's balance (Qiwa: "the user can subscribe by himself").
    pub employee_self_subscription: bool,
}

impl Default for OrganizationSettings {
    fn default() -> Self {
        OrganizationSettings { employee_self_subscription: true }
    }
}

/// An organization: one unified number owning one or more establishments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Organization {
    pub id: OrganizationId,
    pub name: String,
    pub plan: PricingPlan,
    pub manager: PersonId,
    pub establishments: Vec<Establishment>,
    #[serde(default)]
    pub settings: OrganizationSettings,
    #[serde(with = "crate::clock::utc")]
    pub created_at: OffsetDateTime,
    pub version: u64,
}

impl Organization {
    pub fn has_establishment(&self, id: &EstablishmentId) -> bool {
        self.establishments.iter().any(|e| &e.id == id)
    }

    pub fn establishment_ids(&self) -> BTreeSet<EstablishmentId> {
        self.establishments.iter().map(|e| e.id.clone()).collect()
    }

    /// The size of the unified number is the size of its largest establishment.
    pub fn size(&self) -> SizeTier {
        self.establishments.iter().map(|e| e.size).max().unwrap_or(SizeTier::Micro)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unified_numbers_are_ten_digits_starting_with_seven() {
        assert!(OrganizationId::parse("7001234567").is_ok());
        assert!(OrganizationId::parse("١٠٠").is_err());
        assert!(OrganizationId::parse("8001234567").is_err());
        assert!(OrganizationId::parse("700123456").is_err());
        assert!(OrganizationId::parse("70012345a7").is_err());
    }

    #[test]
    fn establishment_numbers_are_office_dash_sequence() {
        assert_eq!(EstablishmentId::parse(" 1-234567 ").unwrap().as_str(), "1-234567");
        assert_eq!(EstablishmentId::parse("١٢-٣٤").unwrap().as_str(), "12-34");
        for bad in ["1234567", "-1", "1-", "1234-5", "1-1234567890", "a-1", "1-2-3"] {
            assert!(EstablishmentId::parse(bad).is_err(), "{bad}");
        }
    }
}
