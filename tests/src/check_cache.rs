//! An example consumer of the change events: a service that asks the check API whether a
//! user may use a service on an establishment keeps the answers, and drops a user's answers
//! when an event says their access may have changed — instead of calling the check API on
//! every request. This is the pattern integrated services should follow:
//!
//! - **de-duplicate** on the event's `id` (delivery is at least once);
//! - **order per record** by `data.version`: an event not newer than the last one applied
//!   for that user is ignored (it arrived late, or twice);
//! - **drop, never patch**: on an access-affecting event the user's cached answers go, and
//!   the next request asks the check API again, so no answer outlives the change it
//!   predates, in whatever order events arrive.
//!
//! It reads the events as JSON (the EventBridge entry's `detail`, or the local server's
//! `GET /local/events`), so it depends on nothing of this repository.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

/// The event types after which a user's check answers may differ.
pub const ACCESS_TYPES: [&str; 8] = [
    "sa.establishment-users.user.suspended.v1",
    "sa.establishment-users.seat.expired.v1",
    "sa.establishment-users.permissions.changed.v1",
    "sa.establishment-users.user.iqama_updated.v1",
    "sa.establishment-users.seat.renewed.v1",
    "sa.establishment-users.activation.email_confirmed.v1",
    "sa.establishment-users.activation.mobile_confirmed.v1",
    "sa.establishment-users.user.subscribed.v1",
];

/// Which user, which establishment, which service.
pub type Question = (String, String, String, String);

/// What applying an event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Seen before (same id).
    Duplicate,
    /// Not newer than what was applied for the record.
    Stale,
    /// Dropped this many cached answers.
    Dropped(usize),
    /// Not about access.
    Ignored,
}

#[derive(Debug, Default)]
pub struct CheckCache {
    answers: HashMap<Question, bool>,
    /// Per (organization, user): the version of the last event applied.
    versions: HashMap<(String, String), u64>,
    seen: HashSet<String>,
}

impl CheckCache {
    /// Keeps the check API's answer to `question`.
    pub fn remember(&mut self, question: Question, allowed: bool) {
        self.answers.insert(question, allowed);
    }

    /// The kept answer, if any (else: ask the check API, then `remember`).
    pub fn answer(&self, question: &Question) -> Option<bool> {
        self.answers.get(question).copied()
    }

    /// The version of the last event applied for a user.
    pub fn version(&self, organization: &str, user: &str) -> Option<u64> {
        self.versions.get(&(organization.to_owned(), user.to_owned())).copied()
    }

    /// Applies one event.
    pub fn apply(&mut self, event: &Value) -> Applied {
        let Some(id) = event["id"].as_str() else { return Applied::Ignored };
        if !self.seen.insert(id.to_owned()) {
            return Applied::Duplicate;
        }
        let data = &event["data"];
        let (Some(organization), Some(user)) = (data["organization"].as_str(), data["user"].as_str()) else {
            return Applied::Ignored;
        };
        // Only access-affecting events are ordered here: a newer event of another kind must
        // not make an older access change look stale.
        if !ACCESS_TYPES.contains(&event["type"].as_str().unwrap_or_default()) {
            return Applied::Ignored;
        }
        let record = (organization.to_owned(), user.to_owned());
        if let Some(version) = data["version"].as_u64() {
            if self.versions.get(&record).is_some_and(|applied| *applied >= version) {
                return Applied::Stale;
            }
            self.versions.insert(record, version);
        }
        let before = self.answers.len();
        self.answers.retain(|(o, u, _, _), _| !(o == organization && u == user));
        Applied::Dropped(before - self.answers.len())
    }
}
