//! Abuse and accountability: guessing secrets, flooding, enumeration through error
//! differences, hostile bodies, Unicode, forged or expired tokens; and a replay of the whole
//! lifecycle that checks every state change left exactly one audit entry by the right actor.
//! Figures go to `target/reliability/` like the reliability tests'.

use base64::Engine;
use domain::actions::sweep::SweepOptions;
use domain::identity::PersonId;
use domain::organization::{PricingPlan, SizeTier};
use domain::store::Record;
use local_api::JwtConfig;
use serde_json::{Value, json};
use system_tests::http::{self, Answer};
use system_tests::world::{Backend, World};

use crate::activation::{link_token, sms_code, subscribe_newcomer};
use crate::fixtures::{citizen, person, resident};
use crate::reliability::record_figures;

/// An error body without its request id: what a client could compare between answers.
fn shape(answer: &Answer) -> (u16, Value) {
    let mut body = answer.json();
    body.as_object_mut().map(|b| b.remove("request_id"));
    (answer.status, body)
}

async fn secrets_cannot_be_guessed_or_flooded(backend: Backend) {
    let newcomer = subscribe_newcomer(World::new(backend).await, "ar").await;
    let before = newcomer.world.snapshot().await;
    let mut tried = 0;

    // Link tokens: random guesses of the right shape, a used-looking one, junk. One answer for all.
    let guesses = if backend == Backend::Moto { 40 } else { 400 };
    let mut answers = std::collections::BTreeSet::new();
    for n in 0..guesses {
        let guess = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(domain::entropy::SystemEntropy::hex(16).as_bytes());
        let guess = if n % 10 == 0 { format!("{guess}x") } else { guess[..43.min(guess.len())].to_owned() };
        let answer = newcomer.confirm_email(&guess).await;
        answers.insert(format!("{:?}", shape(&answer)));
        tried += 1;
    }
    assert_eq!(answers.len(), 1, "every wrong token gets the same answer: {answers:?}");
    assert!(answers.iter().next().unwrap().contains("invalid_activation_link"));
    assert_eq!(newcomer.world.snapshot().await, before, "guessing changes nothing");

    // Codes: five wrong tries lock the code; the answers differ only in the documented count.
    let wrong = if newcomer.code == "000000" { "111111" } else { "000000" };
    let mut remaining = Vec::new();
    for _ in 0..5 {
        let answer = newcomer.confirm_mobile(wrong).await;
        let (status, mut body) = shape(&answer);
        remaining.push(body["error"]["remaining_tries"].take());
        assert!(matches!((status, answer.code().as_str()), (422, "wrong_code") | (423, "code_locked")));
        tried += 1;
    }
    assert_eq!(remaining, [json!(4), json!(3), json!(2), json!(1), Value::Null]);
    let locked = newcomer.confirm_mobile(&newcomer.code).await;
    assert_eq!((locked.status, locked.code().as_str()), (423, "code_locked"), "the right code no longer works");
    tried += 1;

    // Resends: the fourth in fifteen minutes is refused with Retry-After.
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(newcomer.resend(json!({})).await.status);
        tried += 1;
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429, 429]);
    record_figures(
        "secrets_cannot_be_guessed_or_flooded",
        backend,
        json!({ "link_token_guesses": guesses, "code_tries": 6, "resends": 6, "requests": tried, "accepted_guesses": 0 }),
    );
}
both!(secrets_cannot_be_guessed_or_flooded);

/// Nothing tells an outsider whether an organization, a user or a person exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_do_not_reveal_what_exists() {
    let world = World::new(Backend::Embedded).await;
    let ours = citizen(1);
    let theirs = citizen(2);
    let org = world.onboard("7000000931", PricingPlan::Muqeem, &ours, &[("1-10", SizeTier::Small)]).await;
    world.onboard("7000000932", PricingPlan::Muqeem, &theirs, &[("2-10", SizeTier::Small)]).await;
    world.credit(&org, 100_000).await;
    let member = person('2', 5);
    world.active_user(&org, &PersonId::parse(&ours).unwrap(), &member, &["1-10"]).await;
    let client = world.serve().await;
    let outsider = client.token_for(&PersonId::parse(&theirs).unwrap());
    let mut compared = 0;

    // An existing organization and user, against ones that do not exist, for each route family.
    let existing = format!("/v1/organizations/7000000931/users/{}", member.as_str());
    let pairs = [
        (existing.clone(), format!("/v1/organizations/7000000931/users/{}", person('2', 6).as_str())),
        (existing.clone(), format!("/v1/organizations/7000000939/users/{}", member.as_str())),
        (format!("{existing}/permissions"), format!("/v1/organizations/7000000939/users/{}/permissions", member.as_str())),
        (format!("{existing}/audit"), format!("/v1/organizations/7000000939/users/{}/audit", person('2', 6).as_str())),
        ("/v1/organizations/7000000931/balance".to_owned(), "/v1/organizations/7000000939/balance".to_owned()),
        ("/v1/organizations/7000000931/users".to_owned(), "/v1/organizations/7000000939/users".to_owned()),
    ];
    for (real, made_up) in &pairs {
        let (a, b) = (client.get(real, &outsider).await, client.get(made_up, &outsider).await);
        assert_eq!(a.status, 404, "{real}: {}", a.text());
        assert_eq!(shape(&a), shape(&b), "{real} and {made_up} answer alike");
        compared += 1;
    }
    // Writes too: an outsider's suspension of a real user, and of a user who does not exist.
    let suspend = |path: &str| format!("{path}/suspension");
    let a = client.post(&suspend(&pairs[0].0), &outsider, &json!({ "reason": "x" })).await;
    let b = client.post(&suspend(&pairs[0].1), &outsider, &json!({ "reason": "x" })).await;
    assert_eq!(shape(&a), shape(&b));
    compared += 1;
    // The check API says "not subscribed" alike for a stranger and an unknown ID.
    let service = client.service_token();
    let check =
        |user: &str| json!({ "organization_id": "7000000931", "user_id": user, "establishment_id": "1-10", "service": "iqama.renew" });
    let stranger = client.post("/v1/authorizations/check", &service, &check(&theirs)).await.json();
    let unknown = client.post("/v1/authorizations/check", &service, &check(person('2', 99).as_str())).await.json();
    assert_eq!((stranger["allowed"].clone(), stranger["reason"].clone()), (unknown["allowed"].clone(), unknown["reason"].clone()));
    compared += 1;
    record_figures("errors_do_not_reveal_what_exists", Backend::Embedded, json!({ "pairs_compared": compared, "differences": 0 }));
}

/// Tokens the authorizer must refuse: wrong key, expired, `alg: none`, wrong issuer or
/// audience, malformed, absent. All 401 with one code; nothing else is tried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_expired_and_unsigned_tokens_get_401() {
    let world = World::new(Backend::Embedded).await;
    let manager = citizen(1);
    world.onboard("7000000941", PricingPlan::Muqeem, &manager, &[("1-10", SizeTier::Small)]).await;
    let client = world.serve().await;
    let path = "/v1/organizations/7000000941/balance";
    assert_eq!(client.get(path, &client.token_for(&PersonId::parse(&manager).unwrap())).await.status, 200, "the real token works");

    let (issuer, audience) = (client.jwt.issuer().to_owned(), client.jwt.audience().to_owned());
    let encode = |value: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string());
    let claims = json!({ "sub": manager, "iss": issuer, "aud": audience, "exp": time::OffsetDateTime::now_utc().unix_timestamp() + 600 });
    let unsigned = format!("{}.{}.", encode(json!({ "alg": "none", "typ": "JWT" })), encode(claims.clone()));
    let real = client.jwt.mint(&manager, None, 600);
    let tampered = {
        let mut parts: Vec<String> = real.split('.').map(str::to_owned).collect();
        parts[1] = encode(json!({ "sub": citizen(2), "iss": issuer, "aud": audience, "exp": claims["exp"] }));
        parts.join(".")
    };
    let forged = [
        ("wrong key", JwtConfig::new(b"another-secret-another-secret-xx", &issuer, &audience).mint(&manager, None, 600)),
        ("expired", client.jwt.mint(&manager, None, -60)),
        ("alg none", unsigned),
        ("payload swapped under a real signature", tampered),
        (
            "wrong issuer",
            JwtConfig::new(b"test-secret-test-secret-test-secret", "https://evil.example/", &audience).mint(&manager, None, 600),
        ),
        ("wrong audience", JwtConfig::new(b"test-secret-test-secret-test-secret", &issuer, "other-api").mint(&manager, None, 600)),
        ("operator role under the wrong key", JwtConfig::new(b"x", &issuer, &audience).mint("op", Some("operator"), 600)),
        ("garbage", "not.a.token".to_owned()),
    ];
    for (what, token) in &forged {
        let answer = client.get(path, token).await;
        assert_eq!((answer.status, answer.code().as_str()), (401, "unauthenticated"), "{what}: {}", answer.text());
    }
    let absent = client.call("GET", path, None, &[], None).await;
    assert_eq!(absent.status, 401);
    record_figures("forged_tokens", Backend::Embedded, json!({ "tokens_tried": forged.len() + 1, "accepted": 0 }));
}

/// Hostile bodies are refused early and cheaply; text in any script round-trips intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bodies_are_refused_and_unicode_survives() {
    let world = World::new(Backend::Embedded).await;
    let client = world.serve().await;
    let operator = client.operator_token();
    let id = person('2', 42);
    let path = format!("/v1/registry/persons/{}", id.as_str());
    let auth = format!("Bearer {operator}");
    let headers = [("authorization", auth.as_str()), ("content-type", "application/json")];

    let oversized = format!("{{\"name\":{{\"en\":\"{}\"}}}}", "a".repeat(gateway::MAX_BODY_BYTES));
    let answer = client.send("PUT", &path, &headers, oversized.into_bytes()).await;
    assert_eq!((answer.status, answer.code().as_str()), (413, "payload_too_large"));
    let endless = vec![b'['; 10 * gateway::MAX_BODY_BYTES];
    assert_eq!(client.send("PUT", &path, &headers, endless).await.status, 413, "cut off at the limit, not read whole");
    let nested = format!("{}{}", "[".repeat(30_000), "]".repeat(30_000));
    let answer = client.send("PUT", &path, &headers, nested.into_bytes()).await;
    assert_eq!((answer.status, answer.code().as_str()), (400, "invalid_request"), "deep nesting: {}", answer.text());
    let nested_object = format!("{}1{}", "{\"a\":".repeat(5_000), "}".repeat(5_000));
    assert_eq!(client.send("PUT", &path, &headers, nested_object.into_bytes()).await.status, 400);
    let invalid_utf8 = b"{\"name\":{\"en\":\"\xff\xfe\"}}".to_vec();
    assert_eq!(client.send("PUT", &path, &headers, invalid_utf8).await.status, 400);
    assert_eq!(http::get_raw(client.address, "/health").await.0, 200, "the server is fine afterwards");

    // A name that reorders itself on screen (a right-to-left override, or a mark) is refused,
    // naming the field, before anything is stored.
    for trick in ["\u{202E}nimda", "سارة\u{200F}", "a\u{2066}b\u{2069}"] {
        let body = json!({ "name": { "ar": trick }, "nationality": "PH", "iqama_expiry": "2028-01-31", "employers": ["1-10"], "email": "zoe@example.sa", "mobile": "0551112233" });
        let refused = client.call("PUT", &path, Some(&operator), &[], Some(&body)).await;
        assert_eq!((refused.status, refused.code().as_str()), (422, "invalid_field"), "{trick:?}: {}", refused.text());
        assert_eq!(refused.json()["error"]["field"], "name.ar");
    }

    // Arabic with diacritics, a combining accent, an emoji sequence (joined by U+200D).
    let name = json!({ "ar": "عبدُ الله بن سَعِيد 👩🏽‍💼", "en": "Zoe\u{0308} Ångström-O'Brien \"Jr.\"" });
    let body = json!({ "name": name, "nationality": "PH", "iqama_expiry": "2028-01-31", "employers": ["1-10"], "email": "zoe@example.sa", "mobile": "0551112233" });
    let saved = client.call("PUT", &path, Some(&operator), &[], Some(&body)).await;
    assert!(saved.status == 201 || saved.status == 200, "{}", saved.text());
    assert_eq!(saved.json()["name"], name, "the answer");
    let stored = world.records().await.into_iter().find_map(|r| match r {
        Record::Person(p) if p.id == id => Some(p),
        _ => None,
    });
    assert_eq!(serde_json::to_value(stored.expect("stored").name).unwrap(), name, "the stored record, byte for byte");
    record_figures("hostile_bodies", Backend::Embedded, json!({ "bodies_tried": 5, "accepted": 0, "unicode_round_trips": 1 }));
}

/// Every state change of a whole lifecycle leaves exactly one audit entry, naming the actor
/// who made it; refused requests and reads leave none.
async fn every_change_leaves_exactly_one_audit_entry_by_its_actor(backend: Backend) {
    let world = World::new(backend).await;
    let client = world.serve().await;
    let operator = client.operator_token();
    let manager = citizen(1);
    let manager_id = PersonId::parse(&manager).unwrap();
    let token = client.token_for(&manager_id);
    let org = "7000000951";
    let mut expected: Vec<(String, String)> = Vec::new(); // (action, actor)
    let mut expect = |action: &str, actor: &str| expected.push((action.to_owned(), actor.to_owned()));
    let op = "operator@test";

    let register = |id: &str, email: &str, mobile: &str| {
        json!({ "name": { "en": format!("Person {id}") }, "nationality": if id.starts_with('1') { "SA" } else { "IN" },
                 "iqama_expiry": if id.starts_with('1') { Value::Null } else { json!("2029-01-01") },
                 "employers": ["1-10"], "email": email, "mobile": mobile })
    };
    let staff = resident(1);
    for (id, email, mobile) in [(manager.as_str(), "m@example.sa", "0550000001"), (staff.as_str(), "s@example.sa", "0550000002")] {
        let answer =
            client.call("PUT", &format!("/v1/registry/persons/{id}"), Some(&operator), &[], Some(&register(id, email, mobile))).await;
        assert!(answer.status < 300, "{}", answer.text());
    }
    let onboard = json!({ "unified_number": org, "name": "Audit Co", "pricing_plan": "muqeem", "manager_id": manager,
                          "establishments": [{ "id": "1-10", "name": "HQ", "size": "small" }] });
    assert_eq!(client.post("/v1/organizations", &operator, &onboard).await.status, 201);
    expect("organization.onboarded", op);
    let credit = json!({ "amount_halalas": 100_000, "payment_reference": "AUDIT-1" });
    assert_eq!(client.post(&format!("/v1/organizations/{org}/balance/credits"), &operator, &credit).await.status, 201);
    expect("balance.credited", op);
    // A refused request and a replay add nothing.
    assert_eq!(client.post(&format!("/v1/organizations/{org}/balance/credits"), &operator, &credit).await.status, 201);

    let subscribe = json!({ "persons": [{ "id": staff, "establishments": ["1-10"], "user_type": "partners_only" }] });
    let subscriptions = format!("/v1/organizations/{org}/subscriptions");
    assert_eq!(client.post_keyed(&subscriptions, &token, "audit-1", &subscribe).await.status, 201);
    assert_eq!(client.post_keyed(&subscriptions, &token, "audit-1", &subscribe).await.status, 201, "replayed");
    expect("user.subscribed", &manager);
    let staff_id = PersonId::parse(&staff).unwrap();
    let staff_token = client.token_for(&staff_id);
    let user_path = format!("/v1/organizations/{org}/users/{staff}");

    let wrong = client.post("/v1/activations/mobile", &staff_token, &json!({ "organization_id": org, "code": "000000" })).await;
    if wrong.status == 422 {
        expect("activation.mobile_code_rejected", &staff);
    }
    assert_eq!(client.post(&format!("{user_path}/activation/resend"), &token, &json!({})).await.status, 200);
    expect("activation.resent", &manager);
    let email = world.emails_to(&domain::contact::Email::parse("s@example.sa").unwrap()).await.pop().unwrap().1;
    let sms = world.sms_to(&domain::contact::SaudiMobile::parse("0550000002").unwrap()).await.pop().unwrap();
    assert_eq!(client.call("POST", "/v1/activations/email", None, &[], Some(&json!({ "token": link_token(&email) }))).await.status, 200);
    expect("activation.email_confirmed", &staff);
    let confirmed = client.post("/v1/activations/mobile", &staff_token, &json!({ "organization_id": org, "code": sms_code(&sms) })).await;
    assert_eq!(confirmed.status, 200, "{}", confirmed.text());
    expect("activation.mobile_confirmed", &staff);

    let version = client.get(&format!("{user_path}/permissions"), &token).await.json()["version"].clone();
    let grants = json!({ "version": version, "grants": { "1-10": ["iqama.renew"] } });
    assert_eq!(client.call("PUT", &format!("{user_path}/permissions"), Some(&token), &[], Some(&grants)).await.status, 200);
    expect("permissions.changed", &manager);
    let stale = client.call("PUT", &format!("{user_path}/permissions"), Some(&token), &[], Some(&grants)).await;
    assert_eq!(stale.status, 409, "a stale version is refused and not audited");

    let version = client.get(&user_path, &token).await.json()["version"].clone();
    let patch = json!({ "version": version, "job_title": "مسؤول الموارد البشرية", "mobile": "0550000003" });
    assert_eq!(client.call("PATCH", &user_path, Some(&token), &[], Some(&patch)).await.status, 200);
    expect("user.modified", &manager);
    let code = sms_code(&world.sms_to(&domain::contact::SaudiMobile::parse("0550000003").unwrap()).await.pop().unwrap());
    let verified =
        client.post(&format!("{user_path}/contact-verifications"), &staff_token, &json!({ "channel": "mobile", "code": code })).await;
    assert_eq!(verified.status, 200, "{}", verified.text());
    expect("contact.change_confirmed", &staff);
    let version = client.get(&user_path, &token).await.json()["version"].clone();
    let patch = json!({ "version": version, "email": "s.new@example.sa" });
    assert_eq!(client.call("PATCH", &user_path, Some(&token), &[], Some(&patch)).await.status, 200);
    expect("user.modified", &manager);
    assert_eq!(client.call("DELETE", &format!("{user_path}/pending-contact-changes/email"), Some(&token), &[], None).await.status, 200);
    expect("contact.change_cancelled", &manager);

    assert_eq!(client.post_keyed(&format!("{user_path}/renewal"), &token, "audit-renew", &json!({})).await.status, 201);
    expect("seat.renewed", &manager);
    let csv = client.call("GET", &format!("/v1/organizations/{org}/audit?format=csv"), Some(&token), &[], None).await;
    assert_eq!(csv.status, 200);
    expect("audit.exported", &manager);
    assert_eq!(client.post(&format!("{user_path}/suspension"), &token, &json!({ "reason": "left" })).await.status, 200);
    expect("user.suspended", &manager);
    assert_eq!(client.post(&format!("{user_path}/suspension"), &token, &json!({ "reason": "again" })).await.status, 409);

    // The sweep's reminder for the manager's own seat-less account does not exist; the
    // suspended user's seat is gone: a sweep a year on changes nothing and audits nothing.
    let later = domain::clock::one_year_after(world.now()) + time::Duration::days(400);
    system_tests::world::sweep(&world.env, "audit-sweep", later, SweepOptions::default()).await.expect("the sweep runs");

    let mut actual: Vec<(String, String)> = world
        .records()
        .await
        .into_iter()
        .filter_map(|r| match r {
            Record::Audit(e) if matches!(&e.scope, domain::audit::AuditScope::Organization(o) if o.as_str() == org) => {
                let actor = match &e.actor {
                    domain::audit::Actor::Person(id) => id.as_str().to_owned(),
                    domain::audit::Actor::Operator(id) | domain::audit::Actor::Service(id) | domain::audit::Actor::System(id) => id.clone(),
                };
                Some((e.action.as_str().to_owned(), actor))
            }
            _ => None,
        })
        .collect();
    actual.sort();
    expected.sort();
    assert_eq!(actual, expected, "one entry per change, by its actor");
    record_figures(
        "audit_completeness",
        backend,
        json!({ "state_changes": expected.len(), "audit_entries": actual.len(), "missing_or_extra": 0 }),
    );
}
both!(every_change_leaves_exactly_one_audit_entry_by_its_actor);

/// The local server's own routes (sign in as anyone, move the clock, read the outbox) answer
/// only the server's own pages: another site's page in the developer's browser, or a name
/// rebound to loopback by DNS, is refused with 403 `cross_site`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_routes_refuse_cross_site_requests() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let world = World::new(Backend::Embedded).await;
    let client = world.serve().await;
    let own = format!("http://{}", client.address);
    let body = format!(r#"{{"subject":"{}"}}"#, crate::fixtures::citizen(1)).into_bytes();
    let answer =
        http::send(client.address, "POST", "/local/sign-in", &[("origin", &own), ("content-type", "application/json")], body.clone()).await;
    assert_eq!(answer.status, 200, "its own page signs in: {}", answer.text());
    for headers in [
        [("origin", "http://evil.example"), ("content-type", "application/json")],
        [("sec-fetch-site", "cross-site"), ("content-type", "application/json")],
    ] {
        let answer = http::send(client.address, "POST", "/local/sign-in", &headers, body.clone()).await;
        assert_eq!((answer.status, answer.code().as_str()), (403, "cross_site"), "{headers:?}");
    }
    // A rebound name: the Host is not a loopback name.
    let mut stream = tokio::net::TcpStream::connect(client.address).await.expect("connect");
    stream.write_all(b"GET /local/clock HTTP/1.1\r\nhost: evil.example\r\nconnection: close\r\n\r\n").await.expect("write");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.expect("read");
    assert!(raw.starts_with("HTTP/1.1 403"), "{raw}");
    assert_eq!(http::get_raw(client.address, "/local/clock").await.0, 200, "from a loopback name, with no Origin: served");
}
