//! Size, cold start and peak memory of a function binary, next to its floor.
//!
//! Each run starts the binary as Lambda would, against a loopback Runtime API: the cold start
//! is the time from spawning the process to its first `GET /runtime/invocation/next`. It then
//! gets one invocation (an HTTP API event without authorizer claims, which the function
//! refuses before any I/O; the sweep gets an event whose `time` it refuses, `deliver` an
//! empty stream batch), and the peak resident set (`VmHWM`) is read once it has answered.
//! The SDK endpoint is the emulator on loopback: the functions that read the code key at
//! start-up (and their floors) read it there; the others do no network I/O before their
//! first invocation. Floors and functions are started in interleaved rounds (see
//! `measure_all`).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use aws_adapters::TableNames;
use serde_json::{Value, json};
use system_tests::runtime_api::RuntimeApi;

pub struct Startup {
    pub size_bytes: u64,
    /// Median over the runs, in milliseconds.
    pub cold_start_ms: f64,
    /// Median over the runs, in KiB.
    pub peak_rss_kib: u64,
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len().is_multiple_of(2) { (values[middle - 1] + values[middle]) / 2.0 } else { values[middle] }
}

/// The event a binary gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Http,
    Scheduled,
    Stream,
}

/// Where the binaries' SDK calls go, and the secret they read at start-up.
pub struct Emulator {
    pub endpoint: String,
    pub secret_arn: String,
}

fn event(kind: Kind) -> Value {
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

async fn run_once(binary: &Path, kind: Kind, emulator: &Emulator) -> (f64, u64) {
    let runtime = RuntimeApi::start().await;
    runtime.queue("bench-1", event(kind));
    let started = Instant::now();
    let mut process = runtime
        .function(binary, "bench", &emulator.endpoint, &TableNames::with_prefix("bench"))
        .env("CODE_KEY_SECRET_ARN", &emulator.secret_arn)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{} starts: {e}", binary.display()));
    let pid = process.id().expect("a pid");
    let _ = tokio::time::timeout(Duration::from_secs(30), runtime.answer("bench-1"))
        .await
        .unwrap_or_else(|_| panic!("{} answers within 30 s", binary.display()));
    let cold = runtime.first_next_at().expect("the function asked for work").duration_since(started);
    let rss = peak_rss_kib(pid);
    process.kill().await.expect("stop the function");
    (cold.as_secs_f64() * 1000.0, rss)
}

/// Measures every binary (`(path, event kind)`) in interleaved rounds: each round starts
/// every binary once, in an order rotated from the round before, so that a drift of the
/// machine (another tenant, frequency, page cache) falls on functions and floors alike
/// instead of on whichever was measured last. One untimed round first warms the page cache,
/// as a provisioned sandbox would have it. Medians over `runs` rounds.
pub async fn measure_all(binaries: &[(&Path, Kind)], runs: usize, emulator: &Emulator) -> Vec<Startup> {
    let count = binaries.len();
    let mut colds = vec![Vec::with_capacity(runs); count];
    let mut rss = vec![Vec::with_capacity(runs); count];
    for round in 0..=runs {
        for step in 0..count {
            let index = (round + step) % count;
            let (binary, kind) = binaries[index];
            let (cold, peak) = run_once(binary, kind, emulator).await;
            if round > 0 {
                colds[index].push(cold);
                rss[index].push(peak as f64);
            }
        }
    }
    binaries
        .iter()
        .zip(colds.into_iter().zip(rss))
        .map(|((binary, _), (colds, rss))| Startup {
            size_bytes: std::fs::metadata(binary).unwrap_or_else(|e| panic!("{}: {e}", binary.display())).len(),
            cold_start_ms: median(colds),
            peak_rss_kib: median(rss) as u64,
        })
        .collect()
}
