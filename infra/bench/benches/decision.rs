//! The permission decision of the check API next to the engine a team would otherwise pick:
//! `cedar-policy` (the engine of Amazon Verified Permissions), deciding the same requests
//! over an equivalent policy set and entity set.
//!
//! The users are made by the product's own use cases (embedded store); the Cedar entities
//! are derived from those records. Both sides decide from data already in memory, as the
//! check function does after its one `GetItem`: ours looks the service up in the catalog and
//! runs `policy::check_access`, Cedar evaluates its policies with `is_authorized`. Before
//! timing, every request is decided by both and the decisions must agree.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use cedar_policy::{Authorizer, Context, Decision, Entities, EntityUid, PolicySet, Request};
use criterion::{Criterion, criterion_group, criterion_main};
use domain::catalog::{Catalog, ServiceCode};
use domain::grants::Grants;
use domain::identity::{PersonId, with_check_digit};
use domain::organization::{EstablishmentId, PricingPlan, SizeTier};
use domain::policy::check_access;
use domain::user::{User, UserStatus};
use serde_json::{Value, json};
use system_tests::world::{Backend, World};
use time::OffsetDateTime;

const ESTABLISHMENTS: [&str; 3] = ["1-101", "1-102", "1-103"];

const POLICIES: &str = r#"
// The manager: every service of the organization's plan on its establishments, unless suspended.
permit (principal is User, action == Action::"use", resource is Access)
when {
  principal.manager && principal.status != "suspended" &&
  resource.service.plans.contains(principal.plan) &&
  principal.establishments.contains(resource.establishment)
};
// A member: active, within the seat, holding the grant of this establishment and service.
permit (principal is User, action == Action::"use", resource is Access)
when {
  !principal.manager && principal.status == "active" &&
  principal.seat_start <= context.now && context.now < principal.seat_end &&
  resource.service.plans.contains(principal.plan) &&
  principal.grants.contains(resource)
};
// Saudi-only services never to an iqama holder.
forbid (principal is User, action, resource is Access)
when { resource.service.saudi_only && !principal.citizen };
"#;

fn person(kind: char, n: u32) -> PersonId {
    PersonId::parse(&with_check_digit(&format!("{kind}{n:08}"))).expect("valid")
}

fn plan_name(plan: PricingPlan) -> &'static str {
    match plan {
        PricingPlan::Muqeem => "muqeem",
        PricingPlan::Qiwa => "qiwa",
    }
}

fn access_id(establishment: &str, service: &str) -> String {
    format!("{establishment}|{service}")
}

/// Users made through the use cases: the manager, active members with varied grants, one
/// suspended, one whose seat has run out.
fn users() -> (Vec<User>, OffsetDateTime) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let world = World::new(Backend::Embedded).await;
        let now = world.now();
        let manager = person('1', 1);
        let establishments: Vec<_> = ESTABLISHMENTS.iter().map(|e| (*e, SizeTier::Medium)).collect();
        let organization = world.onboard("7000000901", PricingPlan::Muqeem, manager.as_str(), &establishments).await;
        world.credit(&organization, 10_000_000).await;
        let catalog = Catalog::bundled();
        let codes: Vec<ServiceCode> = catalog.services.iter().map(|s| s.code.clone()).collect();
        let mut ids = vec![manager.clone()];
        for n in 2..26u32 {
            let id = person(if n % 2 == 0 { '1' } else { '2' }, n);
            world.active_user(&organization, &manager, &id, &ESTABLISHMENTS).await;
            // Each member holds a different slice of the catalog on one or two establishments.
            let mut matrix = BTreeMap::new();
            for (i, establishment) in ESTABLISHMENTS.iter().enumerate().filter(|(i, _)| !(n as usize + i).is_multiple_of(3)) {
                let services: BTreeSet<ServiceCode> =
                    codes.iter().enumerate().filter(|(j, _)| (j + i + n as usize).is_multiple_of(3)).map(|(_, c)| c.clone()).collect();
                matrix.insert(EstablishmentId::parse(establishment).expect("valid"), services);
            }
            world
                .update_user(&organization, &id, |user| {
                    user.grants = Grants::new(matrix);
                    if n == 24 {
                        user.status = UserStatus::Suspended;
                    }
                    if n == 25
                        && let Some(seat) = user.seat.as_mut()
                    {
                        seat.ends_at = now - time::Duration::days(1);
                    }
                })
                .await;
            ids.push(id);
        }
        let mut users = Vec::new();
        for id in &ids {
            users.push(world.user(&organization, id).await);
        }
        (users, now)
    })
}

/// The same facts as Cedar entities: users, establishments, services, and one `Access`
/// resource per (establishment, service).
fn entities(users: &[User], catalog: &Catalog) -> Entities {
    let mut list = Vec::new();
    for establishment in ESTABLISHMENTS {
        list.push(json!({ "uid": { "type": "Establishment", "id": establishment }, "attrs": {}, "parents": [] }));
    }
    for service in &catalog.services {
        let plans: Vec<&str> =
            [PricingPlan::Muqeem, PricingPlan::Qiwa].into_iter().filter(|p| service.platform.serves(*p)).map(plan_name).collect();
        list.push(json!({
            "uid": { "type": "Service", "id": service.code.as_str() },
            "attrs": { "saudi_only": service.saudi_only, "plans": plans },
            "parents": []
        }));
        for establishment in ESTABLISHMENTS {
            list.push(json!({
                "uid": { "type": "Access", "id": access_id(establishment, service.code.as_str()) },
                "attrs": {
                    "establishment": { "__entity": { "type": "Establishment", "id": establishment } },
                    "service": { "__entity": { "type": "Service", "id": service.code.as_str() } }
                },
                "parents": []
            }));
        }
    }
    for user in users {
        let grants: Vec<Value> = ESTABLISHMENTS
            .iter()
            .flat_map(|establishment| {
                let id = EstablishmentId::parse(establishment).expect("valid");
                user.grants
                    .services_on(&id)
                    .into_iter()
                    .flatten()
                    .map(|code| json!({ "__entity": { "type": "Access", "id": access_id(establishment, code.as_str()) } }))
                    .collect::<Vec<_>>()
            })
            .collect();
        let (start, end) = user.seat.as_ref().map_or((0, 0), |s| (s.starts_at.unix_timestamp(), s.ends_at.unix_timestamp()));
        let status = match user.status {
            UserStatus::PendingActivation => "pending_activation",
            UserStatus::Active => "active",
            UserStatus::Suspended => "suspended",
            UserStatus::Expired => "expired",
        };
        list.push(json!({
            "uid": { "type": "User", "id": user.id.as_str() },
            "attrs": {
                "manager": user.is_manager(),
                "status": status,
                "citizen": user.id.is_citizen(),
                "plan": plan_name(user.plan),
                "seat_start": start,
                "seat_end": end,
                "establishments": user.establishments.iter().map(|e| json!({ "__entity": { "type": "Establishment", "id": e.as_str() } })).collect::<Vec<_>>(),
                "grants": grants
            },
            "parents": []
        }));
    }
    Entities::from_json_value(Value::Array(list), None).expect("valid entities")
}

fn criterion_benchmark(c: &mut Criterion) {
    let catalog = Catalog::bundled();
    let (users, now) = users();
    let entities = entities(&users, &catalog);
    let policies = PolicySet::from_str(POLICIES).expect("valid policies");
    let authorizer = Authorizer::new();
    let action = EntityUid::from_str(r#"Action::"use""#).expect("valid");
    let context = Context::from_json_value(json!({ "now": now.unix_timestamp() }), None).expect("valid context");

    // Every user against every establishment and a spread of services (a few unknown).
    let mut codes: Vec<String> = catalog.services.iter().map(|s| s.code.as_str().to_owned()).collect();
    codes.push("no.such.service".to_owned());
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for (u, user) in users.iter().enumerate() {
        for (e, establishment) in ESTABLISHMENTS.iter().enumerate() {
            for code in codes.iter().skip((u + e) % 2).step_by(2) {
                ours.push((user, EstablishmentId::parse(establishment).expect("valid"), code.clone()));
                let principal = EntityUid::from_str(&format!("User::\"{}\"", user.id.as_str())).expect("valid");
                let resource = EntityUid::from_str(&format!("Access::\"{}\"", access_id(establishment, code))).expect("valid");
                theirs.push(Request::new(principal, action.clone(), resource, context.clone(), None).expect("a request"));
            }
        }
    }

    let decide_ours = |(user, establishment, code): &(&User, EstablishmentId, String)| {
        check_access(Some(user), establishment, catalog.service(code), now).allowed()
    };
    let decide_cedar = |request: &Request| authorizer.is_authorized(request, &policies, &entities).decision() == Decision::Allow;
    let mut allowed = 0;
    for (mine, cedar) in ours.iter().zip(&theirs) {
        let decision = decide_ours(mine);
        assert_eq!(decision, decide_cedar(cedar), "the engines disagree on {} / {} / {}", mine.0.id.as_str(), mine.1.as_str(), mine.2);
        allowed += usize::from(decision);
    }
    println!("{} requests, {allowed} allowed, both engines agree on every one", ours.len());

    let mut group = c.benchmark_group("decision");
    group.throughput(criterion::Throughput::Elements(ours.len() as u64));
    group.bench_function("ours", |b| b.iter(|| ours.iter().filter(|r| decide_ours(std::hint::black_box(r))).count()));
    group.bench_function("cedar", |b| b.iter(|| theirs.iter().filter(|r| decide_cedar(std::hint::black_box(r))).count()));
    group.finish();
}

criterion_group!(benches, criterion_benchmark);
criterion_main!(benches);
