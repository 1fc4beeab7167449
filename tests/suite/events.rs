//! Change events: one per committed change (per audit entry of an organization), carried in
//! the change's outbox intent, valid by its schema in `events/schemas/`, published once to
//! the local bus whatever the retries; the catalog is complete; and the example consumer
//! (`system_tests::check_cache`) ends right with events twice and out of order.

use std::collections::{BTreeMap, BTreeSet};

use domain::audit::{AuditAction, AuditScope};
use domain::events::ChangeEvent;
use domain::store::Record;
use serde_json::{Value, json};
use system_tests::check_cache::{Applied, CheckCache};
use system_tests::moto::workspace_root;
use system_tests::world::Backend;

use crate::permissions::cast;

const ORG: &str = "7000000505";

fn schema_path(kind: &str) -> std::path::PathBuf {
    workspace_root().join("events/schemas").join(format!("{kind}.json"))
}

/// Every event's schema, by type, compiled once.
fn validators() -> BTreeMap<String, jsonschema::Validator> {
    let mut validators = BTreeMap::new();
    for entry in std::fs::read_dir(workspace_root().join("events/schemas")).expect("events/schemas") {
        let path = entry.expect("an entry").path();
        let schema: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("a schema")).expect("JSON");
        let kind = schema["title"].as_str().expect("a title").to_owned();
        validators.insert(kind, jsonschema::validator_for(&schema).expect("a valid schema"));
    }
    validators
}

/// Checks an event against its type's schema.
fn validate(validators: &BTreeMap<String, jsonschema::Validator>, event: &ChangeEvent) {
    let validator = validators.get(&event.kind).unwrap_or_else(|| panic!("no schema for {}", event.kind));
    let instance = serde_json::to_value(event).expect("an event serializes");
    let errors: Vec<String> = validator.iter_errors(&instance).map(|e| format!("{} at {}", e, e.instance_path)).collect();
    assert!(errors.is_empty(), "{} does not validate: {errors:?}\n{instance:#}", event.kind);
}

/// A day of changes by every kind of caller, then: each audit entry of an organization has
/// exactly one event, with the audit entry's id, in the outbox; every event validates; the
/// local bus got each once, however often the stream delivered it.
async fn every_committed_change_yields_one_event_valid_by_its_schema(backend: Backend) {
    let cast = cast(backend).await;
    let (world, client) = (&cast.world, &cast.client);
    let manager = client.token_for(&cast.manager);
    let user = |id: &domain::identity::PersonId| format!("/v1/organizations/{ORG}/users/{}", id.as_str());
    let version = client.get(&format!("{}/permissions", user(&cast.member)), &manager).await.json()["version"].clone();
    let granted = client
        .call(
            "PUT",
            &format!("{}/permissions", user(&cast.member)),
            Some(&manager),
            &[],
            Some(&json!({ "version": version, "grants": { "1-10": ["iqama.renew"] } })),
        )
        .await;
    assert_eq!(granted.status, 200, "{}", granted.text());
    let profile = client.get(&user(&cast.member), &manager).await.json();
    let moved = client
        .call(
            "PATCH",
            &user(&cast.member),
            Some(&manager),
            &[],
            Some(&json!({ "version": profile["version"], "email": world.unique_email("events").as_str() })),
        )
        .await;
    assert_eq!(moved.status, 200, "{}", moved.text());
    let suspended = client.post(&format!("{}/suspension", user(&cast.member)), &manager, &json!({ "reason": "left" })).await;
    assert_eq!(suspended.status, 200, "{}", suspended.text());
    let organization = client.get(&format!("/v1/organizations/{ORG}"), &manager).await.json();
    let body = json!({ "version": organization["version"], "employee_self_subscription": false });
    let settings = client.call("PATCH", &format!("/v1/organizations/{ORG}/settings"), Some(&manager), &[], Some(&body)).await;
    assert_eq!(settings.status, 200, "{}", settings.text());
    world.deliver().await;
    world.deliver().await;

    let records = world.records().await;
    let audited: BTreeMap<String, AuditAction> = records
        .iter()
        .filter_map(|r| match r {
            Record::Audit(entry) if matches!(entry.scope, AuditScope::Organization(_)) => Some((entry.id.clone(), entry.action)),
            _ => None,
        })
        .collect();
    let events: Vec<ChangeEvent> =
        records.iter().filter_map(|r| if let Record::Intent(i) = r { Some(i.events.clone()) } else { None }).flatten().collect();
    let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    let unique: BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(ids.len(), unique.len(), "one event per entry, never two");
    assert_eq!(unique, audited.keys().map(String::as_str).collect(), "every audited change, and nothing else");
    let kinds: BTreeSet<AuditAction> = audited.values().copied().collect();
    for wanted in [
        AuditAction::UserSubscribed,
        AuditAction::PermissionsChanged,
        AuditAction::UserModified,
        AuditAction::UserSuspended,
        AuditAction::OrganizationSettingsChanged,
    ] {
        assert!(kinds.contains(&wanted), "{wanted:?} among {kinds:?}");
    }
    let validators = validators();
    for event in &events {
        validate(&validators, event);
        assert_eq!(event.kind, domain::events::event_type(audited[&event.id]));
    }
    // No secret and no full contact: the member's new address is masked in the event.
    let text = serde_json::to_string(&events).expect("JSON");
    let stored_user = records.iter().find_map(|r| match r {
        Record::User(u) if u.id == cast.member => Some(u.clone()),
        _ => None,
    });
    let pending = stored_user.and_then(|u| u.pending_email.map(|p| p.value));
    if let Some(pending) = pending {
        assert!(!text.contains(pending.as_str()), "a contact in full");
    }
    // Per-user order: on the bus, in the order the changes committed, the member's events
    // carry strictly increasing versions.
    let versions: Vec<u64> = world
        .deliverer
        .events()
        .iter()
        .filter(|e| e.data.user.as_deref() == Some(cast.member.as_str()))
        .filter_map(|e| e.data.version)
        .collect();
    assert!(versions.len() >= 4 && versions.windows(2).all(|w| w[0] < w[1]), "one version per change, increasing: {versions:?}");
    // Published once each, however often the stream delivered.
    let published: Vec<String> = world.deliverer.events().into_iter().map(|e| e.id).collect();
    assert_eq!(published.iter().collect::<BTreeSet<_>>().len(), published.len(), "published once each");
    assert_eq!(published.into_iter().collect::<BTreeSet<_>>(), audited.keys().cloned().collect());
}
both!(every_committed_change_yields_one_event_valid_by_its_schema);

/// The catalog: a schema for every published audit action and nothing else, each named by
/// its type and referenced by the AsyncAPI document; the template's example rule routes
/// exactly the access-affecting types.
#[test]
fn the_catalog_has_a_schema_for_every_event_and_every_schema_an_event() {
    let published: BTreeSet<String> =
        AuditAction::ALL.iter().copied().filter(|a| domain::events::published(*a)).map(domain::events::event_type).collect();
    assert!(published.len() >= AuditAction::ALL.len() - 1, "only the platform's registry edits are not published");
    let on_disk: BTreeSet<String> = validators().into_keys().collect();
    assert_eq!(on_disk, published, "events/schemas: one file per published type");
    for kind in &published {
        assert!(schema_path(kind).exists(), "{kind}");
    }
    let asyncapi = std::fs::read_to_string(workspace_root().join("events/asyncapi.yaml")).expect("events/asyncapi.yaml");
    assert!(asyncapi.contains("asyncapi: 3.0.0"));
    for kind in &published {
        assert!(asyncapi.contains(&format!("$ref: 'schemas/{kind}.json'")), "asyncapi.yaml references {kind}");
    }
    let template = std::fs::read_to_string(workspace_root().join("template.yaml")).expect("template.yaml");
    for action in [AuditAction::UserSuspended, AuditAction::SeatExpired, AuditAction::PermissionsChanged, AuditAction::UserIqamaUpdated] {
        let kind = domain::events::event_type(action);
        assert!(system_tests::check_cache::ACCESS_TYPES.contains(&kind.as_str()), "{kind}: the example consumer drops answers on it");
        assert!(template.contains(&format!("- {}", domain::events::event_type(action))), "{action:?} is routed");
    }
}

/// The example consumer, fed the product's own events of one user (a grant change, then a
/// suspension) twice and in reverse: it drops the user's cached answers once per newer
/// access change, ignores what is stale or seen, and ends holding the suspension's version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_gets_events_twice_and_out_of_order_ends_right() {
    let cast = cast(Backend::Embedded).await;
    let (world, client) = (&cast.world, &cast.client);
    let manager = client.token_for(&cast.manager);
    let path = format!("/v1/organizations/{ORG}/users/{}", cast.member.as_str());
    let version = client.get(&format!("{path}/permissions"), &manager).await.json()["version"].clone();
    let body = json!({ "version": version, "grants": { "1-10": ["iqama.renew"] } });
    assert_eq!(client.call("PUT", &format!("{path}/permissions"), Some(&manager), &[], Some(&body)).await.status, 200);
    assert_eq!(client.post(&format!("{path}/suspension"), &manager, &json!({ "reason": "left" })).await.status, 200);
    world.deliver().await;
    let events: Vec<Value> = world
        .deliverer
        .events()
        .into_iter()
        .filter(|e| e.data.user.as_deref() == Some(cast.member.as_str()))
        .filter(|e| e.kind.ends_with("permissions.changed.v1") || e.kind.ends_with("user.suspended.v1"))
        .map(|e| serde_json::to_value(e).expect("JSON"))
        .collect();
    assert_eq!(events.len(), 2, "{events:?}");
    let (grant, suspension) = (&events[0], &events[1]);
    let question = |service: &str| (ORG.to_owned(), cast.member.as_str().to_owned(), "1-10".to_owned(), service.to_owned());

    // In order, each twice.
    let mut cache = CheckCache::default();
    cache.remember(question("iqama.renew"), false);
    assert_eq!(cache.apply(grant), Applied::Dropped(1));
    assert_eq!(cache.apply(grant), Applied::Duplicate);
    cache.remember(question("iqama.renew"), true);
    assert_eq!(cache.apply(suspension), Applied::Dropped(1));
    assert_eq!(cache.apply(suspension), Applied::Duplicate);
    assert_eq!(cache.answer(&question("iqama.renew")), None, "asked again after the suspension");

    // Out of order: the suspension first; the grant change after it is stale.
    let mut late = CheckCache::default();
    late.remember(question("iqama.renew"), true);
    assert_eq!(late.apply(suspension), Applied::Dropped(1));
    late.remember(question("iqama.renew"), false);
    assert_eq!(late.apply(grant), Applied::Stale, "older than what was applied");
    assert_eq!(late.answer(&question("iqama.renew")), Some(false), "the answer fetched after the suspension stays");
    assert_eq!(late.version(ORG, cast.member.as_str()), suspension["data"]["version"].as_u64());
    assert_eq!(cache.version(ORG, cast.member.as_str()), late.version(ORG, cast.member.as_str()), "both orders end alike");
}
