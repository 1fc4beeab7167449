//! The person registry: who is registered on the platform. Only registered persons can be
//! subscribed, and a resident's iqama must be unexpired on the day of subscription.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};

use crate::contact::{Email, SaudiMobile};
use crate::identity::PersonId;
use crate::organization::EstablishmentId;

/// A person's name in Arabic and/or English; at least one is present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonName {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ar: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub en: Option<String>,
}

/// ISO 3166-1 alpha-2 country code, upper case (`SA` for Saudi Arabia).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Nationality(String);

impl Nationality {
    pub const SAUDI: &'static str = "SA";

    pub fn parse(input: &str) -> Option<Self> {
        let upper = input.trim_ascii().to_ascii_uppercase();
        (upper.len() == 2 && upper.bytes().all(|b| b.is_ascii_uppercase())).then_some(Nationality(upper))
    }

    pub fn is_saudi(&self) -> bool {
        self.0 == Self::SAUDI
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    pub id: PersonId,
    pub name: PersonName,
    pub nationality: Nationality,
    /// Present for residents (iqama holders) only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iqama_expiry: Option<Date>,
    /// Establishments that employ this person (Qiwa's "registered employee" rule).
    pub employers: BTreeSet<EstablishmentId>,
    pub email: Email,
    pub mobile: SaudiMobile,
    /// Organizations that hold a user record of this person, kept in the same write that
    /// creates the record: a registry update reaches every one of them from this record,
    /// read strongly, never through an index that may lag.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub memberships: BTreeSet<crate::organization::OrganizationId>,
    #[serde(with = "crate::clock::utc")]
    pub updated_at: OffsetDateTime,
    pub version: u64,
}

impl Person {
    /// The person's record once a user record of theirs exists in `organization`: written
    /// with that user record, conditional on the version read (`Write::replace`), so a
    /// registry update racing it either sees the membership or is decided again.
    pub fn joining(&self, organization: &crate::organization::OrganizationId) -> Person {
        let mut next = self.clone();
        next.memberships.insert(organization.clone());
        next.version = self.version + 1;
        next
    }

    /// A resident may be subscribed only while the iqama is valid; citizens always may.
    pub fn iqama_valid_on(&self, day: Date) -> bool {
        match (&self.id, self.iqama_expiry) {
            (PersonId::National(_), _) => true,
            (PersonId::Iqama(_), Some(expiry)) => expiry >= day,
            (PersonId::Iqama(_), None) => false,
        }
    }

    pub fn employed_by_any_of<'a>(&self, establishments: impl IntoIterator<Item = &'a EstablishmentId>) -> bool {
        establishments.into_iter().any(|e| self.employers.contains(e))
    }
}
