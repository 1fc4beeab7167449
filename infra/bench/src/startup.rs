//! Size, cold start, first invocation and peak memory of a binary, next to the floors.
//!
//! Each run starts the binary as Lambda would, against a loopback Runtime API with one event
//! queued: the cold start is the time from spawning the process to its first `GET
//! /runtime/invocation/next`, and the answer time from spawning it to the answer of that
//! event. The start-up stage gives an event refused before any I/O (an HTTP API event
//! without authorizer claims; the sweep an event whose `time` it refuses, `deliver` an empty
//! stream batch) and reads the peak resident set (`VmHWM`) once it has answered; the
//! first-invocation stage gives an event that makes real DynamoDB requests. The SDK endpoint
//! is the emulator on loopback: the binaries that read the code key at start-up read it
//! there; the others do no network I/O before their first invocation. Every binary runs in
//! interleaved rounds (see `measure_all`), in a certificate layout (`Layout`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use aws_adapters::TableNames;
use serde_json::{Value, json};
use system_tests::runtime_api::RuntimeApi;

/// Medians over the rounds.
pub struct Startup {
    pub size_bytes: u64,
    /// Spawn to the first `/invocation/next`, ms.
    pub cold_start_ms: f64,
    /// Spawn to the answer of the first invocation, ms.
    pub answered_ms: f64,
    /// The first `/invocation/next` to that answer, ms.
    pub invocation_ms: f64,
    /// KiB.
    pub peak_rss_kib: u64,
    /// The status (HTTP functions) or the shape of the last answer.
    pub answer: String,
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len().is_multiple_of(2) { (values[middle - 1] + values[middle]) / 2.0 } else { values[middle] }
}

/// The event a binary gets in the start-up stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Http,
    Scheduled,
    Stream,
}

/// Where the binaries' SDK calls go, the tables they name, and the secret they read at
/// start-up.
pub struct Emulator {
    pub endpoint: String,
    pub secret_arn: String,
    pub tables: TableNames,
}

/// The certificate store a binary finds on the machine. rustls-native-certs (what the SDK's
/// default HTTPS client loads its roots with) reads `SSL_CERT_FILE` and every file of
/// `SSL_CERT_DIR` when either is set, and otherwise the first bundle it finds plus every
/// file of `/etc/ssl/certs` and `/etc/pki/tls/certs` (openssl-probe).
pub struct Layout {
    pub name: &'static str,
    pub env: Vec<(&'static str, PathBuf)>,
}

impl Layout {
    /// This machine's (Debian): a bundle and a directory of 146 certificates and their hash
    /// links.
    pub fn this_machine() -> Layout {
        Layout { name: "this machine's store", env: Vec::new() }
    }

    /// Lambda's `provided.al2023`: one bundle (`/etc/pki/tls/certs/ca-bundle.crt`), no
    /// directory of single certificates. Emulated with this machine's bundle (the same
    /// Mozilla roots) as `SSL_CERT_FILE` and an empty `SSL_CERT_DIR`.
    pub fn lambda(empty_dir: &Path) -> Layout {
        Layout {
            name: "one bundle, as provided.al2023",
            env: vec![("SSL_CERT_FILE", PathBuf::from("/etc/ssl/certs/ca-certificates.crt")), ("SSL_CERT_DIR", empty_dir.to_path_buf())],
        }
    }
}

pub fn startup_event(kind: Kind) -> Value {
    match kind {
        Kind::Scheduled => return json!({ "id": "bench", "time": "not a time", "detail-type": "Scheduled Event", "source": "aws.events" }),
        Kind::Stream => return json!({ "Records": [] }),
        Kind::Http => {}
    }
    json!({
        "version": "2.0",
        "routeKey": "GET /v1/organizations/{org}/balance",
        "rawPath": "/v1/organizations/7001234567/balance",
        "rawQueryString": "",
        "headers": {},
        "pathParameters": { "org": "7001234567" },
        "requestContext": {
            "accountId": "123456789012", "apiId": "bench", "domainName": "bench.local", "domainPrefix": "bench",
            "http": { "method": "GET", "path": "/v1/organizations/7001234567/balance", "protocol": "HTTP/1.1", "sourceIp": "192.0.2.1", "userAgent": "bench" },
            "requestId": "bench", "routeKey": "GET /v1/organizations/{org}/balance", "stage": "$default",
            "time": "23/Nov/2026:08:00:00 +0000", "timeEpoch": 1795420800000u64
        },
        "isBase64Encoded": false
    })
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

struct Run {
    cold_ms: f64,
    answered_ms: f64,
    rss_kib: u64,
    answer: String,
}

fn describe(answer: Result<Value, Value>) -> String {
    match answer {
        Ok(response) => match response.get("statusCode") {
            Some(status) => status.to_string(),
            None if response.get("batchItemFailures").is_some() => "batch".to_owned(),
            None => "answered".to_owned(),
        },
        Err(error) => format!("error {}", error["errorType"].as_str().unwrap_or("?")),
    }
}

async fn run_once(binary: &Path, event: &Value, emulator: &Emulator, layout: &Layout) -> Run {
    let runtime = RuntimeApi::start().await;
    runtime.queue("bench-1", event.clone());
    let started = Instant::now();
    let mut process = runtime
        .function(binary, "bench", &emulator.endpoint, &emulator.tables)
        .env("CODE_KEY_SECRET_ARN", &emulator.secret_arn)
        .env("EVENT_BUS_NAME", "bench")
        .envs(layout.env.iter().map(|(name, value)| (name, value)))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{} starts: {e}", binary.display()));
    let pid = process.id().expect("a pid");
    let answer = tokio::time::timeout(Duration::from_secs(30), runtime.answer("bench-1"))
        .await
        .unwrap_or_else(|_| panic!("{} answers within 30 s", binary.display()));
    let answered = started.elapsed();
    let cold = runtime.first_next_at().expect("the function asked for work").duration_since(started);
    let rss_kib = peak_rss_kib(pid);
    process.kill().await.expect("stop the function");
    Run { cold_ms: cold.as_secs_f64() * 1000.0, answered_ms: answered.as_secs_f64() * 1000.0, rss_kib, answer: describe(answer) }
}

/// Measures every binary (`(path, its event)`) in interleaved rounds: each round starts
/// every binary once, in an order rotated from the round before, so that a drift of the
/// machine (another tenant, frequency, page cache) falls on functions and floors alike
/// instead of on whichever was measured last. One untimed round first warms the page cache,
/// as a provisioned sandbox would have it (and makes whatever first write an event makes).
/// Medians over `runs` rounds.
pub async fn measure_all(binaries: &[(&Path, Value)], runs: usize, emulator: &Emulator, layout: &Layout) -> Vec<Startup> {
    let count = binaries.len();
    let mut colds = vec![Vec::with_capacity(runs); count];
    let mut answered = vec![Vec::with_capacity(runs); count];
    let mut invocations = vec![Vec::with_capacity(runs); count];
    let mut rss = vec![Vec::with_capacity(runs); count];
    let mut answers = vec![String::new(); count];
    for round in 0..=runs {
        for step in 0..count {
            let index = (round + step) % count;
            let (binary, event) = &binaries[index];
            let run = run_once(binary, event, emulator, layout).await;
            if round > 0 {
                colds[index].push(run.cold_ms);
                answered[index].push(run.answered_ms);
                invocations[index].push(run.answered_ms - run.cold_ms);
                rss[index].push(run.rss_kib as f64);
                answers[index] = run.answer;
            }
        }
    }
    binaries
        .iter()
        .enumerate()
        .map(|(index, (binary, _))| Startup {
            size_bytes: std::fs::metadata(binary).unwrap_or_else(|e| panic!("{}: {e}", binary.display())).len(),
            cold_start_ms: median(std::mem::take(&mut colds[index])),
            answered_ms: median(std::mem::take(&mut answered[index])),
            invocation_ms: median(std::mem::take(&mut invocations[index])),
            peak_rss_kib: median(std::mem::take(&mut rss[index])) as u64,
            answer: std::mem::take(&mut answers[index]),
        })
        .collect()
}
