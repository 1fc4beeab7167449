//! The local server: every function's handler behind the same routes as `template.yaml`,
//! with API Gateway's JWT authorizer played by an HS256 verifier. Each request becomes an
//! HTTP API (payload 2.0) event and goes through `lambda_http`'s own event conversion, so a
//! handler sees exactly what it sees in AWS.

pub mod console;
pub mod deliverer;
pub mod demo;
pub mod jwt;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use domain::clock::Adjustable;
use domain::embedded::Outbox;
use domain::env::{Env, SecretSource};
use gateway::routes::{Function, Route, match_path};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

pub use jwt::JwtConfig;

/// Everything a running local server needs.
#[derive(Clone)]
pub struct Server {
    pub env: Env,
    pub secrets: Arc<dyn SecretSource>,
    pub jwt: JwtConfig,
    /// The embedded provider, when messages are not sent through SES and SNS.
    pub outbox: Option<Arc<Outbox>>,
    /// The clock a person can move (`/local/clock`), when the server runs on one.
    pub clock: Option<Arc<dyn Adjustable>>,
    /// Delivers the outbox as Lambda's stream poller would.
    pub deliverer: Arc<deliverer::Deliverer>,
}

/// A query string's parameters, percent-decoded (`+` is a space) as API Gateway decodes
/// them; a name given twice keeps its values joined by commas, as API Gateway's payload 2.0
/// does.
pub fn query_parameters(query: &str) -> Vec<(String, String)> {
    let mut parameters: Vec<(String, String)> = Vec::new();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        match parameters.iter_mut().find(|(existing, _)| *existing == name) {
            Some((_, values)) => {
                values.push(',');
                values.push_str(&value);
            }
            None => parameters.push((name.into_owned(), value.into_owned())),
        }
    }
    parameters
}

fn query_value(query: &str, name: &str) -> Option<String> {
    query_parameters(query).into_iter().find_map(|(found, value)| (found == name).then_some(value))
}

type Reply = Response<Full<Bytes>>;

fn json_reply(status: u16, body: &Value) -> Reply {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a valid response")
}

fn local_error(status: u16, code: &str, message: &str) -> Reply {
    json_reply(status, &json!({ "error": { "code": code, "message": message } }))
}

/// A request matched to the function and route serving it.
pub struct Matched {
    pub function: Function,
    pub route: Route,
    pub params: Vec<(String, String)>,
}

/// Finds the function and route serving `method path`.
pub fn find_route(method: &str, path: &str) -> Option<Matched> {
    Function::ALL.into_iter().find_map(|function| {
        function.routes().1.into_iter().find_map(|route| {
            if route.method() != method {
                return None;
            }
            match_path(route.path(), path).map(|params| Matched { function, route, params })
        })
    })
}

/// Calls a function's handler as the Lambda runtime would, with the ports it builds.
pub async fn invoke(
    env: &Env,
    secrets: &dyn SecretSource,
    function: Function,
    request: lambda_http::Request,
) -> lambda_http::Response<lambda_http::Body> {
    match function {
        Function::Operator => operator_function::handle(env, request).await,
        Function::Subscribe => subscribe_function::handle(env, secrets, request).await,
        Function::Activate => activate_function::handle(env, secrets, request).await,
        Function::Directory => directory_function::handle(env, secrets, request).await,
        Function::Grant => grant_function::handle(env, request).await,
        Function::Authorize => authorize_function::handle(env, request).await,
        Function::Modify => modify_function::handle(env, secrets, request).await,
        Function::Suspend => suspend_function::handle(env, request).await,
    }
}

impl Server {
    /// Serves on `address` until the process ends. Returns the bound address (port 0 picks a
    /// free one) and the serving task.
    pub async fn bind(self, address: SocketAddr) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
        let listener = TcpListener::bind(address).await?;
        let bound = listener.local_addr()?;
        let server = Arc::new(self);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, peer)) = listener.accept().await else { continue };
                let server = server.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let server = server.clone();
                        async move { Ok::<_, std::convert::Infallible>(server.handle(request, peer).await) }
                    });
                    let _ = http1::Builder::new().keep_alive(true).serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Ok((bound, task))
    }

    async fn handle(&self, request: Request<Incoming>, peer: SocketAddr) -> Reply {
        let (parts, body) = request.into_parts();
        // Read at most one byte more than the limit: bounded memory whatever the client sends.
        let body = match Limited::new(body, gateway::MAX_BODY_BYTES + 1).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => Bytes::from(vec![0u8; gateway::MAX_BODY_BYTES + 1]),
        };
        if body.len() > gateway::MAX_BODY_BYTES {
            return local_error(413, "payload_too_large", &format!("request bodies are limited to {} bytes", gateway::MAX_BODY_BYTES));
        }
        let method = parts.method.as_str().to_owned();
        let path = parts.uri.path().to_owned();
        let query = parts.uri.query().unwrap_or("").to_owned();

        if path.starts_with("/local/")
            && let Some(problem) = cross_site(&parts.headers)
        {
            return local_error(403, "cross_site", problem);
        }
        if let Some(reply) = self.local_route(&method, &path, &query, &body).await {
            return reply;
        }
        let Some(Matched { function, route, params }) = find_route(&method, &path) else {
            return local_error(404, "not_found", "no such route");
        };
        if let Some(delay) = api_delay() {
            // LOCAL_API_DELAY_MS: every API answer this much later (a slow network, to see
            // how the console shows work under way).
            tokio::time::sleep(delay).await;
        }
        let claims = if route.public {
            None
        } else {
            let token = parts.headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
            match token.map(|t| self.jwt.verify(t)) {
                Some(Ok(claims)) => Some(claims),
                // API Gateway's JWT authorizer answers 401 before the function runs.
                _ => return local_error(401, "unauthenticated", "a valid bearer token is required"),
            }
        };
        let headers = parts
            .headers
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
            .collect();
        let gateway = GatewayRequest {
            method: &method,
            path: &path,
            query: &query,
            headers,
            route: &route,
            params: &params,
            claims: claims.as_ref(),
            body: &body,
            source_ip: peer.ip().to_string(),
            request_id: format!("local-{}", domain::entropy::SystemEntropy::hex(8)),
            time: time::OffsetDateTime::now_utc(),
        };
        let request = match gateway.lambda_request() {
            Ok(request) => request,
            Err(message) => return local_error(400, "invalid_request", &message),
        };
        let response = invoke(&self.env, self.secrets.as_ref(), function, request).await;
        to_hyper(response)
    }

    /// Routes that exist only locally: the console and its sign-in, health, the outbox and
    /// its failures, the clock, the sweep, a clickable activation link.
    async fn local_route(&self, method: &str, path: &str, query: &str, body: &Bytes) -> Option<Reply> {
        if method == "GET"
            && let Some(file) = console::file(path)
        {
            let mut response = Response::builder()
                .status(200)
                .header("content-type", file.content_type)
                .header("content-security-policy", console::content_security_policy());
            for (name, value) in console::HEADERS {
                response = response.header(*name, *value);
            }
            return Some(response.body(Full::new(console::body(file))).expect("a valid response"));
        }
        match (method, path) {
            ("GET", "/health") => Some(json_reply(200, &json!({ "status": "ok" }))),
            ("GET", "/config.json") => Some(json_reply(200, &console::config())),
            ("GET", "/local/identities") => Some(json_reply(200, &console::identities())),
            ("POST", "/local/sign-in") => {
                let subject = serde_json::from_slice::<Value>(body).ok().and_then(|v| v["subject"].as_str().map(str::to_owned));
                Some(match subject.as_deref().and_then(|s| console::sign_in_role(s).map(|role| (s, role))) {
                    Some((subject, role)) => json_reply(200, &json!({ "token": self.jwt.mint(subject, role, 12 * 3600) })),
                    None => local_error(422, "invalid_id_number", "sign in with an ID number, or as the operator"),
                })
            }
            ("GET", "/local/clock") => Some(json_reply(200, &json!({ "now": domain::clock::key_timestamp(self.env.clock.now()) }))),
            ("GET", "/local/failures") => Some(json_reply(200, &json!({ "failures": self.deliverer.failures() }))),
            ("GET", "/local/events") => Some(json_reply(200, &json!({ "events": self.deliverer.events() }))),
            ("POST", "/local/deliver") => Some(match self.deliverer.drain().await {
                Ok(drained) => json_reply(200, &serde_json::to_value(drained).unwrap_or_default()),
                Err(error) => to_hyper(gateway::error_response(&error, "local-deliver")),
            }),
            ("POST", "/local/clock") => Some(self.move_clock(query)),
            ("GET", "/local/outbox") => Some(match &self.outbox {
                Some(outbox) => json_reply(200, &json!({ "messages": outbox.messages() })),
                None => local_error(404, "not_found", "messages go through SES and SNS in this configuration"),
            }),
            ("POST", "/local/expiry-sweep") => {
                // Runs the scheduled sweep now, or as of `?time=<RFC 3339>` to replay a day.
                let time = query_value(query, "time");
                let now = match time.as_deref().map(domain::clock::parse_rfc3339) {
                    None => self.env.clock.now(),
                    Some(Some(at)) => at,
                    Some(None) => return Some(local_error(400, "invalid_request", "time is an RFC 3339 timestamp")),
                };
                let options = domain::actions::sweep::SweepOptions::default();
                let meta = domain::pipeline::RequestMeta::new(domain::policy::Caller::Anonymous, "local-sweep");
                Some(match domain::actions::sweep::sweep(&self.env, &meta, now, options).await {
                    Ok(report) => json_reply(200, &serde_json::to_value(report).unwrap_or_default()),
                    Err(error) => to_hyper(gateway::error_response(&error, "local-sweep")),
                })
            }
            ("GET", "/local/activate") => {
                let token = query_value(query, "token").unwrap_or_default();
                let request_id = format!("local-{}", domain::entropy::SystemEntropy::hex(8));
                let meta = domain::pipeline::RequestMeta::new(domain::policy::Caller::Anonymous, request_id.clone());
                let confirmed = match domain::actions::activate::ConfirmEmail::new(&token) {
                    Ok(command) => domain::pipeline::run(&self.env, &meta, &command).await.map(|outcome| outcome.answer),
                    Err(rejection) => Err(rejection.into()),
                };
                Some(match confirmed {
                    Ok(state) => json_reply(200, &serde_json::to_value(state).unwrap_or_default()),
                    Err(error) => to_hyper(gateway::error_response(&error, &request_id)),
                })
            }
            _ => None,
        }
    }
}

impl Server {
    /// `POST /local/clock?days=&hours=&minutes=` moves the clock forward; `?to=<RFC 3339>`
    /// sets it (never back). Every rule and the sweep read this clock.
    fn move_clock(&self, query: &str) -> Reply {
        let Some(clock) = &self.clock else {
            return local_error(404, "not_found", "this server runs on the real clock");
        };
        let parameters = query_parameters(query);
        let mut moved = false;
        for (name, value) in &parameters {
            let step = match name.as_str() {
                "days" => time::Duration::days,
                "hours" => time::Duration::hours,
                "minutes" => time::Duration::minutes,
                "to" => {
                    let Some(to) = domain::clock::parse_rfc3339(value) else {
                        return local_error(400, "invalid_request", "to is an RFC 3339 time, e.g. 2027-11-20T09:00:00+03:00");
                    };
                    if !clock.set(to) {
                        return local_error(409, "clock_in_the_past", "the clock only moves forward");
                    }
                    moved = true;
                    continue;
                }
                _ => return local_error(400, "invalid_request", &format!("unknown parameter {name}: use days, hours, minutes or to")),
            };
            match value.parse::<i64>() {
                Ok(amount) if (1..=3660).contains(&amount) => {
                    clock.advance(step(amount));
                    moved = true;
                }
                _ => return local_error(400, "invalid_request", &format!("{name} is a whole number from 1 to 3660")),
            }
        }
        if !moved {
            return local_error(400, "invalid_request", "say how far: ?days=, ?hours=, ?minutes= or ?to=");
        }
        json_reply(200, &json!({ "now": domain::clock::key_timestamp(clock.now()) }))
    }
}

fn to_hyper(response: lambda_http::Response<lambda_http::Body>) -> Reply {
    let (parts, body) = response.into_parts();
    let bytes = match body {
        lambda_http::Body::Empty => Bytes::new(),
        lambda_http::Body::Text(text) => Bytes::from(text),
        lambda_http::Body::Binary(bytes) => Bytes::from(bytes),
        _ => Bytes::new(),
    };
    Response::from_parts(parts, Full::new(bytes))
}

/// What API Gateway knows of a request when it builds the function's event.
pub struct GatewayRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    /// Header names in lower case; a name given twice is joined with a comma.
    pub headers: Vec<(String, String)>,
    pub route: &'a Route,
    pub params: &'a [(String, String)],
    /// The verified JWT's claims (the authorizer's), absent on public routes.
    pub claims: Option<&'a HashMap<String, String>>,
    pub body: &'a [u8],
    pub source_ip: String,
    pub request_id: String,
    pub time: time::OffsetDateTime,
}

impl GatewayRequest<'_> {
    /// The event API Gateway's HTTP API sends a Lambda (payload format 2.0).
    pub fn event(&self) -> Value {
        let mut headers = serde_json::Map::new();
        for (name, value) in &self.headers {
            match headers.get_mut(name.as_str()) {
                Some(Value::String(existing)) => {
                    existing.push(',');
                    existing.push_str(value);
                }
                _ => {
                    headers.insert(name.clone(), Value::String(value.clone()));
                }
            }
        }
        let query_parameters: serde_json::Map<String, Value> =
            query_parameters(self.query).into_iter().map(|(name, value)| (name, Value::String(value))).collect();
        let (body_text, base64) = match std::str::from_utf8(self.body) {
            Ok(text) => (text.to_owned(), false),
            Err(_) => {
                use base64::Engine;
                (base64::engine::general_purpose::STANDARD.encode(self.body), true)
            }
        };
        let user_agent = self.headers.iter().find(|(name, _)| name == "user-agent").map_or("", |(_, value)| value.as_str());
        let mut context = json!({
            "accountId": "000000000000",
            "apiId": "local",
            "domainName": "localhost",
            "domainPrefix": "localhost",
            "http": {
                "method": self.method,
                "path": self.path,
                "protocol": "HTTP/1.1",
                "sourceIp": self.source_ip,
                "userAgent": user_agent,
            },
            "requestId": self.request_id,
            "routeKey": self.route.key,
            "stage": "$default",
            "time": self.time.to_string(),
            "timeEpoch": self.time.unix_timestamp() * 1000,
        });
        if let Some(claims) = self.claims {
            context["authorizer"] = json!({ "jwt": { "claims": claims, "scopes": null } });
        }
        json!({
            "version": "2.0",
            "routeKey": self.route.key,
            "rawPath": self.path,
            "rawQueryString": self.query,
            "headers": headers,
            "queryStringParameters": query_parameters,
            "pathParameters": self.params.iter().cloned().collect::<HashMap<_, _>>(),
            "requestContext": context,
            "body": if self.body.is_empty() { Value::Null } else { Value::String(body_text) },
            "isBase64Encoded": base64,
        })
    }

    /// The request a function's handler receives, through `lambda_http`'s own conversion.
    pub fn lambda_request(&self) -> Result<lambda_http::Request, String> {
        lambda_http::request::from_str(&self.event().to_string())
            .map_err(|error| format!("the request could not be represented as an API Gateway event: {error}"))
    }
}

/// Why a request to the local-only routes (`/local/*`: signing in as anyone, moving the
/// clock, reading the outbox) is refused as cross-site, if it is: a page of another site in
/// the developer's browser may not call them (its `Origin` is not this server's, or the
/// browser says `Sec-Fetch-Site: cross-site`), nor may a name that resolves to loopback by
/// DNS rebinding (the `Host` is not a loopback name).
pub fn cross_site(headers: &hyper::HeaderMap) -> Option<&'static str> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let host = header("host").unwrap_or_default();
    let name = host.rsplit_once(':').map_or(host, |(name, port)| if port.chars().all(|c| c.is_ascii_digit()) { name } else { host });
    if !matches!(name, "127.0.0.1" | "localhost" | "[::1]") {
        return Some("the local server answers its local routes only on a loopback host name");
    }
    if let Some(origin) = header("origin")
        && origin != format!("http://{host}")
    {
        return Some("the local routes do not answer other sites");
    }
    if header("sec-fetch-site") == Some("cross-site") {
        return Some("the local routes do not answer other sites");
    }
    None
}

/// `LOCAL_API_DELAY_MS`, read once.
fn api_delay() -> Option<std::time::Duration> {
    static DELAY: std::sync::OnceLock<Option<std::time::Duration>> = std::sync::OnceLock::new();
    *DELAY.get_or_init(|| {
        std::env::var("LOCAL_API_DELAY_MS").ok().and_then(|ms| ms.trim().parse::<u64>().ok()).map(std::time::Duration::from_millis)
    })
}
