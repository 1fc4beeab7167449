//! Activation by emailed link and SMS code, on both stores (and SES/SNS on moto).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use domain::env::Senders;
use domain::identity::PersonId;
use domain::messaging::{DeliveryError, EmailMessage, Mailer};
use domain::organization::{PricingPlan, SizeTier};
use domain::person::Person;
use domain::store::{Key, Record};
use serde_json::{Value, json};
use system_tests::logs;
use system_tests::world::{Backend, Client, World};
use time::Duration;

use crate::fixtures::{citizen, resident};

const ORG: &str = "7000000404";

/// A subscribed user who has not activated yet, with the messages they received.
pub struct Newcomer {
    pub world: World,
    pub client: Client,
    pub manager: String,
    pub person: Person,
    pub token: String,
    pub code: String,
}

impl Newcomer {
    pub fn id(&self) -> &PersonId {
        &self.person.id
    }

    pub async fn confirm_email(&self, token: &str) -> system_tests::http::Answer {
        self.client.call("POST", "/v1/activations/email", None, &[], Some(&json!({ "token": token }))).await
    }

    pub async fn confirm_mobile(&self, code: &str) -> system_tests::http::Answer {
        let token = self.client.token_for(self.id());
        self.client.post("/v1/activations/mobile", &token, &json!({ "organization_id": ORG, "code": code })).await
    }

    pub async fn resend(&self, body: Value) -> system_tests::http::Answer {
        let token = self.client.token_for(&PersonId::parse(&self.manager).unwrap());
        self.client.post(&format!("/v1/organizations/{ORG}/users/{}/activation/resend", self.id().as_str()), &token, &body).await
    }

    pub async fn latest_secrets(&self) -> (String, String) {
        let emails = self.world.emails_to(&self.person.email).await;
        let sms = self.world.sms_to(&self.person.mobile).await;
        (link_token(&emails.last().expect("an email").1), sms_code(sms.last().expect("an SMS")))
    }

    pub async fn status(&self) -> String {
        let loaded = self.world.env.store.load(&[Key::User(org(), self.id().clone())]).await.expect("load");
        let user = loaded.user(&org(), self.id()).expect("the user exists");
        serde_json::to_value(user.status).unwrap().as_str().unwrap().to_owned()
    }
}

fn org() -> domain::organization::OrganizationId {
    domain::organization::OrganizationId::parse(ORG).unwrap()
}

pub use system_tests::messages::{link_token, sms_code};

pub async fn subscribe_newcomer(world: World, language: &str) -> Newcomer {
    let manager = citizen(1);
    let organization = world.onboard(ORG, PricingPlan::Muqeem, &manager, &[("1-10", SizeTier::Small)]).await;
    world.credit(&organization, 100_000).await;
    let id = world.register(&resident(1), &["1-10"], Some(300)).await;
    let person = match world.env.store.load(&[Key::Person(id.clone())]).await.expect("load").person(&id) {
        Some(person) => person.clone(),
        None => panic!("registered"),
    };
    let client = world.serve().await;
    let token = client.token_for(&PersonId::parse(&manager).unwrap());
    let body =
        json!({ "persons": [{ "id": id.as_str(), "establishments": ["1-10"], "user_type": "partners_only", "language": language }] });
    let answer = client.post_keyed(&format!("/v1/organizations/{ORG}/subscriptions"), &token, "newcomer", &body).await;
    assert_eq!(answer.status, 201, "{}", answer.text());
    let emails = world.emails_to(&person.email).await;
    let sms = world.sms_to(&person.mobile).await;
    assert_eq!((emails.len(), sms.len()), (1, 1), "one email and one SMS");
    let token = link_token(&emails[0].1);
    let code = sms_code(&sms[0]);
    Newcomer { world, client, manager, person, token, code }
}

async fn a_user_activates_with_the_link_then_the_code(backend: Backend) {
    let newcomer = subscribe_newcomer(World::new(backend).await, "en").await;
    let (subject, body) = newcomer.world.emails_to(&newcomer.person.email).await.remove(0);
    assert!(subject.contains("Activate"), "English subject: {subject}");
    assert!(body.contains("72 hours"));

    let email = newcomer.confirm_email(&newcomer.token).await;
    assert_eq!(email.status, 200, "{}", email.text());
    assert_eq!(email.json()["status"], "pending_activation");
    assert_eq!(email.json()["email_confirmed"], true);
    assert_eq!(newcomer.status().await, "pending_activation", "one of two is not enough");

    let mobile = newcomer.confirm_mobile(&newcomer.code).await;
    assert_eq!(mobile.status, 200, "{}", mobile.text());
    assert_eq!(mobile.json(), json!({ "organization_id": ORG, "status": "active", "email_confirmed": true, "mobile_confirmed": true }));
    assert_eq!(newcomer.status().await, "active");
}
both!(a_user_activates_with_the_link_then_the_code);

async fn a_user_activates_with_the_code_then_the_link(backend: Backend) {
    let newcomer = subscribe_newcomer(World::new(backend).await, "ar").await;
    let (subject, _) = newcomer.world.emails_to(&newcomer.person.email).await.remove(0);
    assert!(subject.contains("تفعيل"), "Arabic subject: {subject}");
    assert!(newcomer.world.sms_to(&newcomer.person.mobile).await[0].contains("رمز التفعيل"));

    let mobile = newcomer.confirm_mobile(&newcomer.code).await;
    assert_eq!((mobile.status, mobile.json()["status"].clone()), (200, json!("pending_activation")));
    let email = newcomer.confirm_email(&newcomer.token).await;
    assert_eq!((email.status, email.json()["status"].clone()), (200, json!("active")));
    assert_eq!(newcomer.status().await, "active");

    // Each step is in the audit trail, by the user.
    let actions: Vec<(String, Value)> = newcomer
        .world
        .records()
        .await
        .into_iter()
        .filter_map(|r| match r {
            Record::Audit(entry) if entry.target.as_ref() == Some(newcomer.id()) => {
                Some((entry.action.as_str().to_owned(), serde_json::to_value(&entry.actor).unwrap()))
            }
            _ => None,
        })
        .collect();
    let by_user = json!({ "kind": "person", "id": newcomer.id().as_str() });
    assert!(actions.contains(&("activation.mobile_confirmed".into(), by_user.clone())), "{actions:?}");
    assert!(actions.contains(&("activation.email_confirmed".into(), by_user)), "{actions:?}");
}
both!(a_user_activates_with_the_code_then_the_link);

async fn a_link_works_once_and_for_72_hours(backend: Backend) {
    let newcomer = subscribe_newcomer(World::new(backend).await, "en").await;
    assert_eq!(newcomer.confirm_email(&newcomer.token).await.status, 200);
    let again = newcomer.confirm_email(&newcomer.token).await;
    assert_eq!((again.status, again.code().as_str()), (410, "activation_link_used"));

    let late = subscribe_newcomer(World::new(backend).await, "en").await;
    late.world.advance(Duration::hours(72));
    let expired = late.confirm_email(&late.token).await;
    assert_eq!((expired.status, expired.code().as_str()), (410, "activation_link_expired"));

    // Unknown and malformed tokens look the same, and say nothing about any account.
    let unknown = late.confirm_email("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").await;
    let malformed = late.confirm_email("not a token").await;
    assert_eq!((unknown.status, unknown.code().as_str()), (422, "invalid_activation_link"));
    assert_eq!(unknown.json()["error"], malformed.json()["error"]);
    for answer in [&again, &expired, &unknown] {
        assert!(!answer.text().contains(late.id().as_str()) && !answer.text().contains(newcomer.id().as_str()));
    }
}
both!(a_link_works_once_and_for_72_hours);

async fn a_code_dies_after_ten_minutes_or_five_wrong_tries(backend: Backend) {
    let newcomer = subscribe_newcomer(World::new(backend).await, "en").await;
    let wrong = if newcomer.code == "000000" { "111111" } else { "000000" };
    for remaining in (1..=4).rev() {
        let answer = newcomer.confirm_mobile(wrong).await;
        assert_eq!((answer.status, answer.code().as_str()), (422, "wrong_code"));
        assert_eq!(answer.json()["error"]["remaining_tries"], remaining);
    }
    let fifth = newcomer.confirm_mobile(wrong).await;
    assert_eq!((fifth.status, fifth.code().as_str()), (423, "code_locked"));
    let right_but_dead = newcomer.confirm_mobile(&newcomer.code).await;
    assert_eq!((right_but_dead.status, right_but_dead.code().as_str()), (423, "code_locked"));

    // A resend brings a fresh code with fresh tries.
    assert_eq!(newcomer.resend(json!({ "sms": true })).await.status, 200);
    let (_, fresh) = newcomer.latest_secrets().await;
    assert_eq!(newcomer.confirm_mobile(&fresh).await.status, 200);

    let slow = subscribe_newcomer(World::new(backend).await, "en").await;
    slow.world.advance(Duration::minutes(10));
    let expired = slow.confirm_mobile(&slow.code).await;
    assert_eq!((expired.status, expired.code().as_str()), (422, "code_expired"));
}
both!(a_code_dies_after_ten_minutes_or_five_wrong_tries);

async fn a_resend_kills_the_old_secrets_and_is_rate_limited(backend: Backend) {
    let newcomer = subscribe_newcomer(World::new(backend).await, "en").await;
    let resent = newcomer.resend(json!({})).await;
    assert_eq!(resent.status, 200, "{}", resent.text());
    assert_eq!(resent.json(), json!({ "email": "queued", "sms": "queued" }));
    let (token, code) = newcomer.latest_secrets().await;
    assert_ne!((token.as_str(), code.as_str()), (newcomer.token.as_str(), newcomer.code.as_str()));

    let old_link = newcomer.confirm_email(&newcomer.token).await;
    assert_eq!((old_link.status, old_link.code().as_str()), (422, "invalid_activation_link"));
    if newcomer.code != code {
        assert_eq!(newcomer.confirm_mobile(&newcomer.code).await.code(), "wrong_code");
    }

    // Two more resends are allowed in the window, the fourth is not.
    assert_eq!(newcomer.resend(json!({ "email": true })).await.status, 200);
    assert_eq!(newcomer.resend(json!({ "sms": true })).await.status, 200);
    let before = newcomer.world.snapshot().await;
    let flooded = newcomer.resend(json!({})).await;
    assert_eq!((flooded.status, flooded.code().as_str()), (429, "too_many_resends"));
    let retry_after: i64 = flooded.header("retry-after").expect("Retry-After").parse().unwrap();
    assert!((1..=900).contains(&retry_after), "{retry_after}");
    assert_eq!(newcomer.world.snapshot().await, before, "a refused resend writes nothing");
    newcomer.world.advance(Duration::seconds(retry_after));
    assert_eq!(newcomer.resend(json!({})).await.status, 200, "allowed again once the window moved");

    let (token, code) = newcomer.latest_secrets().await;
    assert_eq!(newcomer.confirm_email(&token).await.status, 200);
    assert_eq!(newcomer.confirm_mobile(&code).await.json()["status"], "active");
    let active = newcomer.resend(json!({})).await;
    assert_eq!((active.status, active.code().as_str()), (409, "already_active"));
}
both!(a_resend_kills_the_old_secrets_and_is_rate_limited);

/// The activation page offers the new user a fresh code: they may resend their own link or
/// code (within the same limit), never another user's.
async fn a_new_user_may_resend_their_own_code_and_no_one_else_s(backend: Backend) {
    let newcomer = subscribe_newcomer(World::new(backend).await, "en").await;
    let path = |id: &PersonId| format!("/v1/organizations/{ORG}/users/{}/activation/resend", id.as_str());
    let own = newcomer.client.token_for(newcomer.id());
    let resent = newcomer.client.post(&path(newcomer.id()), &own, &json!({ "sms": true })).await;
    assert_eq!(resent.status, 200, "{}", resent.text());
    assert_eq!(resent.json(), json!({ "email": "not_needed", "sms": "queued" }));
    let (_, code) = newcomer.latest_secrets().await;
    assert_ne!(code, newcomer.code, "a fresh code");

    // Another user's resend: the same answer whether that user exists or not.
    let manager = PersonId::parse(&newcomer.manager).unwrap();
    let other = newcomer.client.post(&path(&manager), &own, &json!({})).await;
    let nobody = newcomer.client.post(&path(&PersonId::parse(&citizen(77)).unwrap()), &own, &json!({})).await;
    assert_eq!((other.status, other.code().as_str()), (403, "not_an_administrator"));
    assert_eq!((nobody.status, nobody.code()), (other.status, other.code()));
    let audit = newcomer
        .world
        .records()
        .await
        .into_iter()
        .filter(|r| matches!(r, Record::Audit(e) if e.action == domain::audit::AuditAction::ActivationResent))
        .count();
    assert_eq!(audit, 1, "the user's own resend is audited, the refused ones write nothing");
}
both!(a_new_user_may_resend_their_own_code_and_no_one_else_s);

/// Every string anywhere in a JSON value.
fn strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        Value::Object(map) => map.iter().for_each(|(k, v)| {
            out.push(k.clone());
            strings(v, out)
        }),
        _ => {}
    }
}

async fn secrets_are_never_stored_or_logged(backend: Backend) {
    logs::capture();
    let newcomer = subscribe_newcomer(World::new(backend).await, "en").await;
    assert_eq!(newcomer.resend(json!({})).await.status, 200);
    let (token, code) = newcomer.latest_secrets().await;
    assert_eq!(newcomer.confirm_mobile("999999").await.status, if code == "999999" { 200 } else { 422 });
    assert_eq!(newcomer.confirm_email(&token).await.status, 200);

    let mut stored = Vec::new();
    for item in newcomer.world.snapshot().await {
        let (_, json) = item.split_once(':').expect("kind:json");
        strings(&serde_json::from_str(json).expect("json"), &mut stored);
    }
    for secret in [&newcomer.token, &token] {
        assert!(!stored.iter().any(|s| s.contains(secret.as_str())), "a raw link token is stored");
    }
    assert!(stored.contains(&domain::secrets::token_sha256(&token)), "the current link is kept as its SHA-256");
    for secret in [&newcomer.code, &code] {
        assert!(!stored.iter().any(|s| s == secret.as_str()), "a raw code is stored");
    }
    assert!(!stored.contains(&domain::secrets::sha256_hex(code.as_bytes())), "codes are keyed digests, not plain hashes");

    let logged = logs::captured();
    assert!(logged.contains("handled"), "logs were captured");
    for secret in [&newcomer.token, &token] {
        assert!(!logged.contains(secret.as_str()), "a link token reached the logs");
    }
    for secret in [&newcomer.code, &code] {
        assert!(!contains_number(&logged, secret), "a code reached the logs");
    }
    for personal in [newcomer.id().as_str(), newcomer.person.email.as_str(), newcomer.person.mobile.as_str(), newcomer.manager.as_str()] {
        assert!(!logged.contains(personal), "{personal} reached the logs");
    }
}

/// Whether `digits` appears in `text` as a whole number (not inside a longer digit run).
fn contains_number(text: &str, digits: &str) -> bool {
    text.match_indices(digits).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + digits.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_digit()) && !after.is_some_and(|c| c.is_ascii_digit())
    })
}
both!(secrets_are_never_stored_or_logged);

/// A mailer that refuses every message while `failing` is set, as SES refuses an address.
struct SwitchableMailer {
    inner: Arc<dyn Mailer>,
    failing: Arc<AtomicBool>,
}

#[async_trait]
impl Mailer for SwitchableMailer {
    async fn send_email(&self, message: &EmailMessage) -> Result<String, DeliveryError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(DeliveryError::permanent("MessageRejected"));
        }
        self.inner.send_email(message).await
    }
}

async fn a_failed_email_never_loses_the_user(backend: Backend) {
    let failing = Arc::new(AtomicBool::new(true));
    let switch = failing.clone();
    let world = World::with_ports(
        backend,
        None,
        Some(&move |senders: Senders| Senders {
            mailer: Arc::new(SwitchableMailer { inner: senders.mailer, failing: switch.clone() }),
            texts: senders.texts,
        }),
    )
    .await;
    let manager = citizen(1);
    let organization = world.onboard(ORG, PricingPlan::Muqeem, &manager, &[("1-10", SizeTier::Small)]).await;
    world.credit(&organization, 100_000).await;
    let id = world.register(&resident(1), &["1-10"], Some(300)).await;
    let client = world.serve().await;
    let manager_token = client.token_for(&PersonId::parse(&manager).unwrap());
    let body = json!({ "persons": [{ "id": id.as_str(), "establishments": ["1-10"], "user_type": "partners_only" }] });
    let path = format!("/v1/organizations/{ORG}/subscriptions");

    let answer = client.post_keyed(&path, &manager_token, "mail-down", &body).await;
    assert_eq!(answer.status, 201, "the subscription stands: {}", answer.text());
    assert_eq!(
        answer.json()["users"][0]["activation_messages"],
        json!({ "email": "queued", "sms": "queued" }),
        "nothing says sent before it is"
    );
    world.deliver().await;
    let profile = client.get(&format!("/v1/organizations/{ORG}/users/{}", id.as_str()), &manager_token).await.json();
    assert_eq!(profile["messages"]["activation_email"]["state"], "failed", "{profile}");
    assert_eq!(profile["messages"]["activation_email"]["reason"], "MessageRejected", "the provider's code, nothing personal");
    assert_eq!(profile["messages"]["activation_sms"]["state"], "sent");
    assert!(profile["messages"]["activation_sms"]["message_id"].as_str().is_some_and(|id| !id.is_empty()));
    let replay = client.post_keyed(&path, &manager_token, "mail-down", &body).await;
    assert_eq!(replay.body, answer.body, "a replay gives the first answer");
    assert!(world.deliverer.failures().is_empty(), "an address the provider refuses is not retried");

    failing.store(false, Ordering::SeqCst);
    let resent = client
        .post(&format!("/v1/organizations/{ORG}/users/{}/activation/resend", id.as_str()), &manager_token, &json!({ "email": true }))
        .await;
    assert_eq!(resent.json(), json!({ "email": "queued", "sms": "not_needed" }));
    let person = world.env.store.load(&[Key::Person(id.clone())]).await.unwrap().person(&id).cloned().unwrap();
    let email = world.emails_to(&person.email).await;
    let sms = world.sms_to(&person.mobile).await;
    let user_token = client.token_for(&id);
    let link =
        client.call("POST", "/v1/activations/email", None, &[], Some(&json!({ "token": link_token(&email.last().unwrap().1) }))).await;
    assert_eq!(link.status, 200);
    let code = client.post("/v1/activations/mobile", &user_token, &json!({ "organization_id": ORG, "code": sms_code(&sms[0]) })).await;
    assert_eq!(code.json()["status"], "active");
    let profile = client.get(&format!("/v1/organizations/{ORG}/users/{}", id.as_str()), &manager_token).await.json();
    assert_eq!(profile["messages"]["activation_email"]["state"], "sent", "the resent link went out: {profile}");
}
both!(a_failed_email_never_loses_the_user);

/// SES refuses with a message that quotes an address (the emulator: "Email address not
/// verified <address>", from a sender it does not know): the user's view and the logs carry
/// the provider's code and request id, never the provider's text.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_provider_refusal_that_quotes_an_address_reaches_no_log() {
    logs::capture();
    let quoted = format!("quoted.{}@not-verified.example", domain::entropy::SystemEntropy::hex(6));
    let config = system_tests::moto::moto_for("refusal").sdk_config().await;
    let ses = aws_sdk_sesv2::Client::new(&config);
    // The premise: the SDK's error for this refusal quotes the address.
    let text = |data: &str| aws_sdk_sesv2::types::Content::builder().data(data).build().expect("content");
    let raw = ses
        .send_email()
        .from_email_address(&quoted)
        .destination(aws_sdk_sesv2::types::Destination::builder().to_addresses("someone@example.sa").build())
        .content(
            aws_sdk_sesv2::types::EmailContent::builder()
                .simple(
                    aws_sdk_sesv2::types::Message::builder()
                        .subject(text("s"))
                        .body(aws_sdk_sesv2::types::Body::builder().text(text("b")).build())
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .expect_err("an unknown sender is refused");
    assert!(format!("{raw:?}").contains(&quoted), "the provider's error quotes the address: {raw:?}");
    let refusing: Arc<dyn Mailer> = Arc::new(aws_adapters::messaging::SesMailer::new(ses, quoted.clone(), None));
    let world =
        World::with_ports(Backend::Moto, None, Some(&move |senders: Senders| Senders { mailer: refusing.clone(), texts: senders.texts }))
            .await;
    let manager = citizen(1);
    let organization = world.onboard(ORG, PricingPlan::Muqeem, &manager, &[("1-10", SizeTier::Small)]).await;
    world.credit(&organization, 100_000).await;
    let id = world.register(&resident(2), &["1-10"], Some(300)).await;
    let client = world.serve().await;
    let manager_token = client.token_for(&PersonId::parse(&manager).unwrap());
    let body = json!({ "persons": [{ "id": id.as_str(), "establishments": ["1-10"], "user_type": "partners_only" }] });
    let answer = client.post_keyed(&format!("/v1/organizations/{ORG}/subscriptions"), &manager_token, "refused", &body).await;
    assert_eq!(answer.status, 201, "{}", answer.text());
    world.deliver().await;
    let profile = client.get(&format!("/v1/organizations/{ORG}/users/{}", id.as_str()), &manager_token).await.json();
    assert_eq!(profile["messages"]["activation_email"]["state"], "failed", "{profile}");
    assert_eq!(profile["messages"]["activation_email"]["reason"], "MessageRejected", "{profile}");

    let logged = logs::captured();
    let refusal = logged.lines().find(|line| line.contains("message not delivered") && line.contains("MessageRejected"));
    let refusal = refusal.unwrap_or_else(|| panic!("the refusal is logged by its code"));
    assert!(refusal.contains("request_id"), "with the provider's request id: {refusal}");
    let person = world.env.store.load(&[Key::Person(id.clone())]).await.unwrap().person(&id).cloned().unwrap();
    for personal in [quoted.as_str(), "not-verified.example", person.email.as_str(), id.as_str()] {
        assert!(!logged.contains(personal), "{personal} reached the logs");
    }
}
