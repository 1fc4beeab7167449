//! Lifecycle rules as a real user meets them, through the HTTP edge, on both stores:
//! early renewal, the manager's and an employee's own seats, idempotency keys that belong
//! to their caller, Saudi days, the iqama that ends access, one answer whatever the target,
//! stored values that never reach the logs, one precision, decoded query strings, and the
//! clock a person can move.

use std::sync::Arc;

use domain::clock::{key_timestamp, one_year_after, saudi_day, start_of_saudi_day};
use domain::idempotency::IdempotencyScope;
use domain::identity::PersonId;
use domain::organization::{OrganizationId, PricingPlan, SizeTier};
use domain::store::Record;
use domain::user::UserStatus;
use serde_json::{Value, json};
use system_tests::http::Answer;
use system_tests::world::{Backend, Client, START, World};
use time::Duration;
use time::macros::{date, datetime};

use crate::fixtures::{citizen, resident};
use crate::permissions::cast;

const ORG: &str = "7000000505";

fn org() -> OrganizationId {
    OrganizationId::parse(ORG).unwrap()
}

fn user_path(user: &PersonId) -> String {
    format!("/v1/organizations/{ORG}/users/{}", user.as_str())
}

async fn renew(client: &Client, caller: &PersonId, user: &PersonId, key: &str) -> Answer {
    client.post_keyed(&format!("{}/renewal", user_path(user)), &client.token_for(caller), key, &json!({})).await
}

async fn sweep(client: &Client) -> Value {
    let answer = client.call("POST", "/local/expiry-sweep", None, &[], None).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    answer.json()
}

fn subscription(person: &PersonId, establishments: &[&str], user_type: Option<&str>) -> Value {
    let mut line = json!({ "id": person.as_str(), "establishments": establishments });
    if let Some(user_type) = user_type {
        line["user_type"] = json!(user_type);
    }
    json!({ "persons": [line] })
}

async fn subscribe(client: &Client, organization: &str, caller: &PersonId, key: &str, body: &Value) -> Answer {
    client.post_keyed(&format!("/v1/organizations/{organization}/subscriptions"), &client.token_for(caller), key, body).await
}

/// The organization's audit trail as the manager reads it, oldest first.
async fn trail(client: &Client, organization: &str, manager: &PersonId) -> Vec<Value> {
    let answer = client.get(&format!("/v1/organizations/{organization}/audit?limit=200"), &client.token_for(manager)).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let mut entries = answer.json()["entries"].as_array().cloned().unwrap_or_default();
    entries.reverse();
    entries
}

// ---------------------------------------------------------------------------------------
// 1. Renewal extends

/// A renewal of a running seat buys the next year after it: the paid period stays valid to
/// its end, status and check never change, subscribing the person again is still refused,
/// one renewal ahead is the most, and the sweep follows the new end.
async fn a_renewal_extends_the_paid_period_without_a_gap_and_changes_no_access(backend: Backend) {
    let cast = cast(backend).await;
    let (world, client) = (&cast.world, &cast.client);
    let person = cast.member.clone();
    let service = client.service_token();
    let allowed = || async { cast.check(&service, &person, "1-10", "iqama.renew").await.json() };
    assert_eq!(allowed().await, json!({ "allowed": true, "reason": "granted" }));
    let seat = world.user(&org(), &person).await.seat.expect("a seat");

    world.advance(Duration::days(200));
    let renewed = renew(client, &cast.manager, &person, "renew-early").await;
    assert_eq!(renewed.status, 201, "{}", renewed.text());
    let body = renewed.json();
    assert_eq!(body["status"], "active", "a renewal changes no status");
    assert_eq!(body["seat"]["id"], seat.id.as_str(), "the paid year runs on");
    assert_eq!(body["seat"]["ends_at"], key_timestamp(seat.ends_at));
    assert_eq!(body["next_seat"]["starts_at"], key_timestamp(seat.ends_at), "the next year follows without a gap");
    assert_eq!(body["next_seat"]["ends_at"], key_timestamp(one_year_after(seat.ends_at)));
    assert_eq!(body["renewed"], body["next_seat"]);
    assert_eq!(body["amount_charged_halalas"], 15_000);
    assert_eq!(allowed().await, json!({ "allowed": true, "reason": "granted" }), "the check answers as before");
    let profile = client.get(&user_path(&person), &client.token_for(&cast.manager)).await.json();
    assert_eq!(profile["status"], "active");
    assert_eq!(profile["seat"]["id"], seat.id.as_str());
    assert_eq!(profile["next_seat"]["ends_at"], key_timestamp(one_year_after(seat.ends_at)));

    let again = subscribe(client, ORG, &cast.manager, "buy-twice", &subscription(&person, &["1-10"], Some("partners_only"))).await;
    assert_eq!((again.status, again.code().as_str()), (422, "already_subscribed"), "the seat is not sold twice");
    let twice = renew(client, &cast.manager, &person, "renew-twice").await;
    assert_eq!((twice.status, twice.code().as_str()), (422, "already_renewed"), "one renewal ahead at most");
    assert_eq!(twice.json()["error"]["renewed_until"], key_timestamp(one_year_after(seat.ends_at)));

    // No reminder for the old end, and no expiry at it.
    world.clock.set(seat.ends_at - Duration::days(30));
    sweep(client).await;
    let stored = world.user(&org(), &person).await;
    assert!(stored.periods().all(|period| period.reminders_sent.is_empty()), "no reminder about the old end");
    world.clock.set(seat.ends_at + Duration::days(1));
    sweep(client).await;
    assert_eq!(world.user(&org(), &person).await.status, UserStatus::Active, "not expired at the old end");
    assert_eq!(allowed().await, json!({ "allowed": true, "reason": "granted" }), "access runs on past the old end");

    // Reminders follow the new end, and a renewal may be bought ahead again once the
    // renewed year has begun.
    world.clock.set(one_year_after(seat.ends_at) - Duration::days(30));
    let report = sweep(client).await;
    assert!(report["reminded"].as_u64() >= Some(1), "{report}");
    let stored = world.user(&org(), &person).await;
    assert!(stored.last_period().expect("a period").reminders_sent.contains(&domain::user::Reminder::ThirtyDays));
    let later = renew(client, &cast.manager, &person, "renew-next-year").await;
    assert_eq!(later.status, 201, "{}", later.text());
    assert_eq!(later.json()["seat"]["ends_at"], key_timestamp(one_year_after(seat.ends_at)));
}
both!(a_renewal_extends_the_paid_period_without_a_gap_and_changes_no_access);

/// What the sweep writes changes nothing a user may do, nor what anyone sees: within 30
/// days after a seat's end it is renewed from now whether or not the sweep has recorded
/// the end (the simulator found the grace lasting until the next hourly sweep), and a
/// user who renewed ahead lists as active, by `?status=` on every store, between the old
/// end and the sweep's pass as after it (the simulator found DynamoDB's filter reading the
/// old seat alone).
async fn the_sweep_changes_nothing_a_user_may_do_or_anyone_sees(backend: Backend) {
    let cast = cast(backend).await;
    let (world, client) = (&cast.world, &cast.client);
    let manager = client.token_for(&cast.manager);
    let (lapsing, renewing) = (cast.member.clone(), cast.citizen_user.clone());
    let end = world.user(&org(), &lapsing).await.seat.expect("a seat").ends_at;
    let renewing_end = world.user(&org(), &renewing).await.seat.expect("a seat").ends_at;
    world.clock.set(renewing_end - Duration::days(40));
    let ahead = renew(client, &cast.manager, &renewing, "renew-ahead").await;
    assert_eq!(ahead.status, 201, "{}", ahead.text());

    world.clock.set(end.max(renewing_end) + Duration::hours(1));
    let listed = |status: &'static str| {
        let token = manager.clone();
        async move {
            let answer = client.get(&format!("/v1/organizations/{ORG}/users?status={status}&limit=200"), &token).await;
            assert_eq!(answer.status, 200, "{}", answer.text());
            answer.json()["users"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|u| u["id"].as_str().unwrap_or("").to_owned())
                .collect::<Vec<_>>()
        }
    };
    for swept in [false, true] {
        if swept {
            sweep(client).await;
        }
        assert!(listed("active").await.contains(&renewing.as_str().to_owned()), "renewed ahead: active (swept: {swept})");
        assert!(!listed("expired").await.contains(&renewing.as_str().to_owned()), "swept: {swept}");
        assert!(listed("expired").await.contains(&lapsing.as_str().to_owned()), "swept: {swept}");
        let profile = client.get(&user_path(&lapsing), &manager).await.json();
        assert_eq!(profile["status"], "expired");
        assert_eq!(profile["seat"]["ends_at"], key_timestamp(end), "the seat that ended is shown (swept: {swept})");
    }
    assert_eq!(world.user(&org(), &lapsing).await.status, UserStatus::Expired, "the sweep recorded the end");

    world.advance(Duration::days(29));
    let renewed = renew(client, &cast.manager, &lapsing, "renew-in-grace").await;
    assert_eq!(renewed.status, 201, "{}", renewed.text());
    assert_eq!(renewed.json()["renewed"]["starts_at"], key_timestamp(world.now()), "renewed from now");
    assert_eq!(renewed.json()["status"], "active");

    let other = cast.resident_user.clone();
    let other_end = world.user(&org(), &other).await.seat.expect("a seat").ends_at;
    world.clock.set(other_end + Duration::hours(1));
    sweep(client).await;
    world.clock.set(other_end + Duration::days(31));
    let late = renew(client, &cast.manager, &other, "renew-too-late").await;
    assert_eq!((late.status, late.code().as_str()), (422, "renewal_grace_passed"), "{}", late.text());
}
both!(the_sweep_changes_nothing_a_user_may_do_or_anyone_sees);

// ---------------------------------------------------------------------------------------
// 2. Own seats

/// On Qiwa, adding a non-employee needs a manager with a seat; the manager may always buy
/// their own, even when no establishment of the organization employs them.
async fn the_manager_may_always_buy_their_own_seat(backend: Backend) {
    let world = World::new(backend).await;
    let organization = "7000000707";
    let manager = PersonId::parse(&citizen(70)).unwrap();
    let org = world.onboard(organization, PricingPlan::Qiwa, manager.as_str(), &[("4-100", SizeTier::Small)]).await;
    world.register(manager.as_str(), &[], None).await; // employed by none of its establishments
    world.credit(&org, 1_000_000).await;
    let stranger = world.register(&citizen(71), &[], None).await;
    let client = world.serve().await;

    let refused = subscribe(&client, organization, &manager, "non-employee", &subscription(&stranger, &["4-100"], None)).await;
    assert_eq!((refused.status, refused.code().as_str()), (422, "manager_seat_required"));
    let own = subscribe(&client, organization, &manager, "own-seat", &subscription(&manager, &["4-100"], None)).await;
    assert_eq!(own.status, 201, "the manager buys their own seat: {}", own.text());
    assert_eq!(own.json()["users"][0]["status"], "active", "the manager needs no activation");
    let added = subscribe(&client, organization, &manager, "non-employee-2", &subscription(&stranger, &["4-100"], None)).await;
    assert_eq!(added.status, 201, "with a seat, the manager adds non-employees: {}", added.text());
}
both!(the_manager_may_always_buy_their_own_seat);

/// A registered employee may buy their own seat for the establishments that employ them,
/// from the organization's balance, audited as theirs; nothing else, and not once the
/// manager has turned it off.
async fn a_registered_employee_may_buy_their_own_seat_unless_the_manager_turned_it_off(backend: Backend) {
    let world = World::new(backend).await;
    let organization = "7000000808";
    let manager = PersonId::parse(&citizen(80)).unwrap();
    let org =
        world.onboard(organization, PricingPlan::Qiwa, manager.as_str(), &[("4-100", SizeTier::Small), ("4-200", SizeTier::Small)]).await;
    world.credit(&org, 1_000_000).await;
    let employee = world.register(&resident(81), &["4-100"], Some(300)).await;
    let colleague = world.register(&citizen(82), &["4-100"], None).await;
    let stranger = world.register(&citizen(83), &["9-999"], None).await;
    let client = world.serve().await;
    let balance = |client: &Client| {
        let client = client.clone();
        let manager = manager.clone();
        async move {
            client.get(&format!("/v1/organizations/{organization}/balance"), &client.token_for(&manager)).await.json()["available_halalas"]
                .as_u64()
                .unwrap()
        }
    };
    let before = balance(&client).await;

    let own = subscription(&employee, &["4-100"], None);
    let quote = client.post(&format!("/v1/organizations/{organization}/subscriptions/quote"), &client.token_for(&employee), &own).await;
    assert_eq!(quote.status, 200, "{}", quote.text());
    let bought = subscribe(&client, organization, &employee, "my-seat", &own).await;
    assert_eq!(bought.status, 201, "{}", bought.text());
    assert_eq!(bought.json()["users"][0]["status"], "pending_activation");
    let price = bought.json()["amount_charged_halalas"].as_u64().unwrap();
    assert!(price > 0);
    assert_eq!(balance(&client).await, before - price, "paid from the organization's balance");
    let subscribed = trail(&client, organization, &manager).await.into_iter().find(|e| e["action"] == "user.subscribed").expect("audited");
    assert_eq!(subscribed["actor"], json!({ "kind": "person", "id": employee.as_str() }), "the employee is the actor");

    // Nothing else until activated and granted.
    let listing = client.get(&format!("/v1/organizations/{organization}/users"), &client.token_for(&employee)).await;
    assert_eq!((listing.status, listing.code().as_str()), (403, "not_an_administrator"));
    let others = subscribe(&client, organization, &employee, "for-a-colleague", &subscription(&colleague, &["4-100"], None)).await;
    assert_eq!((others.status, others.code().as_str()), (403, "not_an_administrator"), "only their own seat");
    let twice = subscribe(&client, organization, &employee, "my-seat-again", &own).await;
    assert_eq!((twice.status, twice.code().as_str()), (422, "already_subscribed"));

    let elsewhere = subscribe(&client, organization, &colleague, "not-mine", &subscription(&colleague, &["4-200"], None)).await;
    assert_eq!((elsewhere.status, elsewhere.code().as_str()), (403, "not_an_employee"));
    let strange = subscribe(&client, organization, &stranger, "not-here", &subscription(&stranger, &["4-100"], None)).await;
    assert_eq!((strange.status, strange.code().as_str()), (404, "not_found"), "the organization does not exist to a stranger");

    let settings = client.get(&format!("/v1/organizations/{organization}"), &client.token_for(&manager)).await.json();
    assert_eq!(settings["settings"]["employee_self_subscription"], true, "on by default");
    let off = client
        .call(
            "PATCH",
            &format!("/v1/organizations/{organization}/settings"),
            Some(&client.token_for(&manager)),
            &[],
            Some(&json!({ "version": settings["version"], "employee_self_subscription": false })),
        )
        .await;
    assert_eq!(off.status, 200, "{}", off.text());
    let turned_off = subscribe(&client, organization, &colleague, "mine-now", &subscription(&colleague, &["4-100"], None)).await;
    assert_eq!((turned_off.status, turned_off.code().as_str()), (403, "self_subscription_disabled"));
    assert_eq!(world.user(&org, &employee).await.status, UserStatus::PendingActivation);
}
both!(a_registered_employee_may_buy_their_own_seat_unless_the_manager_turned_it_off);

// ---------------------------------------------------------------------------------------
// 3. Idempotency keys belong to their caller

async fn an_idempotency_key_replays_only_to_the_caller_who_sent_it(backend: Backend) {
    let cast = cast(backend).await;
    let (world, client) = (&cast.world, &cast.client);
    let person = world.register(&citizen(90), &["1-10"], None).await;
    let body = subscription(&person, &["1-10"], Some("partners_only"));
    let first = subscribe(client, ORG, &cast.manager, "shared-key", &body).await;
    assert_eq!(first.status, 201, "{}", first.text());

    let member = subscribe(client, ORG, &cast.member, "shared-key", &body).await;
    assert_eq!((member.status, member.code().as_str()), (403, "not_an_administrator"), "the caller's right comes first");
    let admin = subscribe(client, ORG, &cast.admin, "shared-key", &body).await;
    assert_eq!(admin.header("idempotent-replayed"), None, "another caller's key is not theirs");
    assert_eq!((admin.status, admin.code().as_str()), (422, "already_subscribed"));
    let replay = subscribe(client, ORG, &cast.manager, "shared-key", &body).await;
    assert_eq!((replay.status, replay.header("idempotent-replayed")), (201, Some("true")));
    assert_eq!(replay.json(), first.json());
}
both!(an_idempotency_key_replays_only_to_the_caller_who_sent_it);

// ---------------------------------------------------------------------------------------
// 4. Saudi days

/// At 23:30 UTC on 25 November it is already the 26th in Riyadh: an iqama that expired on
/// the 25th no longer counts, and a date filter means a Saudi day.
async fn calendar_rules_count_saudi_days(backend: Backend) {
    let world = World::new(backend).await;
    let organization = "7000000909";
    let manager = PersonId::parse(&citizen(91)).unwrap();
    let org = world.onboard(organization, PricingPlan::Muqeem, manager.as_str(), &[("1-10", SizeTier::Small)]).await;
    world.credit(&org, 1_000_000).await;
    world.clock.set(datetime!(2026-11-25 20:30 UTC)); // 23:30 on the 25th in Riyadh
    let on_time = world.register(&resident(92), &["1-10"], Some(0)).await; // expires on the 25th
    let late = world.register(&resident(93), &["1-10"], Some(0)).await;
    let client = world.serve().await;

    let accepted = subscribe(&client, organization, &manager, "on-time", &subscription(&on_time, &["1-10"], Some("partners_only"))).await;
    assert_eq!(accepted.status, 201, "still the 25th in Riyadh: {}", accepted.text());
    world.clock.set(datetime!(2026-11-25 23:30 UTC)); // 02:30 on the 26th in Riyadh
    let refused = subscribe(&client, organization, &manager, "late", &subscription(&late, &["1-10"], Some("partners_only"))).await;
    assert_eq!((refused.status, refused.code().as_str()), (422, "iqama_expired"), "the 26th in Riyadh");
    assert_eq!(saudi_day(world.now()), date!(2026 - 11 - 26));
    let seat_end = accepted.json()["seat_ends_at"].as_str().unwrap().to_owned();
    assert_eq!(seat_end, key_timestamp(one_year_after(datetime!(2026-11-25 20:30 UTC))));

    // The operator credits at 02:30 on the 26th (Riyadh); the subscription was on the 25th.
    world.credit(&org, 100).await;
    let day = |query: &str| {
        let client = client.clone();
        let manager = manager.clone();
        let query = query.to_owned();
        async move {
            let answer =
                client.get(&format!("/v1/organizations/{organization}/audit?format=csv&{query}"), &client.token_for(&manager)).await;
            assert_eq!(answer.status, 200, "{}", answer.text());
            answer.text()
        }
    };
    let the_26th = day("from=2026-11-26&to=2026-11-26").await;
    assert!(the_26th.contains("balance.credited") && !the_26th.contains("user.subscribed"), "{the_26th}");
    let the_25th = day("from=2026-11-25&to=2026-11-25").await;
    assert!(the_25th.contains("user.subscribed") && !the_25th.contains("balance.credited"), "{the_25th}");
    assert_eq!(start_of_saudi_day(date!(2026 - 11 - 26)), datetime!(2026-11-25 21:00 UTC));
}
both!(calendar_rules_count_saudi_days);

// ---------------------------------------------------------------------------------------
// 5. The iqama ends access

/// The operator records a person's iqama expiry in the registry, as the ministry reports it.
async fn record_iqama(world: &World, client: &Client, person: &PersonId, expiry: time::Date) -> Answer {
    let registered = world
        .records()
        .await
        .into_iter()
        .find_map(|record| match record {
            Record::Person(found) if &found.id == person => Some(found),
            _ => None,
        })
        .expect("registered");
    client
        .call(
            "PUT",
            &format!("/v1/registry/persons/{}", person.as_str()),
            Some(&client.operator_token()),
            &[],
            Some(&json!({
                "name": registered.name, "nationality": "IN", "iqama_expiry": expiry.to_string(),
                "employers": registered.employers, "email": registered.email.as_str(), "mobile": registered.mobile.as_str(),
            })),
        )
        .await
}

async fn a_residents_access_ends_with_the_iqama_and_returns_with_its_renewal(backend: Backend) {
    let cast = cast(backend).await;
    let (world, client) = (&cast.world, &cast.client);
    let resident = cast.resident_user.clone();
    assert_eq!(cast.put(&cast.manager, &resident, json!({ "1-10": ["iqama.renew"] })).await.status, 200);
    let service = client.service_token();
    assert_eq!(cast.check(&service, &resident, "1-10", "iqama.renew").await.json()["allowed"], true);

    // The registry learns of an earlier expiry than the one recorded at subscription; it
    // reaches the user record, which the check reads alone.
    let expiry = saudi_day(world.now()) + Duration::days(100);
    let saved = record_iqama(world, client, &resident, expiry).await;
    assert_eq!(saved.status, 200, "{}", saved.text());
    let user = world.user(&org(), &resident).await;
    assert_eq!(user.iqama_expiry, Some(expiry), "the registry update reached the user record");
    let seat_id = user.seat.as_ref().expect("a seat").id.clone();

    world.clock.set(start_of_saudi_day(expiry) + Duration::hours(23)); // the last day it is valid
    assert_eq!(cast.check(&service, &resident, "1-10", "iqama.renew").await.json()["allowed"], true);
    world.clock.set(start_of_saudi_day(expiry.next_day().unwrap()));
    assert_eq!(cast.check(&service, &resident, "1-10", "iqama.renew").await.json(), json!({ "allowed": false, "reason": "iqama_expired" }));
    let own = client.get(&user_path(&resident), &client.token_for(&resident)).await;
    assert_eq!((own.status, own.code().as_str()), (422, "iqama_expired"), "every action refuses");
    let granting = cast.put(&cast.manager, &resident, json!({ "1-10": ["iqama.renew", "reports.print"] })).await;
    assert_eq!(granting.code(), "iqama_expired");

    // The operator records the renewed iqama; access returns without a new seat.
    let renewed_until = expiry + Duration::days(730);
    let saved = record_iqama(world, client, &resident, renewed_until).await;
    assert_eq!(saved.status, 200, "{}", saved.text());
    assert_eq!(cast.check(&service, &resident, "1-10", "iqama.renew").await.json(), json!({ "allowed": true, "reason": "granted" }));
    let after = world.user(&org(), &resident).await;
    assert_eq!(after.iqama_expiry, Some(renewed_until));
    assert_eq!(after.seat.expect("a seat").id, seat_id, "no new seat");
    let updated = trail(client, ORG, &cast.manager).await;
    assert!(updated.iter().any(|e| e["action"] == "user.iqama_updated" && e["target"] == resident.as_str()), "audited");
}
both!(a_residents_access_ends_with_the_iqama_and_returns_with_its_renewal);

// ---------------------------------------------------------------------------------------
// 6. One answer whatever the target

/// A request about one user: method, path after the user's, body, headers.
type Probe = (&'static str, String, Option<Value>, Vec<(&'static str, &'static str)>);

async fn a_caller_who_may_not_act_gets_one_answer_whatever_the_target(backend: Backend) {
    let cast = cast(backend).await;
    let (world, client) = (&cast.world, &cast.client);
    let made_up = PersonId::parse(&citizen(999)).unwrap();
    let stranger = world.register(&citizen(998), &[], None).await;
    let same = |caller: &PersonId, real: &PersonId, label: &str| {
        let caller = caller.clone();
        let real = real.clone();
        let made_up = made_up.clone();
        let label = label.to_owned();
        async move {
            let token = client.token_for(&caller);
            let requests: Vec<Probe> = vec![
                ("GET", String::new(), None, vec![]),
                ("PATCH", String::new(), Some(json!({ "version": 1, "job_title": "x" })), vec![]),
                ("GET", "/permissions".into(), None, vec![]),
                ("PUT", "/permissions".into(), Some(json!({ "version": 1, "grants": {} })), vec![]),
                ("POST", "/suspension".into(), Some(json!({ "reason": "x" })), vec![]),
                ("POST", "/renewal".into(), Some(json!({})), vec![("idempotency-key", "probe")]),
                ("POST", "/activation/resend".into(), None, vec![]),
                ("GET", "/audit".into(), None, vec![]),
                ("DELETE", "/pending-contact-changes/email".into(), None, vec![]),
            ];
            for (method, suffix, body, headers) in requests {
                let ask = |target: &PersonId| {
                    let path = format!("{}{suffix}", user_path(target));
                    let body = body.clone();
                    let headers = headers.clone();
                    let token = token.clone();
                    async move {
                        let answer = client.call(method, &path, Some(&token), &headers, body.as_ref()).await;
                        (answer.status, answer.code())
                    }
                };
                let (for_real, for_made_up) = (ask(&real).await, ask(&made_up).await);
                assert_eq!(for_real, for_made_up, "{label}: {method} …{suffix} tells the two apart");
                assert!(for_real.0 >= 400, "{label}: {method} …{suffix} was allowed");
            }
        }
    };
    same(&cast.member, &cast.citizen_user, "a member about a colleague").await;
    same(&stranger, &cast.citizen_user, "a stranger about a user").await;
    same(&cast.admin, &cast.outsider, "a delegated admin about a user of another establishment").await;
    let member_view = client.get(&user_path(&cast.citizen_user), &client.token_for(&cast.member)).await;
    assert_eq!((member_view.status, member_view.code().as_str()), (404, "user_not_found"));
    let stranger_view = client.get(&user_path(&cast.citizen_user), &client.token_for(&stranger)).await;
    assert_eq!((stranger_view.status, stranger_view.code().as_str()), (404, "not_found"));
    let member_patch = client
        .call("PATCH", &user_path(&made_up), Some(&client.token_for(&cast.member)), &[], Some(&json!({ "version": 1, "job_title": "x" })))
        .await;
    assert_eq!((member_patch.status, member_patch.code().as_str()), (403, "not_an_administrator"));
}
both!(a_caller_who_may_not_act_gets_one_answer_whatever_the_target);

// ---------------------------------------------------------------------------------------
// 7. Logs and failures say what went wrong, never a stored value

/// A stored item that cannot be read is logged by its field and masked key; a missing
/// table is a misconfiguration (500), not an outage to retry (503).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreadable_item_is_logged_by_field_and_masked_key_and_a_missing_table_is_a_misconfiguration() {
    system_tests::logs::capture();
    let cast = cast(Backend::Moto).await;
    let (world, client) = (&cast.world, &cast.client);
    let store = world.dynamo.as_ref().expect("moto");
    let user = world.user(&org(), &cast.member).await;
    let mut item = aws_adapters::dynamo::to_item(&Record::User(user)).expect("an item");
    let unusual = "+96650X7654321";
    item.insert("mobile".into(), aws_sdk_dynamodb::types::AttributeValue::S(unusual.into()));
    store.client().put_item().table_name(&store.names().users).set_item(Some(item)).send().await.expect("put");

    let answer = cast.check(&client.service_token(), &cast.member, "1-10", "iqama.renew").await;
    assert_eq!((answer.status, answer.code().as_str()), (500, "internal"));
    let logged = system_tests::logs::captured();
    assert!(logged.contains("could not read field `mobile`"), "the field is named:\n{logged}");
    assert!(logged.contains(&format!("USER#{}", cast.member.masked())), "the key is masked:\n{logged}");
    assert!(!logged.contains(unusual) && !logged.contains("X7654321"), "the value never reaches the log");
    assert!(!logged.contains(cast.member.as_str()), "nor the full ID");

    let names = aws_adapters::TableNames::with_prefix("no-such-table");
    let config = world.moto().sdk_config().await;
    let missing = aws_adapters::DynamoStore::new(aws_sdk_dynamodb::Client::new(&config), names);
    let env = domain::env::Env { store: Arc::new(missing), ..world.env.clone() };
    let jwt = local_api::JwtConfig::new(b"test-secret-test-secret-test-secret", "https://test.invalid/", "establishment-users");
    let server = local_api::Server {
        env,
        secrets: world.secrets.clone(),
        jwt: jwt.clone(),
        outbox: None,
        clock: None,
        deliverer: world.deliverer.clone(),
    };
    let (address, _task) = server.bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0))).await.expect("bind");
    let misconfigured = Client { address, jwt };
    let answer = misconfigured.get(&format!("/v1/organizations/{ORG}"), &misconfigured.token_for(&cast.manager)).await;
    assert_eq!((answer.status, answer.code().as_str()), (500, "internal"), "not a 503: retrying cannot help");
    assert_eq!(answer.header("retry-after"), None);
    assert!(system_tests::logs::captured().contains("misconfigured"), "the log says what is wrong");
}

// ---------------------------------------------------------------------------------------
// 8. One precision

async fn every_instant_is_written_with_one_precision(backend: Backend) {
    let cast = cast(backend).await;
    let (world, client) = (&cast.world, &cast.client);
    world.advance(Duration::nanoseconds(123_456_789));
    let person = world.register(&citizen(95), &["1-10"], None).await;
    let bought = subscribe(client, ORG, &cast.manager, "precise", &subscription(&person, &["1-10"], Some("partners_only"))).await;
    assert_eq!(bought.status, 201, "{}", bought.text());
    let ends_at = bought.json()["users"][0]["seat"]["ends_at"].as_str().unwrap().to_owned();
    assert_eq!(ends_at.len(), "2027-11-23T08:00:00.123456Z".len(), "{ends_at}");
    assert!(ends_at.ends_with(".123456Z"), "microseconds, truncated: {ends_at}");
    let entry = trail(client, ORG, &cast.manager).await.into_iter().rev().find(|e| e["action"] == "user.subscribed").unwrap();
    assert_eq!(entry["changes"]["seat_ends_at"], ends_at.as_str(), "the audit writes the same instant the same way");
    assert_eq!(entry["at"].as_str().unwrap().len(), ends_at.len());
    let stored = world.user(&org(), &person).await;
    assert_eq!(key_timestamp(stored.seat.unwrap().ends_at), ends_at);

    // A credit's stored request is a digest, not the amount.
    let credited = client
        .post(
            &format!("/v1/organizations/{ORG}/balance/credits"),
            &client.operator_token(),
            &json!({ "amount_halalas": 4321, "payment_reference": "SADAD-PRECISION" }),
        )
        .await;
    assert_eq!(credited.status, 201);
    let digests: Vec<String> = world
        .records()
        .await
        .into_iter()
        .filter_map(|record| match record {
            Record::Idempotency(r) if r.scope == IdempotencyScope::Credit => Some(r.request_digest),
            _ => None,
        })
        .collect();
    assert!(!digests.is_empty());
    assert!(digests.iter().all(|d| d.len() == 64 && d.bytes().all(|b| b.is_ascii_hexdigit()) && !d.contains("4321")), "{digests:?}");
}
both!(every_instant_is_written_with_one_precision);

// ---------------------------------------------------------------------------------------
// 9. Query strings decoded as API Gateway decodes them

async fn query_strings_are_decoded_as_api_gateway_decodes_them(backend: Backend) {
    let cast = cast(backend).await;
    let (world, client) = (&cast.world, &cast.client);
    let token = client.token_for(&cast.manager);
    world.update_user(&org(), &cast.citizen_user, |u| u.name.ar = Some("فاطمة الزهراني".into())).await;

    // START is 08:00 UTC, 11:00 in Riyadh: `+` must arrive as `+`, not as a space.
    let at = |from: &str| {
        let token = token.clone();
        let from = from.to_owned();
        async move {
            let answer = client.get(&format!("/v1/organizations/{ORG}/audit?from={from}&limit=200"), &token).await;
            assert_eq!(answer.status, 200, "{}", answer.text());
            answer.json()["entries"].as_array().map_or(0, Vec::len)
        }
    };
    assert!(at("2026-11-23T10:59:59%2B03:00").await > 0, "entries at 11:00 Riyadh are after 10:59:59+03:00");
    assert_eq!(at("2026-11-23T11:00:01%2B03:00").await, 0, "none after 11:00:01+03:00");

    // فاطمه, percent-encoded as a browser sends it.
    let encoded = "%D9%81%D8%A7%D8%B7%D9%85%D9%87";
    let found = client.get(&format!("/v1/organizations/{ORG}/users?q={encoded}"), &token).await;
    assert_eq!(found.status, 200, "{}", found.text());
    let ids: Vec<String> = found.json()["users"].as_array().unwrap().iter().map(|u| u["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids, vec![cast.citizen_user.as_str().to_owned()]);
    assert_eq!(START, datetime!(2026-11-23 08:00 UTC));
}
both!(query_strings_are_decoded_as_api_gateway_decodes_them);

// ---------------------------------------------------------------------------------------
// 10. A clock a person can move

async fn the_local_clock_moves_every_time_bound_rule(backend: Backend) {
    let cast = cast(backend).await;
    let (world, client) = (&cast.world, &cast.client);
    let person = world.register(&citizen(96), &["1-10"], None).await;
    let bought = subscribe(client, ORG, &cast.manager, "clockwork", &subscription(&person, &["1-10"], Some("partners_only"))).await;
    assert_eq!(bought.status, 201);
    let email = world
        .records()
        .await
        .into_iter()
        .find_map(|record| match record {
            Record::Person(p) if p.id == person => Some(p.email),
            _ => None,
        })
        .unwrap();
    let token = system_tests::messages::link_token(&world.emails_to(&email).await.last().expect("an activation email").1);

    let moved = client.call("POST", "/local/clock?days=3&minutes=1", None, &[], None).await;
    assert_eq!(moved.status, 200, "{}", moved.text());
    assert_eq!(moved.json()["now"], key_timestamp(START + Duration::days(3) + Duration::minutes(1)));
    let shown = client.call("GET", "/local/clock", None, &[], None).await.json();
    assert_eq!(shown["now"], moved.json()["now"]);
    let expired = client.call("POST", "/v1/activations/email", None, &[], Some(&json!({ "token": token }))).await;
    assert_eq!((expired.status, expired.code().as_str()), (410, "activation_link_expired"), "72 hours have passed");
    let back = client.call("POST", &format!("/local/clock?to={}", "2026-11-23T11:00:00%2B03:00"), None, &[], None).await;
    assert_eq!(back.status, 409, "the clock only moves forward");
    let bad = client.call("POST", "/local/clock?weeks=2", None, &[], None).await;
    assert_eq!(bad.status, 400);
}
both!(the_local_clock_moves_every_time_bound_rule);
