//! The benchmark runner: measures everything `BENCHMARKS.md` reports, compares each figure
//! with its baseline and budget, and prints the Markdown section. Run it through
//! `bash infra/bench/run.sh`, which builds what it measures first.
//!
//! bench --binaries <release dir> --criterion <target/criterion> --commit <sha> [--runs 21]

mod load;
mod requests;
mod startup;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The budget of every function-to-floor ratio.
const FLOOR_RATIO_BUDGET: f64 = 1.3;
/// Throughput budgets, as a share of the bare health route's requests per second.
const CHECK_SHARE_BUDGET: f64 = 0.5;
const MIX_SHARE_BUDGET: f64 = 0.2;

/// Every function, and the floor built with the same SDK clients.
const FUNCTIONS: &[(&str, &str)] = &[
    ("operator", "floor-storage"),
    ("subscribe", "floor-messaging"),
    ("activate", "floor-messaging"),
    ("grant", "floor-storage"),
    ("authorize", "floor-storage"),
    ("modify", "floor-messaging"),
    ("suspend", "floor-messaging"),
    ("directory", "floor-storage"),
    ("expiry-sweep", "floor-messaging"),
];

struct Options {
    binaries: PathBuf,
    criterion: PathBuf,
    commit: String,
    runs: usize,
}

fn options() -> Options {
    let mut arguments = std::env::args().skip(1);
    let mut options =
        Options { binaries: "target/release".into(), criterion: "target/criterion".into(), commit: "unknown".into(), runs: 21 };
    while let Some(flag) = arguments.next() {
        let value = arguments.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--binaries" => options.binaries = value.into(),
            "--criterion" => options.criterion = value.into(),
            "--commit" => options.commit = value,
            "--runs" => options.runs = value.parse().expect("--runs is a number"),
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

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let options = options();
    let mut out = String::new();
    let date = time::OffsetDateTime::now_utc().date();
    writeln!(out, "## Run of {date}, commit `{}`\n", options.commit).unwrap();
    writeln!(out, "Machine: {}.\n", machine()).unwrap();

    // 1. Size, cold start and peak memory against the floors.
    eprintln!("bench: start-up of every function and floor ({} runs each)", options.runs);
    const FLOORS: [&str; 2] = ["floor-storage", "floor-messaging"];
    let paths: Vec<(PathBuf, bool)> = FLOORS
        .iter()
        .map(|floor| (options.binaries.join(floor), false))
        .chain(FUNCTIONS.iter().map(|(name, _)| (options.binaries.join(name), *name == "expiry-sweep")))
        .collect();
    let binaries: Vec<(&Path, bool)> = paths.iter().map(|(path, scheduled)| (path.as_path(), *scheduled)).collect();
    let measured = startup::measure_all(&binaries, options.runs).await;
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

    // 2. DynamoDB requests per operation.
    eprintln!("bench: DynamoDB requests per operation on moto");
    writeln!(out, "\n### DynamoDB requests per operation, counted at the emulator (budget: the minimum)\n").unwrap();
    writeln!(out, "| Operation | Requests | Total | Minimum | Budget | Why |").unwrap();
    writeln!(out, "|---|---|---:|---:|---|---|").unwrap();
    for count in requests::count().await {
        let list = count.requests.iter().map(|(name, n)| format!("{n} {name}")).collect::<Vec<_>>().join(", ");
        let (minimum, within) = if count.operation.starts_with("sweep") {
            let scans = count.requests.iter().find(|(n, _)| n == "Scan").map_or(0, |(_, n)| *n);
            ("0 Scan".to_owned(), scans == 0)
        } else {
            (count.minimum.to_string(), count.total <= count.minimum)
        };
        writeln!(out, "| {} | {list} | {} | {minimum} | {} | {} |", count.operation, count.total, verdict(within), count.note).unwrap();
    }

    // 3. The local server under load.
    eprintln!("bench: wrk against the local server ({} s per route)", load::DURATION_SECONDS);
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
        let (budget, within) = match i {
            0 => ("—".to_owned(), load.errors == 0),
            1 => (format!("≥ {CHECK_SHARE_BUDGET}, 0 errors: {}", verdict(share >= CHECK_SHARE_BUDGET && load.errors == 0)), true),
            _ => (format!("≥ {MIX_SHARE_BUDGET}, 0 errors: {}", verdict(share >= MIX_SHARE_BUDGET && load.errors == 0)), true),
        };
        let budget = if i == 0 { format!("0 errors: {}", verdict(within)) } else { budget };
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

    // 4. The permission decision against cedar-policy (criterion ran before this).
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
    print!("{out}");
}
