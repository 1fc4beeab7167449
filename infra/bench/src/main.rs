//! The benchmark runner: measures everything `BENCHMARKS.md` reports, compares each figure
//! with its baseline and budget, and prints the Markdown section. Run it through
//! `bash infra/bench/run.sh`, which builds what it measures first.
//!
//! bench --binaries <release dir> --criterion <target/criterion> --commit <sha> [--runs 21]
//!       [--before-local-api <path>] [--before-binaries <release dir of BEFORE_STARTUP>]
//!       [--stages startup,first,requests,scale,reminders,events,delivery,load,decision]
//!
//! Every stage prints its own section as soon as it is done (so a runner killed later still
//! leaves what it measured on its standard output); a stage that fails says so in its
//! section, and the others' figures are printed all the same.

mod delivery;
mod events;
mod load;
mod reminders;
mod requests;
mod scale;
mod startup;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The budget of every function's cold start, as a multiple of the bare floor's.
const FLOOR_RATIO_BUDGET: f64 = 1.3;
/// The commit the "before" function binaries are built from (`--before-binaries`): the last
/// one whose functions loaded the machine's certificate store and ran aws-config.
const BEFORE_STARTUP: &str = "f176c20";
/// Throughput budgets, as a share of the bare health route's requests per second.
const CHECK_SHARE_BUDGET: f64 = 0.5;
const MIX_SHARE_BUDGET: f64 = 0.2;

/// The floors: `floor-bare`, the Lambda HTTP runtime alone (the budget's reference), and the
/// SDK floors, the runtime and the SDK clients a function is built with, set up the usual
/// way (aws-config, the SDK's default HTTPS client with the machine's certificate store), and
/// nothing else.
const FLOORS: [&str; 5] = ["floor-bare", "floor-storage", "floor-secret", "floor-messaging", "floor-events"];

/// Every function, and the SDK floor built with the same SDK clients (and, for the functions
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
    ("publish", "floor-events"),
];

const STAGES: [&str; 9] = ["startup", "first", "requests", "scale", "reminders", "events", "delivery", "load", "decision"];

#[derive(Clone)]
struct Options {
    binaries: PathBuf,
    criterion: PathBuf,
    commit: String,
    runs: usize,
    before_local_api: Option<PathBuf>,
    before_binaries: Option<PathBuf>,
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
        before_binaries: None,
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
            "--before-binaries" => options.before_binaries = Some(value.into()),
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

/// Prints `text` at once: run.sh appends whatever reached standard output, even if the runner
/// dies in a later stage.
fn emit(text: &str) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let options = options();
    if let Some(unknown) = options.stages.iter().find(|name| !STAGES.contains(&name.as_str())) {
        panic!("unknown stage {unknown}; stages: {}", STAGES.join(","));
    }
    let date = time::OffsetDateTime::now_utc().date();
    emit(&format!("## Run of {date}, commit `{}`\n\nMachine: {}.\n\n", options.commit, machine()));
    let mut failed = false;
    for name in &options.stages {
        let opts = options.clone();
        let section = match name.as_str() {
            "startup" => stage("start-up of every function and floor", startup_section(opts)).await,
            "first" => stage("the first invocation", first_invocation_section(opts)).await,
            "requests" => stage("DynamoDB requests per operation", requests_section()).await,
            "scale" => stage("the sweep and listings at scale", scale_section()).await,
            "events" => stage("change events on the emulator", events_section()).await,
            "reminders" => stage("a renewal-season day of reminders at the provider's rate", reminders_section()).await,
            "delivery" => stage("subscribing 24 persons, before and after the outbox", delivery_section(opts)).await,
            "load" => stage("the local server under load", load_section(opts)).await,
            "decision" => stage("the permission decision", decision_section(opts)).await,
            _ => unreachable!("stages are checked above"),
        };
        failed |= section.contains("**This stage failed**");
        emit(&section);
    }
    if failed {
        std::process::exit(1);
    }
}

/// The binaries the start-up stages run: the floors, the functions, and (with
/// `--before-binaries`) the functions as built at `BEFORE_STARTUP`. `(label, path, name)`.
fn startup_binaries(options: &Options, floors: &[&'static str]) -> Vec<(String, PathBuf, &'static str)> {
    let mut binaries: Vec<(String, PathBuf, &'static str)> =
        floors.iter().map(|name| (format!("{name} (floor)"), options.binaries.join(name), *name)).collect();
    binaries.extend(FUNCTIONS.iter().map(|(name, _)| ((*name).to_owned(), options.binaries.join(name), *name)));
    if let Some(before) = &options.before_binaries {
        // Functions added since (publish) have no before.
        binaries.extend(
            FUNCTIONS
                .iter()
                .map(|(name, _)| (format!("{name} at {BEFORE_STARTUP}"), before.join(name), *name))
                .filter(|(_, path, _)| path.exists()),
        );
    }
    binaries
}

/// Measures `binaries` in both certificate layouts (this machine's, then Lambda's one bundle,
/// which names an empty directory made for the purpose): the layouts, and per layout the
/// binaries' figures in their order.
async fn measure_in_layouts(
    binaries: &[(&Path, serde_json::Value)],
    runs: usize,
    emulator: &startup::Emulator,
) -> (Vec<startup::Layout>, Vec<Vec<startup::Startup>>) {
    let empty = std::env::temp_dir().join(format!("bench-empty-cert-dir-{}", std::process::id()));
    std::fs::create_dir_all(&empty).expect("an empty directory");
    let layouts = vec![startup::Layout::this_machine(), startup::Layout::lambda(&empty)];
    let mut measured = Vec::new();
    for layout in &layouts {
        measured.push(startup::measure_all(binaries, runs, emulator, layout).await);
    }
    let _ = std::fs::remove_dir(&empty);
    (layouts, measured)
}

async fn startup_section(options: Options) -> String {
    let mut out = String::new();
    let moto = system_tests::moto::moto_for("startup");
    let emulator = startup::Emulator {
        endpoint: moto.endpoint(),
        secret_arn: moto.create_secret(&"2a".repeat(32)).await,
        tables: aws_adapters::TableNames::with_prefix("bench"),
    };
    let kind = |name: &str| match name {
        "expiry-sweep" => startup::Kind::Scheduled,
        "deliver" | "floor-messaging" | "publish" | "floor-events" => startup::Kind::Stream,
        _ => startup::Kind::Http,
    };
    let listed = startup_binaries(&options, &FLOORS);
    let binaries: Vec<(&Path, serde_json::Value)> =
        listed.iter().map(|(_, path, name)| (path.as_path(), startup::startup_event(kind(name)))).collect();
    let (layouts, measured) = measure_in_layouts(&binaries, options.runs, &emulator).await;
    let find = |label: &str| listed.iter().position(|(l, _, _)| l == label);
    let bare = find("floor-bare (floor)").expect("the bare floor");
    writeln!(
        out,
        "### Start-up against the bare floor (median of {} rounds; budget: every function's cold start ≤ {FLOOR_RATIO_BUDGET} × floor-bare's in both layouts, size and peak RSS no larger than at {BEFORE_STARTUP})\n",
        options.runs
    )
    .unwrap();
    writeln!(
        out,
        "| Binary | Size (MB) | Peak RSS (MB) | Cold start (ms), {} | × bare | × SDK floor | Cold start (ms), {} | × bare | × SDK floor | Budget |",
        layouts[0].name, layouts[1].name
    )
    .unwrap();
    writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|").unwrap();
    let mb = |bytes: u64| bytes as f64 / 1_000_000.0;
    for (index, (label, _, name)) in listed.iter().enumerate() {
        // Peak RSS and size from Lambda's layout (the one to believe).
        let lambda = &measured[1][index];
        let mut row = format!("| {label} | {:.2} | {:.1} |", mb(lambda.size_bytes), lambda.peak_rss_kib as f64 / 1024.0);
        let floor = FUNCTIONS.iter().find(|(function, _)| function == name).and_then(|(_, floor)| find(&format!("{floor} (floor)")));
        let mut within = true;
        for layout in &measured {
            let cold = layout[index].cold_start_ms;
            let to_bare = cold / layout[bare].cold_start_ms;
            within &= to_bare <= FLOOR_RATIO_BUDGET;
            let to_floor = floor.map_or("—".to_owned(), |floor| format!("{:.2}", cold / layout[floor].cold_start_ms));
            write!(row, " {cold:.1} | {to_bare:.2} | {to_floor} |").unwrap();
        }
        let is_function = !label.ends_with("(floor)") && !label.contains(" at ");
        let budget = match find(&format!("{name} at {BEFORE_STARTUP}")) {
            Some(before) if is_function => {
                let before = &measured[1][before];
                within &= lambda.size_bytes <= before.size_bytes && lambda.peak_rss_kib <= before.peak_rss_kib;
                verdict(within).to_owned()
            }
            _ if is_function => format!("{} (no before to compare size and RSS with)", verdict(within)),
            _ => "—".to_owned(),
        };
        writeln!(out, "{row} {budget} |").unwrap();
    }
    if options.before_binaries.is_none() {
        writeln!(out, "\n(No `--before-binaries` given: the functions as built at {BEFORE_STARTUP} were not measured.)").unwrap();
    }
    out
}

/// The event of `infra/events/` a binary gets in the first-invocation stage.
fn event_file(name: &str) -> String {
    match name {
        "expiry-sweep" => "scheduled.json".to_owned(),
        "floor-storage" | "floor-secret" => "authorize.json".to_owned(),
        "floor-messaging" => "deliver.json".to_owned(),
        function => format!("{function}.json"),
    }
}

/// The first invocation of every function on an event that makes DynamoDB requests: the
/// events kept in `infra/events/` (what `cargo lambda invoke` sends), against the demo data
/// on the emulator, as the test suite runs them; the SDK floors get the check event (one
/// `GetItem`) or the stream event (the same read).
async fn first_invocation_section(options: Options) -> String {
    let mut out = String::new();
    let world = system_tests::world::World::new(system_tests::world::Backend::Moto).await;
    local_api::demo::seed(&world.env).await.expect("the demo data");
    let emulator = startup::Emulator {
        endpoint: world.moto().endpoint(),
        secret_arn: world.moto().create_secret(&"2a".repeat(32)).await,
        tables: world.dynamo.as_ref().expect("a moto world").names().clone(),
    };
    let events = system_tests::moto::workspace_root().join("infra/events");
    let event = |name: &str| -> serde_json::Value {
        let file = event_file(name);
        serde_json::from_str(&std::fs::read_to_string(events.join(&file)).unwrap_or_else(|e| panic!("{file}: {e}"))).expect("JSON")
    };
    let sdk_floors = &FLOORS[1..];
    // `publish` reads no table (its records carry the events): its first invocation's cost,
    // the events' way from commit to bus, is the `events` stage's.
    let listed: Vec<_> =
        startup_binaries(&options, sdk_floors).into_iter().filter(|(_, _, name)| !matches!(*name, "publish" | "floor-events")).collect();
    let binaries: Vec<(&Path, serde_json::Value)> = listed.iter().map(|(_, path, name)| (path.as_path(), event(name))).collect();
    let (layouts, measured) = measure_in_layouts(&binaries, options.runs, &emulator).await;
    writeln!(
        out,
        "\n### First invocation: from spawning the process to the answer of an event that makes DynamoDB requests (median of {} rounds; ms)\n",
        options.runs
    )
    .unwrap();
    writeln!(
        out,
        "| Binary | Event (answer) | Spawn to answer, {} | of which the invocation | Spawn to answer, {} | of which the invocation |",
        layouts[0].name, layouts[1].name
    )
    .unwrap();
    writeln!(out, "|---|---|---:|---:|---:|---:|").unwrap();
    for (index, (label, _, name)) in listed.iter().enumerate() {
        let mut row = format!("| {label} | `{}` ({}) |", event_file(name), measured[1][index].answer);
        for layout in &measured {
            write!(row, " {:.1} | {:.1} |", layout[index].answered_ms, layout[index].invocation_ms).unwrap();
        }
        writeln!(out, "{row}").unwrap();
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

async fn events_section() -> String {
    let mut out = String::new();
    writeln!(out, "\n### Change events on the emulator (publish handler in-process, EventBridge on moto)\n").unwrap();
    let figures = events::measure().await;
    writeln!(out, "| Changes | Events | Commit → bus p50 / p99 (ms) | PutEvents per 100 changes, one at a time | in batches of 50 | Events of one 24-person subscription |").unwrap();
    writeln!(out, "|---:|---:|---|---:|---:|---:|").unwrap();
    writeln!(
        out,
        "| {} | {} | {:.1} / {:.1} | {} | {} | {} |",
        figures.changes,
        figures.events,
        figures.latency.0,
        figures.latency.1,
        figures.calls_unbatched,
        figures.calls_batched,
        figures.events_per_group
    )
    .unwrap();
    out
}

async fn reminders_section() -> String {
    let mut out = String::new();
    writeln!(
        out,
        "\n### A day on which 100,000 seats' 30-day reminders fall due (embedded store, virtual time; a provider that throttles past the account's rate)\n"
    )
    .unwrap();
    writeln!(out, "| Seats | Messages | Rates (email / SMS per second, invocations) | Drained in (virtual) | Throttled sends | Intents handed back | Wall time (s) |").unwrap();
    writeln!(out, "|---:|---:|---|---:|---:|---:|---:|").unwrap();
    let day = tokio::task::spawn_blocking(|| {
        reminders::measure(std::env::var("REMINDER_SEATS").ok().and_then(|s| s.parse().ok()).unwrap_or(100_000))
    })
    .await
    .expect("the day ran");
    writeln!(
        out,
        "| {} | {} | {} / {}, {} | {:.2} h | {} | {} | {:.1} |",
        day.seats,
        day.messages,
        day.rate.emails_per_second,
        day.rate.sms_per_second,
        day.rate.concurrency,
        day.drained_in.as_secs_f64() / 3600.0,
        day.throttled,
        day.retried,
        day.wall.as_secs_f64()
    )
    .unwrap();
    out
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
    writeln!(out, "\n### Subscribing 24 persons on the emulator, before and after the outbox ({} rounds; ms)\n", delivery::ROUNDS).unwrap();
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
    let health = loads[0].measured.as_ref().ok();
    let mut notes = Vec::new();
    for (i, load) in loads.iter().enumerate() {
        let measured = match &load.measured {
            Ok(measured) => measured,
            Err(why) => {
                writeln!(out, "| {} | {} | — | — | — | — | — | **not measured** |", load.route, load.what).unwrap();
                notes.push(format!("- {}: **not measured**: {why}", load.route));
                continue;
            }
        };
        let share = health.map(|h| measured.requests_per_second / h.requests_per_second);
        let within = |budget: f64| share.is_some_and(|share| share >= budget) && measured.errors == 0;
        let budget = match i {
            0 => format!("0 errors: {}", verdict(measured.errors == 0)),
            1 => format!("≥ {CHECK_SHARE_BUDGET}, 0 errors: {}", verdict(within(CHECK_SHARE_BUDGET))),
            _ => format!("≥ {MIX_SHARE_BUDGET}, 0 errors: {}", verdict(within(MIX_SHARE_BUDGET))),
        };
        let ratio = |value: Option<f64>| value.map_or("—".to_owned(), |v| format!("{v:.2}"));
        writeln!(
            out,
            "| {} | {} | {:.0} | {} | {:.2} | {} | {} | {budget} |",
            load.route,
            load.what,
            measured.requests_per_second,
            ratio(share),
            measured.p99_ms,
            ratio(health.map(|h| measured.p99_ms / h.p99_ms)),
            measured.errors
        )
        .unwrap();
        if let Some(summary) = &measured.summary {
            notes.push(format!("- {}: {summary} in {} s.", load.route, load::DURATION_SECONDS));
        }
    }
    if !notes.is_empty() {
        writeln!(out, "\n{}", notes.join("\n")).unwrap();
    }
    if loads.iter().any(|load| load.measured.is_err()) {
        writeln!(out, "\n**This stage failed** in part: the routes above marked so measured nothing.").unwrap();
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
