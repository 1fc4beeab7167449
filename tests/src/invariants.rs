//! Checks that money and seats agree, over everything a store holds.

use std::collections::{BTreeMap, BTreeSet};

use domain::ledger::{Direction, LedgerReason};
use domain::money::Halalas;
use domain::organization::OrganizationId;
use domain::store::Record;

/// What the invariant check found, per organization.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Books {
    pub available: u64,
    pub credits: u64,
    pub debits: u64,
    pub seats_held: usize,
    pub paid_debits: usize,
}

/// Asserts, for every organization in `records`:
/// - the balance equals credits − debits of its ledger, and its running totals agree;
/// - every ledger entry's `balance_after` follows from the one before (never below zero);
/// - every seat debit names a seat that exactly one user holds (now or in the past), and
///   every seat a user holds or held has exactly one debit (free seats have a zero debit);
/// - `seats_sold` counts the subscription debits.
pub fn assert_books_balance(records: &[Record]) -> BTreeMap<OrganizationId, Books> {
    let mut books: BTreeMap<OrganizationId, Books> = BTreeMap::new();
    let mut ledgers: BTreeMap<OrganizationId, Vec<&domain::ledger::LedgerEntry>> = BTreeMap::new();
    let mut debited_seats: BTreeMap<OrganizationId, Vec<String>> = BTreeMap::new();
    let mut held_seats: BTreeMap<OrganizationId, Vec<String>> = BTreeMap::new();
    let mut balances = BTreeMap::new();
    for record in records {
        match record {
            Record::Balance(balance) => {
                balances.insert(balance.organization.clone(), balance.clone());
            }
            Record::Ledger(entry) => {
                ledgers.entry(entry.organization.clone()).or_default().push(entry);
                if let LedgerReason::Seat { seat_id, .. } = &entry.reason {
                    assert_eq!(entry.direction, Direction::Debit, "seat entries are debits");
                    debited_seats.entry(entry.organization.clone()).or_default().push(seat_id.clone());
                }
            }
            Record::User(user) => {
                let seats = held_seats.entry(user.organization.clone()).or_default();
                seats.extend(user.periods().chain(user.past_seats.iter()).map(|s| s.id.clone()));
            }
            _ => {}
        }
    }
    for (organization, balance) in &balances {
        let entries = ledgers.remove(organization).unwrap_or_default();
        let mut sorted = entries.clone();
        sorted.sort_by_key(|entry| entry.sequence);
        let (mut credits, mut debits, mut running) = (0u64, 0u64, 0u64);
        for entry in &sorted {
            match entry.direction {
                Direction::Credit => {
                    credits += entry.amount.get();
                    running += entry.amount.get();
                }
                Direction::Debit => {
                    debits += entry.amount.get();
                    running =
                        running.checked_sub(entry.amount.get()).unwrap_or_else(|| panic!("{organization}: the ledger went below zero"));
                }
            }
            assert_eq!(entry.balance_after, Halalas::new(running), "{organization}: balance_after of {} does not follow", entry.id);
        }
        assert_eq!(balance.available.get(), credits - debits, "{organization}: balance ≠ credits − debits");
        assert_eq!(balance.total_credited.get(), credits, "{organization}: credited total");
        assert_eq!(balance.total_debited.get(), debits, "{organization}: debited total");

        let debited = debited_seats.remove(organization).unwrap_or_default();
        let held = held_seats.remove(organization).unwrap_or_default();
        let debited_set: BTreeSet<_> = debited.iter().cloned().collect();
        let held_set: BTreeSet<_> = held.iter().cloned().collect();
        assert_eq!(debited_set.len(), debited.len(), "{organization}: a seat was debited twice");
        assert_eq!(held_set.len(), held.len(), "{organization}: a seat is held twice");
        assert_eq!(debited_set, held_set, "{organization}: seats and seat debits differ");
        let subscriptions = sorted
            .iter()
            .filter(|e| matches!(e.reason, LedgerReason::Seat { purchase: domain::ledger::SeatPurchase::Subscription, .. }))
            .count();
        assert_eq!(balance.seats_sold as usize, subscriptions, "{organization}: seats_sold");
        books.insert(
            organization.clone(),
            Books {
                available: balance.available.get(),
                credits,
                debits,
                seats_held: held.len(),
                paid_debits: sorted.iter().filter(|e| e.direction == Direction::Debit && !e.amount.is_zero()).count(),
            },
        );
    }
    assert!(ledgers.is_empty(), "ledger entries without a balance: {:?}", ledgers.keys().collect::<Vec<_>>());
    books
}
