//! Business metrics, as CloudWatch embedded metric format (EMF): one JSON line on stdout
//! per committed command that counts something, which CloudWatch Logs turns into metrics
//! in the `EstablishmentUsers` namespace, by function.
//!
//! Written by hand: the format is one JSON object, and the crates that produce it bring a
//! metrics facade and a global recorder into every function's cold start for it. Nothing
//! is emitted until a function turns the sink on (`emit_to_stdout`); the local server and
//! tests can capture instead.

use std::io::Write;
use std::sync::{Mutex, OnceLock};

use serde_json::{Value, json};

pub const NAMESPACE: &str = "EstablishmentUsers";

/// A business fact, counted once its change has committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Subscriptions(u64),
    HalalasCharged(u64),
    ActivationsCompleted(u64),
    MessagesSent(u64),
    MessagesFailed(u64),
    /// Messages whose budget of tries ran out (alarmed on).
    MessagesUndeliverable(u64),
    /// Messages sent again after a claim ran out with the first send's outcome unknown.
    MessagesPossiblyDuplicated(u64),
    SweepExpiries(u64),
    SweepReminders(u64),
    /// Sweep items or queries that failed (retried by the next run; alarmed on).
    SweepFailures(u64),
}

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Metric::Subscriptions(_) => "Subscriptions",
            Metric::HalalasCharged(_) => "HalalasCharged",
            Metric::ActivationsCompleted(_) => "ActivationsCompleted",
            Metric::MessagesSent(_) => "MessagesSent",
            Metric::MessagesFailed(_) => "MessagesFailed",
            Metric::MessagesUndeliverable(_) => "MessagesUndeliverable",
            Metric::MessagesPossiblyDuplicated(_) => "MessagesPossiblyDuplicated",
            Metric::SweepExpiries(_) => "SweepExpiries",
            Metric::SweepReminders(_) => "SweepReminders",
            Metric::SweepFailures(_) => "SweepFailures",
        }
    }

    pub fn value(self) -> u64 {
        match self {
            Metric::Subscriptions(n)
            | Metric::HalalasCharged(n)
            | Metric::ActivationsCompleted(n)
            | Metric::MessagesSent(n)
            | Metric::MessagesFailed(n)
            | Metric::MessagesUndeliverable(n)
            | Metric::MessagesPossiblyDuplicated(n)
            | Metric::SweepExpiries(n)
            | Metric::SweepReminders(n)
            | Metric::SweepFailures(n) => n,
        }
    }
}

enum Sink {
    Stdout { function: String },
    Capture(Mutex<Vec<String>>),
}

static SINK: OnceLock<Sink> = OnceLock::new();

/// Turns metrics on for a Lambda function: EMF lines on stdout, dimension `FunctionName`.
pub fn emit_to_stdout(function: impl Into<String>) {
    let _ = SINK.set(Sink::Stdout { function: function.into() });
}

/// Keeps the lines in memory instead (tests), and returns what was emitted so far.
pub fn capture() -> Vec<String> {
    let sink = SINK.get_or_init(|| Sink::Capture(Mutex::default()));
    match sink {
        Sink::Capture(lines) => lines.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone(),
        Sink::Stdout { .. } => vec![],
    }
}

/// The EMF line for `metrics`, summed by name.
pub fn line(function: &str, metrics: &[Metric], timestamp_millis: i128) -> String {
    // Sorted by name whatever order serde_json's maps keep.
    let mut values: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
    for metric in metrics {
        *values.entry(metric.name()).or_default() += metric.value();
    }
    let definitions: Vec<Value> =
        values.keys().map(|name| json!({ "Name": name, "Unit": if *name == "HalalasCharged" { "None" } else { "Count" } })).collect();
    let mut object = json!({
        "_aws": {
            "Timestamp": timestamp_millis,
            "CloudWatchMetrics": [{ "Namespace": NAMESPACE, "Dimensions": [["FunctionName"]], "Metrics": definitions }],
        },
        "FunctionName": function,
        // Like every log line: its time, and the level Lambda's JSON log format filters by.
        "timestamp": time::OffsetDateTime::from_unix_timestamp_nanos(timestamp_millis * 1_000_000)
            .map(crate::clock::key_timestamp)
            .unwrap_or_default(),
        "level": "INFO",
    });
    if let Some(fields) = object.as_object_mut() {
        fields.extend(values.into_iter().map(|(name, total)| (name.to_owned(), json!(total))));
    }
    object.to_string()
}

/// Emits `metrics`, if any and if a sink is on.
pub fn emit(metrics: &[Metric]) {
    if metrics.is_empty() {
        return;
    }
    let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    match SINK.get() {
        Some(Sink::Stdout { function }) => {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{}", line(function, metrics, now));
        }
        Some(Sink::Capture(lines)) => {
            lines.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(line("test", metrics, now));
        }
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_embedded_metric_format_summed_by_name() {
        let text =
            line("subscribe", &[Metric::Subscriptions(2), Metric::HalalasCharged(30000), Metric::Subscriptions(1)], 1_795_000_000_000);
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["_aws"]["Timestamp"], 1_795_000_000_000i64);
        assert_eq!(value["_aws"]["CloudWatchMetrics"][0]["Namespace"], NAMESPACE);
        assert_eq!(value["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([["FunctionName"]]));
        let names: Vec<&str> =
            value["_aws"]["CloudWatchMetrics"][0]["Metrics"].as_array().unwrap().iter().map(|m| m["Name"].as_str().unwrap()).collect();
        assert_eq!(names, vec!["HalalasCharged", "Subscriptions"]);
        assert_eq!(value["Subscriptions"], 3);
        assert_eq!(value["HalalasCharged"], 30000);
        assert_eq!(value["FunctionName"], "subscribe");
        assert_eq!(value["timestamp"], "2026-11-18T11:06:40.000000Z");
        assert!(!text.contains('\n'));
    }
}
