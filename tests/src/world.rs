//! A world to test in: the ports over the embedded store or DynamoDB (and SES, SNS) on
//! moto, a clock the test moves, the outbox's deliverer, seeding helpers that go through the
//! pipeline, and the local server on a free port.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;

use aws_adapters::{DynamoStore, SesMailer, SnsTexter, TableNames};
use domain::actions::operator::{Credit, Onboard, SavePerson};
use domain::actions::subscribe::{Subscribe, SubscribePerson, Subscription, SubscriptionReceipt};
use domain::clock::ManualClock;
use domain::contact::{Email, SaudiMobile};
use domain::embedded::{EmbeddedStore, Outbox};
use domain::env::{Env, FixedKey, RetryPolicy, SecretSource, Senders, Settings};
use domain::identity::PersonId;
use domain::money::Halalas;
use domain::organization::{Establishment, EstablishmentId, OrganizationId, PricingPlan, SizeTier};
use domain::person::{Nationality, PersonName};
use domain::pipeline::{RequestMeta, run};
use domain::policy::Caller;
use domain::secrets::CodeKey;
use domain::store::{Record, Store};
use local_api::deliverer::{Deliverer, Drained};
use local_api::{JwtConfig, Server};
use serde_json::Value;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

use crate::http::{self, Answer};
use crate::moto::{MAIL_FROM, Moto, moto_for};

pub type StoreWrapper<'a> = &'a dyn Fn(Arc<dyn Store>) -> Arc<dyn Store>;
pub type MessagingWrapper<'a> = &'a dyn Fn(Senders) -> Senders;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    Moto,
}

/// The instant every world starts at.
pub const START: OffsetDateTime = datetime!(2026-11-23 08:00 UTC);

pub struct World {
    pub backend: Backend,
    pub env: Env,
    pub secrets: Arc<dyn SecretSource>,
    pub clock: Arc<ManualClock>,
    pub embedded: Option<Arc<EmbeddedStore>>,
    pub dynamo: Option<DynamoStore>,
    /// Messages, when they go to the embedded provider (embedded worlds).
    pub outbox: Option<Arc<Outbox>>,
    /// Delivers the outbox as Lambda's stream poller would; `deliver` drains it.
    pub deliverer: Arc<Deliverer>,
    /// Distinguishes this world's emails and mobiles from other tests' in moto.
    pub tag: String,
}

impl World {
    /// The moto server this world uses (moto worlds only).
    pub fn moto(&self) -> &'static Moto {
        moto_for(&self.tag)
    }
}

pub fn code_key() -> CodeKey {
    CodeKey::new(vec![42; 32]).expect("32 bytes")
}

pub fn settings() -> Settings {
    Settings {
        // The emulator answers an order of magnitude slower than DynamoDB and one request
        // at a time, so conflicting writers back off longer here than in production.
        retry: RetryPolicy { attempts: 40, base: std::time::Duration::from_millis(20), cap: std::time::Duration::from_secs(1) },
        ..Settings::bundled("https://portal.example.sa/activate#token=")
    }
}

impl World {
    pub async fn new(backend: Backend) -> World {
        World::with_ports(backend, None, None).await
    }

    /// A world whose store, mailer or SMS sender are wrapped (fault injection, gates).
    pub async fn with_ports(backend: Backend, wrap_store: Option<StoreWrapper<'_>>, wrap_messaging: Option<MessagingWrapper<'_>>) -> World {
        let clock = Arc::new(ManualClock::at(START));
        let tag = domain::entropy::SystemEntropy::hex(5);
        let mut embedded = None;
        let mut dynamo = None;
        let mut outbox = None;
        let mut stream = None;
        let (store, messaging): (Arc<dyn Store>, Senders) = match backend {
            Backend::Embedded => {
                let store = Arc::new(EmbeddedStore::new());
                let silent = Arc::new(Outbox::silent());
                embedded = Some(store.clone());
                outbox = Some(silent.clone());
                (store, Senders { mailer: silent.clone(), texts: silent })
            }
            Backend::Moto => {
                let moto = moto_for(&tag);
                moto.verify_mail_domain().await;
                let config = moto.sdk_config().await;
                let client = aws_sdk_dynamodb::Client::new(&config);
                let names = TableNames::with_prefix(&format!("t{tag}"));
                aws_adapters::create_tables(&client, &names).await.expect("tables are created");
                stream = Some((aws_sdk_dynamodbstreams::Client::new(&config), client.clone(), names.outbox.clone()));
                let store = DynamoStore::new(client, names);
                dynamo = Some(store.clone());
                let mailer = SesMailer::new(aws_sdk_sesv2::Client::new(&config), MAIL_FROM.to_owned(), None);
                let texts = SnsTexter::new(aws_sdk_sns::Client::new(&config), Some("Muqeem".to_owned()));
                (Arc::new(store), Senders { mailer: Arc::new(mailer), texts: Arc::new(texts) })
            }
        };
        let store = match wrap_store {
            Some(wrap) => wrap(store),
            None => store,
        };
        let senders = match wrap_messaging {
            Some(wrap) => wrap(messaging),
            None => messaging,
        };
        let env = Env { store, clock: clock.clone(), entropy: Arc::new(domain::entropy::SystemEntropy), settings: Arc::new(settings()) };
        let secrets: Arc<dyn SecretSource> = Arc::new(FixedKey(code_key()));
        let ports = deliver_function::Ports { env: env.clone(), secrets: secrets.clone(), senders };
        let deliverer = Arc::new(match (stream, &embedded) {
            (Some((streams, dynamodb, table)), _) => Deliverer::stream(ports, streams, dynamodb, table),
            (None, Some(store)) => Deliverer::embedded(ports, store.clone()),
            (None, None) => unreachable!("a world has a store"),
        });
        World { backend, env, secrets, clock, embedded, dynamo, outbox, deliverer, tag }
    }

    /// Delivers every message committed so far, as `deliver` would from the stream.
    pub async fn deliver(&self) -> Drained {
        self.deliverer.drain().await.expect("the outbox is read")
    }

    /// The key links and codes are derived under.
    pub async fn code_key(&self) -> CodeKey {
        self.secrets.code_key().await.expect("a key")
    }

    pub fn now(&self) -> OffsetDateTime {
        use domain::clock::Clock;
        self.clock.now()
    }

    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// A mobile number no other test uses.
    pub fn unique_mobile(&self) -> SaudiMobile {
        let mut digits = [0u8; 8];
        getrandom_digits(&mut digits);
        let text: String = digits.iter().map(|d| char::from(b'0' + d % 10)).collect();
        SaudiMobile::parse(&format!("+9665{text}")).expect("valid mobile")
    }

    pub fn unique_email(&self, name: &str) -> Email {
        Email::parse(&format!("{name}.{}.{}@example.sa", self.tag, domain::entropy::SystemEntropy::hex(3))).expect("valid email")
    }

    /// Registers a person; `iqama_days` is how long a resident's iqama stays valid.
    pub async fn register(&self, id: &str, employers: &[&str], iqama_days: Option<i64>) -> PersonId {
        let person = PersonId::parse(id).expect("valid test id");
        let command = SavePerson {
            id: person.clone(),
            name: PersonName { ar: Some("مستخدم تجريبي".into()), en: Some(format!("Person {}", &id[6..])) },
            nationality: Nationality::parse(if person.is_citizen() { "SA" } else { "IN" }).expect("valid"),
            iqama_expiry: if person.is_citizen() {
                None
            } else {
                Some(domain::clock::saudi_day(self.now()) + Duration::days(iqama_days.unwrap_or(365)))
            },
            employers: employers.iter().map(|e| EstablishmentId::parse(e).expect("valid")).collect::<BTreeSet<_>>(),
            email: self.unique_email(&format!("p{}", &id[6..])),
            mobile: self.unique_mobile(),
        }
        .check()
        .expect("a valid registry entry");
        run(&self.env, &operator(), &command).await.expect("the person is registered");
        person
    }

    /// Onboards an organization whose manager is registered first.
    pub async fn onboard(
        &self,
        organization: &str,
        plan: PricingPlan,
        manager: &str,
        establishments: &[(&str, SizeTier)],
    ) -> OrganizationId {
        let employers: Vec<&str> = establishments.iter().map(|(e, _)| *e).collect();
        self.register(manager, &employers, None).await;
        let id = OrganizationId::parse(organization).expect("valid");
        let command = Onboard::new(
            id.clone(),
            "شركة الاختبار / Test Co".into(),
            plan,
            PersonId::parse(manager).expect("valid"),
            establishments
                .iter()
                .map(|(e, size)| Establishment { id: EstablishmentId::parse(e).expect("valid"), name: format!("Branch {e}"), size: *size })
                .collect(),
        )
        .expect("a valid organization");
        run(&self.env, &operator(), &command).await.expect("the organization is onboarded");
        id
    }

    pub async fn credit(&self, organization: &OrganizationId, halalas: u64) {
        let command =
            Credit::new(organization.clone(), Halalas::new(halalas), &domain::entropy::SystemEntropy::hex(6)).expect("a valid credit");
        run(&self.env, &operator(), &command).await.expect("the credit is accepted");
    }

    /// Every stored item, as sorted JSON text: compare two snapshots to prove nothing was
    /// written.
    pub async fn snapshot(&self) -> Vec<String> {
        let mut items: Vec<String> = self.records().await.iter().map(record_json).collect();
        items.sort();
        items
    }

    /// Every stored record.
    pub async fn records(&self) -> Vec<Record> {
        match (&self.embedded, &self.dynamo) {
            (Some(store), _) => store.snapshot(),
            (None, Some(store)) => stored_records(store).await,
            _ => unreachable!("a world has a store"),
        }
    }

    /// Starts the local server over this world's app.
    pub async fn serve(&self) -> Client {
        let jwt = JwtConfig::new(b"test-secret-test-secret-test-secret", "https://test.invalid/", "establishment-users");
        let server = Server {
            env: self.env.clone(),
            secrets: self.secrets.clone(),
            jwt: jwt.clone(),
            outbox: self.outbox.clone(),
            clock: Some(self.clock.clone()),
            deliverer: self.deliverer.clone(),
        };
        let (address, _task) = server.bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.expect("the local server binds");
        Client { address, jwt }
    }

    /// Messages sent to an email address: (subject, body), oldest first (after delivering
    /// what the outbox holds).
    pub async fn emails_to(&self, to: &Email) -> Vec<(String, String)> {
        self.deliver().await;
        match &self.outbox {
            Some(outbox) => outbox
                .messages()
                .into_iter()
                .filter_map(|m| match m {
                    domain::embedded::OutboxMessage::Email { to: t, subject, body, .. } if t == to.as_str() => Some((subject, body)),
                    _ => None,
                })
                .collect(),
            None => self.moto().emails_to(to.as_str()).await,
        }
    }

    /// SMS bodies sent to a mobile, oldest first (after delivering what the outbox holds).
    pub async fn sms_to(&self, to: &SaudiMobile) -> Vec<String> {
        self.deliver().await;
        match &self.outbox {
            Some(outbox) => outbox
                .messages()
                .into_iter()
                .filter_map(|m| match m {
                    domain::embedded::OutboxMessage::Sms { to: t, body, .. } if t == to.as_str() => Some(body),
                    _ => None,
                })
                .collect(),
            None => self.moto().sms_to(to.as_str()).await,
        }
    }
}

fn getrandom_digits(buffer: &mut [u8]) {
    let hex = domain::entropy::SystemEntropy::hex(buffer.len());
    for (slot, pair) in buffer.iter_mut().zip(hex.as_bytes().chunks(2)) {
        *slot = u8::from_str_radix(std::str::from_utf8(pair).expect("hex"), 16).expect("hex");
    }
}

/// Every record a DynamoDB store holds, read by scanning its tables: a test may scan, it
/// checks everything that is stored.
pub async fn stored_records(store: &DynamoStore) -> Vec<Record> {
    let mut all = Vec::new();
    for table in [&store.names().users, &store.names().balances, &store.names().audit, &store.names().outbox] {
        let mut start = None;
        loop {
            let output = store.client().scan().table_name(table).set_exclusive_start_key(start.take()).send().await.expect("scan");
            for item in output.items.unwrap_or_default() {
                all.push(aws_adapters::dynamo::from_item(item).expect("every stored item is readable"));
            }
            match output.last_evaluated_key {
                Some(key) => start = Some(key),
                None => break,
            }
        }
    }
    all
}

/// A record as JSON, whatever its kind.
pub fn record_value(record: &Record) -> Value {
    match record {
        Record::Organization(r) => serde_json::to_value(r),
        Record::User(r) => serde_json::to_value(r),
        Record::Person(r) => serde_json::to_value(r),
        Record::Balance(r) => serde_json::to_value(r),
        Record::Ledger(r) => serde_json::to_value(r),
        Record::Audit(r) => serde_json::to_value(r),
        Record::Idempotency(r) => serde_json::to_value(r),
        Record::Intent(r) => serde_json::to_value(r),
        Record::SweepState(r) => serde_json::to_value(r),
    }
    .expect("records serialize")
}

fn record_json(record: &Record) -> String {
    format!("{}:{}", record.kind(), canonical(record_value(record)))
}

/// Object keys sorted at every level, so two snapshots compare equal whatever order a store
/// hands map entries back in (DynamoDB maps have none; serde_json keeps insertion order when
/// a dependency turns on its `preserve_order` feature).
fn canonical(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let sorted: std::collections::BTreeMap<String, Value> = map.into_iter().map(|(k, v)| (k, canonical(v))).collect();
            Value::Object(sorted.into_iter().collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(canonical).collect()),
        other => other,
    }
}

pub fn operator() -> RequestMeta {
    RequestMeta::new(Caller::Operator("operator@test".into()), "test")
}

pub fn as_person(id: &PersonId) -> RequestMeta {
    RequestMeta::new(Caller::Person(id.clone()), format!("test-{}", domain::entropy::SystemEntropy::hex(4)))
}

/// Runs the expiry sweep as of `now`, as the run named `run`.
pub async fn sweep(
    env: &Env,
    run: &str,
    now: OffsetDateTime,
    options: domain::actions::sweep::SweepOptions,
) -> Result<domain::actions::sweep::SweepReport, domain::error::Error> {
    domain::actions::sweep::sweep(env, &RequestMeta::new(Caller::Anonymous, run), now, options).await
}

/// Subscribes `persons` as `manager` in `env` (for tasks that outlive a borrowed world).
pub async fn subscribe_in(
    env: &Env,
    code_key: CodeKey,
    manager: &PersonId,
    organization: &OrganizationId,
    persons: Vec<SubscribePerson>,
    key: &str,
) -> SubscriptionReceipt {
    let subscription = Subscription::new(organization.clone(), persons).expect("a valid subscription");
    let meta = as_person(manager);
    let command = Subscribe::new(&meta, subscription, env.settings.pricing.clone(), code_key, key, key.to_owned());
    run(env, &meta, &command).await.expect("subscribed").answer
}

/// Talks to a local server over HTTP with tokens it mints.
#[derive(Clone)]
pub struct Client {
    pub address: SocketAddr,
    pub jwt: JwtConfig,
}

impl Client {
    pub fn token_for(&self, person: &PersonId) -> String {
        self.jwt.mint(person.as_str(), None, 3600)
    }

    pub fn operator_token(&self) -> String {
        self.jwt.mint("operator@test", Some("operator"), 3600)
    }

    pub fn service_token(&self) -> String {
        self.jwt.mint("checker@test", Some("service"), 3600)
    }

    /// Sends a request and checks the answer is one `openapi.yaml` documents for the route
    /// (its status, and for a refusal its error code), so every API test also tests the file.
    pub async fn call(&self, method: &str, path: &str, token: Option<&str>, headers: &[(&str, &str)], body: Option<&Value>) -> Answer {
        let bearer = token.map(|t| format!("Bearer {t}"));
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        if let Some(bearer) = &bearer {
            all.push(("authorization", bearer));
        }
        if body.is_some() {
            all.push(("content-type", "application/json"));
        }
        let bytes = body.map(|b| serde_json::to_vec(b).expect("json")).unwrap_or_default();
        self.send(method, path, &all, bytes).await
    }

    /// Sends raw bytes with exactly these headers; the answer is checked as `call`'s is.
    pub async fn send(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Answer {
        let answer = http::send(self.address, method, path, headers, body).await;
        crate::openapi::Documented::get().check(method, path, &answer);
        answer
    }

    pub async fn get(&self, path: &str, token: &str) -> Answer {
        self.call("GET", path, Some(token), &[], None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: &Value) -> Answer {
        self.call("POST", path, Some(token), &[], Some(body)).await
    }

    pub async fn post_keyed(&self, path: &str, token: &str, key: &str, body: &Value) -> Answer {
        self.call("POST", path, Some(token), &[("idempotency-key", key)], Some(body)).await
    }
}

impl World {
    /// Subscribes `person` (registered first if needed) as `manager` and marks the account
    /// active, for tests about what active users may do. Activation itself is tested
    /// through the real flow elsewhere.
    pub async fn active_user(
        &self,
        organization: &OrganizationId,
        manager: &PersonId,
        person: &PersonId,
        establishments: &[&str],
    ) -> domain::user::User {
        let registered = self.env.store.load(&[domain::store::Key::Person(person.clone())]).await.expect("load");
        if registered.person(person).is_none() {
            self.register(person.as_str(), establishments, Some(500)).await;
        }
        let persons = vec![SubscribePerson {
            id: person.clone(),
            establishments: establishments.iter().map(|e| EstablishmentId::parse(e).expect("valid")).collect(),
            user_type: match self.organization_plan(organization).await {
                PricingPlan::Muqeem => Some(domain::user::UserType::ResidentsAndPartners),
                PricingPlan::Qiwa => None,
            },
            language: None,
            job_title: None,
        }];
        self.subscribe(manager, organization, persons, &domain::entropy::SystemEntropy::hex(8)).await;
        self.update_user(organization, person, |user| {
            user.status = domain::user::UserStatus::Active;
            user.activation.email_confirmed_at = Some(user.created_at);
            user.activation.mobile_confirmed_at = Some(user.created_at);
            user.activation.mobile_code = None;
        })
        .await
    }

    /// Subscribes `persons` as `manager`, through the pipeline, with idempotency key `key`.
    pub async fn subscribe(
        &self,
        manager: &PersonId,
        organization: &OrganizationId,
        persons: Vec<SubscribePerson>,
        key: &str,
    ) -> SubscriptionReceipt {
        subscribe_in(&self.env, self.code_key().await, manager, organization, persons, key).await
    }

    pub async fn organization_plan(&self, organization: &OrganizationId) -> PricingPlan {
        let loaded = self.env.store.load(&[domain::store::Key::Organization(organization.clone())]).await.expect("load");
        loaded.organization(organization).expect("onboarded").plan
    }

    pub async fn user(&self, organization: &OrganizationId, person: &PersonId) -> domain::user::User {
        let loaded = self.env.store.load(&[domain::store::Key::User(organization.clone(), person.clone())]).await.expect("load");
        loaded.user(organization, person).cloned().expect("the user exists")
    }

    /// Test setup only: changes a user record directly, bypassing the use cases.
    pub async fn update_user(
        &self,
        organization: &OrganizationId,
        person: &PersonId,
        change: impl FnOnce(&mut domain::user::User),
    ) -> domain::user::User {
        let current = self.user(organization, person).await;
        let mut next = current.clone();
        change(&mut next);
        next.version = current.version + 1;
        self.env
            .store
            .commit(vec![domain::store::Write::replace(Record::User(next.clone()), current.version)])
            .await
            .expect("the user is updated");
        next
    }
}
