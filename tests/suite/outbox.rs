//! The pipeline's promises, on both stores: messages leave through the outbox — once, even
//! when a delivery dies or a provider throttles — and a commit of unknown outcome is
//! answered as what really happened.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_trait::async_trait;
use domain::env::Senders;
use domain::identity::PersonId;
use domain::messaging::{DeliveryError, EmailMessage, Mailer, SmsMessage, TextSender};
use domain::organization::OrganizationId;
use domain::store::{Record, Store, Write};
use serde_json::{Value, json};
use system_tests::faults::{Call, Fault, FaultyStore};
use system_tests::moto::recording_lock;
use system_tests::world::{Backend, Client, World};

use crate::activation::{link_token, sms_code};
use crate::fixtures::{citizen, resident};
use crate::permissions::cast;

const ORG: &str = "7000000505";

fn user_path(user: &PersonId) -> String {
    format!("/v1/organizations/{ORG}/users/{}", user.as_str())
}

async fn profile(client: &Client, manager: &PersonId, user: &PersonId) -> Value {
    let answer = client.get(&user_path(user), &client.token_for(manager)).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    answer.json()
}

/// The delivery dies before it reaches the provider (the stream batch fails, or the
/// invocation is lost): the record comes again, every message goes out once, and the
/// user's view says so.
async fn an_intent_is_delivered_once_even_when_its_first_delivery_dies(backend: Backend) {
    let cast = cast(backend).await;
    let (world, client) = (&cast.world, &cast.client);
    let person = world.register(&resident(40), &["1-10"], Some(300)).await;
    let body = json!({ "persons": [{ "id": person.as_str(), "establishments": ["1-10"], "user_type": "partners_only" }] });
    world.deliver().await; // the cast's own messages
    world.deliverer.drop_next(1);
    let bought =
        client.post_keyed(&format!("/v1/organizations/{ORG}/subscriptions"), &client.token_for(&cast.manager), "dies-once", &body).await;
    assert_eq!(bought.status, 201, "{}", bought.text());
    let before = profile(client, &cast.manager, &person).await;
    assert_eq!(before["messages"]["activation_email"]["state"], "queued");
    assert_eq!(before["messages"]["activation_sms"]["state"], "queued");

    let drained = world.deliver().await;
    assert_eq!((drained.deliveries, drained.failed), (2, 0), "the dropped delivery came again: {drained:?}");
    let registered = world.records().await.into_iter().find_map(|r| match r {
        Record::Person(p) if p.id == person => Some(p),
        _ => None,
    });
    let registered = registered.expect("registered");
    assert_eq!(world.emails_to(&registered.email).await.len(), 1, "once");
    assert_eq!(world.sms_to(&registered.mobile).await.len(), 1, "once");
    let after = profile(client, &cast.manager, &person).await;
    for slot in ["activation_email", "activation_sms"] {
        assert_eq!(after["messages"][slot]["state"], "sent", "{slot}: {after}");
        assert_eq!(after["messages"][slot]["attempts"], 1, "{slot}: sent at the attempt that reached the provider");
        assert!(after["messages"][slot]["message_id"].as_str().is_some_and(|id| !id.is_empty()), "the provider's id");
    }
    // The same stream record, delivered again, sends nothing more.
    world.deliverer.drop_next(0);
    assert_eq!(world.emails_to(&registered.email).await.len(), 1);
}
both!(an_intent_is_delivered_once_even_when_its_first_delivery_dies);

/// A user suspended before their activation link and code went out: the view says at
/// once that those will never go out (not "queued"), the suspension notice is what is
/// queued, and delivery sends only that.
async fn a_suspension_supersedes_what_was_still_queued(backend: Backend) {
    let cast = cast(backend).await;
    let (world, client) = (&cast.world, &cast.client);
    let person = world.register(&resident(41), &["1-10"], Some(300)).await;
    let body = json!({ "persons": [{ "id": person.as_str(), "establishments": ["1-10"], "user_type": "partners_only" }] });
    world.deliver().await; // the cast's own messages
    let bought = client
        .post_keyed(&format!("/v1/organizations/{ORG}/subscriptions"), &client.token_for(&cast.manager), "then-suspended", &body)
        .await;
    assert_eq!(bought.status, 201, "{}", bought.text());
    let suspended = client
        .post(&format!("{}/suspension", user_path(&person)), &client.token_for(&cast.manager), &json!({ "reason": "left before starting" }))
        .await;
    assert_eq!(suspended.status, 200, "{}", suspended.text());
    let view = profile(client, &cast.manager, &person).await;
    for slot in ["activation_email", "activation_sms"] {
        assert_eq!(view["messages"][slot]["state"], "superseded", "{slot}: {view}");
    }
    assert_eq!(view["messages"]["suspension_email"]["state"], "queued", "{view}");

    world.deliver().await;
    let registered = world.records().await.into_iter().find_map(|r| match r {
        Record::Person(p) if p.id == person => Some(p),
        _ => None,
    });
    let emails = world.emails_to(&registered.expect("registered").email).await;
    assert_eq!(emails.len(), 1, "only the suspension notice goes out: {emails:?}");
    let view = profile(client, &cast.manager, &person).await;
    assert_eq!(view["messages"]["activation_email"]["state"], "superseded", "{view}");
    assert_eq!(view["messages"]["suspension_email"]["state"], "sent", "{view}");
}
both!(a_suspension_supersedes_what_was_still_queued);

/// A provider that, while `throttled` is set, answers every send with `error()`.
struct Throttled {
    senders: Senders,
    throttled: Arc<AtomicBool>,
    refused: Arc<AtomicUsize>,
    error: fn() -> DeliveryError,
}

impl Throttled {
    fn check(&self) -> Result<(), DeliveryError> {
        if self.throttled.load(Ordering::SeqCst) {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return Err((self.error)());
        }
        Ok(())
    }
}

/// A failing world (`failing_world`) whose organization subscribed `resident(n)` while
/// its provider fails: the world, its client, the manager, the person, the switch and the
/// count of refused sends.
struct Failing {
    world: World,
    client: Client,
    manager: PersonId,
    person: PersonId,
    switch: Arc<AtomicBool>,
    refused: Arc<AtomicUsize>,
}

async fn subscribed_while_failing(backend: Backend, n: u32, error: fn() -> DeliveryError) -> Failing {
    let (world, switch, refused) = failing_world(backend, error).await;
    let manager = PersonId::parse(&citizen(1)).unwrap();
    let org = world
        .onboard(ORG, domain::organization::PricingPlan::Muqeem, manager.as_str(), &[("1-10", domain::organization::SizeTier::Small)])
        .await;
    world.credit(&org, 100_000).await;
    let person = world.register(&resident(n), &["1-10"], Some(300)).await;
    let client = world.serve().await;
    switch.store(true, Ordering::SeqCst);
    let body = json!({ "persons": [{ "id": person.as_str(), "establishments": ["1-10"], "user_type": "partners_only" }] });
    let bought = client.post_keyed(&format!("/v1/organizations/{ORG}/subscriptions"), &client.token_for(&manager), "failing", &body).await;
    assert_eq!(bought.status, 201, "{}", bought.text());
    Failing { world, client, manager, person, switch, refused }
}

/// A world whose provider fails with `error()` while the switch is on (and counts how often).
async fn failing_world(backend: Backend, error: fn() -> DeliveryError) -> (World, Arc<AtomicBool>, Arc<AtomicUsize>) {
    let throttled = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicUsize::new(0));
    let (switch, count) = (throttled.clone(), refused.clone());
    let world = World::with_ports(
        backend,
        None,
        Some(&move |senders: Senders| {
            let wrapped = Arc::new(Throttled { senders, throttled: switch.clone(), refused: count.clone(), error });
            Senders { mailer: wrapped.clone(), texts: wrapped }
        }),
    )
    .await;
    (world, throttled, refused)
}

#[async_trait]
impl Mailer for Throttled {
    async fn send_email(&self, message: &EmailMessage) -> Result<String, DeliveryError> {
        self.check()?;
        self.senders.mailer.send_email(message).await
    }
}

#[async_trait]
impl TextSender for Throttled {
    async fn send_sms(&self, message: &SmsMessage) -> Result<String, DeliveryError> {
        self.check()?;
        self.senders.texts.send_sms(message).await
    }
}

/// An unavailable provider: the message stays `queued` (with the reason) while it has tries
/// left, then ends `undeliverable` on the user — a state people can see, not a record on a
/// failure list; once the provider answers again, a resend goes out.
async fn an_unavailable_provider_is_retried_then_undeliverable_and_resend_still_works(backend: Backend) {
    let Failing { world, client, manager, person, switch: throttled, refused } =
        subscribed_while_failing(backend, 41, || DeliveryError::transient("ServiceUnavailable")).await;

    let attempts = domain::outbox::DELIVERY_ATTEMPTS;
    assert_eq!(local_api::deliverer::MAX_ATTEMPTS, attempts, "the stream's tries are the message's budget");
    let drained = world.deliver().await;
    assert_eq!(drained.failed, 0, "retried, then given up: {drained:?}");
    assert_eq!(refused.load(Ordering::SeqCst), 2 * attempts as usize, "both messages, every attempt");
    assert!(world.deliverer.failures().is_empty(), "nothing is left for the failure destination to hold");
    let view = profile(&client, &manager, &person).await;
    for slot in ["activation_email", "activation_sms"] {
        assert_eq!(view["messages"][slot]["state"], "undeliverable", "{slot}: {view}");
        assert_eq!(view["messages"][slot]["reason"], "ServiceUnavailable", "{slot}");
        assert_eq!(view["messages"][slot]["attempts"], attempts, "{slot}");
    }

    throttled.store(false, Ordering::SeqCst);
    let resent = client.post(&format!("{}/activation/resend", user_path(&person)), &client.token_for(&manager), &json!({})).await;
    assert_eq!(resent.json(), json!({ "email": "queued", "sms": "queued" }), "{}", resent.text());
    world.deliver().await;
    let view = profile(&client, &manager, &person).await;
    for slot in ["activation_email", "activation_sms"] {
        assert_eq!(view["messages"][slot]["state"], "sent", "{slot}: {view}");
    }
    let registered = world.records().await.into_iter().find_map(|r| match r {
        Record::Person(p) if p.id == person => Some(p),
        _ => None,
    });
    let registered = registered.expect("registered");
    let token = link_token(&world.emails_to(&registered.email).await.last().expect("the resent email").1);
    let code = sms_code(world.sms_to(&registered.mobile).await.last().expect("the resent SMS"));
    assert_eq!(client.call("POST", "/v1/activations/email", None, &[], Some(&json!({ "token": token }))).await.status, 200);
    let active = client.post("/v1/activations/mobile", &client.token_for(&person), &json!({ "organization_id": ORG, "code": code })).await;
    assert_eq!(active.json()["status"], "active");
}
both!(an_unavailable_provider_is_retried_then_undeliverable_and_resend_still_works);

/// A provider that throttles: the stream's tries and the failure destination's pass while
/// it does, and none of them counts against the message (it stays `queued`, reason
/// `Throttling`, no try spent); once the rate allows, the message goes out at its first
/// counted try.
async fn throttles_are_tried_again_without_spending_the_message_s_tries(backend: Backend) {
    let (world, throttled, refused) = failing_world(backend, || DeliveryError::throttled("Throttling")).await;
    let manager = PersonId::parse(&citizen(1)).unwrap();
    let org = world
        .onboard(ORG, domain::organization::PricingPlan::Muqeem, manager.as_str(), &[("1-10", domain::organization::SizeTier::Small)])
        .await;
    world.credit(&org, 100_000).await;
    let person = world.register(&resident(48), &["1-10"], Some(300)).await;
    let client = world.serve().await;
    throttled.store(true, Ordering::SeqCst);
    let body = json!({ "persons": [{ "id": person.as_str(), "establishments": ["1-10"], "user_type": "partners_only" }] });
    let bought =
        client.post_keyed(&format!("/v1/organizations/{ORG}/subscriptions"), &client.token_for(&manager), "throttles", &body).await;
    assert_eq!(bought.status, 201, "{}", bought.text());
    let drained = world.deliver().await;
    assert_eq!(drained.failed, 1, "the record waits on the failure destination: {drained:?}");
    for _ in 0..3 {
        world.deliverer.redrive_failures().await;
    }
    let tries = 2 * 7;
    assert_eq!(refused.load(Ordering::SeqCst), tries, "both messages: four stream tries and three from the failure destination");
    let view = profile(&client, &manager, &person).await;
    for slot in ["activation_email", "activation_sms"] {
        assert_eq!(view["messages"][slot]["state"], "queued", "{slot}: {view}");
        assert_eq!(view["messages"][slot]["reason"], "Throttling", "{slot}");
        assert_eq!(view["messages"][slot]["attempts"], 0, "{slot}: no try spent");
    }
    throttled.store(false, Ordering::SeqCst);
    assert_eq!(world.deliverer.redrive_failures().await, 1, "delivered from the failure destination");
    let view = profile(&client, &manager, &person).await;
    for slot in ["activation_email", "activation_sms"] {
        assert_eq!(view["messages"][slot]["state"], "sent", "{slot}: {view}");
        assert_eq!(view["messages"][slot]["attempts"], 1, "{slot}");
    }
}
both!(throttles_are_tried_again_without_spending_the_message_s_tries);

// ---------------------------------------------------------------------------------------
// Unknown outcomes

/// How the fault of one scenario treats the first commit that writes `target`'s record.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Outcome {
    /// The write lands; its answer is lost.
    Landed,
    /// It does not land; another change of the same user does, in its place.
    Overtaken,
}

/// A store whose first commit writing `target` once `armed` ends with an unknown outcome, as
/// `outcome` says; `overtake` turns our user record into the other request's.
fn faulty(
    target: PersonId,
    outcome: Outcome,
    overtake: fn(&mut domain::user::User),
    armed: Arc<AtomicBool>,
) -> impl Fn(Arc<dyn Store>) -> Arc<dyn Store> {
    move |store: Arc<dyn Store>| {
        let target = target.clone();
        let armed = armed.clone();
        FaultyStore::new(store, move |call| match call {
            Call::Commit(writes) if system_tests::faults::writes_user(writes, &target) && armed.swap(false, Ordering::SeqCst) => {
                Some(match outcome {
                    Outcome::Landed => Fault::LostResponse,
                    Outcome::Overtaken => {
                        // Another request's change of the same record, from the same read.
                        let instead: Vec<Write> = writes
                            .iter()
                            .filter_map(|write| match &write.record {
                                Record::User(user) if user.id == target => {
                                    let mut other = user.clone();
                                    overtake(&mut other);
                                    Some(Write { record: Record::User(other), expect: write.expect })
                                }
                                _ => None,
                            })
                            .collect();
                        Fault::Instead(instead)
                    }
                })
            }
            _ => None,
        }) as Arc<dyn Store>
    }
}

/// The actions whose outcome may be lost.
#[derive(Clone, Copy, Debug)]
enum Act {
    Suspend,
    Modify,
    Activate,
    Grant,
}

impl Act {
    async fn perform(self, actors: &Actors) -> system_tests::http::Answer {
        let (client, token) = (&actors.client, Some(actors.manager_token.as_str()));
        let path = user_path(&actors.target);
        match self {
            Act::Suspend => client.call("POST", &format!("{path}/suspension"), token, &[], Some(&json!({ "reason": "left" }))).await,
            Act::Modify => client.call("PATCH", &path, token, &[], Some(&json!({ "version": 1, "job_title": "HR" }))).await,
            Act::Activate => client.call("POST", "/v1/activations/email", None, &[], Some(&json!({ "token": actors.link }))).await,
            Act::Grant => {
                let body = json!({ "version": 1, "grants": { "1-10": ["iqama.renew"] } });
                client.call("PUT", &format!("{path}/permissions"), token, &[], Some(&body)).await
            }
        }
    }

    /// Another request's change of the same user, landing in place of ours.
    fn overtake(self) -> fn(&mut domain::user::User) {
        match self {
            Act::Suspend => |user| {
                user.status = domain::user::UserStatus::Suspended;
                user.suspension =
                    Some(domain::user::Suspension { by: user.id.clone(), reason: "another admin".into(), at: user.updated_at });
            },
            Act::Modify => |user| {
                user.job_title = Some("someone else's title".into());
                user.profile_version += 1;
            },
            Act::Activate => |user| user.activation.email_confirmed_at = Some(user.updated_at),
            Act::Grant => |user| user.grants_version += 1,
        }
    }

    /// The refusal that state gets.
    fn refusal(self) -> (u16, &'static str) {
        match self {
            Act::Suspend => (409, "already_suspended"),
            Act::Modify | Act::Grant => (409, "version_conflict"),
            Act::Activate => (410, "activation_link_used"),
        }
    }
}

/// Each action whose outcome may be lost: it answers success when its write landed, and
/// the real refusal when it did not and the state moved on.
async fn an_unknown_outcome_is_answered_as_what_really_happened(backend: Backend) {
    for act in [Act::Suspend, Act::Modify, Act::Activate, Act::Grant] {
        for outcome in [Outcome::Landed, Outcome::Overtaken] {
            let target = PersonId::parse(&resident(50)).unwrap();
            let armed = Arc::new(AtomicBool::new(false));
            let world = World::with_ports(backend, Some(&faulty(target.clone(), outcome, act.overtake(), armed.clone())), None).await;
            let actors = Actors::new(world, target).await;
            armed.store(true, Ordering::SeqCst);
            let answer = act.perform(&actors).await;
            assert!(!armed.load(Ordering::SeqCst), "{act:?}: the fault was injected");
            match outcome {
                Outcome::Landed => assert!(answer.status < 300, "{act:?}: a write that landed is a success: {}", answer.text()),
                Outcome::Overtaken => {
                    let (status, code) = act.refusal();
                    assert_eq!((answer.status, answer.code().as_str()), (status, code), "{act:?}: the real refusal: {}", answer.text());
                }
            }
            let recorded = actors
                .world
                .records()
                .await
                .into_iter()
                .filter(
                    |r| matches!(r, Record::Audit(e) if e.target.as_ref() == Some(&actors.target) && e.request_id.starts_with("local-")),
                )
                .count();
            let expected = if outcome == Outcome::Landed { 1 } else { 0 };
            assert_eq!(recorded, expected, "{act:?} {outcome:?}: the change is recorded exactly as often as it happened");
        }
    }
}
both!(an_unknown_outcome_is_answered_as_what_really_happened);

/// An organization with a manager and one pending member, the link of its activation
/// email, and the local server.
struct Actors {
    world: World,
    client: Client,
    target: PersonId,
    manager_token: String,
    link: String,
}

impl Actors {
    async fn new(world: World, target: PersonId) -> Actors {
        let manager = PersonId::parse(&citizen(1)).unwrap();
        let org: OrganizationId = world
            .onboard(ORG, domain::organization::PricingPlan::Muqeem, manager.as_str(), &[("1-10", domain::organization::SizeTier::Small)])
            .await;
        world.credit(&org, 100_000).await;
        world.register(target.as_str(), &["1-10"], Some(300)).await;
        let persons = vec![domain::actions::subscribe::SubscribePerson {
            id: target.clone(),
            establishments: ["1-10"].iter().map(|e| domain::organization::EstablishmentId::parse(e).unwrap()).collect(),
            user_type: Some(domain::user::UserType::PartnersOnly),
            language: None,
            job_title: None,
        }];
        world.subscribe(&manager, &org, persons, "actors").await;
        let email = world.user(&org, &target).await.email;
        let link = link_token(&world.emails_to(&email).await.last().expect("the activation email").1);
        let client = world.serve().await;
        let manager_token = client.token_for(&manager);
        Actors { world, client, target, manager_token, link }
    }
}

/// A subscription of the most persons a request may carry (24) is one transaction with its
/// intent and the persons' records (99 of DynamoDB's 100 items), and its 48 messages go out.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_largest_group_is_one_transaction_and_its_messages_go_out() {
    use domain::actions::subscribe::MAX_PERSONS_PER_REQUEST;
    let world = World::new(Backend::Moto).await;
    let manager = PersonId::parse(&citizen(1)).unwrap();
    let org = world
        .onboard(ORG, domain::organization::PricingPlan::Muqeem, manager.as_str(), &[("1-10", domain::organization::SizeTier::Small)])
        .await;
    world.credit(&org, 10_000_000).await;
    let mut persons = Vec::new();
    for n in 0..MAX_PERSONS_PER_REQUEST as u32 {
        let id = world.register(&resident(200 + n), &["1-10"], Some(300)).await;
        persons.push(json!({ "id": id.as_str(), "establishments": ["1-10"], "user_type": "partners_only" }));
    }
    let client = world.serve().await;
    let table = world.dynamo.as_ref().unwrap().names().users.clone();
    let recorded = {
        let _recording = recording_lock().lock().await;
        world.moto().start_recording().await;
        let bought = client
            .post_keyed(
                &format!("/v1/organizations/{ORG}/subscriptions"),
                &client.token_for(&manager),
                "the-largest-group",
                &json!({ "persons": persons }),
            )
            .await;
        assert_eq!(bought.status, 201, "{}", bought.text());
        world.moto().recorded_targets(&table).await
    };
    let writes: Vec<&String> = recorded.iter().filter(|target| target.contains("Write") || target.contains("PutItem")).collect();
    assert_eq!(writes, vec!["DynamoDB_20120810.TransactWriteItems"], "one atomic write, messages included");
    let drained = world.deliver().await;
    // The subscription's intent, and the events-only intents of the setting up before it.
    assert_eq!(drained.failed, 0, "{drained:?}");
    let subscribed = world.deliverer.events().into_iter().filter(|e| e.kind.ends_with(".user.subscribed.v1")).count();
    assert_eq!(subscribed, 24, "one event per person, in the same transaction as the messages");
    let users: Vec<domain::user::User> = world
        .records()
        .await
        .into_iter()
        .filter_map(|r| match r {
            Record::User(u) if !u.is_manager() => Some(u),
            _ => None,
        })
        .collect();
    assert_eq!(users.len(), MAX_PERSONS_PER_REQUEST);
    let sent = users.iter().flat_map(|u| u.deliveries.values()).filter(|d| d.state == domain::outbox::DeliveryState::Sent).count();
    assert_eq!(sent, 2 * MAX_PERSONS_PER_REQUEST, "an email and an SMS for each");
}

/// `deliver` starts an intent only while the invocation has the time to finish it: with
/// less, it sends nothing and hands the whole batch back to the stream, which brings it
/// again — and then it goes out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliver_hands_back_what_its_time_cannot_hold() {
    use aws_lambda_events::event::dynamodb::{Event, EventRecord};
    use domain::deadline::{DELIVER_INTENT_BUDGET, Deadline};
    let world = World::new(Backend::Embedded).await;
    let manager = PersonId::parse(&citizen(1)).unwrap();
    let org: OrganizationId = world
        .onboard(ORG, domain::organization::PricingPlan::Muqeem, manager.as_str(), &[("1-10", domain::organization::SizeTier::Small)])
        .await;
    world.credit(&org, 100_000).await;
    let mut persons = Vec::new();
    for n in [3, 4] {
        let person = world.register(&resident(n), &["1-10"], Some(300)).await;
        persons.push(domain::actions::subscribe::SubscribePerson {
            id: person,
            establishments: ["1-10"].iter().map(|e| domain::organization::EstablishmentId::parse(e).unwrap()).collect(),
            user_type: Some(domain::user::UserType::PartnersOnly),
            language: None,
            job_title: None,
        });
    }
    for (n, person) in persons.into_iter().enumerate() {
        world.subscribe(&manager, &org, vec![person], &format!("batch-{n}")).await;
    }
    let intents: Vec<_> = world.embedded.as_ref().unwrap().stream_after(0, 10).into_iter().filter(|(_, i)| !i.notices.is_empty()).collect();
    assert_eq!(intents.len(), 2, "the two subscriptions' (the others carry only events)");
    let mut event = Event::default();
    event.records = intents
        .into_iter()
        .map(|(position, intent)| {
            let mut record = EventRecord::default();
            record.event_name = "INSERT".into();
            record.change.sequence_number = Some(format!("{position:021}"));
            record.change.new_image = aws_adapters::dynamo::to_item(&Record::Intent(intent)).unwrap().into();
            record
        })
        .collect();
    let outbox = world.outbox.clone().unwrap();
    let ports = deliver_function::Ports {
        env: world.env.clone(),
        secrets: world.secrets.clone(),
        senders: Senders { mailer: outbox.clone(), texts: outbox.clone() },
    };

    let short = deliver_function::meta("short", Deadline::after(DELIVER_INTENT_BUDGET / 2));
    let answer = deliver_function::handle(&ports, event.clone(), &short).await;
    assert_eq!(answer.batch_item_failures.len(), 2, "both records come again");
    assert!(outbox.messages().is_empty(), "nothing was sent");

    let enough = deliver_function::meta("enough", Deadline::after(domain::deadline::DELIVER_FUNCTION_TIMEOUT));
    let answer = deliver_function::handle(&ports, event, &enough).await;
    assert!(answer.batch_item_failures.is_empty());
    assert_eq!(outbox.messages().len(), 4, "an email and an SMS each");
}

/// Sends that take a while, counted.
struct Slow {
    sent: Arc<AtomicUsize>,
}

impl Slow {
    async fn send(&self) -> Result<String, DeliveryError> {
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        Ok(format!("m-{}", self.sent.fetch_add(1, Ordering::SeqCst)))
    }
}

#[async_trait]
impl Mailer for Slow {
    async fn send_email(&self, _: &EmailMessage) -> Result<String, DeliveryError> {
        self.send().await
    }
}

#[async_trait]
impl TextSender for Slow {
    async fn send_sms(&self, _: &SmsMessage) -> Result<String, DeliveryError> {
        self.send().await
    }
}

/// Claims before sends: two deliveries of one intent at once send each message once; a
/// claim left by a delivery that died (its outcome unknown) keeps others from sending
/// until its lease runs out, then the message is sent again and counted as possibly
/// duplicated.
async fn a_claimed_message_is_sent_once_and_a_dead_claim_is_sent_again_and_counted(backend: Backend) {
    use domain::actions::deliver::deliver;
    use domain::outbox::{CLAIM_LEASE, Claim, Slot};
    let cast = cast(backend).await;
    let (world, client) = (&cast.world, &cast.client);
    world.deliver().await; // the cast's own messages
    let person = world.register(&resident(42), &["1-10"], Some(300)).await;
    let sent = Arc::new(AtomicUsize::new(0));
    let slow = Arc::new(Slow { sent: sent.clone() });
    let senders = Senders { mailer: slow.clone(), texts: slow };
    let key = system_tests::world::code_key();
    let meta = |id: &str| domain::pipeline::RequestMeta::new(domain::policy::Caller::Anonymous, id);
    let intents = |records: Vec<Record>| -> Vec<domain::outbox::Intent> {
        records
            .into_iter()
            .filter_map(|r| match r {
                Record::Intent(intent) if intent.notices.iter().any(|n| n.user == person) => Some(intent),
                _ => None,
            })
            .collect()
    };

    let body = json!({ "persons": [{ "id": person.as_str(), "establishments": ["1-10"], "user_type": "partners_only" }] });
    let bought =
        client.post_keyed(&format!("/v1/organizations/{ORG}/subscriptions"), &client.token_for(&cast.manager), "claimed", &body).await;
    assert_eq!(bought.status, 201, "{}", bought.text());
    let intent = intents(world.records().await).pop().expect("the subscription's intent");
    let (meta_a, meta_b) = (meta("a"), meta("b"));
    let (a, b) = tokio::join!(deliver(&world.env, &senders, &key, &meta_a, &intent), deliver(&world.env, &senders, &key, &meta_b, &intent));
    let (a, b) = (a.expect("delivered"), b.expect("delivered"));
    assert_eq!(sent.load(Ordering::SeqCst), 2, "each message once: {a:?} {b:?}");
    assert_eq!(a.sent + b.sent, 2);
    assert_eq!(a.possibly_duplicated + b.possibly_duplicated, 0, "no duplicate without a fault");
    let view = profile(client, &cast.manager, &person).await;
    assert_eq!(view["messages"]["activation_email"]["state"], "sent", "{view}");
    assert_eq!(view["messages"]["activation_email"]["attempts"], 1, "{view}");

    // A resend queues a new intent; a delivery claims it and dies before recording.
    let resent = client.post(&format!("{}/activation/resend", user_path(&person)), &client.token_for(&cast.manager), &json!({})).await;
    assert_eq!(resent.status, 200, "{}", resent.text());
    let records = world.records().await;
    let mut user = records
        .iter()
        .find_map(|r| match r {
            Record::User(u) if u.id == person => Some(u.clone()),
            _ => None,
        })
        .expect("the user");
    let newest = user.deliveries[&Slot::ActivationEmail].intent.clone();
    let intent = intents(records).into_iter().find(|i| i.id == newest).expect("the resend's intent");
    let version = user.version;
    for record in user.deliveries.values_mut().filter(|r| r.intent == newest) {
        record.claim = Some(Claim { attempt: "died".into(), until: world.now() + CLAIM_LEASE });
        record.attempts = 1;
    }
    user.version += 1;
    world.env.store.commit(vec![Write::replace(Record::User(user), version)]).await.expect("the dead delivery's claim");
    let before = sent.load(Ordering::SeqCst);
    let held = deliver(&world.env, &senders, &key, &meta("c"), &intent).await.expect("delivered");
    assert_eq!((held.sent, sent.load(Ordering::SeqCst)), (0, before), "a live claim is not sent over: {held:?}");
    assert!(held.retry, "the record comes again rather than being taken as done: {held:?}");
    world.advance(time::Duration::minutes(6));
    let again = deliver(&world.env, &senders, &key, &meta("d"), &intent).await.expect("delivered");
    assert_eq!(again.sent, 2, "{again:?}");
    assert_eq!(again.possibly_duplicated, 2, "sent again after the lease, and counted: {again:?}");
    let view = profile(client, &cast.manager, &person).await;
    assert_eq!(view["messages"]["activation_email"]["state"], "sent", "{view}");
    assert_eq!(view["messages"]["activation_email"]["attempts"], 2, "{view}");
}
both!(a_claimed_message_is_sent_once_and_a_dead_claim_is_sent_again_and_counted);

/// Messages the stream dropped (every try of their record lost) stay `queued` only until
/// the redrive: the failure destination's record is read again and delivered, the
/// scheduled redrive finds what is due through the index, and a message queued past its
/// window is given up as `undeliverable` (`expired`) and sent never.
async fn what_the_stream_drops_is_redriven_or_given_up_never_left_queued(backend: Backend) {
    use domain::outbox::{DELIVERY_WINDOW, REDRIVE_AFTER};
    let cast = cast(backend).await;
    let (world, client) = (&cast.world, &cast.client);
    world.deliver().await; // the cast's own messages
    let tries = local_api::deliverer::MAX_ATTEMPTS as usize;
    let contacts = |person: PersonId| async move {
        let records = world.records().await;
        records
            .into_iter()
            .find_map(|r| match r {
                Record::Person(p) if p.id == person => Some(p),
                _ => None,
            })
            .expect("registered")
    };
    let mut dropped = Vec::new();
    for (n, key) in [(43, "dropped-a"), (44, "dropped-b"), (45, "dropped-c")] {
        let person = world.register(&resident(n), &["1-10"], Some(300)).await;
        let body = json!({ "persons": [{ "id": person.as_str(), "establishments": ["1-10"], "user_type": "partners_only" }] });
        let bought =
            client.post_keyed(&format!("/v1/organizations/{ORG}/subscriptions"), &client.token_for(&cast.manager), key, &body).await;
        assert_eq!(bought.status, 201, "{}", bought.text());
        world.deliverer.drop_next(tries);
        let drained = world.deliver().await;
        assert_eq!(drained.failed, 1, "every try lost: on the failure destination: {drained:?}");
        let view = profile(client, &cast.manager, &person).await;
        assert_eq!(view["messages"]["activation_email"]["state"], "queued", "{view}");
        dropped.push(person);
    }
    let [a, b, c] = <[PersonId; 3]>::try_from(dropped).expect("three");
    let redriven = world.deliverer.redrive().await.expect("redrive");
    assert_eq!(redriven.users, 0, "nothing is due yet: the stream may still be at it: {redriven:?}");

    // The failure destination's first record (a's), read again and delivered.
    let failures = world.deliverer.failures();
    assert_eq!(failures.len(), 3, "{failures:?}");
    if backend == Backend::Moto {
        assert!(failures.iter().all(|f| f.batch.is_some()), "the batch as the failure destination names it");
    }
    let taken = world.deliverer.redrive_failures().await;
    assert_eq!(taken, 3, "every failed batch was read again and delivered");
    assert!(world.deliverer.failures().is_empty());
    for person in [&a, &b, &c] {
        let view = profile(client, &cast.manager, person).await;
        assert_eq!(view["messages"]["activation_email"]["state"], "sent", "{view}");
        let registered = contacts(person.clone()).await;
        assert_eq!(world.emails_to(&registered.email).await.len(), 1, "once");
    }

    // Dropped again, and the failure destination lost too: the scheduled redrive finds
    // them once they are due, and sends them once.
    let d = world.register(&resident(46), &["1-10"], Some(300)).await;
    let e = world.register(&resident(47), &["1-10"], Some(300)).await;
    for (person, key) in [(&d, "dropped-d"), (&e, "dropped-e")] {
        let body = json!({ "persons": [{ "id": person.as_str(), "establishments": ["1-10"], "user_type": "partners_only" }] });
        let bought =
            client.post_keyed(&format!("/v1/organizations/{ORG}/subscriptions"), &client.token_for(&cast.manager), key, &body).await;
        assert_eq!(bought.status, 201, "{}", bought.text());
        world.deliverer.drop_next(tries);
        world.deliver().await;
        if person == &d {
            world.advance(DELIVERY_WINDOW); // d's messages pass their window
        }
    }
    world.advance(REDRIVE_AFTER);
    let redriven = world.deliverer.redrive().await.expect("redrive");
    assert_eq!((redriven.users, redriven.delivered.sent, redriven.given_up), (2, 2, 2), "{redriven:?}");
    let view = profile(client, &cast.manager, &e).await;
    assert_eq!(view["messages"]["activation_email"]["state"], "sent", "{view}");
    assert_eq!(view["messages"]["activation_sms"]["state"], "sent", "{view}");
    let view = profile(client, &cast.manager, &d).await;
    for slot in ["activation_email", "activation_sms"] {
        assert_eq!(view["messages"][slot]["state"], "undeliverable", "{slot}: {view}");
        assert_eq!(view["messages"][slot]["reason"], "expired", "{slot}: {view}");
    }
    assert!(world.emails_to(&contacts(d.clone()).await.email).await.is_empty(), "never sent late");
    assert_eq!(world.emails_to(&contacts(e.clone()).await.email).await.len(), 1);
    world.advance(DELIVERY_WINDOW * 2);
    let again = world.deliverer.redrive().await.expect("redrive");
    assert_eq!(again.users, 0, "nothing is left queued: {again:?}");
}
both!(what_the_stream_drops_is_redriven_or_given_up_never_left_queued);

/// A notice that ended `undeliverable` (the provider down through every try) is sent again
/// by an administrator once the provider answers: the same notice, queued again, audited.
/// What did not fail, or is an activation message, is refused with its code.
async fn an_undeliverable_notice_is_resent_by_an_administrator(backend: Backend) {
    let Failing { world, client, manager, person, switch, .. } =
        subscribed_while_failing(backend, 49, || DeliveryError::transient("ServiceUnavailable")).await;
    world.deliver().await;
    let suspended =
        client.post(&format!("{}/suspension", user_path(&person)), &client.token_for(&manager), &json!({ "reason": "left" })).await;
    assert_eq!(suspended.status, 200, "{}", suspended.text());
    world.deliver().await;
    let view = profile(&client, &manager, &person).await;
    assert_eq!(view["messages"]["suspension_email"]["state"], "undeliverable", "{view}");
    let resend = |slot: &'static str| {
        let client = &client;
        let token = client.token_for(&manager);
        let path = format!("{}/messages/{slot}/resend", user_path(&person));
        async move { client.post(&path, &token, &json!({})).await }
    };

    switch.store(false, Ordering::SeqCst);
    let resent = resend("suspension_email").await;
    assert_eq!((resent.status, resent.json()), (200, json!({ "slot": "suspension_email", "state": "queued" })), "{}", resent.text());
    let email = world
        .records()
        .await
        .into_iter()
        .find_map(|r| match r {
            Record::Person(p) if p.id == person => Some(p.email),
            _ => None,
        })
        .expect("registered");
    let sent = world.emails_to(&email).await;
    assert_eq!(sent.len(), 1, "the notice, once: {sent:?}");
    assert!(sent[0].0.contains("إيقاف"), "the suspension notice, in the user's language: {sent:?}");
    let view = profile(&client, &manager, &person).await;
    assert_eq!(view["messages"]["suspension_email"]["state"], "sent", "{view}");

    let again = resend("suspension_email").await;
    assert_eq!((again.status, again.json()["error"]["code"].as_str()), (409, Some("message_not_resendable")), "{}", again.text());
    assert_eq!(again.json()["error"]["state"], "sent", "where it stands");
    let activation = resend("activation_email").await;
    assert_eq!((activation.status, activation.json()["error"]["code"].as_str()), (409, Some("message_not_resendable")));
    let code = resend("verification_email").await;
    assert_eq!((code.status, code.json()["error"]["code"].as_str()), (409, Some("message_not_resendable")), "never sent: {}", code.text());
    assert_eq!(resend("no_such_message").await.status, 404);
    let audit = client.get(&format!("{}/audit", user_path(&person)), &client.token_for(&manager)).await.json();
    let resends: Vec<&Value> = audit["entries"].as_array().expect("entries").iter().filter(|e| e["action"] == "message.resent").collect();
    assert_eq!(resends.len(), 1, "{audit}");
    assert_eq!(resends[0]["changes"]["slot"], "suspension_email");
}
both!(an_undeliverable_notice_is_resent_by_an_administrator);

/// A notice is kept 30 days (its intent's lifetime): after that, resending it answers
/// `message_gone` — at once, not when the table's TTL gets round to deleting the intent
/// (neither store here deletes it by then).
async fn a_notice_past_its_intent_s_lifetime_is_gone(backend: Backend) {
    let Failing { world, client, manager, person, switch, .. } =
        subscribed_while_failing(backend, 48, || DeliveryError::transient("ServiceUnavailable")).await;
    world.deliver().await;
    let token = client.token_for(&manager);
    let suspended = client.post(&format!("{}/suspension", user_path(&person)), &token, &json!({ "reason": "left" })).await;
    assert_eq!(suspended.status, 200, "{}", suspended.text());
    world.deliver().await;
    assert_eq!(profile(&client, &manager, &person).await["messages"]["suspension_email"]["state"], "undeliverable");
    switch.store(false, Ordering::SeqCst);
    world.advance(domain::outbox::INTENT_LIFETIME + time::Duration::minutes(1));
    let path = format!("{}/messages/suspension_email/resend", user_path(&person));
    let gone = client.post(&path, &token, &json!({})).await;
    assert_eq!((gone.status, gone.json()["error"]["code"].as_str()), (409, Some("message_gone")), "{}", gone.text());
    assert!(world.records().await.iter().any(|r| matches!(r, Record::Intent(_))), "the intent is still stored");
}
both!(a_notice_past_its_intent_s_lifetime_is_gone);
