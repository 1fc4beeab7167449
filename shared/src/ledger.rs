//! The prepaid balance and its ledger. The balance item carries running totals, so the
//! invariant `available = credited - debited = Σ ledger` can be checked at any time.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::audit::Actor;
use crate::identity::PersonId;
use crate::money::Halalas;
use crate::organization::OrganizationId;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balance {
    pub organization: OrganizationId,
    pub available: Halalas,
    pub total_credited: Halalas,
    pub total_debited: Halalas,
    /// Seats ever sold by this organization, free ones included (Muqeem's first-seat rule).
    pub seats_sold: u64,
    pub version: u64,
}

impl Balance {
    pub fn opening(organization: OrganizationId) -> Self {
        Balance {
            organization,
            available: Halalas::ZERO,
            total_credited: Halalas::ZERO,
            total_debited: Halalas::ZERO,
            seats_sold: 0,
            version: 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeatPurchase {
    Subscription,
    Renewal,
}

/// Why money moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LedgerReason {
    /// An operator top-up; the payment reference is unique per organization.
    Credit { payment_reference: String },
    /// A seat bought for a person. Free seats are recorded too, with amount zero.
    Seat { seat_id: String, person: PersonId, purchase: SeatPurchase },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Credit,
    Debit,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub organization: OrganizationId,
    pub id: String,
    /// The order in which money moved: the balance version the entry's commit produced,
    /// times 100, plus the entry's position in that commit. Commits on a balance are
    /// serialized by its version, so this order is exact even when clocks tie.
    pub sequence: u64,
    #[serde(with = "crate::clock::utc")]
    pub at: OffsetDateTime,
    pub direction: Direction,
    pub amount: Halalas,
    pub balance_after: Halalas,
    pub reason: LedgerReason,
    pub actor: Actor,
    pub request_id: String,
}

/// The sequence number of the `position`-th entry of a commit producing `balance_version`.
pub fn ledger_sequence(balance_version: u64, position: usize) -> u64 {
    balance_version * 100 + position as u64
}
