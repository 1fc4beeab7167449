//! Moto servers for the tests: started once per test binary on free loopback ports from
//! the project's `.venv` (see `infra/check.sh`), shared by the tests, which isolate
//! themselves with their own table names, email addresses and mobile numbers. A moto
//! server handles one request at a time (see `tests/moto/server.py`), so there are several
//! (`MOTO_SERVERS`, default 4) and each test world uses one of them.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;
use serde_json::Value;

use crate::http;

pub struct Moto {
    pub address: SocketAddr,
    _process: Child,
}

/// The domain moto treats as a verified SES identity in tests.
pub const MAIL_DOMAIN: &str = "example.sa";
pub const MAIL_FROM: &str = "no-reply@example.sa";

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ sits in the workspace").to_path_buf()
}

fn python() -> PathBuf {
    if let Some(path) = std::env::var_os("MOTO_PYTHON") {
        return PathBuf::from(path);
    }
    let venv = workspace_root().join(".venv/bin/python");
    assert!(
        venv.exists(),
        "moto is needed for this test: run `bash infra/check.sh` once (it creates .venv with the pinned moto), or set MOTO_PYTHON"
    );
    venv
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free loopback port")
}

fn start() -> Moto {
    {
        let port = free_port();
        let process = Command::new(python())
            .arg(workspace_root().join("tests/moto/server.py"))
            .arg(port.to_string())
            // The request recorder's file, out of the working tree.
            .env("MOTO_RECORDER_FILEPATH", std::env::temp_dir().join(format!("moto-recording-{port}")))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto starts");
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(address).is_err() {
            assert!(Instant::now() < deadline, "moto did not start within 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        Moto { address, _process: process }
    }
}

fn servers() -> &'static [Moto] {
    static SERVERS: OnceLock<Vec<Moto>> = OnceLock::new();
    SERVERS.get_or_init(|| {
        let count = std::env::var("MOTO_SERVERS").ok().and_then(|n| n.parse().ok()).filter(|n| *n > 0).unwrap_or(4);
        (0..count).map(|_| start()).collect()
    })
}

/// The moto server for a test world, picked by the world's tag.
pub fn moto_for(tag: &str) -> &'static Moto {
    let servers = servers();
    let index = tag.bytes().fold(0usize, |hash, b| hash.wrapping_mul(31).wrapping_add(b as usize)) % servers.len();
    &servers[index]
}

impl Moto {
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// SDK configuration pointing at moto, with test credentials, bounded retries and
    /// timeouts like production.
    pub async fn sdk_config(&self) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(self.endpoint())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "moto"))
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(3))
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(2))
                    .operation_attempt_timeout(Duration::from_secs(20))
                    .build(),
            )
            .load()
            .await
    }

    /// Verifies the test mail domain as an SES identity (idempotent).
    pub async fn verify_mail_domain(&self) {
        let config = self.sdk_config().await;
        let ses = aws_sdk_sesv2::Client::new(&config);
        let _ = ses.create_email_identity().email_identity(MAIL_DOMAIN).send().await;
    }

    /// A Secrets Manager secret holding `text`, by a fresh name: its ARN (what a function's
    /// `CODE_KEY_SECRET_ARN` names).
    pub async fn create_secret(&self, text: &str) -> String {
        let config = self.sdk_config().await;
        let client = aws_sdk_secretsmanager::Client::new(&config);
        let name = format!("code-key-{}", domain::entropy::SystemEntropy::hex(6));
        let created = client.create_secret().name(name).secret_string(text).send().await.expect("the secret is created");
        created.arn().expect("an ARN").to_owned()
    }

    /// What moto holds: sent emails, SMS, etc.
    pub async fn data(&self) -> Value {
        let (status, body) = http::get_raw(self.address, "/moto-api/data.json").await;
        assert_eq!(status, 200, "moto data.json");
        serde_json::from_slice(&body).expect("moto data is JSON")
    }

    /// Emails moto received for `to`: (subject, body), oldest first.
    pub async fn emails_to(&self, to: &str) -> Vec<(String, String)> {
        let data = self.data().await;
        data["ses"]["Message"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["destinations"]["ToAddresses"].as_array().is_some_and(|a| a.iter().any(|t| t == to)))
            .map(|m| (m["subject"].as_str().unwrap_or("").to_owned(), m["body"].as_str().unwrap_or("").to_owned()))
            .collect()
    }

    /// SMS bodies moto received for `to` (E.164), oldest first.
    pub async fn sms_to(&self, to: &str) -> Vec<String> {
        let data = self.data().await;
        data["sns"]["SMS"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["phone_number"] == to)
            .map(|m| m["message"].as_str().unwrap_or("").to_owned())
            .collect()
    }

    pub async fn start_recording(&self) {
        let (status, _) = http::post_raw(self.address, "/moto-api/recorder/reset-recording", b"").await;
        assert!(status < 300, "moto recorder reset");
        let (status, _) = http::post_raw(self.address, "/moto-api/recorder/start-recording", b"").await;
        assert!(status < 300, "moto recorder start");
    }

    /// The `X-Amz-Target` of every request recorded since `start_recording` whose body
    /// mentions `mentioning` (a test's own table names), e.g. `DynamoDB_20120810.Query`.
    /// Recording is global to the server: tests that record take `recording_lock`, and
    /// the filter leaves out requests of tests running beside them.
    pub async fn recorded_targets(&self, mentioning: &str) -> Vec<String> {
        let (status, _) = http::post_raw(self.address, "/moto-api/recorder/stop-recording", b"").await;
        assert!(status < 300, "moto recorder stop");
        let (status, body) = http::get_raw(self.address, "/moto-api/recorder/download-recording").await;
        assert_eq!(status, 200, "moto recording");
        String::from_utf8_lossy(&body)
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|entry| {
                let body = entry["body"].as_str().unwrap_or_default();
                let body = if entry["body_encoded"].as_bool() == Some(true) {
                    use base64::Engine;
                    String::from_utf8_lossy(&base64::engine::general_purpose::STANDARD.decode(body).unwrap_or_default()).into_owned()
                } else {
                    body.to_owned()
                };
                body.contains(mentioning)
            })
            .filter_map(|entry| entry["headers"]["X-Amz-Target"].as_str().map(str::to_owned))
            .collect()
    }
}

/// Serializes tests that use moto's (global) request recorder.
pub fn recording_lock() -> &'static tokio::sync::Mutex<()> {
    static LOCK: OnceLock<tokio::sync::Mutex<()>> = OnceLock::new();
    LOCK.get_or_init(|| tokio::sync::Mutex::new(()))
}
