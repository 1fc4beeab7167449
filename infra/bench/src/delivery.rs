//! Subscribing 24 persons (the most one request may carry) against the emulator, before and after messages left through the
//! outbox: the local server of each version (the one before is built from the last commit
//! that sent inline) runs with DynamoDB, SES and SNS on moto; each round subscribes 24 new
//! persons in one request. Before, the answer came after the last of the 50 messages was
//! sent; after, the round waits until `deliver` (the local server's stream reader, polling
//! as Lambda's does) has recorded every message as sent on its user, reading the users every
//! 50 ms (moto answers one request at a time, so a busier poll would slow what it measures).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use domain::identity::{PersonId, with_check_digit};
use domain::organization::OrganizationId;
use domain::store::Key;
use serde_json::json;
use system_tests::moto::{MAIL_FROM, Moto};

use crate::load::{Connection, free_port, token};

pub const ROUNDS: usize = 30;
const PERSONS: usize = domain::actions::subscribe::MAX_PERSONS_PER_REQUEST;
const ORGANIZATION: &str = "7001234567";

pub struct Subscribe25 {
    pub version: String,
    pub request: (f64, f64),
    /// After only: until every message's delivery record says `sent`.
    pub until_recorded: Option<(f64, f64)>,
}

/// `(p50, p99)` in milliseconds (nearest rank).
fn percentiles(mut values: Vec<f64>) -> (f64, f64) {
    values.sort_by(f64::total_cmp);
    let rank = |p: f64| values[((p * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1];
    (rank(0.50), rank(0.99))
}

async fn messages_received(moto: &Moto) -> usize {
    let data = moto.data().await;
    data["ses"]["Message"].as_array().map_or(0, Vec::len) + data["sns"]["SMS"].as_array().map_or(0, Vec::len)
}

/// Measures one version's local server; `records` when it keeps delivery records.
pub async fn measure(server: &Path, version: &str, records: bool) -> Subscribe25 {
    let moto = system_tests::moto::moto_for(version);
    moto.verify_mail_domain().await;
    let port = free_port();
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let prefix = format!("deliver{}", domain::entropy::SystemEntropy::hex(4));
    let mut process = tokio::process::Command::new(server)
        .args(["--demo", "--port", &port.to_string(), "--store", "dynamodb", "--table-prefix", &prefix, "--create-tables"])
        .args(["--messaging", "aws"])
        .env("AWS_ENDPOINT_URL", moto.endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("MAIL_FROM", MAIL_FROM)
        .env("CODE_HMAC_KEY", "2a".repeat(32))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{} starts: {e}", server.display()));
    let started = Instant::now();
    while tokio::net::TcpStream::connect(address).await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(120), "{version}: the local server did not listen within 2 minutes");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let operator = token(server, &["--sub", "operator@platform.example", "--role", "operator"]);
    let manager = token(server, &["--sub", "1012345672"]);
    let mut connection = Connection::open(address).await;
    let persons: Vec<String> = (0..ROUNDS * PERSONS).map(|n| with_check_digit(&format!("18{n:07}"))).collect();
    for (n, id) in persons.iter().enumerate() {
        let body = json!({
            "name": { "en": format!("Bench Person {n}"), "ar": "موظف اختبار" }, "nationality": "SA",
            "employers": ["1-123456"], "email": format!("d{n}.{prefix}@example.sa"), "mobile": format!("057{n:07}")
        });
        let (status, text) = connection.send("PUT", &format!("/v1/registry/persons/{id}"), &operator, &body).await;
        assert!(status == 201 || status == 200, "{version}: register a person: {status} {text}");
    }
    let credit = json!({ "amount_halalas": 100_000_000u64, "payment_reference": format!("BENCH-{prefix}") });
    let (status, text) = connection.send("POST", &format!("/v1/organizations/{ORGANIZATION}/balance/credits"), &operator, &credit).await;
    assert_eq!(status, 201, "{version}: credit: {text}");

    let store = if records {
        let client = aws_sdk_dynamodb::Client::new(&moto.sdk_config().await);
        Some(aws_adapters::DynamoStore::new(client, aws_adapters::TableNames::with_prefix(&prefix)))
    } else {
        None
    };
    let organization = OrganizationId::parse(ORGANIZATION).expect("valid");
    let (mut requests, mut recorded) = (Vec::new(), Vec::new());
    let received_before = messages_received(moto).await;
    for (round, ids) in persons.chunks(PERSONS).enumerate() {
        let body = json!({ "persons": ids.iter().map(|id| json!({ "id": id, "establishments": ["1-123456"], "user_type": "residents_and_partners" })).collect::<Vec<_>>() });
        let started = Instant::now();
        let (status, text) = connection
            .send_keyed("POST", &format!("/v1/organizations/{ORGANIZATION}/subscriptions"), &manager, &format!("round-{round}"), &body)
            .await;
        requests.push(started.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(status, 201, "{version}: subscribe {PERSONS}: {text}");
        let deadline = started + Duration::from_secs(60);
        if let Some(store) = &store {
            let keys: Vec<Key> = ids.iter().map(|id| Key::User(organization.clone(), PersonId::parse(id).expect("valid"))).collect();
            loop {
                let loaded = domain::store::Records::load(store, &keys).await.expect("the users");
                let done = keys.iter().all(|key| match key {
                    Key::User(org, id) => loaded.user(org, id).is_some_and(|user| {
                        user.deliveries.len() == 2 && user.deliveries.values().all(|d| d.state == domain::outbox::DeliveryState::Sent)
                    }),
                    _ => false,
                });
                if done {
                    break;
                }
                assert!(Instant::now() < deadline, "{version}: the deliveries were not recorded within a minute");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            recorded.push(started.elapsed().as_secs_f64() * 1000.0);
        }
    }
    // Every message reached the emulator, either way.
    let deadline = Instant::now() + Duration::from_secs(60);
    while messages_received(moto).await < received_before + 2 * PERSONS * ROUNDS {
        assert!(Instant::now() < deadline, "{version}: not every message reached the emulator");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    process.kill().await.expect("stop the server");
    Subscribe25 { version: version.to_owned(), request: percentiles(requests), until_recorded: records.then(|| percentiles(recorded)) }
}
