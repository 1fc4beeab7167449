//! Logging and metrics of a Lambda function, set up once at start-up.
//!
//! Log lines honour Lambda's advanced logging controls (`AWS_LAMBDA_LOG_FORMAT=JSON` gives
//! one JSON object per line, `AWS_LAMBDA_LOG_LEVEL` or `RUST_LOG` the level) like
//! `lambda_runtime`'s default subscriber, and every line carries a UTC `timestamp`: Lambda
//! passes JSON lines through as they are, so a line without one has no time of its own.
//! Business metrics go to stdout as CloudWatch embedded metric format, dimensioned by the
//! function's name (`AWS_LAMBDA_FUNCTION_NAME`), which the template's alarms name too.

use lambda_http::tracing::subscriber::filter::{EnvFilter, LevelFilter};
use lambda_http::tracing::subscriber::fmt::MakeWriter;

/// Installs the log subscriber and turns metrics on. Call once, first thing in `main`.
pub fn init() {
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|format| format.eq_ignore_ascii_case("json"));
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL").or_else(|_| std::env::var("RUST_LOG")).ok();
    install(json, level.as_deref(), std::io::stdout);
    if let Ok(function) = std::env::var("AWS_LAMBDA_FUNCTION_NAME") {
        domain::metrics::emit_to_stdout(function);
    }
}

fn filter(level: Option<&str>) -> EnvFilter {
    let level = level.and_then(|text| text.parse::<LevelFilter>().ok()).unwrap_or(LevelFilter::INFO);
    EnvFilter::builder().with_default_directive(level.into()).from_env_lossy()
}

fn install<W>(json: bool, level: Option<&str>, writer: W)
where
    W: for<'writer> MakeWriter<'writer> + Send + Sync + 'static,
{
    let builder = lambda_http::tracing::subscriber::fmt().with_target(false).with_env_filter(filter(level)).with_writer(writer);
    // `try_init`: a second call (tests) keeps the first subscriber.
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use lambda_http::tracing::subscriber::fmt::MakeWriter;

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl Write for Lines {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Lines {
        type Writer = Lines;
        fn make_writer(&'a self) -> Lines {
            self.clone()
        }
    }

    #[test]
    fn every_json_line_carries_a_utc_timestamp_and_its_level() {
        let lines = Lines::default();
        let subscriber = lambda_http::tracing::subscriber::fmt()
            .with_target(false)
            .with_env_filter(super::filter(Some("info")))
            .with_writer(lines.clone())
            .json()
            .finish();
        let _installed = lambda_http::tracing::subscriber::util::SubscriberInitExt::set_default(subscriber);
        tracing::info!(count = 3, "something happened");
        tracing::debug!("filtered out");
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        let parsed: Vec<serde_json::Value> = text.lines().map(|line| serde_json::from_str(line).expect("a JSON line")).collect();
        assert_eq!(parsed.len(), 1, "{text}");
        let timestamp = parsed[0]["timestamp"].as_str().expect("a timestamp");
        let at = domain::clock::parse_rfc3339(timestamp).expect("RFC 3339");
        assert!((time::OffsetDateTime::now_utc() - at).abs() < time::Duration::minutes(1), "{timestamp}");
        assert!(timestamp.ends_with('Z'), "UTC: {timestamp}");
        assert_eq!(parsed[0]["level"], "INFO");
        assert_eq!(parsed[0]["fields"]["message"], "something happened");
    }
}
