//! Permissions: who may grant what, the check API, and the catalog.

use domain::audit::AuditAction;
use domain::identity::PersonId;
use domain::organization::{PricingPlan, SizeTier};
use domain::store::Record;
use domain::user::UserStatus;
use serde_json::{Value, json};
use system_tests::moto::recording_lock;
use system_tests::world::{Backend, Client, World};
use time::Duration;

use crate::fixtures::{citizen, resident};

const ORG: &str = "7000000505";

/// An organization with two establishments and a cast:
/// - the manager;
/// - `admin`, a citizen and delegated admin: user management, iqama renewal and passport
///   updates on 1-10; reports on 1-20 (no user management there);
/// - `resident_user` (iqama holder) on 1-10 and 1-20; `citizen_user` on 1-10;
/// - `outsider` on 1-20 only; `suspended` and `lapsed` (seat ended) on 1-10;
/// - `member`: an active user without user management.
pub struct Cast {
    pub world: World,
    pub client: Client,
    pub manager: PersonId,
    pub admin: PersonId,
    pub resident_user: PersonId,
    pub citizen_user: PersonId,
    pub outsider: PersonId,
    pub suspended: PersonId,
    pub lapsed: PersonId,
    pub member: PersonId,
}

pub async fn cast(backend: Backend) -> Cast {
    let world = World::new(backend).await;
    let manager = PersonId::parse(&citizen(1)).unwrap();
    let org = world.onboard(ORG, PricingPlan::Muqeem, manager.as_str(), &[("1-10", SizeTier::Medium), ("1-20", SizeTier::Small)]).await;
    world.credit(&org, 1_000_000).await;
    let admin = PersonId::parse(&citizen(2)).unwrap();
    let resident_user = PersonId::parse(&resident(3)).unwrap();
    let citizen_user = PersonId::parse(&citizen(4)).unwrap();
    let outsider = PersonId::parse(&citizen(5)).unwrap();
    let suspended = PersonId::parse(&citizen(6)).unwrap();
    let lapsed = PersonId::parse(&citizen(7)).unwrap();
    let member = PersonId::parse(&citizen(8)).unwrap();
    world.active_user(&org, &manager, &admin, &["1-10", "1-20"]).await;
    world.active_user(&org, &manager, &resident_user, &["1-10", "1-20"]).await;
    world.active_user(&org, &manager, &citizen_user, &["1-10"]).await;
    world.active_user(&org, &manager, &outsider, &["1-20"]).await;
    world.active_user(&org, &manager, &suspended, &["1-10"]).await;
    world.active_user(&org, &manager, &lapsed, &["1-10"]).await;
    world.active_user(&org, &manager, &member, &["1-10"]).await;
    world.update_user(&org, &suspended, |u| u.status = UserStatus::Suspended).await;
    let now = world.now();
    world.update_user(&org, &lapsed, |u| u.seat.as_mut().unwrap().ends_at = now - Duration::hours(1)).await;
    let client = world.serve().await;
    let cast = Cast { world, client, manager, admin, resident_user, citizen_user, outsider, suspended, lapsed, member };
    let granted = cast
        .put(
            &cast.manager,
            &cast.admin,
            json!({ "1-10": ["user_management", "iqama.renew", "passport.update"], "1-20": ["reports.print"] }),
        )
        .await;
    assert_eq!(granted.status, 200, "{}", granted.text());
    let granted = cast.put(&cast.manager, &cast.member, json!({ "1-10": ["iqama.renew"] })).await;
    assert_eq!(granted.status, 200, "{}", granted.text());
    cast
}

impl Cast {
    fn path(&self, user: &PersonId) -> String {
        format!("/v1/organizations/{ORG}/users/{}/permissions", user.as_str())
    }

    pub async fn read(&self, caller: &PersonId, user: &PersonId) -> system_tests::http::Answer {
        self.client.get(&self.path(user), &self.client.token_for(caller)).await
    }

    /// Sets `user`'s grants as `caller`, based on the version the manager reads now.
    pub async fn put(&self, caller: &PersonId, user: &PersonId, grants: Value) -> system_tests::http::Answer {
        let version = self.read(&self.manager, user).await.json()["version"].clone();
        self.put_at(caller, user, grants, version).await
    }

    pub async fn put_at(&self, caller: &PersonId, user: &PersonId, grants: Value, version: Value) -> system_tests::http::Answer {
        let token = self.client.token_for(caller);
        self.client.call("PUT", &self.path(user), Some(&token), &[], Some(&json!({ "version": version, "grants": grants }))).await
    }

    pub async fn check(&self, token: &str, user: &PersonId, establishment: &str, service: &str) -> system_tests::http::Answer {
        let body = json!({ "organization_id": ORG, "user_id": user.as_str(), "establishment_id": establishment, "service": service });
        self.client.post("/v1/authorizations/check", token, &body).await
    }
}

/// Every rule of "who may grant what", each with an allowed and a refused case.
async fn who_may_grant_what(backend: Backend) {
    let cast = cast(backend).await;
    let stranger = PersonId::parse(&citizen(99)).unwrap();
    struct Case<'a> {
        rule: &'a str,
        caller: &'a PersonId,
        target: &'a PersonId,
        grants: Value,
        expect: (u16, &'a str),
    }
    let cases = [
        Case {
            rule: "the manager grants anything",
            caller: &cast.manager,
            target: &cast.resident_user,
            grants: json!({"1-10": ["exit_reentry_visa.issue"], "1-20": ["reports.print"]}),
            expect: (200, ""),
        },
        Case {
            rule: "the manager's own grants are not edited",
            caller: &cast.manager,
            target: &cast.manager,
            grants: json!({"1-10": ["reports.print"]}),
            expect: (403, "cannot_manage_manager"),
        },
        Case {
            rule: "a delegated admin grants on its establishment",
            caller: &cast.admin,
            target: &cast.citizen_user,
            grants: json!({"1-10": ["iqama.renew"]}),
            expect: (200, ""),
        },
        Case {
            rule: "not on an establishment it does not administer",
            caller: &cast.admin,
            target: &cast.resident_user,
            grants: json!({"1-10": ["exit_reentry_visa.issue"], "1-20": ["reports.print", "final_exit_visa.issue"]}),
            expect: (403, "outside_administered_establishments"),
        },
        Case {
            rule: "only services it holds itself",
            caller: &cast.admin,
            target: &cast.citizen_user,
            grants: json!({"1-10": ["iqama.renew", "exit_reentry_visa.cancel"]}),
            expect: (403, "service_not_held"),
        },
        Case {
            rule: "never to itself",
            caller: &cast.admin,
            target: &cast.admin,
            grants: json!({"1-10": ["user_management"], "1-20": ["reports.print", "user_management"]}),
            expect: (403, "cannot_manage_self"),
        },
        Case {
            rule: "never to the manager",
            caller: &cast.admin,
            target: &cast.manager,
            grants: json!({"1-10": ["iqama.renew"]}),
            expect: (403, "cannot_manage_manager"),
        },
        Case {
            rule: "user management as wide as its own",
            caller: &cast.admin,
            target: &cast.citizen_user,
            grants: json!({"1-10": ["iqama.renew", "user_management"]}),
            expect: (200, ""),
        },
        Case {
            rule: "not user management wider than its own",
            caller: &cast.admin,
            target: &cast.resident_user,
            grants: json!({"1-10": ["exit_reentry_visa.issue"], "1-20": ["reports.print", "user_management"]}),
            expect: (403, "outside_administered_establishments"),
        },
        Case {
            rule: "not for users of other establishments: they look absent",
            caller: &cast.admin,
            target: &cast.outsider,
            grants: json!({"1-20": ["reports.print"]}),
            expect: (404, "user_not_found"),
        },
        Case {
            rule: "Saudi-only services go to citizens",
            caller: &cast.manager,
            target: &cast.citizen_user,
            grants: json!({"1-10": ["iqama.renew", "user_management", "passport.update"]}),
            expect: (200, ""),
        },
        Case {
            rule: "Saudi-only services never to an iqama holder",
            caller: &cast.manager,
            target: &cast.resident_user,
            grants: json!({"1-10": ["passport.update"]}),
            expect: (422, "saudi_only_service"),
        },
        Case {
            rule: "not even from a delegated admin who holds it",
            caller: &cast.admin,
            target: &cast.resident_user,
            grants: json!({"1-10": ["exit_reentry_visa.issue", "passport.update"], "1-20": ["reports.print"]}),
            expect: (422, "saudi_only_service"),
        },
        Case {
            rule: "no grants to suspended users",
            caller: &cast.manager,
            target: &cast.suspended,
            grants: json!({"1-10": ["iqama.renew"]}),
            expect: (422, "user_suspended"),
        },
        Case {
            rule: "no grants to users whose seat ended",
            caller: &cast.manager,
            target: &cast.lapsed,
            grants: json!({"1-10": ["iqama.renew"]}),
            expect: (422, "seat_expired"),
        },
        Case {
            rule: "members without user management grant nothing",
            caller: &cast.member,
            target: &cast.citizen_user,
            grants: json!({"1-10": ["iqama.renew"]}),
            expect: (403, "not_an_administrator"),
        },
        Case {
            rule: "other organizations see nothing",
            caller: &stranger,
            target: &cast.citizen_user,
            grants: json!({"1-10": ["iqama.renew"]}),
            expect: (404, "not_found"),
        },
        Case {
            rule: "unknown services are named",
            caller: &cast.manager,
            target: &cast.citizen_user,
            grants: json!({"1-10": ["visa.teleport"]}),
            expect: (422, "unknown_service"),
        },
        Case {
            rule: "unknown establishments are named",
            caller: &cast.manager,
            target: &cast.citizen_user,
            grants: json!({"9-99": ["iqama.renew"]}),
            expect: (422, "unknown_establishment"),
        },
        Case {
            rule: "only establishments the user was given",
            caller: &cast.manager,
            target: &cast.citizen_user,
            grants: json!({"1-20": ["reports.print"]}),
            expect: (422, "establishment_not_assigned"),
        },
        Case {
            rule: "only this platform's services",
            caller: &cast.manager,
            target: &cast.citizen_user,
            grants: json!({"1-10": ["work_permit.issue"]}),
            expect: (422, "service_not_on_platform"),
        },
        Case {
            rule: "a malformed body names the field",
            caller: &cast.manager,
            target: &cast.citizen_user,
            grants: json!({"1-10": "iqama.renew"}),
            expect: (400, "invalid_request"),
        },
    ];
    for case in cases {
        // One second apart, so "the latest audit entry" is well defined.
        cast.world.advance(Duration::seconds(1));
        let before = cast.world.snapshot().await;
        let answer = cast.put(case.caller, case.target, case.grants.clone()).await;
        let code = if answer.status == 200 { String::new() } else { answer.code() };
        assert_eq!((answer.status, code.as_str()), case.expect, "{}: {}", case.rule, answer.text());
        if answer.status == 200 {
            let expected: Value = case
                .grants
                .as_object()
                .unwrap()
                .iter()
                .filter(|(_, v)| !v.as_array().unwrap().is_empty())
                .map(|(k, v)| {
                    let mut services: Vec<String> = v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_owned()).collect();
                    services.sort();
                    (k.clone(), json!(services))
                })
                .collect::<serde_json::Map<_, _>>()
                .into();
            assert_eq!(answer.json()["grants"], expected, "{}", case.rule);
            let entry = cast
                .world
                .records()
                .await
                .into_iter()
                .filter_map(|r| match r {
                    Record::Audit(e) if e.action == AuditAction::PermissionsChanged && e.target.as_ref() == Some(case.target) => Some(e),
                    _ => None,
                })
                .max_by_key(|e| e.at)
                .expect("an audit entry");
            assert_eq!(entry.changes["after"], expected, "{}: the audit has the after state", case.rule);
            assert!(entry.changes["before"].is_object(), "{}: and the before state", case.rule);
        } else {
            assert_eq!(cast.world.snapshot().await, before, "{}: nothing written", case.rule);
        }
    }

    // Changes are conditional on the version read.
    let read = cast.read(&cast.manager, &cast.citizen_user).await.json();
    let first = cast.put_at(&cast.manager, &cast.citizen_user, json!({"1-10": ["reports.print"]}), read["version"].clone()).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.json()["version"], read["version"].as_u64().unwrap() + 1);
    let stale = cast.put_at(&cast.manager, &cast.citizen_user, json!({"1-10": ["iqama.renew"]}), read["version"].clone()).await;
    assert_eq!((stale.status, stale.code().as_str()), (409, "version_conflict"));
    assert_eq!(stale.json()["error"]["current_version"], first.json()["version"]);

    // Who may read.
    assert_eq!(cast.read(&cast.citizen_user, &cast.citizen_user).await.status, 200, "users read their own");
    assert_eq!(cast.read(&cast.member, &cast.citizen_user).await.code(), "user_not_found", "not others'");
    assert_eq!(
        cast.read(&cast.admin, &cast.outsider).await.code(),
        "user_not_found",
        "delegated admins read only their establishments' users"
    );
    assert_eq!(cast.read(&stranger, &cast.citizen_user).await.code(), "not_found");
}
both!(who_may_grant_what);

async fn the_check_api_answers_from_the_user_record(backend: Backend) {
    let cast = cast(backend).await;
    let service = cast.client.service_token();
    let expect = |answer: system_tests::http::Answer, allowed: bool, reason: &str| {
        assert_eq!(answer.status, 200, "{}", answer.text());
        assert_eq!(answer.json(), json!({ "allowed": allowed, "reason": reason }));
    };
    expect(cast.check(&service, &cast.admin, "1-10", "passport.update").await, true, "granted");
    expect(cast.check(&service, &cast.admin, "1-20", "iqama.renew").await, false, "no_grant");
    expect(cast.check(&service, &cast.admin, "1-20", "reports.print").await, true, "granted");
    expect(cast.check(&service, &cast.manager, "1-20", "passport.update").await, true, "manager");
    expect(cast.check(&service, &cast.manager, "1-10", "work_permit.issue").await, false, "service_not_on_platform");
    expect(cast.check(&service, &cast.suspended, "1-10", "iqama.renew").await, false, "suspended");
    expect(cast.check(&service, &cast.lapsed, "1-10", "iqama.renew").await, false, "seat_expired");
    expect(cast.check(&service, &PersonId::parse(&citizen(99)).unwrap(), "1-10", "iqama.renew").await, false, "not_subscribed");
    expect(cast.check(&service, &cast.member, "1-10", "no.such.service").await, false, "unknown_service");

    // Not yet active: denied at once.
    let newcomer = PersonId::parse(&citizen(60)).unwrap();
    cast.world.register(newcomer.as_str(), &["1-10"], None).await;
    let subscribe = json!({ "persons": [{ "id": newcomer.as_str(), "establishments": ["1-10"], "user_type": "partners_only" }] });
    let manager_token = cast.client.token_for(&cast.manager);
    assert_eq!(
        cast.client.post_keyed(&format!("/v1/organizations/{ORG}/subscriptions"), &manager_token, "n", &subscribe).await.status,
        201
    );
    assert_eq!(cast.put(&cast.manager, &newcomer, json!({"1-10": ["iqama.renew"]})).await.status, 200, "grants may wait for activation");
    expect(cast.check(&service, &newcomer, "1-10", "iqama.renew").await, false, "not_active");

    // A seat that ends is denied at request time, before any sweep.
    cast.world.advance(Duration::days(366));
    expect(cast.check(&service, &cast.admin, "1-10", "passport.update").await, false, "seat_expired");

    // Only platform services (and operators) ask.
    let by_person = cast.check(&cast.client.token_for(&cast.manager), &cast.admin, "1-10", "iqama.renew").await;
    assert_eq!((by_person.status, by_person.code().as_str()), (403, "forbidden"));
    assert_eq!(cast.check(&cast.client.operator_token(), &cast.admin, "1-10", "iqama.renew").await.status, 200);
    let malformed = cast
        .client
        .post(
            "/v1/authorizations/check",
            &service,
            &json!({ "organization_id": ORG, "user_id": "123", "establishment_id": "1-10", "service": "x" }),
        )
        .await;
    assert_eq!((malformed.status, malformed.code().as_str()), (422, "invalid_id_number"));
}
both!(the_check_api_answers_from_the_user_record);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_check_reads_exactly_one_dynamodb_item() {
    let cast = cast(Backend::Moto).await;
    let tables = cast.world.dynamo.as_ref().unwrap().names().users.clone();
    let service = cast.client.service_token();
    let _recording = recording_lock().lock().await;
    for (user, establishment, service_code) in
        [(&cast.admin, "1-10", "iqama.renew"), (&cast.manager, "1-20", "reports.print"), (&cast.member, "1-20", "x")]
    {
        cast.world.moto().start_recording().await;
        let answer = cast.check(&service, user, establishment, service_code).await;
        assert_eq!(answer.status, 200);
        let requests = cast.world.moto().recorded_targets(&tables).await;
        assert_eq!(requests, vec!["DynamoDB_20120810.GetItem".to_owned()], "one GetItem per check");
    }
}

async fn the_catalog_lists_every_service_in_both_languages(backend: Backend) {
    let world = World::new(backend).await;
    let client = world.serve().await;
    let answer = client.get("/v1/catalog/services", &client.token_for(&PersonId::parse(&citizen(1)).unwrap())).await;
    assert_eq!(answer.status, 200);
    let catalog = answer.json();
    assert!(catalog["version"].is_string());
    let services = catalog["services"].as_array().unwrap();
    let passport = services.iter().find(|s| s["code"] == "passport.update").expect("passport updates");
    assert_eq!(passport["saudi_only"], true);
    assert_eq!(passport["name"]["ar"], "تحديث معلومات الجواز");
    assert!(services.iter().all(|s| ["muqeem", "qiwa", "both"].contains(&s["platform"].as_str().unwrap())));
    assert_eq!(client.call("GET", "/v1/catalog/services", None, &[], None).await.status, 401);
}
both!(the_catalog_lists_every_service_in_both_languages);
