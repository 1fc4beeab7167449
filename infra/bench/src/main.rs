//! The benchmark runner: measures everything `BENCHMARKS.md` reports, compares each figure
//! with its baseline and budget, and prints the Markdown section. Run it through
//! `bash infra/bench/run.sh`, which builds what it measures first.
//!
//! bench --binaries <release dir> --criterion <target/criterion> --commit <sha> [--runs 21]
//!       [--before-local-api <path>] [--stages startup,requests,scale,delivery,load,decision]
//!
//! Every stage prints its own section; a stage that fails says so in its section, and the
//! others' figures are printed all the same.

mod delivery;
mod load;
mod requests;
mod scale;
mod startup;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The budget of every function-to-floor ratio.
const FLOOR_RATIO_BUDGET: f64 = 1.3;
/// Throughput budgets, as a share of the bare health route's requests per second.
const CHECK_SHARE_BUDGET: f64 = 0.5;
const MIX_SHARE_BUDGET: f64 = 0.2;

/// The floors: the runtime and the SDK clients a function is built with, and nothing else.
const FLOORS: [&str; 3] = ["floor-storage", "floor-secret", "floor-messaging"];

/// Every function, and the floor built with the same SDK clients (and, for the functions
/// that read the code key at start-up, the same read).
const FUNCTIONS: &[(&str, &str)] = &[
    ("operator", "floor-storage"),
    ("subscribe", "floor-secret"),
    ("activate", "floor-secret"),
    ("grant", "floor-storage"),
    ("authorize", "floor-storage"),
    ("modify", "floor-secret"),
    ("suspend", "floor-storage"),
    ("directory", "floor-storage"),
    ("expiry-sweep", "floor-storage"),
    ("deliver", "floor-messaging"),
];

const STAGES: [&str; 6] = ["startup", "requests", "scale", "delivery", "load", "decision"];

#[derive(Clone)]
struct Options {
    binaries: PathBuf,
    criterion: PathBuf,
    commit: String,
    runs: usize,
    before_local_api: Option<PathBuf>,
    stages: Vec<String>,
}

fn options() -> Options {
    let mut arguments = std::env::args().skip(1);
    let mut options = Options {
        binaries: "target/release".into(),
        criterion: "target/criterion".into(),
        commit: "unknown".into(),
        runs: 21,
        before_local_api: None,
        stages: STAGES.iter().map(|s| (*s).to_owned()).collect(),
    };
    while let Some(flag) = arguments.next() {
        let value = arguments.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--binaries" => options.binaries = value.into(),
            "--criterion" => options.criterion = value.into(),
            "--commit" => options.commit = value,
            "--runs" => options.runs = value.parse().expect("--runs is a number"),
            "--before-local-api" => options.before_local_api = Some(value.into()),
            "--stages" => options.stages = value.split(',').map(str::to_owned).collect(),
            other => panic!("unknown option {other}"),
        }
    }
    options
}

fn verdict(within: bool) -> &'static str {
    if within { "within" } else { "**over**" }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| info.lines().find_map(|l| l.strip_prefix("model name").map(|r| r.trim_start_matches([' ', '\t', ':']).to_owned())))
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines().find_map(|l| l.strip_prefix("MemTotal:").and_then(|r| r.trim().trim_end_matches("kB").trim().parse::<f64>().ok()))
        })
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    let rustc = std::process::Command::new("rustc").arg("--version").output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    format!("{cpu}, {cores} cores, {memory_gib:.1} GiB, {}, {}", std::env::consts::ARCH, rustc.unwrap_or_default())
}

/// Mean time per decision, in nanoseconds, from criterion's estimates.
fn criterion_per_element(dir: &Path, name: &str) -> Option<f64> {
    let read = |file: &str| -> Option<serde_json::Value> {
        serde_json::from_str(&std::fs::read_to_string(dir.join("decision").join(name).join("new").join(file)).ok()?).ok()
    };
    let mean = read("estimates.json")?["mean"]["point_estimate"].as_f64()?;
    let elements = read("benchmark.json")?["throughput"]["Elements"].as_f64()?;
    Some(mean / elements)
}

/// Runs a stage; a panic becomes a line in its section instead of losing the run.
async fn stage(name: &str, work: impl std::future::Future<Output = String>) -> String {
    use futures_util::FutureExt;
    eprintln!("bench: {name}");
    match std::panic::AssertUnwindSafe(work).catch_unwind().await {
        Ok(section) => section,
        Err(panic) => {
            let reason = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "a panic".into());
            eprintln!("bench: {name} failed: {reason}");
            format!("\n### {name}\n\n**This stage failed**, and measured nothing: {reason}\n")
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let options = options();
    let mut out = String::new();
    let date = time::OffsetDateTime::now_utc().date();
    writeln!(out, "## Run of {date}, commit `{}`\n", options.commit).unwrap();
    writeln!(out, "Machine: {}.\n", machine()).unwrap();
    let mut failed = false;
    for name in &options.stages {
        let opts = options.clone();
        let section = match name.as_str() {
            "startup" => stage("start-up of every function and floor", startup_section(opts)).await,
            "requests" => stage("DynamoDB requests per operation", requests_section()).await,
            "scale" => stage("the sweep and listings at scale", scale_section()).await,
            "delivery" => stage("subscribing 25 persons, before and after the outbox", delivery_section(opts)).await,
            "load" => stage("the local server under load", load_section(opts)).await,
            "decision" => stage("the permission decision", decision_section(opts)).await,
            other => panic!("unknown stage {other}; stages: {}", STAGES.join(",")),
        };
        failed |= section.contains("**This stage failed**");
        out.push_str(&section);
    }
    print!("{out}");
    if failed {
        std::process::exit(1);
    }
}

async fn startup_section(options: Options) -> String {
    let mut out = String::new();
    let moto = system_tests::moto::moto_for("startup");
    let emulator = startup::Emulator { endpoint: moto.endpoint(), secret_arn: moto.create_secret(&"2a".repeat(32)).await };
    let kind = |name: &str| match name {
        "expiry-sweep" => startup::Kind::Scheduled,
        "deliver" | "floor-messaging" => startup::Kind::Stream,
        _ => startup::Kind::Http,
    };
    let paths: Vec<(PathBuf, startup::Kind)> = FLOORS
        .iter()
        .copied()
        .chain(FUNCTIONS.iter().map(|(name, _)| *name))
        .map(|name| (options.binaries.join(name), kind(name)))
        .collect();
    let binaries: Vec<(&Path, startup::Kind)> = paths.iter().map(|(path, kind)| (path.as_path(), *kind)).collect();
    let measured = startup::measure_all(&binaries, options.runs, &emulator).await;
    let floors: std::collections::BTreeMap<&str, &startup::Startup> = FLOORS.iter().copied().zip(&measured).collect();
    writeln!(out, "### Functions against their floor (budget: every ratio ≤ {FLOOR_RATIO_BUDGET})\n").unwrap();
    writeln!(out, "| Binary | Size (MB) | ratio | Cold start (ms) | ratio | Peak RSS (MB) | ratio | Budget |").unwrap();
    writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---|").unwrap();
    let mb = |bytes: u64| bytes as f64 / 1_000_000.0;
    for (name, f) in FLOORS.iter().zip(&measured) {
        writeln!(
            out,
            "| {name} (floor) | {:.2} | — | {:.1} | — | {:.1} | — | — |",
            mb(f.size_bytes),
            f.cold_start_ms,
            f.peak_rss_kib as f64 / 1024.0
        )
        .unwrap();
    }
    for ((name, floor), measured) in FUNCTIONS.iter().zip(&measured[FLOORS.len()..]) {
        let f = floors[floor];
        let size = measured.size_bytes as f64 / f.size_bytes as f64;
        let cold = measured.cold_start_ms / f.cold_start_ms;
        let rss = measured.peak_rss_kib as f64 / f.peak_rss_kib as f64;
        let within = size <= FLOOR_RATIO_BUDGET && cold <= FLOOR_RATIO_BUDGET && rss <= FLOOR_RATIO_BUDGET;
        writeln!(
            out,
            "| {name} (vs {floor}) | {:.2} | {size:.2} | {:.1} | {cold:.2} | {:.1} | {rss:.2} | {} |",
            mb(measured.size_bytes),
            measured.cold_start_ms,
            measured.peak_rss_kib as f64 / 1024.0,
            verdict(within)
        )
        .unwrap();
    }
    out
}

async fn requests_section() -> String {
    let mut out = String::new();
    writeln!(out, "\n### DynamoDB requests per operation, counted at the emulator (budget: the minimum)\n").unwrap();
    writeln!(out, "| Operation | Requests | Total | Minimum | Budget | Why |").unwrap();
    writeln!(out, "|---|---|---:|---:|---|---|").unwrap();
    for count in requests::count().await {
        let list = count.requests.iter().map(|(name, n)| format!("{n} {name}")).collect::<Vec<_>>().join(", ");
        let (minimum, within) = if count.operation.starts_with("sweep") {
            let scans = count.requests.iter().find(|(n, _)| n == "Scan").map_or(0, |(_, n)| *n);
            ("0 Scan".to_owned(), scans == 0)
        } else if count.operation.starts_with("deliver") {
            // The stream reads are the event source mapping's; the function's own requests count.
            let own: usize = count.requests.iter().filter(|(name, _)| !is_stream_read(name)).map(|(_, n)| n).sum();
            (count.minimum.to_string(), own <= count.minimum)
        } else {
            (count.minimum.to_string(), count.total <= count.minimum)
        };
        writeln!(out, "| {} | {list} | {} | {minimum} | {} | {} |", count.operation, count.total, verdict(within), count.note).unwrap();
    }
    out
}

fn is_stream_read(name: &str) -> bool {
    matches!(name, "DescribeStream" | "GetShardIterator" | "GetRecords" | "ListStreams" | "DescribeTable")
}

async fn scale_section() -> String {
    let mut out = String::new();
    writeln!(out, "\n### The sweep at national scale (embedded store; each store call counted as the DynamoDB request it would be)\n")
        .unwrap();
    writeln!(
        out,
        "| Seats ending on one day | Organizations | Runs (of {} s) | Wall time (s) | Index queries | Items read | Transactions | Other reads / state writes | Writes to the busiest index partition | to the quietest |",
        domain::deadline::SWEEP_FUNCTION_TIMEOUT.as_secs()
    )
    .unwrap();
    writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|").unwrap();
    for seats in [100_000, 1_000_000] {
        let measured = scale::sweep(seats, seats / 50).await;
        writeln!(
            out,
            "| {} | {} | {} | {:.1} | {} | {} | {} | {} / {} | {} | {} |",
            measured.seats,
            measured.organizations,
            measured.runs,
            measured.wall.as_secs_f64(),
            measured.queries,
            measured.items_read,
            measured.transactions,
            measured.reads,
            measured.state_writes,
            measured.busiest_partition,
            measured.quietest_partition
        )
        .unwrap();
    }
    writeln!(out, "\n### A filtered listing of one organization of 50,000 users (embedded store; 50 a page)\n").unwrap();
    writeln!(out, "| Filter | Matching | Requests | Most items one request read | Items read in all | Empty pages (with a cursor) |")
        .unwrap();
    writeln!(out, "|---|---:|---:|---:|---:|---:|").unwrap();
    for listing in scale::listing(50_000).await {
        writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            listing.filter, listing.matching, listing.requests, listing.most_read, listing.items_read, listing.empty_pages
        )
        .unwrap();
    }
    out
}

async fn delivery_section(options: Options) -> String {
    let mut out = String::new();
    writeln!(out, "\n### Subscribing 25 persons on the emulator, before and after the outbox ({} rounds; ms)\n", delivery::ROUNDS).unwrap();
    writeln!(out, "| Version | Request p50 | p99 | Until the last message was sent and recorded, p50 | p99 |").unwrap();
    writeln!(out, "|---|---:|---:|---:|---:|").unwrap();
    let mut versions = Vec::new();
    if let Some(before) = &options.before_local_api {
        versions.push(delivery::measure(before, "before: sent inline (9432875)", false).await);
    }
    versions.push(delivery::measure(&options.binaries.join("local-api"), "after: through the outbox", true).await);
    for v in versions {
        // Before, every message was sent before the answer: the answer is the last send.
        let recorded =
            v.until_recorded.map_or("— (sent inline, before the answer) | —".to_owned(), |(p50, p99)| format!("{p50:.0} | {p99:.0}"));
        writeln!(out, "| {} | {:.0} | {:.0} | {recorded} |", v.version, v.request.0, v.request.1).unwrap();
    }
    if options.before_local_api.is_none() {
        writeln!(out, "\n(No `--before-local-api` given: the version before the outbox was not measured.)").unwrap();
    }
    out
}

async fn load_section(options: Options) -> String {
    let mut out = String::new();
    let scratch = std::env::temp_dir().join(format!("bench-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).expect("scratch dir");
    let loads = load::measure(&options.binaries.join("local-api"), &scratch).await;
    let _ = std::fs::remove_dir_all(&scratch);
    writeln!(
        out,
        "\n### Local server under load (wrk, loopback, {} s per route, 2 threads, 32 connections; budget: share of the health route's rate)\n",
        load::DURATION_SECONDS
    )
    .unwrap();
    writeln!(out, "| Route | What it does | Requests/s | share of health | p99 (ms) | p99 ratio | Errors | Budget |").unwrap();
    writeln!(out, "|---|---|---:|---:|---:|---:|---:|---|").unwrap();
    let health = &loads[0];
    for (i, load) in loads.iter().enumerate() {
        let share = load.requests_per_second / health.requests_per_second;
        let budget = match i {
            0 => format!("0 errors: {}", verdict(load.errors == 0)),
            1 => format!("≥ {CHECK_SHARE_BUDGET}, 0 errors: {}", verdict(share >= CHECK_SHARE_BUDGET && load.errors == 0)),
            _ => format!("≥ {MIX_SHARE_BUDGET}, 0 errors: {}", verdict(share >= MIX_SHARE_BUDGET && load.errors == 0)),
        };
        writeln!(
            out,
            "| {} | {} | {:.0} | {share:.2} | {:.2} | {:.1} | {} | {budget} |",
            load.route,
            load.what,
            load.requests_per_second,
            load.p99_ms,
            load.p99_ms / health.p99_ms,
            load.errors
        )
        .unwrap();
    }
    out
}

async fn decision_section(options: Options) -> String {
    let mut out = String::new();
    writeln!(out, "\n### Permission decision against cedar-policy (criterion; budget: ours faster)\n").unwrap();
    match (criterion_per_element(&options.criterion, "ours"), criterion_per_element(&options.criterion, "cedar")) {
        (Some(ours), Some(cedar)) => {
            writeln!(out, "| Engine | ns per decision | cedar / ours | Budget |").unwrap();
            writeln!(out, "|---|---:|---:|---|").unwrap();
            writeln!(out, "| ours (`policy::check_access` + catalog lookup) | {ours:.1} | — | — |").unwrap();
            writeln!(out, "| cedar-policy `is_authorized` | {cedar:.1} | {:.1} | {} |", cedar / ours, verdict(ours < cedar)).unwrap();
        }
        _ => writeln!(out, "criterion results were not found under {}.", options.criterion.display()).unwrap(),
    }
    out
}
