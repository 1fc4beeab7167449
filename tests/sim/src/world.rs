//! One backend of a simulation: the functions' ports over the embedded store or over
//! DynamoDB, SES and SNS in the emulator, with the simulator's clock, seeded entropy, store
//! decorator and provider. Requests go through the same handlers the Lambdas run
//! (`local_api::invoke`), the sweep through its function's handler, and the outbox through
//! the same consumer the local server uses (Lambda's event source mapping, played).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_adapters::{DynamoStore, SesMailer, SnsTexter, TableNames};
use domain::clock::{Clock, ManualClock};
use domain::embedded::{EmbeddedStore, Outbox};
use domain::entropy::SeededEntropy;
use domain::env::{Env, FixedKey, RetryPolicy, SecretSource, Senders, Settings};
use domain::messaging::{DeliveryError, EmailMessage, Mailer, ProviderMessageId, SmsMessage, Template, TextSender};
use domain::secrets::CodeKey;
use domain::store::{Record, Store};
use local_api::deliverer::Deliverer;
use local_api::{GatewayRequest, find_route, invoke};
use serde_json::Value;
use time::OffsetDateTime;

use crate::step::ProviderFault;
use crate::store::{ACTOR, SimStore};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Embedded,
    Dynamo,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Embedded => "embedded",
            Kind::Dynamo => "dynamodb",
        }
    }
}

/// An HTTP request as the simulator builds it.
#[derive(Debug, Clone)]
pub struct Http {
    pub method: &'static str,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub claims: Option<HashMap<String, String>>,
    pub body: Option<Value>,
}

/// What a handler answered: status, headers and body, as the test crate's client reads
/// answers.
pub use system_tests::http::Answer;

/// A message the provider took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub to: String,
    pub template: Template,
    pub subject: String,
    pub body: String,
}

/// The mail and SMS provider as the simulator plays it: the real sender behind it (the
/// embedded outbox, or SES and SNS in the emulator), the faults a step asks for, and a
/// record of every message it took.
pub struct Provider {
    mail: Arc<dyn Mailer>,
    texts: Arc<dyn TextSender>,
    faults: Mutex<(std::collections::BTreeMap<usize, ProviderFault>, usize)>,
    pub sent: Mutex<Vec<Sent>>,
    /// The faults that met a send (a planned fault past the last send meets none).
    pub fired: Mutex<Vec<ProviderFault>>,
}

impl Provider {
    /// The faults of the next sends, by their order from now.
    pub fn plan(&self, faults: std::collections::BTreeMap<usize, ProviderFault>) {
        *self.faults.lock().expect("faults") = (faults, 0);
    }

    fn next_fault(&self) -> Option<ProviderFault> {
        let mut faults = self.faults.lock().expect("faults");
        let attempt = faults.1;
        faults.1 += 1;
        let fault = faults.0.get(&attempt).copied();
        self.fired.lock().expect("fired").extend(fault);
        fault
    }

    async fn send(
        &self,
        sent: Sent,
        go: impl Future<Output = Result<ProviderMessageId, DeliveryError>>,
    ) -> Result<ProviderMessageId, DeliveryError> {
        let fault = self.next_fault();
        match fault {
            Some(ProviderFault::Throttled) => return Err(DeliveryError::throttled("Throttling")),
            Some(ProviderFault::Refused) => return Err(DeliveryError::permanent("MessageRejected")),
            _ => {}
        }
        let result = go.await;
        if result.is_ok() {
            self.sent.lock().expect("sent").push(sent);
        }
        match (fault, result) {
            (Some(ProviderFault::LostAfterSend), Ok(_)) => Err(DeliveryError::unknown("TimedOut")),
            (_, result) => result,
        }
    }
}

#[async_trait]
impl Mailer for Provider {
    async fn send_email(&self, message: &EmailMessage) -> Result<ProviderMessageId, DeliveryError> {
        let sent = Sent {
            to: message.to.as_str().to_owned(),
            template: message.template,
            subject: message.subject.clone(),
            body: message.body.clone(),
        };
        self.send(sent, self.mail.send_email(message)).await
    }
}

#[async_trait]
impl TextSender for Provider {
    async fn send_sms(&self, message: &SmsMessage) -> Result<ProviderMessageId, DeliveryError> {
        let sent =
            Sent { to: message.to.as_str().to_owned(), template: message.template, subject: String::new(), body: message.body.clone() };
        self.send(sent, self.texts.send_sms(message)).await
    }
}

/// Items a filtered listing reads per request: small, so that short pages and their
/// cursors happen in organizations of a few users, as they do at 500 in large ones.
pub const READ_BUDGET: usize = 3;

pub const START: OffsetDateTime = time::macros::datetime!(2026-11-23 08:00 UTC);

pub fn code_key() -> CodeKey {
    CodeKey::new(vec![42; 32]).expect("32 bytes")
}

/// The settings of every simulated function.
pub fn settings() -> Settings {
    Settings {
        retry: RetryPolicy { attempts: 12, base: std::time::Duration::from_millis(5), cap: std::time::Duration::from_millis(250) },
        ..Settings::bundled("https://portal.example.sa/activate#token=")
    }
}

/// What a backend is made of, before the simulator's decorators.
struct Parts {
    raw: Arc<dyn Store>,
    mail: Arc<dyn Mailer>,
    texts: Arc<dyn TextSender>,
    embedded: Option<Arc<EmbeddedStore>>,
    dynamo: Option<DynamoStore>,
    stream: Option<(aws_sdk_dynamodbstreams::Client, aws_sdk_dynamodb::Client, String)>,
}

pub struct Backend {
    pub kind: Kind,
    pub runtime: tokio::runtime::Runtime,
    pub env: Env,
    pub store: Arc<SimStore>,
    /// The adapter itself, without the simulator's decorator (for reading what is stored).
    pub raw: Arc<dyn Store>,
    pub clock: Arc<ManualClock>,
    pub secrets: Arc<dyn SecretSource>,
    pub deliverer: Arc<Deliverer>,
    pub provider: Arc<Provider>,
    embedded: Option<Arc<EmbeddedStore>>,
    dynamo: Option<DynamoStore>,
}

impl Backend {
    /// A backend whose entropy is drawn from `seed`. DynamoDB tables are named `prefix`.
    pub fn new(kind: Kind, seed: u64, prefix: &str) -> Backend {
        let runtime = match kind {
            // Virtual time: backoff, deadlines and slow calls take no real time, and the
            // order of everything is decided by the seed alone.
            Kind::Embedded => tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build(),
            Kind::Dynamo => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        }
        .expect("a runtime");
        let clock = Arc::new(ManualClock::at(START));
        let secrets: Arc<dyn SecretSource> = Arc::new(FixedKey(code_key()));
        let Parts { raw, mail, texts, embedded, dynamo, stream } = match kind {
            Kind::Embedded => {
                let store = Arc::new(EmbeddedStore::new().with_read_budget(READ_BUDGET));
                let outbox = Arc::new(Outbox::silent());
                Parts { raw: store.clone(), mail: outbox.clone(), texts: outbox, embedded: Some(store), dynamo: None, stream: None }
            }
            Kind::Dynamo => runtime.block_on(async {
                let moto = system_tests::moto::moto_for(prefix);
                moto.verify_mail_domain().await;
                let config = moto.sdk_config().await;
                let client = aws_sdk_dynamodb::Client::new(&config);
                let names = TableNames::with_prefix(prefix);
                aws_adapters::create_tables(&client, &names).await.expect("the tables are created");
                let stream = (aws_sdk_dynamodbstreams::Client::new(&config), client.clone(), names.outbox.clone());
                let store = DynamoStore::new(client, names).with_read_budget(READ_BUDGET);
                let mailer = SesMailer::new(aws_sdk_sesv2::Client::new(&config), system_tests::moto::MAIL_FROM.to_owned(), None);
                let texts = SnsTexter::new(aws_sdk_sns::Client::new(&config), Some("Muqeem".to_owned()));
                Parts {
                    raw: Arc::new(store.clone()),
                    mail: Arc::new(mailer),
                    texts: Arc::new(texts),
                    embedded: None,
                    dynamo: Some(store),
                    stream: Some(stream),
                }
            }),
        };
        let store = SimStore::new(raw.clone());
        let env =
            Env { store: store.clone(), clock: clock.clone(), entropy: Arc::new(SeededEntropy::new(seed)), settings: Arc::new(settings()) };
        let provider = Arc::new(Provider { mail, texts, faults: Mutex::default(), sent: Mutex::default(), fired: Mutex::default() });
        let senders = Senders { mailer: provider.clone(), texts: provider.clone() };
        let ports = deliver_function::Ports { env: env.clone(), secrets: secrets.clone(), senders };
        let deliverer = Arc::new(match (stream, &embedded) {
            (Some((streams, dynamodb, table)), _) => Deliverer::stream(ports, streams, dynamodb, table),
            (None, Some(store)) => Deliverer::embedded(ports, store.clone()),
            (None, None) => unreachable!("a backend has a store"),
        });
        Backend { kind, runtime, env, store, raw, clock, secrets, deliverer, provider, embedded, dynamo }
    }

    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    /// Sends one request through its function's handler.
    async fn invoke(&self, http: &Http, request_id: &str) -> Answer {
        let Some(matched) = find_route(http.method, &http.path) else {
            return Answer { status: 404, headers: vec![], body: b"{\"error\":{\"code\":\"no_route\"}}".to_vec() };
        };
        let body = http.body.as_ref().map(|b| serde_json::to_vec(b).expect("json")).unwrap_or_default();
        let mut headers = http.headers.clone();
        if http.body.is_some() {
            headers.push(("content-type".into(), "application/json".into()));
        }
        let gateway = GatewayRequest {
            method: http.method,
            path: &http.path,
            query: &http.query,
            headers,
            route: &matched.route,
            params: &matched.params,
            claims: if matched.route.public { None } else { http.claims.as_ref() },
            body: &body,
            source_ip: "192.0.2.1".into(),
            request_id: request_id.to_owned(),
            time: self.now(),
        };
        let request = gateway.lambda_request().expect("the simulator builds valid events");
        let response = invoke(&self.env, self.secrets.as_ref(), matched.function, request).await;
        let (parts, body) = response.into_parts();
        let body = match body {
            lambda_http::Body::Empty => vec![],
            lambda_http::Body::Text(text) => text.into_bytes(),
            lambda_http::Body::Binary(bytes) => bytes,
            _ => vec![],
        };
        let headers =
            parts.headers.iter().map(|(n, v)| (n.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned())).collect();
        Answer { status: parts.status.as_u16(), headers, body }
    }

    /// Sends requests at once (one alone is a group of one); each may meet its store fault.
    pub fn together(&self, requests: &[(String, Http, Option<crate::step::StoreFault>)], schedule: u64) -> Vec<Answer> {
        let faults: Vec<_> = requests.iter().map(|(_, _, fault)| *fault).collect();
        self.store.begin(&faults, schedule);
        let answers = self.runtime.block_on(futures_util::future::join_all(requests.iter().enumerate().map(|(actor, (id, http, _))| {
            ACTOR.scope(actor, async move {
                let answer = self.invoke(http, id).await;
                self.store.finished(actor).await;
                answer
            })
        })));
        self.store.end();
        answers
    }

    /// One scheduled run of the sweep at `at`, through its function's handler; cut short
    /// after `cut_after` rounds of store calls when given.
    pub fn sweep(&self, run: &str, at: OffsetDateTime, cut_after: Option<u32>) -> Result<domain::actions::sweep::SweepReport, String> {
        // Each call has a slot of Tokio's time on a run that is cut short: 10 ms on paused
        // time; on the emulator, longer than any of its calls takes and than the reserve,
        // so the deadline falls between the same two calls as on the embedded store (half
        // a slot after the last call's start).
        let call = match self.kind {
            Kind::Embedded => std::time::Duration::from_millis(10),
            Kind::Dynamo => std::time::Duration::from_millis(400),
        };
        self.runtime.block_on(async {
            let deadline = match cut_after {
                Some(calls) => {
                    self.store.slow(Some(call));
                    domain::deadline::Deadline::after(
                        domain::deadline::SWEEP_MARGIN + domain::deadline::RESPONSE_RESERVE + call * calls + call / 2,
                    )
                }
                None => domain::deadline::Deadline::unbounded(),
            };
            let event = expiry_sweep_function::ScheduledEvent { id: Some(run.to_owned()), time: domain::clock::key_timestamp(at) };
            let report = expiry_sweep_function::handle(&self.env, event, run, deadline).await;
            self.store.slow(None);
            report.map_err(|error| gateway::cause_chain(&error))
        })
    }

    /// Delivers what the outbox holds, the provider answering with `faults`.
    /// Drains the stream (the first `dropped` deliveries lost before the handler), then
    /// consumes the failure destination as SQS hands it back (every visibility timeout)
    /// until it is empty.
    pub fn deliver(
        &self,
        faults: std::collections::BTreeMap<usize, ProviderFault>,
        dropped: usize,
    ) -> Result<local_api::deliverer::Drained, String> {
        self.provider.plan(faults);
        self.deliverer.drop_next(dropped);
        let drained = self.runtime.block_on(self.deliverer.drain()).map_err(|error| gateway::cause_chain(&error));
        for _ in 0..2 * domain::outbox::DELIVERY_ATTEMPTS {
            if self.deliverer.failures().is_empty() {
                break;
            }
            self.runtime.block_on(self.deliverer.redrive_failures());
        }
        self.deliverer.drop_next(0);
        self.provider.plan(Default::default());
        let left = self.deliverer.failures();
        if !left.is_empty() {
            return Err(format!("the failure destination still holds {left:?}"));
        }
        drained
    }

    /// The scheduled redrive, now.
    pub fn redrive(&self) -> Result<domain::actions::redrive::Redriven, String> {
        self.runtime.block_on(self.deliverer.redrive()).map_err(|error| gateway::cause_chain(&error))
    }

    /// Every stored record (what the invariants are checked over).
    pub fn records(&self) -> Vec<Record> {
        match (&self.embedded, &self.dynamo) {
            (Some(store), _) => store.snapshot(),
            (None, Some(store)) => self.runtime.block_on(system_tests::world::stored_records(store)),
            _ => unreachable!("a backend has a store"),
        }
    }

    /// Messages the provider took since `from` (a position in its record).
    pub fn sent_since(&self, from: usize) -> Vec<Sent> {
        self.provider.sent.lock().expect("sent")[from..].to_vec()
    }

    /// The provider faults that have met a send so far.
    pub fn fired(&self) -> Vec<ProviderFault> {
        self.provider.fired.lock().expect("fired").clone()
    }

    pub fn sent_count(&self) -> usize {
        self.provider.sent.lock().expect("sent").len()
    }
}
