//! A Lambda Runtime API on loopback, enough to run a function binary as Lambda does:
//! it hands out the queued events on `GET /runtime/invocation/next` and records what the
//! function posts back. `next` with nothing queued waits, like the real service.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use aws_adapters::TableNames;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::moto::MAIL_FROM;

#[derive(Default)]
struct State {
    queue: VecDeque<(String, Value)>,
    responses: Vec<(String, Value)>,
    errors: Vec<(String, Value)>,
    first_next_at: Option<Instant>,
}

#[derive(Clone)]
pub struct RuntimeApi {
    pub address: SocketAddr,
    state: Arc<Mutex<State>>,
    queued: Arc<Notify>,
    answered: Arc<Notify>,
}

impl RuntimeApi {
    pub async fn start() -> RuntimeApi {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let api = RuntimeApi {
            address: listener.local_addr().expect("address"),
            state: Arc::default(),
            queued: Arc::new(Notify::new()),
            answered: Arc::new(Notify::new()),
        };
        let server = api.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let server = server.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let server = server.clone();
                        async move { Ok::<_, std::convert::Infallible>(server.handle(request).await) }
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        api
    }

    /// `binary` started as Lambda starts a function against this Runtime API: a clean
    /// environment with the runtime's variables and JSON logs, a region and test credentials,
    /// the SDK pointed at `endpoint`, the table names and the mail sender. The caller adds
    /// what else the function reads, and where its output goes.
    pub fn function(&self, binary: &Path, name: &str, endpoint: &str, tables: &TableNames) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(binary);
        command
            .env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", self.host())
            .env("AWS_LAMBDA_FUNCTION_NAME", name)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_ENDPOINT_URL", endpoint)
            .env("USERS_TABLE", &tables.users)
            .env("BALANCES_TABLE", &tables.balances)
            .env("AUDIT_TABLE", &tables.audit)
            .env("OUTBOX_TABLE", &tables.outbox)
            .env("MAIL_FROM", MAIL_FROM)
            .kill_on_drop(true);
        command
    }

    /// `AWS_LAMBDA_RUNTIME_API` for the function process.
    pub fn host(&self) -> String {
        self.address.to_string()
    }

    pub fn queue(&self, request_id: &str, event: Value) {
        self.state.lock().expect("state").queue.push_back((request_id.to_owned(), event));
        self.queued.notify_waiters();
    }

    /// When the function first asked for work: the end of its cold start.
    pub fn first_next_at(&self) -> Option<Instant> {
        self.state.lock().expect("state").first_next_at
    }

    /// Waits for the answer to `request_id`: `Ok(response)` or `Err(error payload)`.
    pub async fn answer(&self, request_id: &str) -> Result<Value, Value> {
        loop {
            let notified = self.answered.notified();
            {
                let state = self.state.lock().expect("state");
                if let Some((_, response)) = state.responses.iter().find(|(id, _)| id == request_id) {
                    return Ok(response.clone());
                }
                if let Some((_, error)) = state.errors.iter().find(|(id, _)| id == request_id || id == "init") {
                    return Err(error.clone());
                }
            }
            notified.await;
        }
    }

    async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = request.uri().path().to_owned();
        let body = request.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let json = serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null);
        if path.ends_with("/runtime/invocation/next") {
            self.state.lock().expect("state").first_next_at.get_or_insert_with(Instant::now);
            loop {
                let notified = self.queued.notified();
                let next = self.state.lock().expect("state").queue.pop_front();
                if let Some((id, event)) = next {
                    let deadline = (time::OffsetDateTime::now_utc().unix_timestamp() + 30) * 1000;
                    return Response::builder()
                        .header("lambda-runtime-aws-request-id", id)
                        .header("lambda-runtime-deadline-ms", deadline.to_string())
                        .header("lambda-runtime-invoked-function-arn", "arn:aws:lambda:us-east-1:000000000000:function:local")
                        .header("lambda-runtime-trace-id", "Root=1-00000000-000000000000000000000000")
                        .body(Full::new(Bytes::from(event.to_string())))
                        .expect("response");
                }
                notified.await;
            }
        }
        let segments: Vec<&str> = path.split('/').collect();
        let mut state = self.state.lock().expect("state");
        match segments.as_slice() {
            [.., "invocation", id, "response"] => state.responses.push(((*id).to_owned(), json)),
            [.., "invocation", id, "error"] => state.errors.push(((*id).to_owned(), json)),
            [.., "init", "error"] => state.errors.push(("init".to_owned(), json)),
            _ => {}
        }
        drop(state);
        self.answered.notify_waiters();
        Response::builder().status(202).body(Full::new(Bytes::new())).expect("response")
    }
}
