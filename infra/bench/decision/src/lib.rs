//! The permission decision of the check API next to the engine a team would otherwise pick:
//! `cedar-policy` (the engine of Amazon Verified Permissions), deciding the same requests
//! over an equivalent policy set and entity set.
//!
//! The users are made by the product's own use cases over the embedded store; the Cedar
//! entities are derived from those records. Both sides decide from data already in memory, as
//! the check function does after its one `GetItem`: ours looks the service up in the catalog
//! and runs `policy::check_access`, Cedar evaluates its policies with `is_authorized`.
//! `Fixture::agreement` decides every request with both; the bench refuses to time engines
//! that disagree, and a test holds it.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use std::sync::Arc;

use cedar_policy::{Authorizer, Context, Decision, Entities, EntityUid, PolicySet, Request};
use domain::actions::operator::{Credit, Onboard, SavePerson};
use domain::actions::subscribe::{Subscribe, SubscribePerson, Subscription};
use domain::catalog::{Catalog, ServiceCode};
use domain::clock::{Clock, ManualClock};
use domain::contact::{Email, SaudiMobile};
use domain::embedded::EmbeddedStore;
use domain::env::{Env, Settings};
use domain::grants::Grants;
use domain::identity::{PersonId, with_check_digit};
use domain::money::Halalas;
use domain::organization::{Establishment, EstablishmentId, OrganizationId, PricingPlan, SizeTier};
use domain::person::{Nationality, PersonName};
use domain::pipeline::{RequestMeta, run};
use domain::policy::{Caller, check_access};
use domain::secrets::CodeKey;
use domain::store::{Key, Record, Write};
use domain::user::{User, UserStatus, UserType};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::macros::datetime;

const ESTABLISHMENTS: [&str; 3] = ["1-101", "1-102", "1-103"];
const ORGANIZATION: &str = "7000000901";
const MEMBERS: u32 = 24;

pub const POLICIES: &str = r#"
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

/// One request, as each engine sees it.
pub struct Ours {
    pub user: usize,
    pub establishment: EstablishmentId,
    pub service: String,
}

/// The users, both engines' inputs, and the requests to decide.
pub struct Fixture {
    pub catalog: Catalog,
    pub users: Vec<User>,
    pub now: OffsetDateTime,
    pub ours: Vec<Ours>,
    pub theirs: Vec<Request>,
    policies: PolicySet,
    entities: Entities,
    authorizer: Authorizer,
}

impl Fixture {
    /// Every user against every establishment and a spread of services, a few unknown.
    pub fn new() -> Fixture {
        let catalog = Catalog::bundled();
        let (users, now) = users();
        let entities = entities(&users, &catalog);
        let action = EntityUid::from_str(r#"Action::"use""#).expect("valid");
        let context = Context::from_json_value(json!({ "now": now.unix_timestamp() }), None).expect("valid context");
        let mut codes: Vec<String> = catalog.services.iter().map(|s| s.code.as_str().to_owned()).collect();
        codes.push("no.such.service".to_owned());
        let mut ours = Vec::new();
        let mut theirs = Vec::new();
        for (u, user) in users.iter().enumerate() {
            for (e, establishment) in ESTABLISHMENTS.iter().enumerate() {
                for code in codes.iter().skip((u + e) % 2).step_by(2) {
                    ours.push(Ours {
                        user: u,
                        establishment: EstablishmentId::parse(establishment).expect("valid"),
                        service: code.clone(),
                    });
                    let principal = EntityUid::from_str(&format!("User::\"{}\"", user.id.as_str())).expect("valid");
                    let resource = EntityUid::from_str(&format!("Access::\"{}\"", access_id(establishment, code))).expect("valid");
                    theirs.push(Request::new(principal, action.clone(), resource, context.clone(), None).expect("a request"));
                }
            }
        }
        let policies = PolicySet::from_str(POLICIES).expect("valid policies");
        Fixture { catalog, users, now, ours, theirs, policies, entities, authorizer: Authorizer::new() }
    }

    pub fn decide_ours(&self, request: &Ours) -> bool {
        check_access(Some(&self.users[request.user]), &request.establishment, self.catalog.service(&request.service), self.now).allowed()
    }

    pub fn decide_cedar(&self, request: &Request) -> bool {
        self.authorizer.is_authorized(request, &self.policies, &self.entities).decision() == Decision::Allow
    }

    /// Decides every request with both engines: how many were allowed, or the first request
    /// they disagree on.
    pub fn agreement(&self) -> Result<usize, String> {
        let mut allowed = 0;
        for (mine, cedar) in self.ours.iter().zip(&self.theirs) {
            let decision = self.decide_ours(mine);
            if decision != self.decide_cedar(cedar) {
                let user = &self.users[mine.user];
                return Err(format!(
                    "the engines disagree on {} / {} / {}: ours says {decision}",
                    user.id.masked(),
                    mine.establishment.as_str(),
                    mine.service
                ));
            }
            allowed += usize::from(decision);
        }
        Ok(allowed)
    }
}

impl Default for Fixture {
    fn default() -> Self {
        Fixture::new()
    }
}

fn person(kind: char, n: u32) -> PersonId {
    PersonId::parse(&with_check_digit(&format!("{kind}{n:08}"))).expect("valid")
}

/// Member `n`: citizens on even numbers, residents on odd ones.
fn member(n: u32) -> PersonId {
    person(if n.is_multiple_of(2) { '1' } else { '2' }, n)
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

fn establishment_ids() -> BTreeSet<EstablishmentId> {
    ESTABLISHMENTS.iter().map(|e| EstablishmentId::parse(e).expect("valid")).collect()
}

fn operator() -> RequestMeta {
    RequestMeta::new(Caller::Operator("bench@operator".into()), "bench")
}

/// Users made through the use cases: the manager, active members (citizens and residents)
/// with varied grants, one suspended, one whose seat has run out.
fn users() -> (Vec<User>, OffsetDateTime) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let clock = Arc::new(ManualClock::at(datetime!(2026-11-23 08:00 UTC)));
        let app = Env {
            store: Arc::new(EmbeddedStore::new()),
            clock: clock.clone(),
            entropy: Arc::new(domain::entropy::SystemEntropy),
            settings: Arc::new(Settings::bundled("https://portal.example.sa/activate#token=")),
        };
        let key = CodeKey::new(vec![7; 32]).expect("32 bytes");
        let now = clock.now();
        let organization = OrganizationId::parse(ORGANIZATION).expect("valid");
        let manager = person('1', 1);
        register(&app, &manager, now).await;
        let establishments = establishment_ids()
            .into_iter()
            .map(|id| Establishment { name: format!("Branch {}", id.as_str()), id, size: SizeTier::Medium })
            .collect();
        let onboard =
            Onboard::new(organization.clone(), "Bench Co".into(), PricingPlan::Muqeem, manager.clone(), establishments).expect("valid");
        run(&app, &operator(), &onboard).await.expect("onboarded");
        let credit = Credit::new(organization.clone(), Halalas::new(10_000_000), "bench").expect("valid");
        run(&app, &operator(), &credit).await.expect("credited");

        let catalog = Catalog::bundled();
        let codes: Vec<ServiceCode> = catalog.services.iter().map(|s| s.code.clone()).collect();
        let mut ids = vec![manager.clone()];
        for n in 2..2 + MEMBERS {
            let id = member(n);
            register(&app, &id, now).await;
            let subscription = Subscription::new(
                organization.clone(),
                vec![SubscribePerson {
                    id: id.clone(),
                    establishments: establishment_ids(),
                    user_type: Some(UserType::ResidentsAndPartners),
                    language: None,
                    job_title: None,
                }],
            )
            .expect("valid");
            let meta = RequestMeta::new(Caller::Person(manager.clone()), format!("bench-{n}"));
            let idempotency = format!("bench-{n}");
            let subscribe =
                Subscribe::new(&meta, subscription, app.settings.pricing.clone(), key.clone(), &idempotency, idempotency.clone());
            run(&app, &meta, &subscribe).await.expect("subscribed");
            // Each member holds a different slice of the catalog on one or two establishments.
            let mut matrix = BTreeMap::new();
            for (i, establishment) in ESTABLISHMENTS.iter().enumerate().filter(|(i, _)| !(n as usize + i).is_multiple_of(3)) {
                let services: BTreeSet<ServiceCode> =
                    codes.iter().enumerate().filter(|(j, _)| (j + i + n as usize).is_multiple_of(3)).map(|(_, c)| c.clone()).collect();
                matrix.insert(EstablishmentId::parse(establishment).expect("valid"), services);
            }
            // Activation and grants have their own tests; here the record is set directly.
            let current = user(&app, &organization, &id).await;
            let mut next = current.clone();
            next.version = current.version + 1;
            next.status = UserStatus::Active;
            next.grants = Grants::new(matrix);
            if n == 24 {
                next.status = UserStatus::Suspended;
            }
            if n == 25
                && let Some(seat) = next.seat.as_mut()
            {
                seat.ends_at = now - time::Duration::days(1);
            }
            app.store.commit(vec![Write::replace(Record::User(next), current.version)]).await.expect("updated");
            ids.push(id);
        }
        let mut users = Vec::new();
        for id in &ids {
            users.push(user(&app, &organization, id).await);
        }
        (users, now)
    })
}

async fn register(app: &Env, id: &PersonId, now: OffsetDateTime) {
    let n = &id.as_str()[6..];
    let command = SavePerson {
        id: id.clone(),
        name: PersonName { ar: None, en: Some(format!("Person {n}")) },
        nationality: Nationality::parse(if id.is_citizen() { "SA" } else { "IN" }).expect("valid"),
        iqama_expiry: (!id.is_citizen()).then(|| now.date() + time::Duration::days(365)),
        employers: establishment_ids(),
        email: Email::parse(&format!("p{n}@bench.example.sa")).expect("valid"),
        mobile: SaudiMobile::parse(&format!("050000{n}")).expect("valid"),
    }
    .check()
    .expect("valid");
    run(app, &operator(), &command).await.expect("registered");
}

async fn user(app: &Env, organization: &OrganizationId, id: &PersonId) -> User {
    let loaded = app.store.load(&[Key::User(organization.clone(), id.clone())]).await.expect("load");
    loaded.user(organization, id).cloned().expect("the user exists")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_engines_agree_on_every_request_and_the_requests_are_not_one_sided() {
        let fixture = Fixture::new();
        let allowed = fixture.agreement().expect("the engines agree");
        // A set that every engine allows (or denies) proves nothing about agreement.
        assert!(allowed > fixture.ours.len() / 10, "{allowed} of {} allowed", fixture.ours.len());
        assert!(allowed < fixture.ours.len() * 9 / 10, "{allowed} of {} allowed", fixture.ours.len());
    }

    #[test]
    fn every_kind_of_refusal_is_among_the_requests() {
        let fixture = Fixture::new();
        let denied_for = |n: u32| {
            let index = fixture.users.iter().position(|u| u.id == member(n)).expect("seeded");
            fixture.ours.iter().filter(|r| r.user == index).all(|r| !fixture.decide_ours(r))
        };
        // The suspended member and the member whose seat ran out are refused everything.
        assert!(denied_for(24));
        assert!(denied_for(25));
        // Unknown services are asked about, and refused.
        let unknown: Vec<_> = fixture.ours.iter().filter(|r| r.service == "no.such.service").collect();
        assert!(!unknown.is_empty());
        assert!(unknown.iter().all(|r| !fixture.decide_ours(r)));
        // Residents are asked about Saudi-only services, and refused them.
        let saudi_only_to_residents: Vec<_> = fixture
            .ours
            .iter()
            .filter(|r| !fixture.users[r.user].id.is_citizen() && fixture.catalog.service(&r.service).is_some_and(|s| s.saudi_only))
            .collect();
        assert!(!saudi_only_to_residents.is_empty());
        assert!(saudi_only_to_residents.iter().all(|r| !fixture.decide_ours(r)));
    }
}
