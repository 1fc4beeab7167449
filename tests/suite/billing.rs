//! Subscriptions and the balance, through the HTTP API of the local server, on both stores.

use domain::organization::{PricingPlan, SizeTier};
use serde_json::{Value, json};
use system_tests::faults::GatedStore;
use system_tests::invariants::assert_books_balance;
use system_tests::world::{Backend, Client, World};

use crate::fixtures::{citizen, resident};

const MUQEEM: &str = "7000000101";
const QIWA: &str = "7000000202";

fn one(id: &str, establishment: &str, user_type: Option<&str>) -> Value {
    let mut person = json!({ "id": id, "establishments": [establishment] });
    if let Some(user_type) = user_type {
        person["user_type"] = json!(user_type);
    }
    person
}

fn persons(list: Vec<Value>) -> Value {
    json!({ "persons": list })
}

struct Muqeem {
    world: World,
    client: Client,
    manager: String,
}

/// A Muqeem organization with two establishments, a balance and registered residents.
async fn muqeem(backend: Backend, riyals: u64) -> Muqeem {
    let world = World::new(backend).await;
    let manager = citizen(1);
    let org = world.onboard(MUQEEM, PricingPlan::Muqeem, &manager, &[("1-10", SizeTier::Medium), ("1-20", SizeTier::Small)]).await;
    if riyals > 0 {
        world.credit(&org, riyals * 100).await;
    }
    for n in 1..=6 {
        world.register(&resident(n), &["1-10"], Some(400)).await;
    }
    let client = world.serve().await;
    Muqeem { world, client, manager }
}

fn subscriptions(org: &str) -> String {
    format!("/v1/organizations/{org}/subscriptions")
}

async fn balance(client: &Client, org: &str, token: &str) -> Value {
    let answer = client.get(&format!("/v1/organizations/{org}/balance"), token).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    answer.json()
}

async fn the_first_muqeem_seat_is_free_and_later_ones_cost_150_riyals(backend: Backend) {
    let Muqeem { world, client, manager } = muqeem(backend, 1_000).await;
    let token = client.token_for(&domain::identity::PersonId::parse(&manager).unwrap());

    let quote = client
        .post(
            &format!("{}/quote", subscriptions(MUQEEM)),
            &token,
            &persons(vec![one(&resident(1), "1-10", Some("partners_only")), one(&resident(2), "1-10", Some("partners_only"))]),
        )
        .await;
    assert_eq!(quote.status, 200, "{}", quote.text());
    assert_eq!(quote.json()["total_halalas"], 15000);
    assert_eq!(quote.json()["persons"][0]["free"], true);

    let first =
        client.post_keyed(&subscriptions(MUQEEM), &token, "first", &persons(vec![one(&resident(1), "1-10", Some("partners_only"))])).await;
    assert_eq!(first.status, 201, "{}", first.text());
    assert_eq!(first.json()["amount_charged_halalas"], 0);
    assert_eq!(first.json()["balance_after_halalas"], 100_000);
    assert_eq!(first.json()["users"][0]["status"], "pending_activation");

    let bulk = client
        .post_keyed(
            &subscriptions(MUQEEM),
            &token,
            "bulk",
            &persons(vec![one(&resident(2), "1-10", Some("partners_only")), one(&resident(3), "1-10", Some("residents_and_partners"))]),
        )
        .await;
    assert_eq!(bulk.status, 201, "{}", bulk.text());
    assert_eq!(bulk.json()["amount_charged_halalas"], 30_000);
    assert_eq!(bulk.json()["balance_after_halalas"], 70_000);

    let view = balance(&client, MUQEEM, &token).await;
    assert_eq!(view["available_halalas"], 70_000);
    assert_eq!(view["seats_sold"], 3);
    let ledger = view["ledger"].as_array().expect("ledger");
    assert_eq!(ledger.len(), 4, "one credit and three seat debits");
    assert_eq!(ledger[0]["balance_after"], 70_000, "newest first");
    assert_books_balance(&world.records().await);
}
both!(the_first_muqeem_seat_is_free_and_later_ones_cost_150_riyals);

async fn a_qiwa_seat_costs_the_price_of_the_size_tier_and_non_employees_need_a_managing_seat(backend: Backend) {
    let world = World::new(backend).await;
    let manager = citizen(2);
    let org = world.onboard(QIWA, PricingPlan::Qiwa, &manager, &[("4-10", SizeTier::Large), ("4-20", SizeTier::Small)]).await;
    world.credit(&org, 500_000).await;
    let employee = world.register(&citizen(3), &["4-20"], None).await;
    let outsider = world.register(&resident(4), &["9-99"], Some(300)).await;
    let client = world.serve().await;
    let token = client.token_for(&domain::identity::PersonId::parse(&manager).unwrap());

    let hired = client.post_keyed(&subscriptions(QIWA), &token, "employee", &persons(vec![one(employee.as_str(), "4-20", None)])).await;
    assert_eq!(hired.status, 201, "{}", hired.text());
    assert_eq!(hired.json()["amount_charged_halalas"], 80_000, "the large tier's price, even for a seat on the small branch");

    let before = world.snapshot().await;
    let refused = client.post_keyed(&subscriptions(QIWA), &token, "outsider", &persons(vec![one(outsider.as_str(), "4-20", None)])).await;
    assert_eq!((refused.status, refused.code().as_str()), (422, "manager_seat_required"), "{}", refused.text());
    assert_eq!(world.snapshot().await, before, "nothing written");

    let typed = client
        .post_keyed(&subscriptions(QIWA), &token, "typed", &persons(vec![one(outsider.as_str(), "4-20", Some("partners_only"))]))
        .await;
    assert_eq!((typed.status, typed.code().as_str()), (422, "user_type_not_applicable"));

    let own = client.post_keyed(&subscriptions(QIWA), &token, "own-seat", &persons(vec![one(&manager, "4-10", None)])).await;
    assert_eq!(own.status, 201, "the manager buys a seat: {}", own.text());
    let now_allowed =
        client.post_keyed(&subscriptions(QIWA), &token, "outsider-2", &persons(vec![one(outsider.as_str(), "4-20", None)])).await;
    assert_eq!(now_allowed.status, 201, "{}", now_allowed.text());
    assert_eq!(balance(&client, QIWA, &token).await["available_halalas"], 500_000 - 3 * 80_000);
    assert_books_balance(&world.records().await);
}
both!(a_qiwa_seat_costs_the_price_of_the_size_tier_and_non_employees_need_a_managing_seat);

async fn a_retried_subscription_is_charged_once(backend: Backend) {
    let Muqeem { world, client, manager } = muqeem(backend, 1_000).await;
    let token = client.token_for(&domain::identity::PersonId::parse(&manager).unwrap());
    let body = persons(vec![one(&resident(1), "1-10", Some("partners_only")), one(&resident(2), "1-20", Some("partners_only"))]);

    let first = client.post_keyed(&subscriptions(MUQEEM), &token, "retry-me", &body).await;
    assert_eq!(first.status, 201);
    assert_eq!(first.header("idempotent-replayed"), None);
    // The same request written differently is the same request.
    let reordered = json!({ "persons": [
        { "establishments": ["1-10"], "user_type": "partners_only", "id": resident(1) },
        { "user_type": "partners_only", "id": resident(2), "establishments": ["1-20"] },
    ]});
    let again = client.post_keyed(&subscriptions(MUQEEM), &token, "retry-me", &reordered).await;
    assert_eq!(again.status, 201);
    assert_eq!(again.body, first.body, "the first response, byte for byte");
    assert_eq!(again.header("idempotent-replayed"), Some("true"));

    let before = world.snapshot().await;
    let reused = client
        .post_keyed(&subscriptions(MUQEEM), &token, "retry-me", &persons(vec![one(&resident(3), "1-10", Some("partners_only"))]))
        .await;
    assert_eq!((reused.status, reused.code().as_str()), (422, "idempotency_key_reused"));
    assert_eq!(world.snapshot().await, before);

    assert_eq!(balance(&client, MUQEEM, &token).await["available_halalas"], 100_000 - 15_000, "charged once");
    assert_books_balance(&world.records().await);
}
both!(a_retried_subscription_is_charged_once);

async fn a_concurrent_duplicate_gets_409_and_is_not_charged(backend: Backend) {
    let manager = citizen(1);
    let seeded = World::new(backend).await;
    let org = seeded.onboard(MUQEEM, PricingPlan::Muqeem, &manager, &[("1-10", SizeTier::Medium)]).await;
    seeded.credit(&org, 100_000).await;
    seeded.register(&resident(1), &["1-10"], Some(400)).await;
    // From here on, both requests read before either writes: the loser finds the key
    // taken when it commits.
    let gated = GatedStore::new(seeded.env.store.clone(), 2);
    let racing = World { env: domain::env::Env { store: gated, ..seeded.env.clone() }, ..seeded };
    let client = racing.serve().await;
    let token = client.token_for(&domain::identity::PersonId::parse(&manager).unwrap());
    let body = persons(vec![one(&resident(1), "1-10", Some("partners_only"))]);

    let path = subscriptions(MUQEEM);
    let (a, b) = tokio::join!(client.post_keyed(&path, &token, "same-key", &body), client.post_keyed(&path, &token, "same-key", &body),);
    let mut outcomes = vec![(a.status, a.code()), (b.status, b.code())];
    outcomes.sort();
    assert_eq!(outcomes, vec![(201, String::new()), (409, "idempotency_key_in_flight".to_owned())]);
    let retry = client.post_keyed(&subscriptions(MUQEEM), &token, "same-key", &body).await;
    assert_eq!(retry.status, 201, "a later retry gets the winner's response");
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    let books = assert_books_balance(&racing.records().await);
    assert_eq!(books.values().map(|b| b.seats_held).sum::<usize>(), 1);
}
both!(a_concurrent_duplicate_gets_409_and_is_not_charged);

async fn bad_requests_are_refused_with_a_code_and_write_nothing(backend: Backend) {
    let Muqeem { world, client, manager } = muqeem(backend, 150).await;
    world.register(&resident(50), &["1-10"], Some(-1)).await;
    let token = client.token_for(&domain::identity::PersonId::parse(&manager).unwrap());
    // One seat is free, the next costs all of the 150 SAR: take the free one first.
    let free =
        client.post_keyed(&subscriptions(MUQEEM), &token, "free", &persons(vec![one(&resident(6), "1-10", Some("partners_only"))])).await;
    assert_eq!(free.status, 201);

    let unregistered = citizen(77);
    /// (what is wrong, idempotency key, body, expected status, expected code)
    type Case<'a> = (&'a str, Option<&'a str>, Vec<u8>, u16, &'a str);
    let cases: Vec<Case> = vec![
        ("malformed JSON", Some("k1"), b"{\"persons\": [".to_vec(), 400, "invalid_request"),
        ("missing field", Some("k2"), br#"{"persons":[{"id":"1000000008"}]}"#.to_vec(), 400, "invalid_request"),
        ("unknown field", Some("k3"), br#"{"persons":[],"extra":1}"#.to_vec(), 400, "invalid_request"),
        ("no persons", Some("k4"), br#"{"persons":[]}"#.to_vec(), 400, "invalid_request"),
        (
            "no key",
            None,
            serde_json::to_vec(&persons(vec![one(&resident(1), "1-10", Some("partners_only"))])).unwrap(),
            400,
            "missing_idempotency_key",
        ),
        (
            "bad check digit",
            Some("k5"),
            serde_json::to_vec(&persons(vec![one("1000000009", "1-10", Some("partners_only"))])).unwrap(),
            422,
            "invalid_id_number",
        ),
        (
            "bad establishment id",
            Some("k6"),
            serde_json::to_vec(&persons(vec![one(&resident(1), "branch", Some("partners_only"))])).unwrap(),
            422,
            "invalid_establishment_id",
        ),
        (
            "not registered",
            Some("k7"),
            serde_json::to_vec(&persons(vec![one(&unregistered, "1-10", Some("partners_only"))])).unwrap(),
            422,
            "person_not_registered",
        ),
        (
            "iqama expired",
            Some("k8"),
            serde_json::to_vec(&persons(vec![one(&resident(50), "1-10", Some("partners_only"))])).unwrap(),
            422,
            "iqama_expired",
        ),
        (
            "already subscribed",
            Some("k9"),
            serde_json::to_vec(&persons(vec![one(&resident(6), "1-10", Some("partners_only"))])).unwrap(),
            422,
            "already_subscribed",
        ),
        (
            "outside the organization",
            Some("k10"),
            serde_json::to_vec(&persons(vec![one(&resident(1), "9-99", Some("partners_only"))])).unwrap(),
            422,
            "unknown_establishment",
        ),
        (
            "no user type",
            Some("k11"),
            serde_json::to_vec(&persons(vec![one(&resident(1), "1-10", None)])).unwrap(),
            422,
            "user_type_required",
        ),
        (
            "listed twice",
            Some("k12"),
            serde_json::to_vec(&persons(vec![
                one(&resident(1), "1-10", Some("partners_only")),
                one(&resident(1), "1-20", Some("partners_only")),
            ]))
            .unwrap(),
            422,
            "duplicate_person",
        ),
        (
            "too many",
            Some("k13"),
            serde_json::to_vec(&persons((0..26).map(|n| one(&citizen(200 + n), "1-10", Some("partners_only"))).collect())).unwrap(),
            422,
            "too_many_persons",
        ),
        (
            "not enough balance",
            Some("k14"),
            serde_json::to_vec(&persons(vec![
                one(&resident(1), "1-10", Some("partners_only")),
                one(&resident(2), "1-10", Some("partners_only")),
            ]))
            .unwrap(),
            402,
            "insufficient_balance",
        ),
    ];
    let before = world.snapshot().await;
    for (case, key, body, status, code) in cases {
        let mut headers = vec![("authorization", format!("Bearer {token}")), ("content-type", "application/json".to_owned())];
        if let Some(key) = key {
            headers.push(("idempotency-key", key.to_owned()));
        }
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let answer = client.send("POST", &subscriptions(MUQEEM), &headers, body).await;
        assert_eq!((answer.status, answer.code().as_str()), (status, code), "{case}: {}", answer.text());
        assert!(answer.json()["request_id"].is_string(), "{case}: every error carries the request id");
        assert!(answer.json()["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{case}");
        if code == "insufficient_balance" {
            assert_eq!(answer.json()["error"]["required_halalas"], 30_000);
            assert_eq!(answer.json()["error"]["available_halalas"], 15_000);
        }
        if status == 400 || code.starts_with("invalid") {
            assert!(answer.json()["error"]["field"].is_string(), "{case}: names the field");
        }
    }
    assert_eq!(world.snapshot().await, before, "no refused request wrote anything");
}
both!(bad_requests_are_refused_with_a_code_and_write_nothing);

async fn callers_see_403_inside_their_organization_and_404_outside(backend: Backend) {
    let Muqeem { world, client, manager } = muqeem(backend, 1_000).await;
    let manager_token = client.token_for(&domain::identity::PersonId::parse(&manager).unwrap());
    // A subscribed member without user management, and another organization's manager.
    let member = resident(1);
    assert_eq!(
        client
            .post_keyed(&subscriptions(MUQEEM), &manager_token, "m", &persons(vec![one(&member, "1-10", Some("partners_only"))]))
            .await
            .status,
        201
    );
    let stranger_manager = citizen(900);
    world.onboard("7000000909", PricingPlan::Muqeem, &stranger_manager, &[("8-1", SizeTier::Micro)]).await;
    let member_token = client.token_for(&domain::identity::PersonId::parse(&member).unwrap());
    let stranger_token = client.token_for(&domain::identity::PersonId::parse(&stranger_manager).unwrap());

    let before = world.snapshot().await;
    let body = persons(vec![one(&resident(2), "1-10", Some("partners_only"))]);
    let member_try = client.post_keyed(&subscriptions(MUQEEM), &member_token, "x1", &body).await;
    assert_eq!((member_try.status, member_try.code().as_str()), (403, "not_an_administrator"));
    let stranger_try = client.post_keyed(&subscriptions(MUQEEM), &stranger_token, "x2", &body).await;
    assert_eq!((stranger_try.status, stranger_try.code().as_str()), (404, "not_found"));
    let unknown = client.post_keyed(&subscriptions("7999999999"), &manager_token, "x3", &body).await;
    assert_eq!((unknown.status, unknown.code().as_str()), (404, "not_found"));
    assert_eq!(stranger_try.json()["error"], unknown.json()["error"], "a stranger cannot tell an existing organization from a missing one");
    let operator = client.post_keyed(&subscriptions(MUQEEM), &client.operator_token(), "x4", &body).await;
    assert_eq!(operator.status, 403);
    let balance_by_member = client.get(&format!("/v1/organizations/{MUQEEM}/balance"), &member_token).await;
    assert_eq!((balance_by_member.status, balance_by_member.code().as_str()), (403, "manager_only"));
    let balance_by_stranger = client.get(&format!("/v1/organizations/{MUQEEM}/balance"), &stranger_token).await;
    assert_eq!(balance_by_stranger.status, 404);
    let credit_by_manager = client
        .post(
            &format!("/v1/organizations/{MUQEEM}/balance/credits"),
            &manager_token,
            &json!({"amount_halalas": 100, "payment_reference": "self"}),
        )
        .await;
    assert_eq!((credit_by_manager.status, credit_by_manager.code().as_str()), (403, "operator_only"));
    let no_token = client.call("POST", &subscriptions(MUQEEM), None, &[("idempotency-key", "x5")], Some(&body)).await;
    assert_eq!(no_token.status, 401);
    assert_eq!(world.snapshot().await, before);
}
both!(callers_see_403_inside_their_organization_and_404_outside);

async fn operator_credits_are_idempotent_by_payment_reference(backend: Backend) {
    let Muqeem { world, client, manager } = muqeem(backend, 0).await;
    let operator = client.operator_token();
    let path = format!("/v1/organizations/{MUQEEM}/balance/credits");
    let first = client.post(&path, &operator, &json!({"amount_halalas": 50_000, "payment_reference": "SADAD-123"})).await;
    assert_eq!(first.status, 201, "{}", first.text());
    let again = client.post(&path, &operator, &json!({"amount_halalas": 50_000, "payment_reference": "SADAD-123"})).await;
    assert_eq!((again.status, again.body.clone()), (201, first.body.clone()));
    let different = client.post(&path, &operator, &json!({"amount_halalas": 60_000, "payment_reference": "SADAD-123"})).await;
    assert_eq!((different.status, different.code().as_str()), (422, "payment_reference_reused"));
    for (body, code) in [
        (json!({"amount_halalas": 0, "payment_reference": "Z"}), "invalid_amount"),
        (json!({"amount_halalas": -5, "payment_reference": "Z"}), "invalid_request"),
        (json!({"amount_halalas": 5, "payment_reference": ""}), "invalid_field"),
    ] {
        assert_eq!(client.post(&path, &operator, &body).await.code(), code, "{body}");
    }
    let token = client.token_for(&domain::identity::PersonId::parse(&manager).unwrap());
    assert_eq!(balance(&client, MUQEEM, &token).await["available_halalas"], 50_000);
    assert_books_balance(&world.records().await);
}
both!(operator_credits_are_idempotent_by_payment_reference);

/// Many subscribe requests at once against a balance that covers only some of them.
async fn concurrent_subscriptions_never_overspend(backend: Backend) {
    let world = World::new(backend).await;
    let manager = citizen(1);
    // Micro tier: 100 SAR a seat; the balance covers exactly 12 of 30.
    let org = world.onboard(QIWA, PricingPlan::Qiwa, &manager, &[("4-10", SizeTier::Micro)]).await;
    world.credit(&org, 12 * 10_000).await;
    let people: Vec<String> = (0..30).map(|n| citizen(300 + n)).collect();
    for person in &people {
        world.register(person, &["4-10"], None).await;
    }
    let client = world.serve().await;
    let token = client.token_for(&domain::identity::PersonId::parse(&manager).unwrap());
    let requests = people.iter().enumerate().map(|(n, person)| {
        let client = client.clone();
        let token = token.clone();
        let body = persons(vec![one(person, "4-10", None)]);
        async move {
            // A well-behaved client retries 503 with the same key.
            loop {
                let answer = client.post_keyed(&subscriptions(QIWA), &token, &format!("key-{n}"), &body).await;
                if answer.status != 503 {
                    break answer;
                }
            }
        }
    });
    let handles: Vec<_> = requests.map(tokio::spawn).collect();
    let mut created = 0;
    let mut refused = 0;
    for handle in handles {
        let answer = handle.await.expect("task");
        match answer.status {
            201 => created += 1,
            402 => {
                assert_eq!(answer.code(), "insufficient_balance");
                refused += 1;
            }
            other => panic!("unexpected {other}: {}", answer.text()),
        }
    }
    assert_eq!((created, refused), (12, 18));
    let books = assert_books_balance(&world.records().await);
    let book = &books[&org];
    assert_eq!(book.available, 0);
    assert_eq!(book.paid_debits, 12);
    assert_eq!(book.seats_held, 12);
    assert_eq!(balance(&client, QIWA, &token).await["seats_sold"], 12);
}
both!(concurrent_subscriptions_never_overspend);

/// The price shown is the price charged: a subscription carrying its quote's total is
/// refused with 409 `price_changed` (the new total in the answer) and charges nothing when
/// the total moved since — here, the organization's free first seat was taken meanwhile —
/// and goes through when sent with the new total.
async fn a_subscription_is_refused_when_its_quoted_total_changed(backend: Backend) {
    let Muqeem { world, client, manager } = muqeem(backend, 1_000).await;
    let token = client.token_for(&domain::identity::PersonId::parse(&manager).unwrap());
    let mine = persons(vec![one(&resident(1), "1-10", Some("partners_only"))]);
    let quote = client.post(&format!("{}/quote", subscriptions(MUQEEM)), &token, &mine).await.json();
    assert_eq!(quote["total_halalas"], 0, "the first seat is free");
    // Someone else takes the free seat first.
    let other =
        client.post_keyed(&subscriptions(MUQEEM), &token, "other", &persons(vec![one(&resident(2), "1-10", Some("partners_only"))])).await;
    assert_eq!(other.status, 201, "{}", other.text());
    let before = world.snapshot().await;

    let mut body = mine.clone();
    body["expected_total_halalas"] = quote["total_halalas"].clone();
    let refused = client.post_keyed(&subscriptions(MUQEEM), &token, "mine", &body).await;
    assert_eq!((refused.status, refused.code().as_str()), (409, "price_changed"), "{}", refused.text());
    assert_eq!(
        (refused.json()["error"]["total_halalas"].clone(), refused.json()["error"]["expected_total_halalas"].clone()),
        (json!(15_000), json!(0))
    );
    assert_eq!(world.snapshot().await, before, "nothing charged or written");

    body["expected_total_halalas"] = json!(15_000);
    let bought = client.post_keyed(&subscriptions(MUQEEM), &token, "mine-again", &body).await;
    assert_eq!((bought.status, bought.json()["amount_charged_halalas"].clone()), (201, json!(15_000)), "{}", bought.text());
    // Without an expected total (older clients), the price of the moment is charged, as before.
    let plain =
        client.post_keyed(&subscriptions(MUQEEM), &token, "plain", &persons(vec![one(&resident(3), "1-10", Some("partners_only"))])).await;
    assert_eq!(plain.status, 201, "{}", plain.text());
    assert_books_balance(&world.records().await);
}
both!(a_subscription_is_refused_when_its_quoted_total_changed);
