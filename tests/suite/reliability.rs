//! Reliability: the books under concurrent load with duplicated requests (in the spirit of
//! Jepsen's bank test), and faults injected at the adapter boundary. Each test writes its
//! figures to `target/reliability/<test>.json`; `infra/check.sh` prints them after the run
//! and RELIABILITY.md records them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use domain::identity::PersonId;
use domain::organization::{OrganizationId, PricingPlan, SizeTier};
use domain::store::{Record, Store};
use serde_json::{Value, json};
use system_tests::faults::{Call, Fault, FaultyStore, writes_user};
use system_tests::http::Answer;
use system_tests::invariants::assert_books_balance;
use system_tests::moto::workspace_root;
use system_tests::world::{Backend, Client, World};
use tokio::sync::Mutex;

use crate::fixtures::{citizen, person};

/// Writes a test's figures where `infra/check.sh` collects them.
pub fn record_figures(test: &str, backend: Backend, figures: Value) {
    let dir = workspace_root().join("target/reliability");
    std::fs::create_dir_all(&dir).expect("target/reliability");
    let name = format!("{test}.{}", if backend == Backend::Moto { "dynamodb_on_moto" } else { "embedded" });
    std::fs::write(dir.join(format!("{name}.json")), serde_json::to_string_pretty(&json!({ "test": name, "figures": figures })).unwrap())
        .expect("write figures");
}

/// A small deterministic generator (64-bit LCG), so a failing run replays.
struct Dice(u64);

impl Dice {
    fn roll(&mut self, sides: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % sides
    }
}

const ORGANIZATIONS: [&str; 3] = ["7000000911", "7000000912", "7000000913"];

/// What the clients saw, shared between them.
#[derive(Default)]
struct Seen {
    /// The first successful answer to every idempotency key (or payment reference).
    first: BTreeMap<String, (u16, Vec<u8>)>,
    /// Keys sent more than once, with the request to replay: (org, kind, key, path, body).
    replay_later: Vec<(usize, String, String, Value)>,
    /// Persons each organization holds a seat for (to renew).
    seated: BTreeMap<usize, Vec<PersonId>>,
    requests: usize,
    duplicates: usize,
    concurrent_duplicates: usize,
    replays_compared: usize,
    refused_for_balance: usize,
    in_flight_409: usize,
    balance_reads: usize,
    violations: Vec<String>,
}

struct Load {
    client: Client,
    managers: Vec<String>,
    /// Unsubscribed persons per organization, handed out once.
    pool: Vec<Mutex<Vec<PersonId>>>,
    seen: Mutex<Seen>,
}

impl Load {
    async fn send(&self, org: usize, path: &str, key: &str, body: &Value, operator: bool) -> Answer {
        let token =
            if operator { self.client.operator_token() } else { self.client.token_for(&PersonId::parse(&self.managers[org]).unwrap()) };
        if operator { self.client.post(path, &token, body).await } else { self.client.post_keyed(path, &token, key, body).await }
    }

    /// Notes an answer: the first success of a key is the reference every later answer to it
    /// must equal (a duplicate that raced the original may be the one that ran).
    async fn note(&self, key: &str, answer: &Answer) {
        let mut seen = self.seen.lock().await;
        seen.requests += 1;
        match answer.status {
            200 | 201 => match seen.first.get(key).cloned() {
                Some((status, body)) => {
                    seen.replays_compared += 1;
                    if (status, &body) != (answer.status, &answer.body) {
                        seen.violations.push(format!("{key}: a replay answered differently"));
                    }
                }
                None => {
                    seen.first.insert(key.to_owned(), (answer.status, answer.body.clone()));
                }
            },
            402 => seen.refused_for_balance += 1,
            409 if answer.code() == "idempotency_key_in_flight" => seen.in_flight_409 += 1,
            422 if answer.code() == "already_subscribed" => {}
            // One renewal ahead at most: renewing a seat renewed already is refused.
            422 if answer.code() == "already_renewed" => {}
            503 => {}
            other => seen.violations.push(format!("{key}: unexpected {other} {}", answer.text())),
        }
    }

    /// One client: a deterministic mix of subscriptions, renewals, credits and balance reads,
    /// a third of the keyed requests sent twice (at once, or again at the end).
    async fn client(self: Arc<Self>, index: u64, operations: usize) {
        let mut dice = Dice(index * 7919 + 17);
        for step in 0..operations {
            let org = dice.roll(ORGANIZATIONS.len() as u64) as usize;
            let id = ORGANIZATIONS[org];
            let key = format!("c{index}-s{step}");
            let (path, body, operator, key) = match dice.roll(20) {
                0..=9 => {
                    let count = 1 + dice.roll(2) as usize;
                    let persons: Vec<PersonId> = {
                        let mut pool = self.pool[org].lock().await;
                        let at = pool.len().saturating_sub(count);
                        pool.split_off(at)
                    };
                    if persons.is_empty() {
                        continue;
                    }
                    let body = json!({ "persons": persons.iter().map(|p| json!({ "id": p.as_str(), "establishments": ["1-10"], "user_type": "partners_only" })).collect::<Vec<_>>() });
                    (format!("/v1/organizations/{id}/subscriptions"), body, false, key)
                }
                10..=13 => {
                    let seated = self.seen.lock().await.seated.get(&org).cloned().unwrap_or_default();
                    if seated.is_empty() {
                        continue;
                    }
                    let who = &seated[dice.roll(seated.len() as u64) as usize];
                    (format!("/v1/organizations/{id}/users/{}/renewal", who.as_str()), json!({}), false, key)
                }
                14..=16 => {
                    let reference = format!("REF-{index}-{step}");
                    let body = json!({ "amount_halalas": 15_000 * (1 + dice.roll(3)), "payment_reference": reference });
                    (format!("/v1/organizations/{id}/balance/credits"), body, true, reference)
                }
                _ => {
                    let token = self.client.token_for(&PersonId::parse(&self.managers[org]).unwrap());
                    let answer = self.client.get(&format!("/v1/organizations/{id}/balance?limit=1"), &token).await;
                    let mut seen = self.seen.lock().await;
                    seen.requests += 1;
                    seen.balance_reads += 1;
                    let balance = answer.json();
                    let (available, credited, debited) = (
                        balance["available_halalas"].as_i64().unwrap_or(-1),
                        balance["total_credited_halalas"].as_i64().unwrap_or(-1),
                        balance["total_debited_halalas"].as_i64().unwrap_or(-1),
                    );
                    if available < 0 || available != credited - debited {
                        seen.violations.push(format!("{id}: read a balance of {available} with {credited} credited, {debited} debited"));
                    }
                    continue;
                }
            };
            let duplicate = dice.roll(3) == 0;
            let answer = if duplicate && dice.roll(2) == 0 {
                // Both at once: one runs, the other waits or is told the key is in flight.
                let (a, b) = tokio::join!(self.send(org, &path, &key, &body, operator), self.send(org, &path, &key, &body, operator));
                self.note(&key, &a).await;
                self.note(&key, &b).await;
                let mut seen = self.seen.lock().await;
                seen.duplicates += 1;
                seen.concurrent_duplicates += 1;
                seen.replay_later.push((org, key.clone(), path.clone(), body.clone()));
                if a.status < 300 { a } else { b }
            } else {
                let answer = self.send(org, &path, &key, &body, operator).await;
                self.note(&key, &answer).await;
                if duplicate {
                    let mut seen = self.seen.lock().await;
                    seen.duplicates += 1;
                    seen.replay_later.push((org, key.clone(), path.clone(), body.clone()));
                }
                answer
            };
            if answer.status == 201 && path.ends_with("/subscriptions") {
                let ids: Vec<PersonId> = answer.json()["users"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|u| PersonId::parse(u["id"].as_str().unwrap()).unwrap())
                    .collect();
                self.seen.lock().await.seated.entry(org).or_default().extend(ids);
            }
        }
    }
}

async fn the_books_balance_under_concurrent_load_with_duplicates(backend: Backend) {
    let (clients, operations, persons) = if backend == Backend::Moto { (6, 14, 30) } else { (8, 60, 200) };
    let world = World::new(backend).await;
    let mut managers = Vec::new();
    let mut pool = Vec::new();
    for (n, id) in ORGANIZATIONS.iter().enumerate() {
        let manager = citizen(900 + n as u32);
        let org = world.onboard(id, PricingPlan::Muqeem, &manager, &[("1-10", SizeTier::Medium)]).await;
        // Little money: many subscriptions are refused for the balance, racing the credits.
        world.credit(&org, 45_000).await;
        managers.push(manager);
        let mut persons_of = Vec::new();
        for k in 0..persons {
            persons_of.push(world.register(person('2', 100_000 * (n as u32 + 1) + k).as_str(), &["1-10"], Some(500)).await);
        }
        pool.push(Mutex::new(persons_of));
    }
    let load = Arc::new(Load { client: world.serve().await, managers, pool, seen: Mutex::default() });
    let tasks: Vec<_> = (0..clients).map(|i| tokio::spawn(load.clone().client(i, operations))).collect();
    for task in tasks {
        task.await.expect("a client panicked");
    }
    // Every duplicated key once more, after the dust settled: the original answer, or (if it
    // never succeeded) a fresh outcome.
    let replays = std::mem::take(&mut load.seen.lock().await.replay_later);
    for (org, key, path, body) in &replays {
        let answer = load.send(*org, path, key, body, key.starts_with("REF-")).await;
        load.note(key, &answer).await;
    }

    let records = world.records().await;
    let books = assert_books_balance(&records);
    let mut seen = load.seen.lock().await;
    // Charged exactly what the distinct successful keys said, no more.
    for id in ORGANIZATIONS {
        let organization = OrganizationId::parse(id).unwrap();
        let (mut charged, mut credited) = (0u64, 45_000u64);
        for (key, (_, body)) in &seen.first {
            let body: Value = serde_json::from_slice(body).unwrap();
            let mine = body["organization_id"].as_str() == Some(id);
            if mine && key.starts_with("REF-") {
                credited += body["credited_halalas"].as_u64().unwrap();
            } else if mine {
                charged += body["amount_charged_halalas"].as_u64().unwrap();
            }
        }
        let book = &books[&organization];
        if book.debits != charged {
            seen.violations.push(format!("{id}: debited {} but the answers charged {charged}", book.debits));
        }
        if book.credits != credited {
            seen.violations.push(format!("{id}: credited {} but the answers credited {credited}", book.credits));
        }
    }
    let seats: usize = books.values().map(|b| b.seats_held).sum();
    let figures = json!({
        "clients": clients,
        "requests": seen.requests,
        "duplicated_keys": seen.duplicates,
        "of_which_concurrent": seen.concurrent_duplicates,
        "replays_compared_byte_for_byte": seen.replays_compared,
        "refused_for_balance_402": seen.refused_for_balance,
        "in_flight_409": seen.in_flight_409,
        "balance_reads": seen.balance_reads,
        "seats_held": seats,
        "invariant_violations": seen.violations.len(),
    });
    record_figures("books_under_load", backend, figures.clone());
    assert!(seen.violations.is_empty(), "{:#?}\n{figures}", seen.violations);
    assert!(seen.replays_compared > 0 && seen.refused_for_balance > 0 && seats > 0, "the load exercised little: {figures}");
}
both!(the_books_balance_under_concurrent_load_with_duplicates);

/// One fault scenario: `plan` picks the calls to fail; the client sends the request, then
/// retries with the same key until it succeeds; exactly one outcome must result.
struct Scenario {
    name: &'static str,
    fault: Fault,
    /// How many matching calls fail before they are let through.
    times: usize,
    /// Which calls: the subscription's commit, or its first read.
    on_read: bool,
}

const SCENARIOS: &[Scenario] = &[
    Scenario { name: "throttled write", fault: Fault::Unavailable, times: 1, on_read: false },
    Scenario { name: "throttled read", fault: Fault::Unavailable, times: 1, on_read: true },
    Scenario { name: "one transaction conflict", fault: Fault::Conflict, times: 1, on_read: false },
    Scenario { name: "conflicts past the retry budget", fault: Fault::Conflict, times: 40, on_read: false },
    Scenario { name: "timeout after the write committed", fault: Fault::LostResponse, times: 1, on_read: false },
];

async fn faults_converge_to_exactly_one_outcome(backend: Backend) {
    let mut report = Vec::new();
    for scenario in SCENARIOS {
        let target = person('2', 777);
        let remaining = Arc::new(AtomicUsize::new(0));
        let injected = Arc::new(AtomicUsize::new(0));
        let (switch, victim, counter, fault, on_read) =
            (remaining.clone(), target.clone(), injected.clone(), scenario.fault.clone(), scenario.on_read);
        let world = World::with_ports(
            backend,
            Some(&move |store: Arc<dyn Store>| {
                let (switch, victim, counter, fault) = (switch.clone(), victim.clone(), counter.clone(), fault.clone());
                FaultyStore::new(store, move |call| {
                    let matches = match call {
                        Call::Commit(writes) => !on_read && writes_user(writes, &victim),
                        Call::Load(keys) => on_read && keys.iter().any(|k| matches!(k, domain::store::Key::Person(p) if *p == victim)),
                        Call::Query(_) => false,
                    };
                    if matches && switch.load(Ordering::SeqCst) > 0 {
                        switch.fetch_sub(1, Ordering::SeqCst);
                        counter.fetch_add(1, Ordering::SeqCst);
                        Some(fault.clone())
                    } else {
                        None
                    }
                }) as Arc<dyn Store>
            }),
            None,
        )
        .await;
        let manager = citizen(1);
        let org = world.onboard("7000000921", PricingPlan::Muqeem, &manager, &[("1-10", SizeTier::Medium)]).await;
        world.credit(&org, 100_000).await;
        // A first seat, so the one under test is charged.
        let first = person('2', 1);
        world.active_user(&org, &PersonId::parse(&manager).unwrap(), &first, &["1-10"]).await;
        world.register(target.as_str(), &["1-10"], Some(500)).await;
        let client = world.serve().await;
        let token = client.token_for(&PersonId::parse(&manager).unwrap());
        let body = json!({ "persons": [{ "id": target.as_str(), "establishments": ["1-10"], "user_type": "partners_only" }] });
        let path = "/v1/organizations/7000000921/subscriptions";

        remaining.store(scenario.times, Ordering::SeqCst);
        let mut answers = vec![client.post_keyed(path, &token, "fault-key", &body).await];
        remaining.store(0, Ordering::SeqCst);
        while answers.last().unwrap().status >= 500 && answers.len() < 5 {
            answers.push(client.post_keyed(path, &token, "fault-key", &body).await);
        }
        let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
        for failed in answers.iter().filter(|a| a.status >= 500) {
            assert_eq!(failed.status, 503, "{}: a failure is a clear 503: {}", scenario.name, failed.text());
            assert!(!failed.text().contains("injected"), "{}: the cause is logged, not answered: {}", scenario.name, failed.text());
        }
        let last = answers.last().unwrap();
        assert_eq!(last.status, 201, "{}: the retry converges: {statuses:?} {}", scenario.name, last.text());
        // One more retry: the same answer, and nothing more charged.
        let again = client.post_keyed(path, &token, "fault-key", &body).await;
        assert_eq!((again.status, &again.body), (201, &last.body), "{}: the replay", scenario.name);

        let records = world.records().await;
        let books = assert_books_balance(&records);
        assert_eq!(books[&org].debits, 15_000, "{}: charged exactly once", scenario.name);
        let seats: BTreeSet<String> = records
            .iter()
            .filter_map(|r| match r {
                Record::User(u) if u.id == target => u.seat.as_ref().map(|s| s.id.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(seats.len(), 1, "{}: one seat", scenario.name);
        let subscribed = records
            .iter()
            .filter(|r| matches!(r, Record::Audit(e) if e.action.as_str() == "user.subscribed" && e.target.as_ref() == Some(&target)))
            .count();
        assert_eq!(subscribed, 1, "{}: one audit entry", scenario.name);
        report.push(
            json!({ "scenario": scenario.name, "faults_injected": injected.load(Ordering::SeqCst), "client_saw": statuses, "outcomes": 1 }),
        );
    }
    record_figures("faults", backend, json!({ "scenarios": report, "invariant_violations": 0 }));
}
both!(faults_converge_to_exactly_one_outcome);

/// Every AWS call is bounded: at most three attempts, each with a timeout, and an overall
/// timeout per operation, so a throttled table turns into a 503 instead of a hung function.
#[test]
fn sdk_retries_and_timeouts_are_bounded() {
    let lambda = |name: &str| match name {
        "AWS_REGION" => Some("me-south-1".to_owned()),
        "AWS_ACCESS_KEY_ID" | "AWS_SECRET_ACCESS_KEY" => Some("test".to_owned()),
        _ => None,
    };
    let environment = aws_adapters::sdk::Environment::from_lookup(lambda).expect("Lambda's variables");
    let config = environment.config(aws_adapters::sdk::https_client(&[]));
    let retry = config.retry_config().expect("a retry configuration");
    assert_eq!(retry.max_attempts(), 3);
    let timeouts = config.timeout_config().expect("timeouts");
    assert!(
        timeouts.operation_attempt_timeout().is_some() && timeouts.operation_timeout().is_some() && timeouts.connect_timeout().is_some()
    );
    assert!(timeouts.operation_timeout().unwrap() <= std::time::Duration::from_secs(10), "within the function's 10 s timeout");
}
