//! The local server under load with `wrk` on loopback: the check route and a subscribe mix,
//! next to the server's bare health route. The server is the release build of `local-api`
//! with its embedded store and demo seed; messages go to its outbox. A route wrk could not
//! measure (a Lua error, wrk missing) is reported as such, beside the routes it measured.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use domain::actions::operator::MAX_CREDIT;
use domain::identity::with_check_digit;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

pub const DURATION_SECONDS: u32 = 10;
const THREADS: u32 = 2;
const CONNECTIONS: u32 = 32;
/// Credits of the largest amount an operator may credit (`MAX_CREDIT`) for the subscribe
/// mix: at least 2,000,000 seats at the dearest price, some thirty times what the mix can
/// subscribe in its run here.
const CREDITS: u32 = 32;

const CHECK_SCRIPT: &str = r#"
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")
wrk.body = os.getenv("BENCH_BODY")
"#;

/// A third of the requests are quotes, a third register a new person and a third subscribe a
/// person whose registration has been answered (its own idempotency key), as the portal
/// drives it after the registry: no pool of persons made beforehand, so the mix runs as long
/// as it is asked to, however fast the machine. Each thread makes its persons' IDs itself
/// (`1` and `5 + thread` then a counter of seven digits, and the Luhn check digit, as
/// `domain::identity::with_check_digit` makes it; ten million a thread); a registration's
/// answer (`{"id":"…","name":…`) puts its person in the thread's queue, and only then is it
/// subscribed, so no subscription can overtake its registration on another connection.
/// Quotes name one person the runner registered and nobody subscribes, so that no quote
/// races a subscription of the same person. `done` prints the counts, which the runner
/// checks.
const MIX_SCRIPT: &str = r#"
local threads = {}
function setup(thread)
  thread:set("index", #threads)
  table.insert(threads, thread)
end

local function with_check_digit(nine)
  local digits = nine .. "0"
  local sum = 0
  for position = 0, #digits - 1 do
    local digit = tonumber(digits:sub(#digits - position, #digits - position))
    if position % 2 == 1 then
      digit = digit * 2
      if digit > 9 then digit = digit - 9 end
    end
    sum = sum + digit
  end
  return nine .. tostring((10 - sum % 10) % 10)
end

function init(args)
  counter = 0
  step = 0
  ready = {}
  first = 1
  last = 0
  registrations = 0
  subscriptions = 0
  quotes = 0
  refused = 0
  org = "/v1/organizations/7001234567/subscriptions"
  quote_body = nil
  manager = { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN") }
  operator = { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. os.getenv("BENCH_OPERATOR") }
end

local function subscription(id)
  return '{"persons":[{"id":"' .. id .. '","establishments":["1-123456"],"user_type":"residents_and_partners"}]}'
end

local function person(n)
  local mobile = string.format("05%d%07d", 5 + index, n)
  return '{"name":{"en":"Bench Person","ar":"موظف اختبار"},"nationality":"SA","employers":["1-123456"],'
    .. '"email":"t' .. index .. 'n' .. n .. '@bench.example","mobile":"' .. mobile .. '"}'
end

function request()
  step = step % 3 + 1
  if step == 1 or (first > last and counter >= 9999999) then
    quotes = quotes + 1
    if quote_body == nil then quote_body = subscription(os.getenv("BENCH_QUOTE")) end
    return wrk.format("POST", org .. "/quote", manager, quote_body)
  end
  if first <= last then
    local id = ready[first]
    ready[first] = nil
    first = first + 1
    subscriptions = subscriptions + 1
    manager["Idempotency-Key"] = "bench-" .. id
    local request = wrk.format("POST", org, manager, subscription(id))
    manager["Idempotency-Key"] = nil
    return request
  end
  counter = counter + 1
  registrations = registrations + 1
  local id = with_check_digit(string.format("1%d%07d", 5 + index, counter))
  return wrk.format("PUT", "/v1/registry/persons/" .. id, operator, person(counter))
end

function response(status, headers, body)
  if status >= 300 then
    refused = refused + 1
    if refused <= 3 then io.write("error sample: ", status, " ", body, "\n") end
    return
  end
  local id = body:match('^{"id":"(%d+)","name":')
  if id then
    last = last + 1
    ready[last] = id
  end
end

function done(summary, latency, requests)
  local counts = { registrations = 0, subscriptions = 0, quotes = 0 }
  for _, thread in ipairs(threads) do
    for name, _ in pairs(counts) do counts[name] = counts[name] + thread:get(name) end
  end
  io.write(string.format("mix: %d quotes, %d registrations, %d subscriptions sent\n", counts.quotes, counts.registrations, counts.subscriptions))
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

/// What one wrk run measured.
pub struct Wrk {
    pub requests_per_second: f64,
    pub p99_ms: f64,
    pub errors: u64,
    /// Lines the script printed in `done` (`mix: …`).
    pub summary: Option<String>,
}

/// Runs wrk; an `Err` says why it measured nothing (wrk missing, a Lua error, no figures).
fn wrk(url: &str, script: Option<&Path>, env: &[(&str, &str)]) -> Result<Wrk, String> {
    let mut command = std::process::Command::new("wrk");
    command.args(["-t", &THREADS.to_string(), "-c", &CONNECTIONS.to_string(), "-d", &format!("{DURATION_SECONDS}s"), "--latency"]);
    if let Some(script) = script {
        command.arg("-s").arg(script);
    }
    let output = command.arg(url).envs(env.iter().copied()).output().map_err(|e| format!("wrk does not run ({e}): apt-get install wrk"))?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if !output.status.success() {
        return Err(format!(
            "wrk exited with {}: {}",
            output.status,
            stderr.lines().chain(text.lines()).take(5).collect::<Vec<_>>().join(" / ")
        ));
    }
    let field = |prefix: &str| text.lines().find_map(|l| l.trim().strip_prefix(prefix).map(|rest| rest.trim().to_owned()));
    let requests_per_second =
        field("Requests/sec:").and_then(|v| v.parse().ok()).ok_or_else(|| format!("no requests per second in: {text}"))?;
    let p99_ms = field("99%").map(|v| milliseconds(&v)).ok_or_else(|| format!("no p99 in: {text}"))?;
    for sample in text.lines().filter(|l| l.starts_with("error sample:")) {
        eprintln!("bench: {url}: {sample}");
    }
    let non_2xx = field("Non-2xx or 3xx responses:").and_then(|v| v.parse().ok()).unwrap_or(0);
    let socket_errors = field("Socket errors:")
        .map_or(0, |v| v.split(',').filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok()).sum::<u64>());
    let summary = text.lines().find(|l| l.starts_with("mix:")).map(|l| l.trim_start_matches("mix:").trim().to_owned());
    Ok(Wrk { requests_per_second, p99_ms, errors: non_2xx + socket_errors, summary })
}

/// A route under load, or why it could not be measured.
pub struct Load {
    pub route: &'static str,
    pub what: &'static str,
    pub measured: Result<Wrk, String>,
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

    // The person every quote of the mix names (never subscribed), and the money for the
    // mix's seats.
    let mut connection = Connection::open(address).await;
    let quoted = with_check_digit("180000000");
    let body = json!({
        "name": { "en": "Bench Quote", "ar": "موظف اختبار" }, "nationality": "SA",
        "employers": ["1-123456"], "email": "quote@bench.example", "mobile": "0580000000"
    });
    let (status, text) = connection.send("PUT", &format!("/v1/registry/persons/{quoted}"), &operator, &body).await;
    assert!(status == 201 || status == 200, "register the quoted person: {status} {text}");
    for n in 0..CREDITS {
        let body = json!({ "amount_halalas": MAX_CREDIT.get(), "payment_reference": format!("BENCH-{n}") });
        let (status, text) = connection.send("POST", "/v1/organizations/7001234567/balance/credits", &operator, &body).await;
        assert_eq!(status, 201, "credit: {text}");
    }
    let check_script = scratch.join("bench-check.lua");
    std::fs::write(&check_script, CHECK_SCRIPT).expect("write the script");
    let mix_script = scratch.join("bench-mix.lua");
    std::fs::write(&mix_script, MIX_SCRIPT).expect("write the script");

    let base = format!("http://{address}");
    let check_body =
        json!({ "organization_id": "7001234567", "user_id": "1012345672", "establishment_id": "1-123456", "service": "iqama.renew" })
            .to_string();
    let mut results = vec![Load {
        route: "GET /health",
        what: "bare route of the same server (the baseline)",
        measured: wrk(&format!("{base}/health"), None, &[]),
    }];
    results.push(Load {
        route: "POST /v1/authorizations/check",
        what: "JWT, one read, the decision",
        measured: wrk(
            &format!("{base}/v1/authorizations/check"),
            Some(&check_script),
            &[("BENCH_TOKEN", &service), ("BENCH_BODY", &check_body)],
        ),
    });
    let mix = wrk(&base, Some(&mix_script), &[("BENCH_TOKEN", &manager), ("BENCH_OPERATOR", &operator), ("BENCH_QUOTE", &quoted)])
        .and_then(|measured| match &measured.summary {
            Some(summary) if !summary.ends_with(" 0 subscriptions sent") => Ok(measured),
            other => Err(format!("the mix subscribed nobody ({})", other.as_deref().unwrap_or("no counts printed"))),
        });
    results.push(Load {
        route: "subscribe mix",
        what: "a quote; the registration of a new person (its ID made by the script); the subscription of a person once registered (charge, seat, audit, email + SMS to the outbox)",
        measured: mix,
    });
    process.kill().await.expect("stop the server");
    results
}
