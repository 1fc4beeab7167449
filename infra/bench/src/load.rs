//! The local server under load with `wrk` on loopback: the check route and a subscribe mix,
//! next to the server's bare health route. The server is the release build of `local-api`
//! with its embedded store and demo seed; messages go to its outbox.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use domain::identity::with_check_digit;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

pub const DURATION_SECONDS: u32 = 10;
const THREADS: u32 = 2;
const CONNECTIONS: u32 = 32;
/// Persons registered for the subscribe mix: more than it can subscribe in its run.
const PERSONS: u32 = 60_000;

pub struct Load {
    pub route: &'static str,
    pub what: &'static str,
    pub requests_per_second: f64,
    pub p99_ms: f64,
    pub errors: u64,
}

const CHECK_SCRIPT: &str = r#"
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")
wrk.body = os.getenv("BENCH_BODY")
"#;

/// Alternates a quote and the subscription of a new person (its own idempotency key), as
/// the portal drives it; each thread walks its own share of the registered persons. Quotes
/// name a person the run never subscribes (its first), so that no quote races the
/// subscription of the same person on another connection.
const MIX_SCRIPT: &str = r#"
local threads = 0
function setup(thread)
  thread:set("index", threads)
  threads = threads + 1
end
function init(args)
  ids = {}
  local n = 0
  for line in io.lines(os.getenv("BENCH_IDS")) do
    if n % tonumber(os.getenv("BENCH_THREADS")) == index then ids[#ids + 1] = line end
    n = n + 1
  end
  next_id = 2
  quote = true
  headers = { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN") }
end
local function body(id)
  return '{"persons":[{"id":"' .. id .. '","establishments":["1-123456"],"user_type":"residents_and_partners"}]}'
end
function request()
  local org = "/v1/organizations/7001234567/subscriptions"
  if quote then
    quote = false
    return wrk.format("POST", org .. "/quote", headers, body(ids[1]))
  end
  quote = true
  local id = ids[next_id]
  next_id = next_id + 1
  headers["Idempotency-Key"] = "bench-" .. id
  local request = wrk.format("POST", org, headers, body(id))
  headers["Idempotency-Key"] = nil
  return request
end
local shown = 0
function response(status, headers, body)
  if status >= 300 and shown < 3 then
    shown = shown + 1
    io.write("error sample: ", status, " ", body, "\n")
  end
end
"#;

/// One kept-alive connection for the setup requests (tens of thousands of them).
pub struct Connection(hyper::client::conn::http1::SendRequest<Full<Bytes>>);

impl Connection {
    pub async fn open(address: SocketAddr) -> Connection {
        let stream = tokio::net::TcpStream::connect(address).await.expect("connect");
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("handshake");
        tokio::spawn(connection);
        Connection(sender)
    }

    pub async fn send(&mut self, method: &str, path: &str, token: &str, body: &Value) -> (u16, String) {
        self.send_with(method, path, token, None, body).await
    }

    pub async fn send_keyed(&mut self, method: &str, path: &str, token: &str, key: &str, body: &Value) -> (u16, String) {
        self.send_with(method, path, token, Some(key), body).await
    }

    async fn send_with(&mut self, method: &str, path: &str, token: &str, key: Option<&str>, body: &Value) -> (u16, String) {
        self.0.ready().await.expect("the connection is ready");
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "127.0.0.1")
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json");
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        let request = request.body(Full::new(Bytes::from(body.to_string()))).expect("a request");
        let response = self.0.send_request(request).await.expect("a response");
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.expect("a body").to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("address").port()
}

pub fn token(server: &Path, args: &[&str]) -> String {
    let output = std::process::Command::new(server).arg("token").args(args).output().expect("local-api token");
    String::from_utf8(output.stdout).expect("a token").trim().to_owned()
}

/// `2.50ms` → 2.5, `850.00us` → 0.85, `1.20s` → 1200.
fn milliseconds(text: &str) -> f64 {
    let split = text.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => value / 1000.0,
        "ms" => value,
        "s" => value * 1000.0,
        "m" => value * 60_000.0,
        _ => f64::NAN,
    }
}

fn wrk(url: &str, script: Option<&Path>, env: &[(&str, &str)]) -> (f64, f64, u64) {
    let mut command = std::process::Command::new("wrk");
    command.args(["-t", &THREADS.to_string(), "-c", &CONNECTIONS.to_string(), "-d", &format!("{DURATION_SECONDS}s"), "--latency"]);
    if let Some(script) = script {
        command.arg("-s").arg(script);
    }
    let output = command.arg(url).envs(env.iter().copied()).output().expect("wrk runs (apt-get install wrk)");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "wrk failed: {text}{}", String::from_utf8_lossy(&output.stderr));
    let field = |prefix: &str| text.lines().find_map(|l| l.trim().strip_prefix(prefix).map(|rest| rest.trim().to_owned()));
    let rps = field("Requests/sec:").and_then(|v| v.parse().ok()).expect("requests per second");
    let p99 = field("99%").map(|v| milliseconds(&v)).expect("p99");
    for sample in text.lines().filter(|l| l.starts_with("error sample:")) {
        eprintln!("bench: {url}: {sample}");
    }
    let non_2xx = field("Non-2xx or 3xx responses:").and_then(|v| v.parse().ok()).unwrap_or(0);
    let socket_errors = field("Socket errors:")
        .map_or(0, |v| v.split(',').filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok()).sum::<u64>());
    (rps, p99, non_2xx + socket_errors)
}

pub async fn measure(server: &Path, scratch: &Path) -> Vec<Load> {
    let port = free_port();
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let mut process = tokio::process::Command::new(server)
        .args(["--demo", "--port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the local server starts");
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(address).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let operator = token(server, &["--sub", "operator@platform.example", "--role", "operator"]);
    let service = token(server, &["--sub", "visa-service", "--role", "service"]);
    let manager = token(server, &["--sub", "1012345672"]);

    // Persons for the subscribe mix, and the money for their seats.
    let mut connection = Connection::open(address).await;
    let mut ids = String::new();
    for n in 0..PERSONS {
        let id = with_check_digit(&format!("19{n:07}"));
        let body = json!({
            "name": { "en": format!("Bench Person {n}"), "ar": "موظف اختبار" }, "nationality": "SA",
            "employers": ["1-123456"], "email": format!("p{n}@bench.example"), "mobile": format!("055{n:07}")
        });
        let (status, text) = connection.send("PUT", &format!("/v1/registry/persons/{id}"), &operator, &body).await;
        assert!(status == 201 || status == 200, "register a person: {status} {text}");
        ids.push_str(&id);
        ids.push('\n');
    }
    for n in 0..(PERSONS / 5_000 + 1) {
        let body = json!({ "amount_halalas": 100_000_000u64, "payment_reference": format!("BENCH-{n}") });
        let (status, text) = connection.send("POST", "/v1/organizations/7001234567/balance/credits", &operator, &body).await;
        assert_eq!(status, 201, "credit: {text}");
    }
    let ids_file = scratch.join("bench-ids.txt");
    std::fs::write(&ids_file, ids).expect("write the ids");
    let check_script = scratch.join("bench-check.lua");
    std::fs::write(&check_script, CHECK_SCRIPT).expect("write the script");
    let mix_script = scratch.join("bench-mix.lua");
    std::fs::write(&mix_script, MIX_SCRIPT).expect("write the script");

    let base = format!("http://{address}");
    let check_body =
        json!({ "organization_id": "7001234567", "user_id": "1012345672", "establishment_id": "1-123456", "service": "iqama.renew" })
            .to_string();
    let threads = THREADS.to_string();
    let ids_path = ids_file.to_string_lossy().into_owned();

    let (rps, p99, errors) = wrk(&format!("{base}/health"), None, &[]);
    let mut results = vec![Load {
        route: "GET /health",
        what: "bare route of the same server (the baseline)",
        requests_per_second: rps,
        p99_ms: p99,
        errors,
    }];
    let (rps, p99, errors) =
        wrk(&format!("{base}/v1/authorizations/check"), Some(&check_script), &[("BENCH_TOKEN", &service), ("BENCH_BODY", &check_body)]);
    results.push(Load {
        route: "POST /v1/authorizations/check",
        what: "JWT, one read, the decision",
        requests_per_second: rps,
        p99_ms: p99,
        errors,
    });
    let (rps, p99, errors) =
        wrk(&base, Some(&mix_script), &[("BENCH_TOKEN", &manager), ("BENCH_IDS", &ids_path), ("BENCH_THREADS", &threads)]);
    results.push(Load {
        route: "subscribe mix",
        what: "a quote, then the subscription of a new person (charge, seat, audit, email + SMS to the outbox)",
        requests_per_second: rps,
        p99_ms: p99,
        errors,
    });
    process.kill().await.expect("stop the server");
    results
}
