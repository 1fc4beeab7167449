//! A user's effective status, as one rule over three stored facts: the status the record
//! holds, the role, and when the last paid period ends. `User::effective_status` decides by
//! it, the embedded store's listings filter by it, and the DynamoDB adapter renders the same
//! conditions as a filter expression — so a listing's `?status=` means the same on every
//! store, between a seat's end and the sweep's pass as after it.

use time::OffsetDateTime;

use crate::user::{Role, User, UserStatus};

/// What the rule reads of a user record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    pub stored: UserStatus,
    pub role: Role,
    /// The end of the last paid period, if the user holds one.
    pub access_ends_at: Option<OffsetDateTime>,
}

impl Facts {
    pub fn of(user: &User) -> Facts {
        Facts { stored: user.status, role: user.role, access_ends_at: user.access_ends_at() }
    }
}

/// A condition over the facts, at a given `now`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    Stored(UserStatus),
    Role(Role),
    /// A paid period runs past `now`.
    AccessAfterNow,
    /// No paid period, or the last one has ended by `now`.
    AccessEndedByNow,
    All(Vec<Condition>),
    Any(Vec<Condition>),
}

impl Condition {
    pub fn holds(&self, facts: &Facts, now: OffsetDateTime) -> bool {
        match self {
            Condition::Stored(status) => facts.stored == *status,
            Condition::Role(role) => facts.role == *role,
            Condition::AccessAfterNow => facts.access_ends_at.is_some_and(|end| end > now),
            Condition::AccessEndedByNow => facts.access_ends_at.is_none_or(|end| end <= now),
            Condition::All(all) => all.iter().all(|c| c.holds(facts, now)),
            Condition::Any(any) => any.iter().any(|c| c.holds(facts, now)),
        }
    }
}

/// The statuses, in the order the rule tries them (they exclude each other).
pub const ORDER: [UserStatus; 4] = [UserStatus::Suspended, UserStatus::Expired, UserStatus::Active, UserStatus::PendingActivation];

/// When a user is `wanted`: suspended is for good; a member whose last paid period has
/// ended is expired whether or not the sweep has written so; otherwise what was stored —
/// for the manager, whose access needs no seat, always.
pub fn condition(wanted: UserStatus) -> Condition {
    use Condition::*;
    let running = || Any(vec![Role(crate::user::Role::Manager), AccessAfterNow]);
    match wanted {
        UserStatus::Suspended => Stored(UserStatus::Suspended),
        UserStatus::Expired => Any(vec![
            Stored(UserStatus::Expired),
            All(vec![
                Any(vec![Stored(UserStatus::Active), Stored(UserStatus::PendingActivation)]),
                Role(crate::user::Role::Member),
                AccessEndedByNow,
            ]),
        ]),
        UserStatus::Active => All(vec![Stored(UserStatus::Active), running()]),
        UserStatus::PendingActivation => All(vec![Stored(UserStatus::PendingActivation), running()]),
    }
}

/// The status the rule gives these facts at `now`.
pub fn effective(facts: &Facts, now: OffsetDateTime) -> UserStatus {
    ORDER.into_iter().find(|status| condition(*status).holds(facts, now)).unwrap_or(facts.stored)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn exactly_one_status_holds_for_every_record_at_every_moment() {
        let now = datetime!(2027-11-23 08:00 UTC);
        let ends = [None, Some(now - time::Duration::microseconds(1)), Some(now), Some(now + time::Duration::microseconds(1))];
        for stored in ORDER {
            for role in [Role::Manager, Role::Member] {
                for access_ends_at in ends {
                    let facts = Facts { stored, role, access_ends_at };
                    let holding: Vec<UserStatus> = ORDER.into_iter().filter(|s| condition(*s).holds(&facts, now)).collect();
                    assert_eq!(holding.len(), 1, "{facts:?}: {holding:?}");
                    let running = access_ends_at.is_some_and(|end| now < end);
                    let expected = match stored {
                        UserStatus::Active | UserStatus::PendingActivation if role == Role::Member && !running => UserStatus::Expired,
                        other => other,
                    };
                    assert_eq!(effective(&facts, now), expected, "{facts:?}");
                }
            }
        }
    }
}
