//! The expiry sweep's records: where it stands between runs (one item), and the partitions
//! of the expiry index it reads. Kept apart from the sweep action so that the store, which
//! stores them, depends on no action.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};

use crate::cursor::Position;
use crate::identity::PersonId;
use crate::organization::OrganizationId;

/// The sweep's place between runs (one item in the users table).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SweepState {
    pub version: u64,
    /// Every sweep day up to and including this one is done.
    pub completed_through: Option<Date>,
    /// The first day not completed, where a run stopped in it.
    pub progress: Option<DayProgress>,
    /// Partitions of completed days with items that failed, retried by the next runs.
    #[serde(default)]
    pub retries: Vec<Retry>,
    /// The run working now, until when.
    pub lease: Option<Lease>,
    #[serde(with = "crate::clock::utc")]
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Lease {
    pub run: String,
    #[serde(with = "crate::clock::utc")]
    pub until: OffsetDateTime,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DayProgress {
    pub day: Date,
    /// By partition (`EXPIRY#{day}#{shard}`): done, or where to resume.
    pub partitions: BTreeMap<String, Mark>,
}

/// A partition to read again from `from` (its first page with a failed item).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Retry {
    pub partition: ExpiryPartition,
    pub from: Option<Position>,
    /// Runs in which its items failed.
    pub runs: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Mark {
    Done,
    /// Resume after this cursor (from the start when `None`).
    Resume(Option<Position>),
}

/// Shards of each day of the expiry index.
pub const EXPIRY_SHARDS: u8 = 16;

/// One partition of the expiry index: a Saudi day, one shard of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct ExpiryPartition {
    pub day: time::Date,
    pub shard: u8,
}

impl ExpiryPartition {
    /// Every shard of `day`.
    pub fn of_day(day: time::Date) -> impl Iterator<Item = ExpiryPartition> {
        (0..EXPIRY_SHARDS).map(move |shard| ExpiryPartition { day, shard })
    }

    /// The index partition key, `EXPIRY#YYYY-MM-DD#SS`.
    pub fn key(self) -> String {
        format!("EXPIRY#{}#{:02}", self.day, self.shard)
    }
}

/// The shard of a user's entries: stable, and spread evenly by the SHA-256 of the key.
pub fn expiry_shard(organization: &OrganizationId, user: &PersonId) -> u8 {
    let digest = crate::secrets::sha256_hex(format!("{}#{}", organization.as_str(), user.as_str()).as_bytes());
    u8::from_str_radix(&digest[..2], 16).unwrap_or(0) % EXPIRY_SHARDS
}
