//! Property tests over generated organizations, users, grants and requests (embedded
//! store; the store contract makes the DynamoDB store behave the same).

use std::collections::{BTreeMap, BTreeSet};

use domain::actions::grant::SetGrants;
use domain::catalog::ServiceCode;
use domain::identity::PersonId;
use domain::organization::{EstablishmentId, OrganizationId, PricingPlan, SizeTier};
use domain::pipeline::run;
use domain::store::Record;
use gateway::routes::functions;
use proptest::prelude::*;
use serde_json::{Value, json};
use system_tests::world::{Backend, World, as_person};

use crate::fixtures::person;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

/// A generated organization: establishments, and members with their establishments,
/// grants, citizenship and status.
#[derive(Debug, Clone)]
struct OrgSpec {
    establishments: usize,
    members: Vec<MemberSpec>,
}

#[derive(Debug, Clone)]
struct MemberSpec {
    citizen: bool,
    establishments: BTreeSet<usize>,
    grants: BTreeMap<usize, BTreeSet<usize>>,
    suspended: bool,
}

/// Services the generators pick from (all on the Muqeem platform or both).
const SERVICES: [&str; 4] = ["user_management", "iqama.renew", "passport.update", "reports.print"];

fn member_spec(establishments: usize) -> impl Strategy<Value = MemberSpec> {
    (
        any::<bool>(),
        proptest::collection::btree_set(0..establishments, 1..=establishments),
        proptest::collection::btree_map(
            0..establishments,
            proptest::collection::btree_set(0..SERVICES.len(), 0..=SERVICES.len()),
            0..=establishments,
        ),
        proptest::bool::weighted(0.15),
    )
        .prop_map(|(citizen, establishments, grants, suspended)| MemberSpec { citizen, establishments, grants, suspended })
}

fn org_spec() -> impl Strategy<Value = OrgSpec> {
    (1usize..=3).prop_flat_map(|establishments| {
        proptest::collection::vec(member_spec(establishments), 1..=4).prop_map(move |members| OrgSpec { establishments, members })
    })
}

fn establishment_id(org: usize, n: usize) -> String {
    format!("{}-{}", org + 1, 100 + n)
}

struct Built {
    org: OrganizationId,
    manager: PersonId,
    members: Vec<PersonId>,
}

/// Creates the organization through the use cases; grants that the rules would refuse
/// (Saudi-only services for iqama holders, establishments not given) are dropped.
async fn build(world: &World, index: usize, spec: &OrgSpec) -> Built {
    let base = 10_000 * (index as u32 + 1);
    let manager = person('1', base);
    let establishments: Vec<(String, SizeTier)> = (0..spec.establishments).map(|n| (establishment_id(index, n), SizeTier::Small)).collect();
    let borrowed: Vec<(&str, SizeTier)> = establishments.iter().map(|(e, s)| (e.as_str(), *s)).collect();
    let org = world.onboard(&format!("700000{:04}", 100 + index), PricingPlan::Muqeem, manager.as_str(), &borrowed).await;
    world.credit(&org, 10_000_000).await;
    let mut members = Vec::new();
    for (n, member) in spec.members.iter().enumerate() {
        let id = person(if member.citizen { '1' } else { '2' }, base + 1 + n as u32);
        let assigned: Vec<String> = member.establishments.iter().map(|e| establishment_id(index, *e)).collect();
        let assigned_refs: Vec<&str> = assigned.iter().map(String::as_str).collect();
        world.active_user(&org, &manager, &id, &assigned_refs).await;
        let matrix: BTreeMap<EstablishmentId, BTreeSet<String>> = member
            .grants
            .iter()
            .filter(|(e, _)| member.establishments.contains(e))
            .map(|(e, services)| {
                let services = services
                    .iter()
                    .map(|s| SERVICES[*s])
                    .filter(|s| member.citizen || *s != "passport.update")
                    .map(str::to_owned)
                    .collect();
                (EstablishmentId::parse(&establishment_id(index, *e)).unwrap(), services)
            })
            .collect();
        let user = world.user(&org, &id).await;
        let command = SetGrants::new(org.clone(), id.clone(), user.grants_version, matrix, world.env.settings.catalog.clone())
            .expect("known services");
        run(&world.env, &as_person(&manager), &command).await.expect("the manager's grants are valid");
        if member.suspended {
            world.update_user(&org, &id, |u| u.status = domain::user::UserStatus::Suspended).await;
        }
        members.push(id);
    }
    Built { org, manager, members }
}

/// A plausible body for a route, aimed at `target` in the organization.
fn body_for(route: &str, target: &PersonId, establishment: &str, salt: u8) -> Option<Value> {
    let method = route.split(' ').next().unwrap();
    if method == "GET" || method == "DELETE" {
        return None;
    }
    let services = json!([SERVICES[salt as usize % SERVICES.len()]]);
    Some(match route {
        r if r.contains("/subscriptions") => {
            json!({ "persons": [{ "id": target.as_str(), "establishments": [establishment], "user_type": "partners_only" }] })
        }
        r if r.contains("/permissions") => json!({ "version": salt as u64 % 5, "grants": { establishment: services } }),
        r if r.contains("/credits") => json!({ "amount_halalas": 100 + salt as u64, "payment_reference": format!("p{salt}") }),
        r if r.contains("/suspension") => json!({ "reason": "property test" }),
        r if r.contains("/contact-verifications") => json!({ "channel": "email", "code": "123456" }),
        _ if method == "PATCH" => json!({ "version": salt as u64 % 5, "job_title": "HR" }),
        _ => json!({}),
    })
}

/// The comparable part of an answer: status, error code and message.
fn outcome(answer: &system_tests::http::Answer) -> (u16, Value, Value) {
    let json: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
    (answer.status, json["error"]["code"].clone(), json["error"]["message"].clone())
}

fn organization_records(records: &[Record], org: &OrganizationId) -> Vec<String> {
    let mut mine: Vec<String> = records
        .iter()
        .filter(|record| record.storage_key().pk.starts_with(&format!("ORG#{}", org.as_str())))
        .map(|record| format!("{record:?}"))
        .collect();
    mine.sort();
    mine
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// A caller from organization A (any role) or a stranger, on every route of organization
    /// B, gets exactly what they would get for an organization that does not exist — and B
    /// is unchanged.
    #[test]
    fn no_request_reads_or_changes_another_organization(
        a in org_spec(),
        b in org_spec(),
        caller_pick in any::<prop::sample::Index>(),
        salts in proptest::collection::vec(any::<u8>(), 32),
    ) {
        runtime().block_on(async {
            let world = World::new(Backend::Embedded).await;
            let built_a = build(&world, 0, &a).await;
            let built_b = build(&world, 1, &b).await;
            let mut callers = vec![built_a.manager.clone(), person('1', 99_999)];
            callers.extend(built_a.members.iter().cloned());
            let caller = caller_pick.get(&callers).clone();
            let client = world.serve().await;
            let token = client.token_for(&caller);
            let before = organization_records(&world.records().await, &built_b.org);
            let missing = "7999999990";
            let mut targets = vec![built_b.manager.clone()];
            targets.extend(built_b.members.iter().cloned());
            let routes: Vec<&str> = functions().into_iter().flat_map(|(_, routes)| routes).filter(|r| r.path().contains("{org}")).map(|r| r.key).collect();
            assert!(routes.len() >= 6, "every organization route is exercised");
            for (n, route) in routes.iter().enumerate() {
                let salt = salts[n % salts.len()];
                let target = &targets[salt as usize % targets.len()];
                let establishment = establishment_id(1, salt as usize % b.establishments);
                let (method, template) = route.split_once(' ').unwrap();
                let body = body_for(route, target, &establishment, salt);
                let key = format!("k{salt}");
                let headers = [("idempotency-key", key.as_str())];
                let mut answers = Vec::new();
                for org in [built_b.org.as_str(), missing] {
                    let path = template.replace("{org}", org).replace("{id}", target.as_str()).replace("{channel}", "email");
                    answers.push(client.call(method, &path, Some(&token), &headers, body.as_ref()).await);
                }
                assert_eq!(outcome(&answers[0]), outcome(&answers[1]), "{route}: organization B is distinguishable from a missing one");
                assert!(answers[0].status >= 400, "{route}: a stranger's request succeeded");
                for secret in &targets {
                    assert!(!answers[0].text().contains(secret.as_str()), "{route}: B's data leaked");
                }
            }
            // Outside organization paths: mobile activation and the check API.
            let mobile = client.post("/v1/activations/mobile", &token, &json!({ "organization_id": built_b.org.as_str(), "code": "123456" })).await;
            let mobile_missing = client.post("/v1/activations/mobile", &token, &json!({ "organization_id": missing, "code": "123456" })).await;
            assert_eq!(outcome(&mobile), outcome(&mobile_missing));
            let check = client.post("/v1/authorizations/check", &token, &json!({ "organization_id": built_b.org.as_str(), "user_id": targets[0].as_str(), "establishment_id": establishment_id(1, 0), "service": "iqama.renew" })).await;
            assert_eq!(check.status, 403, "people cannot use the check API");
            assert_eq!(organization_records(&world.records().await, &built_b.org), before, "organization B changed");
        });
    }
}

/// The rules of "who may grant what", written again independently of the policy module,
/// as the reference the system must agree with.
struct Model {
    assigned: Vec<BTreeSet<usize>>,
    citizen: Vec<bool>,
    grants: Vec<BTreeMap<usize, BTreeSet<usize>>>,
}

const MANAGER: usize = usize::MAX;
const UM: usize = 0;
const PASSPORT: usize = 2;

impl Model {
    fn administers(&self, who: usize) -> BTreeSet<usize> {
        self.grants[who].iter().filter(|(_, s)| s.contains(&UM)).map(|(e, _)| *e).collect()
    }

    fn holds(&self, who: usize, establishment: usize, service: usize) -> bool {
        self.grants[who].get(&establishment).is_some_and(|s| s.contains(&service))
    }

    fn cells(matrix: &BTreeMap<usize, BTreeSet<usize>>) -> BTreeSet<(usize, usize)> {
        matrix.iter().flat_map(|(e, s)| s.iter().map(move |s| (*e, *s))).collect()
    }

    /// The expected answer: `Ok(())` or the refusal code.
    fn decide(&self, caller: usize, target: usize, matrix: &BTreeMap<usize, BTreeSet<usize>>) -> Result<(), &'static str> {
        if target == MANAGER {
            return Err(if caller == MANAGER || !self.administers(caller).is_empty() {
                "cannot_manage_manager"
            } else {
                "not_an_administrator"
            });
        }
        if caller != MANAGER {
            let administered = self.administers(caller);
            if administered.is_empty() {
                return Err("not_an_administrator");
            }
            if caller == target {
                return Err("cannot_manage_self");
            }
            if self.assigned[target].is_disjoint(&administered) {
                // A user the delegated admin cannot see answers as one that does not exist.
                return Err("user_not_found");
            }
            let before = Model::cells(&self.grants[target]);
            let after = Model::cells(matrix);
            // Added cells first, then removed ones, each in order — as the system reports.
            let changed = after.difference(&before).chain(before.difference(&after));
            for &(establishment, service) in changed {
                if !administered.contains(&establishment) {
                    return Err("outside_administered_establishments");
                }
                if !self.holds(caller, establishment, service) {
                    return Err("service_not_held");
                }
            }
        }
        // A row with no services grants nothing, wherever it is.
        if matrix.iter().any(|(e, services)| !services.is_empty() && !self.assigned[target].contains(e)) {
            return Err("establishment_not_assigned");
        }
        if !self.citizen[target] && matrix.values().any(|s| s.contains(&PASSPORT)) {
            return Err("saudi_only_service");
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Random sequences of grant changes by random callers: the system decides exactly as
    /// the reference rules do, so no delegated admin ever hands out (or takes away) a right
    /// it did not hold, and none ends up with a right its granter did not hold.
    #[test]
    fn grant_sequences_follow_the_rules(
        spec in org_spec(),
        steps in proptest::collection::vec(
            (0usize..5, 0usize..5, proptest::collection::btree_map(0usize..3, proptest::collection::btree_set(0..SERVICES.len(), 0..=SERVICES.len()), 0..=2)),
            1..16,
        ),
    ) {
        runtime().block_on(async {
            let spec = OrgSpec { members: spec.members.into_iter().map(|m| MemberSpec { suspended: false, ..m }).collect(), ..spec };
            let world = World::new(Backend::Embedded).await;
            let built = build(&world, 0, &spec).await;
            let count = built.members.len();
            let mut model = Model { assigned: vec![], citizen: vec![], grants: vec![] };
            for (n, member) in spec.members.iter().enumerate() {
                let user = world.user(&built.org, &built.members[n]).await;
                model.assigned.push(member.establishments.clone());
                model.citizen.push(member.citizen);
                model.grants.push(user.grants.matrix().iter().map(|(e, services)| {
                    let e = (0..spec.establishments).find(|n| establishment_id(0, *n) == e.as_str()).unwrap();
                    (e, services.iter().map(|s| SERVICES.iter().position(|c| *c == s.as_str()).unwrap()).collect())
                }).collect());
            }
            let who = |n: usize| if n >= count { (MANAGER, built.manager.clone()) } else { (n, built.members[n].clone()) };
            for (caller, target, matrix) in steps {
                let matrix: BTreeMap<usize, BTreeSet<usize>> = matrix.into_iter().filter(|(e, _)| *e < spec.establishments).collect();
                let (caller_index, caller_id) = who(caller);
                let (target_index, target_id) = who(target);
                let expected = model.decide(caller_index, target_index, &matrix);
                let version = world.user(&built.org, &target_id).await.grants_version;
                let matrix_sent = matrix.iter().map(|(e, s)| {
                    (EstablishmentId::parse(&establishment_id(0, *e)).unwrap(), s.iter().map(|s| SERVICES[*s].to_owned()).collect())
                }).collect();
                let command = SetGrants::new(built.org.clone(), target_id.clone(), version, matrix_sent, world.env.settings.catalog.clone()).expect("known services");
                let answer = run(&world.env, &as_person(&caller_id), &command).await;
                let actual = answer.as_ref().map(|_| ()).map_err(|e| e.rejection().expect("a refusal, not a failure").kind.code());
                assert_eq!(actual, expected, "caller {caller_index} target {target_index} matrix {matrix:?}");
                if expected.is_ok() {
                    if caller_index != MANAGER {
                        let added = Model::cells(&matrix).difference(&Model::cells(&model.grants[target_index])).copied().collect::<Vec<_>>();
                        for (e, s) in added {
                            assert!(model.holds(caller_index, e, s), "a delegated admin handed out a right it did not hold");
                        }
                    }
                    model.grants[target_index] = matrix.into_iter().filter(|(_, s)| !s.is_empty()).collect();
                }
            }
            // The store agrees with the model at the end.
            for (n, id) in built.members.iter().enumerate() {
                let stored: BTreeSet<(String, ServiceCode)> = world.user(&built.org, id).await.grants.cells().map(|(e, s)| (e.as_str().to_owned(), s)).collect();
                let modeled: BTreeSet<(String, ServiceCode)> = Model::cells(&model.grants[n])
                    .into_iter()
                    .map(|(e, s)| (establishment_id(0, e), app_code(SERVICES[s])))
                    .collect();
                assert_eq!(stored, modeled);
            }
        });
    }
}

fn app_code(code: &str) -> ServiceCode {
    domain::catalog::Catalog::bundled().code(code).expect("in the catalog")
}
