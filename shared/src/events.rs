//! Change events for the systems that integrate with user management. Every committed
//! change already writes an audit entry; each entry becomes one event, committed in the same
//! transaction inside the change's outbox intent (no extra request on the request path) and
//! published from the outbox stream by the `publish` function to an EventBridge bus.
//!
//! The envelope is CloudEvents 1.0: `id` is the audit entry's id (stable across retries, so
//! consumers de-duplicate on it), `type` is `sa.establishment-users.<action>.v1`, `subject`
//! names the user (or the organization), `dataschema` the JSON Schema of the type
//! (`events/schemas/`). `data` holds the organization, the establishments, the record's new
//! `version` (a consumer applies an event only when its version is newer than what it holds:
//! per-record order) and what changed — the audit entry's `changes`, where contact details
//! are masked and no secret ever is.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use crate::audit::{Actor, AuditAction, AuditEntry, AuditScope};
use crate::store::{Record, Write};

/// The CloudEvents `source` of every event.
pub const SOURCE: &str = "urn:sa:establishment-users";
/// Where the JSON Schemas are published (the files of `events/schemas/`, by type).
pub const SCHEMA_BASE: &str = "https://establishment-users.example.sa/events/schemas/";
/// The EventBridge `Source` of every entry.
pub const BUS_SOURCE: &str = "sa.establishment-users";

/// The event type of an audit action.
pub fn event_type(action: AuditAction) -> String {
    format!("sa.establishment-users.{}.v1", action.as_str())
}

/// One change event, as CloudEvents 1.0 (structured mode, JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeEvent {
    pub specversion: String,
    pub id: String,
    pub source: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(with = "crate::clock::utc")]
    pub time: OffsetDateTime,
    pub dataschema: String,
    pub datacontenttype: String,
    pub data: EventData,
}

/// What an event says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventData {
    /// The organization (absent for the platform's registry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
    /// The user the change is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    pub establishments: Vec<String>,
    /// The changed record's version after the change (the user's, else the organization's
    /// or the balance's): apply only when newer than what you hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// Who changed it: `person`, `operator`, `service` or `system` (never an identifier).
    pub actor: String,
    /// What changed (as the audit trail says it; contact details masked).
    pub changes: Value,
}

/// Whether an audit action is published. The platform's own registry edits belong to no
/// organization and are not; what they change in an organization (`user.iqama_updated`) is.
pub fn published(action: AuditAction) -> bool {
    action != AuditAction::RegistryPersonSaved
}

/// The events of a commit: one per audit entry of an organization.
pub fn of(audit: &[AuditEntry], writes: &[Write]) -> Vec<ChangeEvent> {
    audit
        .iter()
        .filter(|entry| matches!(entry.scope, AuditScope::Organization(_)) && published(entry.action))
        .map(|entry| event(entry, writes))
        .collect()
}

fn event(entry: &AuditEntry, writes: &[Write]) -> ChangeEvent {
    let organization = match &entry.scope {
        AuditScope::Organization(org) => Some(org.as_str().to_owned()),
        AuditScope::Platform => None,
    };
    let version = writes.iter().find_map(|write| match (&write.record, &entry.target) {
        (Record::User(user), Some(target)) if &user.id == target && Some(user.organization.as_str()) == organization.as_deref() => {
            Some(user.version)
        }
        _ => None,
    });
    let version = version.or_else(|| match entry.target {
        Some(_) => None,
        None => writes.iter().find_map(|write| match &write.record {
            Record::Organization(o) => Some(o.version),
            Record::Balance(b) => Some(b.version),
            _ => None,
        }),
    });
    let subject = match (&organization, &entry.target) {
        (Some(org), Some(user)) => Some(format!("organizations/{org}/users/{}", user.as_str())),
        (Some(org), None) => Some(format!("organizations/{org}")),
        (None, Some(person)) => Some(format!("persons/{}", person.as_str())),
        (None, None) => None,
    };
    let kind = event_type(entry.action);
    ChangeEvent {
        specversion: "1.0".to_owned(),
        id: entry.id.clone(),
        source: SOURCE.to_owned(),
        dataschema: format!("{SCHEMA_BASE}{kind}.json"),
        kind,
        subject,
        time: entry.at,
        datacontenttype: "application/json".to_owned(),
        data: EventData {
            organization,
            user: entry.target.as_ref().map(|t| t.as_str().to_owned()),
            establishments: entry.establishments.iter().map(|e| e.as_str().to_owned()).collect(),
            version,
            actor: match entry.actor {
                Actor::Person(_) => "person",
                Actor::Operator(_) => "operator",
                Actor::Service(_) => "service",
                Actor::System(_) => "system",
            }
            .to_owned(),
            changes: entry.changes.clone(),
        },
    }
}

/// Why a publish failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishError {
    pub reason: String,
    pub transient: bool,
}

/// Where events go (EventBridge in AWS; an in-process bus locally).
#[async_trait::async_trait]
pub trait EventBus: Send + Sync {
    /// Publishes events; answers, for each, whether it was accepted.
    async fn publish(&self, events: &[ChangeEvent]) -> Vec<Result<(), PublishError>>;
}

/// An in-process bus: keeps what it was given (the local server's `GET /local/events`).
#[derive(Default)]
pub struct Memory {
    events: std::sync::Mutex<Vec<ChangeEvent>>,
}

impl Memory {
    pub fn events(&self) -> Vec<ChangeEvent> {
        self.events.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}

#[async_trait::async_trait]
impl EventBus for Memory {
    async fn publish(&self, events: &[ChangeEvent]) -> Vec<Result<(), PublishError>> {
        self.events.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).extend(events.iter().cloned());
        events.iter().map(|_| Ok(())).collect()
    }
}

/// Attempts of the events a bus refuses for a reason that may pass, within one invocation.
pub const PUBLISH_ATTEMPTS: u32 = 4;

/// Publishes `events` (the bus batches them), trying again those it refused for a reason
/// that may pass (with backoff: 100 ms, doubled), within the deadline. Answers, for each
/// event, whether it was published, or the refusal that remained: the caller reports its
/// record to come again (the events keep their ids, so a consumer sees a retried one once).
pub async fn publish(bus: &dyn EventBus, events: &[ChangeEvent], deadline: crate::deadline::Deadline) -> Vec<Result<(), PublishError>> {
    let mut outcomes: Vec<Result<(), PublishError>> = events.iter().map(|_| Ok(())).collect();
    let mut pending: Vec<usize> = (0..events.len()).collect();
    let mut delay = std::time::Duration::from_millis(100);
    for attempt in 1..=PUBLISH_ATTEMPTS {
        if pending.is_empty() {
            break;
        }
        let batch: Vec<ChangeEvent> = pending.iter().map(|n| events[*n].clone()).collect();
        let results = bus.publish(&batch).await;
        let mut left = Vec::new();
        for (n, result) in pending.into_iter().zip(results) {
            match result {
                Ok(()) => outcomes[n] = Ok(()),
                Err(error) => {
                    if error.transient {
                        left.push(n);
                    }
                    outcomes[n] = Err(error);
                }
            }
        }
        pending = left;
        if pending.is_empty() || attempt == PUBLISH_ATTEMPTS || !deadline.allows(delay + crate::deadline::SDK_OPERATION_TIMEOUT) {
            break;
        }
        tokio::time::sleep(delay).await;
        delay *= 2;
    }
    outcomes
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Refuses the events named, in order, once each: `transient` ones may pass.
    struct Refusing {
        refusals: std::sync::Mutex<Vec<(String, bool)>>,
        calls: std::sync::Mutex<Vec<usize>>,
    }

    #[async_trait::async_trait]
    impl EventBus for Refusing {
        async fn publish(&self, events: &[ChangeEvent]) -> Vec<Result<(), PublishError>> {
            self.calls.lock().unwrap().push(events.len());
            let mut refusals = self.refusals.lock().unwrap();
            events
                .iter()
                .map(|event| match refusals.iter().position(|(id, _)| id == &event.id) {
                    Some(n) => {
                        let (_, transient) = refusals.remove(n);
                        Err(PublishError { reason: if transient { "ThrottlingException" } else { "AccessDenied" }.into(), transient })
                    }
                    None => Ok(()),
                })
                .collect()
        }
    }

    fn event(id: &str) -> ChangeEvent {
        ChangeEvent {
            specversion: "1.0".into(),
            id: id.into(),
            source: SOURCE.into(),
            kind: event_type(AuditAction::UserSuspended),
            subject: None,
            time: OffsetDateTime::UNIX_EPOCH,
            dataschema: String::new(),
            datacontenttype: "application/json".into(),
            data: EventData {
                organization: None,
                user: None,
                establishments: vec![],
                version: None,
                actor: "system".into(),
                changes: Value::Null,
            },
        }
    }

    #[tokio::test(start_paused = true)]
    async fn refused_events_are_tried_again_only_while_they_may_pass() {
        let bus = Refusing {
            refusals: std::sync::Mutex::new(vec![("b".into(), true), ("c".into(), false), ("b".into(), true)]),
            calls: std::sync::Mutex::default(),
        };
        let events = [event("a"), event("b"), event("c")];
        let outcomes = publish(&bus, &events, crate::deadline::Deadline::unbounded()).await;
        assert_eq!(outcomes[0], Ok(()));
        assert_eq!(outcomes[1], Ok(()), "throttled twice, then published");
        assert_eq!(outcomes[2].as_ref().map_err(|e| e.reason.as_str()), Err("AccessDenied"), "not tried again");
        assert_eq!(*bus.calls.lock().unwrap(), vec![3, 1, 1], "only what may pass is sent again");
    }
}
