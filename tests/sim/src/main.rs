//! `cargo run -p sim -- --seed N [--steps K] [--stores embedded|both]`: one history.
//! `--seeds A..B`: many (CI, soak), with figures. `--replay FILE`: a printed history again.
//! A failing history is shrunk and printed as JSON lines (and kept under `target/sim/`).

use std::io::Write;
use std::path::PathBuf;

use sim::generate::Trouble;
use sim::run::{Figures, Stores};
use sim::step::Step;
use sim::{Options, replay, shrink, simulate};

struct Args {
    seeds: std::ops::Range<u64>,
    steps: usize,
    stores: Stores,
    replay: Option<PathBuf>,
    shrink: bool,
    quiet: bool,
    trouble: Trouble,
    past_wording: bool,
    jobs: usize,
}

fn usage() -> ! {
    eprintln!(
        "usage: sim [--seed N | --seeds A..B] [--steps K] [--stores embedded|both] [--replay FILE] [--no-shrink] [--quiet] [--jobs J]\n\
         \x20          [--calm] (no store or provider faults, no concurrency)\n\
         \x20          [--provider-faults] (SES and SNS throttle, refuse, and lose answers after a send)\n\
         \x20          [--past-wording] (carry on past a message worded otherwise than the model's, and report it)"
    );
    std::process::exit(2)
}

fn args() -> Args {
    let mut args = Args {
        seeds: 0..1,
        steps: 200,
        stores: Stores::Embedded,
        replay: None,
        shrink: true,
        quiet: false,
        trouble: Trouble::default(),
        past_wording: false,
        jobs: 1,
    };
    let mut given = std::env::args().skip(1);
    while let Some(arg) = given.next() {
        let mut value = || given.next().unwrap_or_else(|| usage());
        match arg.as_str() {
            "--seed" => {
                let seed = value().parse().unwrap_or_else(|_| usage());
                args.seeds = seed..seed + 1;
            }
            "--seeds" => {
                let text = value();
                let (from, to) = text.split_once("..").unwrap_or_else(|| usage());
                args.seeds = from.parse().unwrap_or_else(|_| usage())..to.parse().unwrap_or_else(|_| usage());
            }
            "--steps" => args.steps = value().parse().unwrap_or_else(|_| usage()),
            "--stores" => {
                args.stores = match value().as_str() {
                    "embedded" => Stores::Embedded,
                    "both" => Stores::Both,
                    _ => usage(),
                }
            }
            "--replay" => args.replay = Some(PathBuf::from(value())),
            "--no-shrink" => args.shrink = false,
            "--quiet" => args.quiet = true,
            "--past-wording" => args.past_wording = true,
            "--jobs" => args.jobs = value().parse().ok().filter(|n| *n > 0).unwrap_or_else(|| usage()),
            "--calm" => args.trouble = Trouble { store_faults: false, provider_faults: false, concurrency: false },
            "--provider-faults" => args.trouble.provider_faults = true,
            _ => usage(),
        }
    }
    args
}

fn history_text(seed: u64, stores: Stores, history: &[Step]) -> String {
    let mut text = format!("{}\n", serde_json::json!({ "seed": seed, "stores": if stores == Stores::Both { "both" } else { "embedded" } }));
    for step in history {
        text.push_str(&serde_json::to_string(step).expect("steps serialize"));
        text.push('\n');
    }
    text
}

fn keep(seed: u64, text: &str) -> PathBuf {
    let folder = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/sim");
    let _ = std::fs::create_dir_all(&folder);
    let path = folder.join(format!("seed-{seed}.jsonl"));
    let _ = std::fs::write(&path, text);
    path
}

fn main() {
    let args = args();
    if let Some(path) = &args.replay {
        // A file, or every `.jsonl` history in a folder (CI replays the ones that found bugs).
        let mut files: Vec<PathBuf> = match std::fs::read_dir(path) {
            Ok(entries) => {
                entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "jsonl")).collect()
            }
            Err(_) => vec![path.clone()],
        };
        files.sort();
        let failed = files.iter().filter(|file| !replay_file(file, &args)).count();
        if failed > 0 {
            std::process::exit(1);
        }
        return;
    }
    let started = std::time::Instant::now();
    let total = std::sync::Mutex::new(Figures::default());
    let failures = std::sync::Mutex::new(Vec::new());
    let next = std::sync::atomic::AtomicU64::new(args.seeds.start);
    // Histories on `jobs` threads, each with its own runtimes, stores and log lines.
    std::thread::scope(|scope| {
        for _ in 0..args.jobs {
            scope.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if seed >= args.seeds.end {
                        return;
                    }
                    let report = history(&args, seed);
                    add(&mut total.lock().expect("figures"), &report.figures);
                    if report.failed {
                        failures.lock().expect("failures").push(seed);
                    }
                    let mut out = std::io::stdout().lock();
                    let _ = out.write_all(report.text.as_bytes());
                    let _ = out.flush();
                }
            });
        }
    });
    let total = total.into_inner().expect("figures");
    let mut failures = failures.into_inner().expect("failures");
    failures.sort();
    let histories = args.seeds.end - args.seeds.start;
    println!(
        "{}",
        serde_json::json!({
            "histories": histories,
            "failed": failures.len(),
            "failing_seeds": failures,
            "stores": if args.stores == Stores::Both { "embedded and dynamodb (moto)" } else { "embedded" },
            "steps": total.steps,
            "requests": total.requests,
            "simulated_years": total.simulated_days as f64 / 365.0,
            "store_faults_injected": total.store_faults,
            "provider_faults_injected": total.provider_faults,
            "sweeps": total.sweeps,
            "messages_sent": total.messages_sent,
            "answers_lost": total.answers_lost,
            "duplicates": total.duplicates,
            "failed_batches_redriven": total.failed_batches,
            "redrives": total.redrives,
            "checks": total.checks,
            "seconds": started.elapsed().as_secs(),
        })
    );
    if !failures.is_empty() {
        std::process::exit(1);
    }
}

/// Replays a printed history; whether it kept every promise.
fn replay_file(path: &std::path::Path, args: &Args) -> bool {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
        eprintln!("cannot read {}: {e}", path.display());
        std::process::exit(2)
    });
    let mut lines = text.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#'));
    let header: serde_json::Value = serde_json::from_str(lines.next().unwrap_or("{}")).unwrap_or_default();
    let seed = header["seed"].as_u64().unwrap_or(0);
    let stores = if header["stores"] == "both" { Stores::Both } else { args.stores };
    let history: Vec<Step> = lines.map(|l| serde_json::from_str(l).expect("a step per line")).collect();
    match replay(seed, &history, stores, args.past_wording).violation {
        Some(violation) => {
            println!("{}: FAIL {violation}", path.display());
            false
        }
        None => {
            let steps = if history.len() == 1 { "step" } else { "steps" };
            println!("{}: ok, {} {steps} replayed", path.display(), history.len());
            true
        }
    }
}

/// One history's figures and what to print of it.
struct Report {
    figures: Figures,
    failed: bool,
    text: String,
}

/// Runs the history of `seed`, shrinking it if it fails.
fn history(args: &Args, seed: u64) -> Report {
    use std::fmt::Write as _;
    let options = Options { seed, steps: args.steps, stores: args.stores, trouble: args.trouble, past_wording: args.past_wording };
    let outcome = simulate(options);
    let mut text = String::new();
    for worded in &outcome.wording {
        let _ = writeln!(text, "seed {seed}: worded otherwise: {worded}");
    }
    let failed = outcome.violation.is_some();
    match outcome.violation {
        None => {
            if !args.quiet {
                let _ = writeln!(text, "seed {seed}: ok ({} steps, {} days)", outcome.figures.steps, outcome.figures.simulated_days);
            }
        }
        Some(violation) => {
            let _ = writeln!(text, "seed {seed}: FAIL {violation}");
            let (history, violation) = if args.shrink {
                let wanted = shrink::kind(&violation);
                shrink::shrink(seed, outcome.history, args.stores, args.past_wording, &wanted, shrink::budget(args.stores))
            } else {
                (outcome.history, violation)
            };
            let steps = history_text(seed, args.stores, &history);
            let path = keep(seed, &steps);
            let _ = writeln!(text, "  shrunk to {} steps ({}): {violation}", history.len(), path.display());
            if !args.quiet {
                text.push_str(&steps);
            }
        }
    }
    Report { figures: outcome.figures, failed, text }
}

fn add(total: &mut Figures, figures: &Figures) {
    total.steps += figures.steps;
    total.requests += figures.requests;
    total.simulated_days += figures.simulated_days;
    total.store_faults += figures.store_faults;
    total.provider_faults += figures.provider_faults;
    total.checks += figures.checks;
    total.sweeps += figures.sweeps;
    total.messages_sent += figures.messages_sent;
    total.duplicates += figures.duplicates;
    total.answers_lost += figures.answers_lost;
    total.failed_batches += figures.failed_batches;
    total.redrives += figures.redrives;
}
