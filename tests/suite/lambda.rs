//! Lambda reality check: a built function binary runs as a Lambda process — it boots, asks
//! a loopback Runtime API for work, gets an API Gateway HTTP API (payload 2.0) event with
//! the JWT authorizer's claims, talks to DynamoDB, SES and SNS on moto, and posts its
//! response back.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use domain::organization::{PricingPlan, SizeTier};
use serde_json::{Value, json};
use system_tests::moto::workspace_root;
use system_tests::runtime_api::RuntimeApi;
use system_tests::world::{Backend, World};
use tokio::io::AsyncReadExt;

use crate::fixtures::{citizen, resident};

/// The function binary under test: `LAMBDA_BINARY_DIR/<name>` (e.g. a `sam build` output)
/// or the workspace's debug build, built on demand.
pub fn function_binary(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("LAMBDA_BINARY_DIR") {
        let path = PathBuf::from(dir).join(name);
        assert!(path.exists(), "{} does not exist", path.display());
        return path;
    }
    let path = workspace_root().join("target/debug").join(name);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args(["build", "--quiet", "-p", name, "--bin", name])
        .current_dir(workspace_root())
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building {name} failed");
    path
}

/// An HTTP API payload 2.0 event as API Gateway sends it after its JWT authorizer.
pub fn api_gateway_event(route_key: &str, path: &str, path_parameters: Value, subject: &str, headers: Value, body: &Value) -> Value {
    let (method, _) = route_key.split_once(' ').expect("a route key");
    json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": "",
        "headers": headers,
        "pathParameters": path_parameters,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "authorizer": { "jwt": { "claims": { "sub": subject, "iss": "https://issuer.example/", "aud": "establishment-users" }, "scopes": null } },
            "domainName": "abc123.execute-api.me-south-1.amazonaws.com",
            "domainPrefix": "abc123",
            "http": { "method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "192.0.2.10", "userAgent": "test" },
            "requestId": "lambda-reality-check-1",
            "routeKey": route_key,
            "stage": "$default",
            "time": "23/Nov/2026:08:00:00 +0000",
            "timeEpoch": 1795420800000u64
        },
        "body": body.to_string(),
        "isBase64Encoded": false
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subscribe_binary_serves_an_api_gateway_event_as_a_lambda_process() {
    let world = World::new(Backend::Moto).await;
    let manager = citizen(1);
    let organization = "7000000303";
    let org = world.onboard(organization, PricingPlan::Muqeem, &manager, &[("1-10", SizeTier::Small)]).await;
    world.credit(&org, 50_000).await;
    let person = world.register(&resident(1), &["1-10"], Some(300)).await;
    let names = world.dynamo.as_ref().expect("moto world").names().clone();

    let runtime = RuntimeApi::start().await;
    let body = json!({ "persons": [{ "id": person.as_str(), "establishments": ["1-10"], "user_type": "partners_only" }] });
    runtime.queue(
        "invocation-1",
        api_gateway_event(
            "POST /v1/organizations/{org}/subscriptions",
            &format!("/v1/organizations/{organization}/subscriptions"),
            json!({ "org": organization }),
            &manager,
            json!({ "content-type": "application/json", "idempotency-key": "lambda-1" }),
            &body,
        ),
    );
    let mut process = runtime
        .function(&function_binary("subscribe"), "subscribe", &world.moto().endpoint(), &names)
        .env("CODE_KEY_SECRET_ARN", world.moto().create_secret(&"2a".repeat(32)).await)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the function starts");

    let answer = tokio::time::timeout(Duration::from_secs(60), runtime.answer("invocation-1"))
        .await
        .expect("the function answers within a minute")
        .expect("the function answers without an error");
    process.kill().await.expect("stop the function");
    let mut logs = String::new();
    process.stdout.take().expect("stdout").read_to_string(&mut logs).await.expect("logs");
    process.stderr.take().expect("stderr").read_to_string(&mut logs).await.expect("logs");

    assert_eq!(answer["statusCode"], 201, "{answer}");
    let response: Value = serde_json::from_str(answer["body"].as_str().expect("a text body")).expect("JSON body");
    assert_eq!(response["users"][0]["id"], person.as_str());
    assert_eq!(response["users"][0]["activation_messages"], json!({ "email": "queued", "sms": "queued" }));
    assert_eq!(response["amount_charged_halalas"], 0, "the organization's first seat");

    // The deliver binary takes the intent off the outbox table's stream, as Lambda hands it
    // over, and sends the email and the SMS.
    let config = world.moto().sdk_config().await;
    let stream = local_api::deliverer::StreamReader::new(
        aws_sdk_dynamodbstreams::Client::new(&config),
        aws_sdk_dynamodb::Client::new(&config),
        names.outbox.clone(),
    );
    let records: Vec<_> = stream
        .read()
        .await
        .expect("the stream")
        .into_iter()
        .filter(|r| deliver_function::intent_of(r).ok().flatten().is_some_and(|i| !i.notices.is_empty()))
        .collect();
    assert_eq!(records.len(), 1, "one intent with messages: the subscription's");
    let mut event = aws_lambda_events::event::dynamodb::Event::default();
    event.records = records;
    let delivered = invoke_once(&world, "deliver", serde_json::to_value(&event).expect("an event")).await.expect("no error");
    assert_eq!(delivered, json!({ "batchItemFailures": [] }), "nothing to retry");

    // What the functions wrote and sent is really there.
    let stored = world.records().await;
    assert!(stored.iter().any(|r| matches!(r, domain::store::Record::User(u) if u.id == person)));
    let registered = stored
        .iter()
        .find_map(|r| match r {
            domain::store::Record::Person(p) if p.id == person => Some(p.clone()),
            _ => None,
        })
        .expect("registered");
    let user = stored
        .iter()
        .find_map(|r| match r {
            domain::store::Record::User(u) if u.id == person => Some(u.clone()),
            _ => None,
        })
        .expect("subscribed");
    for slot in [domain::outbox::Slot::ActivationEmail, domain::outbox::Slot::ActivationSms] {
        assert_eq!(user.deliveries[&slot].state, domain::outbox::DeliveryState::Sent, "{slot:?}");
    }
    assert_eq!(world.emails_to(&registered.email).await.len(), 1, "sent once: the world's own deliverer finds it sent");
    assert_eq!(world.sms_to(&registered.mobile).await.len(), 1);

    // Its logs are JSON lines with a timestamp (the subscription's metrics among them, in
    // embedded metric format), carry the request id, and no personal data or secret.
    assert!(logs.contains("lambda-reality-check-1"), "the request id is logged:\n{logs}");
    let lines: Vec<Value> = logs.lines().map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"))).collect();
    for line in &lines {
        let at = line["timestamp"].as_str().unwrap_or_else(|| panic!("no timestamp: {line}"));
        assert!(domain::clock::parse_rfc3339(at).is_some(), "{at}");
    }
    let metrics = lines.iter().find(|line| !line["_aws"].is_null()).expect("an embedded-metric line");
    assert_eq!((metrics["Subscriptions"].as_u64(), metrics["FunctionName"].as_str()), (Some(1), Some("subscribe")), "{metrics}");
    for secret in [person.as_str(), manager.as_str(), registered.email.as_str(), registered.mobile.as_str()] {
        assert!(!logs.contains(secret), "the logs contain {secret}:\n{logs}");
    }
}

/// The sweep binary takes the scheduled event kept in `infra/events/scheduled.json` (the
/// one `cargo lambda invoke` uses) and sweeps as of its `time`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_binary_runs_on_the_scheduled_event_kept_in_the_repository() {
    let world = World::new(Backend::Moto).await;
    let manager = citizen(1);
    let org = world.onboard("7000000606", PricingPlan::Muqeem, &manager, &[("1-10", SizeTier::Small)]).await;
    world.credit(&org, 100_000).await;
    let person = domain::identity::PersonId::parse(&citizen(2)).unwrap();
    world.active_user(&org, &domain::identity::PersonId::parse(&manager).unwrap(), &person, &["1-10"]).await;

    let mut event: Value =
        serde_json::from_str(&std::fs::read_to_string(workspace_root().join("infra/events/scheduled.json")).unwrap()).unwrap();
    let at = domain::clock::one_year_after(system_tests::world::START) + time::Duration::days(1);
    event["time"] = json!(domain::clock::key_timestamp(at));
    let report = invoke_once(&world, "expiry-sweep", event).await.expect("no error");
    assert_eq!(report["expired"], 1, "{report}");
    assert_eq!(report["now"], domain::clock::key_timestamp(at));
    assert_eq!(world.user(&org, &person).await.status, domain::user::UserStatus::Expired);
}

/// Runs `function`'s binary as a Lambda process on the world's emulator tables for one
/// event: its response, or the error it reported.
async fn invoke_once(world: &World, function: &str, event: Value) -> Result<Value, Value> {
    invoke_with_key(world, function, event, &"2a".repeat(32)).await
}

/// As `invoke_once`, with the code key the secret holds.
async fn invoke_with_key(world: &World, function: &str, event: Value, key: &str) -> Result<Value, Value> {
    invoke_with(world, function, event, key, &[]).await
}

/// As `invoke_once`, with the code key the secret holds and more variables.
async fn invoke_with(world: &World, function: &str, event: Value, key: &str, vars: &[(&str, &str)]) -> Result<Value, Value> {
    let names = world.dynamo.as_ref().expect("moto world").names().clone();
    let runtime = RuntimeApi::start().await;
    runtime.queue("once", event);
    let mut process = runtime
        .function(&function_binary(function), function, &world.moto().endpoint(), &names)
        .env("CODE_KEY_SECRET_ARN", world.moto().create_secret(key).await)
        .envs(vars.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the function starts");
    let answer = tokio::time::timeout(Duration::from_secs(60), runtime.answer("once")).await.expect("the function answers within a minute");
    process.kill().await.expect("stop the function");
    answer
}

/// The API Gateway events kept in `infra/events/` (what `cargo lambda invoke --data-file`
/// sends) stay true to the routes: each runs through its function's binary, against the
/// demo data on the emulator, in the order a walkthrough would, and is answered by its
/// route with success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_kept_in_the_repository_is_answered_by_its_function() {
    let world = World::new(Backend::Moto).await;
    local_api::demo::seed(&world.env).await.expect("the demo data");
    let events = workspace_root().join("infra/events");
    let expected = [
        ("operator", 201),
        ("subscribe", 201),
        ("activate", 200),
        ("grant", 200),
        ("authorize", 200),
        ("modify", 200),
        ("directory", 200),
        ("suspend", 200),
    ];
    let mut on_disk: Vec<String> = std::fs::read_dir(&events)
        .expect("infra/events")
        .map(|entry| entry.expect("an entry").file_name().to_string_lossy().into_owned())
        .filter(|name| {
            name.ends_with(".json") && !["scheduled.json", "deliver.json", "redrive.json", "delivery-failure.json"].contains(&name.as_str())
        })
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = expected.iter().map(|(function, _)| format!("{function}.json")).collect();
    listed.sort();
    assert_eq!(on_disk, listed, "every HTTP function has one event, and every event is tried");
    let served: std::collections::BTreeSet<&str> = gateway::routes::functions().into_iter().map(|(function, _)| function).collect();
    assert_eq!(served, expected.iter().map(|(function, _)| *function).collect(), "one event per HTTP function");

    for (function, status) in expected {
        let event: Value = serde_json::from_str(&std::fs::read_to_string(events.join(format!("{function}.json"))).unwrap()).unwrap();
        let routes = gateway::routes::functions().into_iter().find(|(name, _)| *name == function).expect("a function").1;
        let key = event["routeKey"].as_str().expect("a route key");
        assert!(routes.iter().any(|route| route.key == key), "{function}.json: {key} is not a route of {function}");
        let answer = invoke_once(&world, function, event).await.expect("the function answers without an error");
        assert_eq!(answer["statusCode"], status, "{function}.json: {answer}");
    }
}

/// A sweep event it cannot use is refused with a stable error type the Lambda service
/// records, not the name of a Rust type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_refuses_an_event_without_a_time_with_a_named_error() {
    let world = World::new(Backend::Moto).await;
    let error = invoke_once(&world, "expiry-sweep", json!({ "id": "x", "time": "yesterday" })).await.expect_err("refused");
    assert_eq!(error["errorType"], "BadEventTime", "{error}");
    assert_eq!(error["errorMessage"], "the event's time is not an RFC 3339 timestamp");
}

/// The stream event kept in `infra/events/deliver.json` (what `cargo lambda invoke deliver
/// --data-file` sends) is read by the deliver binary: its intent parses, and since no user's
/// slot names it (the demo subscription made its own), nothing is sent and nothing is
/// retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deliver_binary_takes_the_stream_event_kept_in_the_repository() {
    let world = World::new(Backend::Moto).await;
    local_api::demo::seed(&world.env).await.expect("the demo data");
    let event: Value = serde_json::from_str(&std::fs::read_to_string(workspace_root().join("infra/events/deliver.json")).unwrap()).unwrap();
    let record = &event["Records"][0];
    let parsed: aws_lambda_events::event::dynamodb::EventRecord =
        serde_json::from_value(record.clone()).expect("the shape of aws_lambda_events");
    let intent = deliver_function::intent_of(&parsed).expect("a readable intent").expect("a new one");
    assert_eq!(intent.notices.len(), 2);
    let answer = invoke_once(&world, "deliver", event).await.expect("no error");
    assert_eq!(answer, json!({ "batchItemFailures": [] }));
}

/// The code key comes from Secrets Manager, read once by the first request that needs it:
/// the function's configuration holds only the secret's ARN, start-up reads nothing (the
/// function asks for work before any read), and two subscriptions make one read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_code_key_is_read_from_secrets_manager_once_when_first_needed() {
    let world = World::new(Backend::Moto).await;
    local_api::demo::seed(&world.env).await.expect("the demo data");
    let names = world.dynamo.as_ref().expect("moto world").names().clone();
    let secret = world.moto().create_secret(&"2a".repeat(32)).await;
    let event: Value =
        serde_json::from_str(&std::fs::read_to_string(workspace_root().join("infra/events/subscribe.json")).unwrap()).unwrap();

    let _recording = system_tests::moto::recording_lock().lock().await;
    world.moto().start_recording().await;
    let runtime = RuntimeApi::start().await;
    let mut process = runtime
        .function(&function_binary("subscribe"), "subscribe", &world.moto().endpoint(), &names)
        .env("CODE_KEY_SECRET_ARN", &secret)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the function starts");
    tokio::time::timeout(Duration::from_secs(60), async {
        while runtime.first_next_at().is_none() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("it asks for work");
    assert_eq!(world.moto().recorded_targets(&secret).await, Vec::<String>::new(), "nothing read at start-up");
    world.moto().start_recording().await;
    runtime.queue("first", event.clone());
    runtime.queue("second", event);
    for invocation in ["first", "second"] {
        let answer = tokio::time::timeout(Duration::from_secs(60), runtime.answer(invocation)).await.expect("an answer").expect("no error");
        assert_eq!(answer["statusCode"], 201, "{invocation}: {answer}");
    }
    process.kill().await.expect("stop the function");
    let reads = world.moto().recorded_targets(&secret).await;
    assert_eq!(reads, ["secretsmanager.GetSecretValue"], "one read, for the first subscription");
}

/// A code key that cannot be read (a missing secret, or text too short to be a key) fails
/// the request that needs it with a bare 500, its cause logged without the secret, and
/// nothing written; the failure is not kept, so once the secret is right the same request
/// (the same idempotency key) succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_code_key_fails_the_request_not_the_function_and_is_tried_again() {
    let world = World::new(Backend::Moto).await;
    local_api::demo::seed(&world.env).await.expect("the demo data");
    let names = world.dynamo.as_ref().expect("moto world").names().clone();
    let short = world.moto().create_secret("too-short").await;
    let event: Value =
        serde_json::from_str(&std::fs::read_to_string(workspace_root().join("infra/events/subscribe.json")).unwrap()).unwrap();
    let ledger = |world: &World| {
        let store = world.env.store.clone();
        async move {
            let organization = domain::organization::OrganizationId::parse("7001234567").expect("an organization");
            store.ledger(&organization, domain::store::PageRequest::first(100)).await.expect("the ledger").items.len()
        }
    };
    let before = ledger(&world).await;
    for secret in ["arn:aws:secretsmanager:us-east-1:123456789012:secret:missing-AbCdEf", short.as_str()] {
        let runtime = RuntimeApi::start().await;
        runtime.queue("refused", event.clone());
        let mut process = runtime
            .function(&function_binary("subscribe"), "subscribe", &world.moto().endpoint(), &names)
            .env("CODE_KEY_SECRET_ARN", secret)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the process starts");
        let answer = tokio::time::timeout(Duration::from_secs(60), runtime.answer("refused")).await.expect("an answer").expect("no error");
        assert_eq!(answer["statusCode"], 500, "{secret}: {answer}");
        let body: Value = serde_json::from_str(answer["body"].as_str().expect("a body")).expect("JSON");
        assert_eq!(body["error"]["code"], "internal", "{body}");
        assert_eq!(body["error"].as_object().map(|error| error.len()), Some(2), "a bare error: {body}");
        if secret == short {
            // The secret is made right; the same request goes through.
            let config = world.moto().sdk_config().await;
            aws_sdk_secretsmanager::Client::new(&config)
                .put_secret_value()
                .secret_id(secret)
                .secret_string("2a".repeat(32))
                .send()
                .await
                .expect("the secret is replaced");
            runtime.queue("again", event.clone());
            let answer =
                tokio::time::timeout(Duration::from_secs(60), runtime.answer("again")).await.expect("an answer").expect("no error");
            assert_eq!(answer["statusCode"], 201, "{answer}");
        }
        process.kill().await.expect("stop the function");
        let mut logs = String::new();
        process.stdout.take().expect("stdout").read_to_string(&mut logs).await.expect("logs");
        assert!(logs.contains("secret"), "the cause is logged: {logs}");
        assert!(!logs.contains("too-short"), "the secret's text is never logged: {logs}");
        if secret != short {
            assert_eq!(ledger(&world).await, before, "nothing charged by a refused request");
        }
    }
}

/// The stream's failure destination, consumed by the deliver binary: a batch that kept
/// failing is named on the queue (here put there as Lambda's event source mapping would,
/// on moto's SQS); the binary, handed the queue's message as Lambda's poller hands it,
/// reads the record again from the stream and delivers it. Then the schedule: the binary's
/// redrive finds through the index what is queued past its wait (sent) and past its window
/// (given up, never sent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deliver_binary_consumes_the_failure_queue_and_redrives_on_schedule() {
    use domain::outbox::{DeliveryState, Slot};
    let world = World::new(Backend::Moto).await;
    let manager = domain::identity::PersonId::parse(&citizen(1)).unwrap();
    let org = world.onboard("7000000707", PricingPlan::Muqeem, manager.as_str(), &[("1-10", SizeTier::Small)]).await;
    world.credit(&org, 100_000).await;
    let subscribe = |n: u32| {
        let world = &world;
        let (org, manager) = (org.clone(), manager.clone());
        async move {
            let person = world.register(&resident(n), &["1-10"], Some(300)).await;
            let persons = vec![domain::actions::subscribe::SubscribePerson {
                id: person.clone(),
                establishments: std::collections::BTreeSet::from([domain::organization::EstablishmentId::parse("1-10").unwrap()]),
                user_type: Some(domain::user::UserType::PartnersOnly),
                language: None,
                job_title: None,
            }];
            world.subscribe(&manager, &org, persons, &format!("key-{n}")).await;
            person
        }
    };
    let state = |person: domain::identity::PersonId| {
        let world = &world;
        async move {
            let records = world.records().await;
            let user = records
                .iter()
                .find_map(|r| match r {
                    domain::store::Record::User(u) if u.id == person => Some(u.clone()),
                    _ => None,
                })
                .expect("subscribed");
            [Slot::ActivationEmail, Slot::ActivationSms].map(|slot| user.deliveries[&slot].state)
        }
    };
    let email_of = |person: domain::identity::PersonId| {
        let world = &world;
        async move {
            world
                .records()
                .await
                .into_iter()
                .find_map(|r| match r {
                    domain::store::Record::Person(p) if p.id == person => Some(p.email),
                    _ => None,
                })
                .expect("registered")
        }
    };

    // A subscription whose stream record Lambda gave up on: its batch named on the queue.
    let dropped = subscribe(50).await;
    let config = world.moto().sdk_config().await;
    let names = world.dynamo.as_ref().expect("moto world").names().clone();
    let dynamodb = aws_sdk_dynamodb::Client::new(&config);
    let streams = aws_sdk_dynamodbstreams::Client::new(&config);
    let table = dynamodb.describe_table().table_name(&names.outbox).send().await.expect("the outbox table");
    let arn = table.table().and_then(|t| t.latest_stream_arn()).expect("a stream").to_owned();
    let description = streams.describe_stream().stream_arn(&arn).send().await.expect("the stream");
    let shard = description.stream_description().and_then(|d| d.shards().first()).and_then(|s| s.shard_id()).expect("a shard").to_owned();
    let records =
        local_api::deliverer::StreamReader::new(streams.clone(), dynamodb.clone(), names.outbox.clone()).read().await.expect("read");
    let intents: Vec<_> = records
        .iter()
        .filter(|r| deliver_function::intent_of(r).ok().flatten().is_some_and(|i| i.notices.iter().any(|n| n.user == dropped)))
        .collect();
    assert_eq!(intents.len(), 1, "the subscription's intent is on the stream");
    let sequence = intents[0].change.sequence_number.clone().expect("a sequence number");
    let sqs = aws_sdk_sqs::Client::new(&config);
    let queue = sqs.create_queue().queue_name(format!("t{}-delivery-failures", world.tag)).send().await.expect("a queue");
    let queue_url = queue.queue_url().expect("its url").to_owned();
    let mut failure: Value =
        serde_json::from_str(&std::fs::read_to_string(workspace_root().join("infra/events/delivery-failure.json")).unwrap()).unwrap();
    let mut body: Value = serde_json::from_str(failure["Records"][0]["body"].as_str().unwrap()).unwrap();
    body["DDBStreamBatchInfo"]["shardId"] = json!(shard);
    body["DDBStreamBatchInfo"]["startSequenceNumber"] = json!(sequence);
    body["DDBStreamBatchInfo"]["endSequenceNumber"] = json!(sequence);
    body["DDBStreamBatchInfo"]["streamArn"] = json!(arn);
    sqs.send_message().queue_url(&queue_url).message_body(body.to_string()).send().await.expect("sent to the queue");
    let received = sqs.receive_message().queue_url(&queue_url).max_number_of_messages(10).send().await.expect("received");
    let message = received.messages().first().expect("the failure message").clone();
    failure["Records"][0]["messageId"] = json!(message.message_id().expect("an id"));
    failure["Records"][0]["receiptHandle"] = json!(message.receipt_handle().expect("a handle"));
    failure["Records"][0]["body"] = json!(message.body().expect("a body"));
    assert_eq!(state(dropped.clone()).await, [DeliveryState::Queued; 2]);
    // The world's code key (`system_tests::world::code_key`: 32 bytes of 42, which is '*').
    let world_key = "*".repeat(32);
    let answer = invoke_with_key(&world, "deliver", failure, &world_key).await.expect("no error");
    assert_eq!(answer, json!({ "batchItemFailures": [] }), "delivered: the message leaves the queue");
    sqs.delete_message().queue_url(&queue_url).receipt_handle(message.receipt_handle().unwrap()).send().await.expect("deleted");
    assert_eq!(state(dropped.clone()).await, [DeliveryState::Sent; 2]);
    assert_eq!(world.emails_to(&email_of(dropped.clone()).await).await.len(), 1, "once");

    // The schedule: one subscription queued 20 minutes ago (by the real clock the binary
    // reads), one queued at the world's start, days ago.
    let stale = subscribe(51).await;
    world.clock.set(time::OffsetDateTime::now_utc() - time::Duration::minutes(20));
    let due = subscribe(52).await;
    let redrive: Value =
        serde_json::from_str(&std::fs::read_to_string(workspace_root().join("infra/events/redrive.json")).unwrap()).unwrap();
    let report = invoke_with_key(&world, "deliver", redrive, &world_key).await.expect("no error");
    assert_eq!(
        (report["users"].as_u64(), report["delivered"]["sent"].as_u64(), report["given_up"].as_u64()),
        (Some(2), Some(2), Some(2)),
        "{report}"
    );
    assert_eq!(state(due.clone()).await, [DeliveryState::Sent; 2]);
    assert_eq!(state(stale.clone()).await, [DeliveryState::Undeliverable; 2]);
    assert_eq!(world.emails_to(&email_of(due).await).await.len(), 1);
    assert!(world.emails_to(&email_of(stale).await).await.is_empty(), "never sent late");
}

/// The publish binary takes the outbox stream's records as Lambda hands them over and puts
/// their change events on an EventBridge bus (moto's), where a rule like the template's
/// routes the access-affecting ones to an SQS queue: the suspension arrives there as a
/// CloudEvent with the id the commit gave it; the other events (onboarding, credit,
/// subscription) are on the bus but not routed there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_publish_binary_puts_change_events_on_the_bus_and_a_rule_routes_them_to_sqs() {
    let world = World::new(Backend::Moto).await;
    let manager = domain::identity::PersonId::parse(&citizen(1)).unwrap();
    let org = world.onboard("7000000808", PricingPlan::Muqeem, manager.as_str(), &[("1-10", SizeTier::Small)]).await;
    world.credit(&org, 100_000).await;
    let person = domain::identity::PersonId::parse(&resident(60)).unwrap();
    world.active_user(&org, &manager, &person, &["1-10"]).await;
    let client = world.serve().await;
    let suspended = client
        .post(
            &format!("/v1/organizations/{}/users/{}/suspension", org.as_str(), person.as_str()),
            &client.token_for(&manager),
            &json!({ "reason": "left" }),
        )
        .await;
    assert_eq!(suspended.status, 200, "{}", suspended.text());

    let config = world.moto().sdk_config().await;
    let events = aws_sdk_eventbridge::Client::new(&config);
    let sqs = aws_sdk_sqs::Client::new(&config);
    let bus = format!("t{}-changes", world.tag);
    events.create_event_bus().name(&bus).send().await.expect("a bus");
    let queue = sqs.create_queue().queue_name(format!("t{}-access", world.tag)).send().await.expect("a queue");
    let queue_url = queue.queue_url().expect("a url").to_owned();
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("attributes");
    let queue_arn = attributes.attributes().and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)).expect("an arn").clone();
    let pattern = json!({ "source": [domain::events::BUS_SOURCE], "detail-type": [domain::events::event_type(domain::audit::AuditAction::UserSuspended)] });
    events.put_rule().name("access").event_bus_name(&bus).event_pattern(pattern.to_string()).send().await.expect("a rule");
    events
        .put_targets()
        .rule("access")
        .event_bus_name(&bus)
        .targets(aws_sdk_eventbridge::types::Target::builder().id("queue").arn(&queue_arn).build().expect("a target"))
        .send()
        .await
        .expect("the queue as target");

    let names = world.dynamo.as_ref().expect("moto world").names().clone();
    let records = local_api::deliverer::StreamReader::new(
        aws_sdk_dynamodbstreams::Client::new(&config),
        aws_sdk_dynamodb::Client::new(&config),
        names.outbox.clone(),
    )
    .read()
    .await
    .expect("the stream");
    let committed: Vec<domain::events::ChangeEvent> =
        records.iter().filter_map(|r| deliver_function::intent_of(r).ok().flatten()).flat_map(|i| i.events).collect();
    assert!(committed.len() >= 4, "onboarding, credit, subscription, activation (fixture), suspension: {}", committed.len());
    let mut event = aws_lambda_events::event::dynamodb::Event::default();
    event.records = records;
    let answer =
        invoke_with(&world, "publish", serde_json::to_value(&event).expect("an event"), &"2a".repeat(32), &[("EVENT_BUS_NAME", &bus)])
            .await
            .expect("no error");
    assert_eq!(answer, json!({ "batchItemFailures": [] }), "every event published");

    let received = sqs.receive_message().queue_url(&queue_url).max_number_of_messages(10).send().await.expect("received");
    let bodies: Vec<Value> = received.messages().iter().map(|m| serde_json::from_str(m.body().expect("a body")).expect("JSON")).collect();
    assert_eq!(bodies.len(), 1, "only the suspension is routed: {bodies:?}");
    let routed = &bodies[0];
    assert_eq!(routed["source"], domain::events::BUS_SOURCE);
    assert_eq!(routed["detail-type"], "sa.establishment-users.user.suspended.v1");
    let detail = &routed["detail"];
    assert_eq!(detail["specversion"], "1.0");
    assert_eq!(detail["subject"], format!("organizations/{}/users/{}", org.as_str(), person.as_str()));
    let suspension = committed.iter().find(|e| e.kind.ends_with("user.suspended.v1")).expect("the suspension's event");
    assert_eq!(detail["id"], suspension.id.as_str(), "the id the commit gave it");
    assert_eq!(detail["data"]["version"], suspension.data.version.expect("a version"));
}
