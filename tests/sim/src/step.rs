//! What a history is made of. Every step is data (JSON lines), so a history — generated
//! from a seed, or shrunk from a failing one — can be printed, kept and replayed exactly.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use time::Date;

/// One step of a history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// One request, through the handler of the function that serves it.
    Request(Request),
    /// Requests at the same time: their store calls interleave in an order drawn from
    /// `schedule`.
    Together { requests: Vec<Request>, schedule: u64 },
    /// The clock moves forward; the scheduled sweep runs once on every Saudi day it
    /// crosses, at an hour drawn from `seed`.
    Advance { seconds: i64, seed: u64 },
    /// A sweep run now whose deadline cuts it short after `cut_after` rounds of store
    /// calls (calls made together count once), when given; runs follow until one
    /// finishes, as the hourly schedule would.
    Sweep { cut_after: Option<u32> },
    /// The outbox delivered as the stream's consumer delivers it; the provider answers the
    /// sends listed in `faults` (by their order in this step) with that fault, and the
    /// first `dropped` deliveries of records are lost before the handler (a record lost
    /// `DELIVERY_ATTEMPTS` times goes to the failure destination, which is then consumed).
    Deliver {
        faults: BTreeMap<usize, ProviderFault>,
        #[serde(default, skip_serializing_if = "is_zero")]
        dropped: usize,
    },
    /// Every organization's users listed with each filter, following cursors with pages
    /// of `page`, as every kind of caller.
    Observe { page: usize },
}

/// A request as a caller sends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub caller: Caller,
    pub call: Call,
    /// The `Idempotency-Key` header, on the routes that take one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// A fault of the store during this request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<StoreFault>,
}

/// Who sends a request (the verified token's claims).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Caller {
    Operator,
    /// A platform service asking the check API.
    Service,
    /// A person, by ID number.
    Person(String),
    /// No token (the public activation route).
    Anonymous,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Plan {
    Muqeem,
    Qiwa,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Size {
    Micro,
    Small,
    Medium,
    Large,
    Giant,
}

/// One person of a quote or a subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub id: String,
    pub establishments: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
}

/// Which channels get which notices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notifications {
    pub reminders_email: bool,
    pub reminders_sms: bool,
    pub notices_email: bool,
    pub notices_sms: bool,
}

impl Default for Notifications {
    fn default() -> Self {
        Notifications { reminders_email: true, reminders_sms: true, notices_email: true, notices_sms: false }
    }
}

/// A secret a user received: the one the model numbered `Issued(n)` (its text is read from
/// the message that carried it), or a wrong one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Secret {
    Issued(u64),
    Wrong,
}

/// Which cursor a listing starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Start {
    First,
    /// The last cursor a users listing of the organization gave, used where it does not
    /// belong.
    ForeignCursor,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum Call {
    Register {
        person: String,
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none", with = "day")]
        iqama_expiry: Option<Date>,
        employers: BTreeSet<String>,
        email: String,
        mobile: String,
    },
    Onboard {
        org: String,
        plan: Plan,
        manager: String,
        establishments: BTreeMap<String, Size>,
    },
    Credit {
        org: String,
        amount: u64,
        reference: String,
    },
    Quote {
        org: String,
        persons: Vec<Line>,
    },
    Subscribe {
        org: String,
        persons: Vec<Line>,
    },
    Renew {
        org: String,
        user: String,
    },
    ConfirmLink {
        link: Secret,
    },
    ConfirmCode {
        org: String,
        code: Secret,
    },
    Resend {
        org: String,
        user: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        email: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sms: Option<bool>,
    },
    /// `POST …/messages/{slot}/resend`: one message again (a fresh contact code, or a notice
    /// that failed or was undeliverable).
    ResendMessage {
        org: String,
        user: String,
        slot: String,
    },
    SetGrants {
        org: String,
        user: String,
        version: u64,
        grants: BTreeMap<String, BTreeSet<String>>,
    },
    Settings {
        org: String,
        version: u64,
        self_subscription: bool,
    },
    Modify {
        org: String,
        user: String,
        version: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        email: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mobile: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        language: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        notifications: Option<Notifications>,
    },
    ConfirmContact {
        org: String,
        user: String,
        channel: Channel,
        code: Secret,
    },
    CancelContact {
        org: String,
        user: String,
        channel: Channel,
    },
    Suspend {
        org: String,
        user: String,
    },
    Check {
        org: String,
        user: String,
        establishment: String,
        service: String,
    },
    Profile {
        org: String,
        user: String,
    },
    /// The users listing, followed to its end with pages of `limit`.
    Users {
        org: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<Status>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        establishment: Option<String>,
        limit: usize,
    },
    /// The organization's audit trail (or one user's), its first page.
    Audit {
        org: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<String>,
        start: Start,
    },
    Balance {
        org: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Email,
    Mobile,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    PendingActivation,
    Active,
    Suspended,
    Expired,
}

impl Status {
    pub const ALL: [Status; 4] = [Status::PendingActivation, Status::Active, Status::Suspended, Status::Expired];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::PendingActivation => "pending_activation",
            Status::Active => "active",
            Status::Suspended => "suspended",
            Status::Expired => "expired",
        }
    }
}

/// A fault of the store, injected at the adapter boundary during one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreFault {
    /// The first read is throttled.
    ReadThrottled,
    /// The first commit is throttled: nothing is written.
    WriteThrottled,
    /// The first commit meets a transaction conflict: nothing is written.
    Conflict,
    /// Every commit conflicts, past the retry budget.
    Conflicts,
    /// The first commit lands, then its answer is lost.
    LostResponse,
    /// The first commit's answer is lost and it did not land.
    NotApplied,
    /// The first commit's answer is lost while it is still in flight: it lands just
    /// before the request's second store call after it (a resend of the same transaction
    /// meanwhile is told it is in progress).
    InFlight,
}

/// How the mail or SMS provider answers one send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderFault {
    /// Throttled: nothing sent, try later.
    Throttled,
    /// The address is refused for good.
    Refused,
    /// Sent, but the answer is lost (a timeout after the send).
    LostAfterSend,
}

/// Dates as `YYYY-MM-DD` in printed histories.
mod day {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::Date;

    pub fn serialize<S: Serializer>(date: &Option<Date>, serializer: S) -> Result<S::Ok, S::Error> {
        match date {
            Some(date) => serializer.serialize_str(&date.to_string()),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Date>, D::Error> {
        let text = Option::<String>::deserialize(deserializer)?;
        text.map(|t| Date::parse(&t, time::macros::format_description!("[year]-[month]-[day]")).map_err(serde::de::Error::custom))
            .transpose()
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}
