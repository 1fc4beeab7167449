//! DynamoDB requests per operation, counted at the emulator: moto's request recorder lists
//! every request with its `X-Amz-Target`. Each operation goes through the HTTP edge the
//! functions share (the in-process server), against DynamoDB, SES and SNS on moto.

use domain::actions::sweep::SweepOptions;
use domain::identity::{PersonId, with_check_digit};
use domain::organization::{OrganizationId, PricingPlan, SizeTier};
use serde_json::{Value, json};
use system_tests::messages::{link_token, sms_code};
use system_tests::world::sweep;
use system_tests::world::{Backend, Client, World};

pub struct Count {
    pub operation: &'static str,
    /// Requests by operation name, e.g. `GetItem: 1`.
    pub requests: Vec<(String, usize)>,
    pub total: usize,
    /// The fewest requests the operation can be done in, and why.
    pub minimum: usize,
    pub note: String,
}

fn person(kind: char, n: u32) -> PersonId {
    PersonId::parse(&with_check_digit(&format!("{kind}{n:08}"))).expect("valid")
}

struct Recorder<'a> {
    world: &'a World,
    prefix: String,
    counts: Vec<Count>,
}

impl Recorder<'_> {
    async fn start(&self) {
        self.world.moto().start_recording().await;
    }

    /// Messages moto has received (SES and SNS).
    async fn messages(&self) -> usize {
        let data = self.world.moto().data().await;
        data["ses"]["Message"].as_array().map_or(0, Vec::len) + data["sns"]["SMS"].as_array().map_or(0, Vec::len)
    }

    fn note_last(&mut self, more: String) {
        if let Some(last) = self.counts.last_mut() {
            last.note = format!("{}; {more}", last.note);
        }
    }

    async fn stop(&mut self, operation: &'static str, minimum: usize, note: &str) {
        let targets = self.world.moto().recorded_targets(&self.prefix).await;
        let mut requests: Vec<(String, usize)> = Vec::new();
        for target in &targets {
            let name = target.rsplit('.').next().unwrap_or(target).to_owned();
            match requests.iter_mut().find(|(n, _)| *n == name) {
                Some((_, count)) => *count += 1,
                None => requests.push((name, 1)),
            }
        }
        self.counts.push(Count { operation, total: targets.len(), requests, minimum, note: note.to_owned() });
    }
}

fn expect(answer: &system_tests::http::Answer, status: u16, what: &str) -> Value {
    assert_eq!(answer.status, status, "{what}: {}", answer.text());
    answer.json()
}

pub async fn count() -> Vec<Count> {
    let world = World::new(Backend::Moto).await;
    let client: Client = world.serve().await;
    let prefix = world.dynamo.as_ref().expect("a moto world").names().users.trim_end_matches("-users").to_owned();
    let mut recorder = Recorder { world: &world, prefix, counts: Vec::new() };

    let manager = person('1', 1);
    let organization: OrganizationId =
        world.onboard("7000000801", PricingPlan::Muqeem, manager.as_str(), &[("1-10", SizeTier::Medium), ("1-20", SizeTier::Small)]).await;
    world.credit(&organization, 100_000_000).await;
    let org = organization.as_str();
    let token = client.token_for(&manager);
    let one = world.register(person('2', 1).as_str(), &["1-10"], Some(400)).await;
    let many: Vec<PersonId> = {
        let mut many = Vec::new();
        for n in 100..100 + domain::actions::subscribe::MAX_PERSONS_PER_REQUEST as u32 {
            many.push(world.register(person('2', n).as_str(), &["1-10", "1-20"], Some(400)).await);
        }
        many
    };
    let subscription = |persons: &[PersonId]| json!({ "persons": persons.iter().map(|p| json!({ "id": p.as_str(), "establishments": ["1-10"], "user_type": "residents_and_partners" })).collect::<Vec<_>>() });
    let subscriptions = format!("/v1/organizations/{org}/subscriptions");

    recorder.start().await;
    expect(&client.post_keyed(&subscriptions, &token, "bench-one", &subscription(std::slice::from_ref(&one))).await, 201, "subscribe one");
    recorder
        .stop(
            "subscribe, 1 person",
            2,
            "read organization, balance, persons and users at once; commit seat, charge, ledger and audit at once",
        )
        .await;

    world.deliver().await;
    recorder.start().await;
    expect(&client.post_keyed(&subscriptions, &token, "bench-many", &subscription(&many)).await, 201, "subscribe 24");
    recorder.stop("subscribe, 24 persons", 2, "as for one person: one batch read, one transaction of up to 100 items").await;

    // Delivering the 24-person subscription's intent: its 48 messages (the stream reads are
    // the event source mapping's, not the function's; they are counted here because the
    // local deliverer does them).
    let before = recorder.messages().await;
    recorder.start().await;
    let drained = world.deliver().await;
    assert_eq!(drained.failed, 0, "{drained:?}");
    recorder
        .stop(
            "deliver: one intent, 24 persons",
            49,
            "one batch read of the organization and the 24 users; per user one conditional write claiming its messages before they are sent and one recording their outcomes (so that one user's concurrent change does not hold the others' records back)",
        )
        .await;
    let sent = recorder.messages().await - before;
    assert_eq!(sent, 48, "an email and an SMS per person");
    recorder.note_last(format!("{sent} messages: 1 SES or SNS call each; DynamoDB requests per message: 49 / 48 = 1.02"));

    // Activation: the link from the email, the code from the SMS, as moto received them.
    let user = world.user(&organization, &one).await;
    let (_, email) = world.emails_to(&user.email).await.pop().expect("the activation email");
    recorder.start().await;
    expect(
        &client.call("POST", "/v1/activations/email", None, &[], Some(&json!({ "token": link_token(&email) }))).await,
        200,
        "email link",
    );
    recorder.stop("activate: email link", 2, "find the user by the token's digest (index), then one conditional write").await;
    let sms = world.sms_to(&user.mobile).await.pop().expect("the activation SMS");
    let body = json!({ "organization_id": org, "code": sms_code(&sms) });
    recorder.start().await;
    expect(&client.post("/v1/activations/mobile", &client.token_for(&one), &body).await, 200, "SMS code");
    recorder.stop("activate: SMS code", 2, "read the user, one conditional write").await;

    // Grant, check, modify, renew, suspend.
    let user_path = format!("/v1/organizations/{org}/users/{}", one.as_str());
    let version = expect(&client.get(&format!("{user_path}/permissions"), &token).await, 200, "permissions")["version"].clone();
    let grants = json!({ "version": version, "grants": { "1-10": ["iqama.renew", "exit_reentry_visa.issue"] } });
    recorder.start().await;
    expect(&client.call("PUT", &format!("{user_path}/permissions"), Some(&token), &[], Some(&grants)).await, 200, "grant");
    recorder.stop("grant", 2, "read caller and user at once, one conditional write").await;

    let check = json!({ "organization_id": org, "user_id": one.as_str(), "establishment_id": "1-10", "service": "iqama.renew" });
    recorder.start().await;
    let decision = expect(&client.post("/v1/authorizations/check", &client.service_token(), &check).await, 200, "check");
    assert_eq!(decision["allowed"], true, "{decision}");
    recorder.stop("check", 1, "the user record alone decides").await;

    let version = expect(&client.get(&user_path, &token).await, 200, "profile")["version"].clone();
    recorder.start().await;
    expect(
        &client.call("PATCH", &user_path, Some(&token), &[], Some(&json!({ "version": version, "job_title": "HR officer" }))).await,
        200,
        "modify",
    );
    recorder.stop("modify: job title", 2, "read caller and user at once, one conditional write").await;
    let version = expect(&client.get(&user_path, &token).await, 200, "profile")["version"].clone();
    let changed = json!({ "version": version, "email": "new.address@bench.example" });
    recorder.start().await;
    expect(&client.call("PATCH", &user_path, Some(&token), &[], Some(&changed)).await, 200, "modify email");
    recorder.stop(
        "modify: new email",
        3,
        "+1 Query on by_email: is the address another user's in the organization (a guard item per contact would overflow a 24-person subscription's transaction)",
    )
    .await;

    recorder.start().await;
    expect(&client.post_keyed(&format!("{user_path}/renewal"), &token, "bench-renew", &json!({})).await, 201, "renew");
    recorder.stop("renew", 2, "as subscribe").await;

    let suspended = format!("/v1/organizations/{org}/users/{}/suspension", many[0].as_str());
    recorder.start().await;
    expect(&client.post(&suspended, &token, &json!({ "reason": "left the company" })).await, 200, "suspend");
    recorder.stop("suspend", 2, "read caller and user at once, one conditional write").await;

    // The sweep: an hour with nothing due, then the day after 320 seats ended (a day no
    // other seat of this world ends on).
    let end_day = domain::clock::saudi_day(system_tests::world::START) + time::Duration::days(200);
    let template = world.user(&organization, &many[1]).await;
    for chunk in (0..320u32).collect::<Vec<_>>().chunks(80) {
        let writes = chunk
            .iter()
            .map(|n| {
                let mut user = template.clone();
                user.id = person('2', 5_000 + n);
                let seat = user.seat.as_mut().expect("a seat");
                seat.ends_at = domain::clock::start_of_saudi_day(end_day) + time::Duration::seconds(i64::from(*n) * 270);
                domain::store::Write::create(domain::store::Record::User(user))
            })
            .collect();
        domain::store::Records::commit(world.env.store.as_ref(), writes).await.expect("seats");
    }
    let state = domain::actions::sweep::SweepState {
        version: 1,
        completed_through: Some(end_day),
        progress: None,
        retries: vec![],
        lease: None,
        updated_at: world.now(),
    };
    domain::store::Records::commit(world.env.store.as_ref(), vec![domain::store::Write::create(domain::store::Record::SweepState(state))])
        .await
        .expect("the sweep's state");
    let quiet = domain::clock::start_of_saudi_day(end_day) - time::Duration::hours(1);
    recorder.start().await;
    let report = sweep(&world.env, "bench-quiet", quiet, SweepOptions::default()).await.expect("the sweep runs");
    assert_eq!((report.expired, report.reminded), (0, 0), "{report:?}");
    recorder
        .stop(
            "sweep: an hour with nothing due",
            0,
            "no Scan: today's 16 partitions up to now (seats ending today), and the state item read and written at the start and the end",
        )
        .await;
    let next_day = domain::clock::start_of_saudi_day(end_day + time::Duration::days(1)) + time::Duration::hours(1);
    recorder.start().await;
    let report = sweep(&world.env, "bench-day", next_day, SweepOptions::default()).await.expect("the sweep runs");
    assert_eq!(report.expired, 320, "{report:?}");
    recorder
        .stop(
            "sweep: the day after 320 seats ended",
            0,
            "no Scan: 16 partitions × (yesterday, the three reminder days, today), a page of 100 per Query; one transaction per seat; the state item once more for the day completed",
        )
        .await;
    recorder.counts
}
