//! The mock upstream: a hyper HTTP/1.1 server on an ephemeral loopback port (TCP_NODELAY
//! on every accepted socket) that records each request and answers like a tiny
//! OpenAI-style API.
//!
//! - `POST /v1/chat/completions`: a chat completion as JSON; with `"stream": true` in the
//!   body, an SSE stream of `x-mock-events` (default 5) `data: {...}` events spaced
//!   `x-mock-interval-ms` (default 100) apart, then `data: [DONE]`. The instant each
//!   event is handed to hyper is kept under the request's `x-test-id`.
//! - `/slow`: answers after `x-mock-delay-ms` (default 2000).
//! - `/broken`: drops the connection without an answer.
//! - anything else: `200` with `{"method":…,"path":…}`.
//!
//! Every answer carries `x-upstream: mock`, `x-upstream-secret: internal` and
//! `x-resp-multi: upstream`, for response-header policies to change.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

type Body = BoxBody<Bytes, Infallible>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One request as the upstream received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Recorded {
    /// Every value of a header, in order.
    pub fn header_all(&self, name: &str) -> Vec<String> {
        super::client::values(&self.headers, name)
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.header_all(name).into_iter().next()
    }
}

#[derive(Default)]
struct State {
    requests: Mutex<Vec<Recorded>>,
    sse_sent: Mutex<HashMap<String, Vec<Instant>>>,
}

/// A running mock upstream; stops accepting when dropped.
pub struct MockUpstream {
    pub port: u16,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl MockUpstream {
    pub async fn start() -> Self {
        // A port from `free_port`, not the kernel's pick, so that no port another test
        // chose (and has not bound yet) can be taken here.
        let port = super::free_port();
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("binding the mock upstream");
        let state = Arc::new(State::default());
        let accept_state = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let state = accept_state.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| handle(state.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        MockUpstream { port, state, task }
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().unwrap().clone()
    }

    /// The one request carrying `x-test-id: id`.
    pub fn request(&self, id: &str) -> Recorded {
        let all = self.requests();
        let found: Vec<_> = all
            .iter()
            .filter(|r| r.header("x-test-id").as_deref() == Some(id))
            .collect();
        assert_eq!(found.len(), 1, "requests with x-test-id {id}: {all:#?}");
        found[0].clone()
    }

    /// When each SSE event (the final `[DONE]` included) of the stream answered to the
    /// request with `x-test-id: id` was handed to the server.
    pub fn sse_sent(&self, id: &str) -> Vec<Instant> {
        self.state
            .sse_sent
            .lock()
            .unwrap()
            .get(id)
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Response<Body>, BoxError> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let recorded = Recorded {
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string(),
        headers: parts.headers,
        body,
    };
    state.requests.lock().unwrap().push(recorded.clone());
    let number = |name: &str, default: u64| {
        recorded
            .header(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let path = recorded.path.split('?').next().unwrap_or("/").to_string();
    let mut response = match (recorded.method.as_str(), path.as_str()) {
        (_, "/broken") => return Err("the mock upstream drops this connection".into()),
        (_, "/slow") => {
            tokio::time::sleep(Duration::from_millis(number("x-mock-delay-ms", 2000))).await;
            json(StatusCode::OK, serde_json::json!({"slow": true}))
        }
        ("POST", "/v1/chat/completions") => {
            let Ok(request) = serde_json::from_slice::<serde_json::Value>(&recorded.body) else {
                return Ok(json(
                    StatusCode::BAD_REQUEST,
                    serde_json::json!({"error": "bad JSON"}),
                ));
            };
            if request["stream"] == serde_json::Value::Bool(true) {
                let id = recorded.header("x-test-id").unwrap_or_default();
                let events = number("x-mock-events", 5);
                let interval = Duration::from_millis(number("x-mock-interval-ms", 100));
                sse(state, id, events, interval)
            } else {
                json(StatusCode::OK, completion(&request, recorded.body.len()))
            }
        }
        (method, _) => json(
            StatusCode::OK,
            serde_json::json!({"method": method, "path": path}),
        ),
    };
    let h = response.headers_mut();
    h.insert("x-upstream", "mock".parse().unwrap());
    h.insert("x-upstream-secret", "internal".parse().unwrap());
    h.insert("x-resp-multi", "upstream".parse().unwrap());
    Ok(response)
}

fn json(status: StatusCode, value: serde_json::Value) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(value.to_string())).boxed());
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    resp
}

/// An OpenAI-style chat completion answering `request`.
fn completion(request: &serde_json::Value, request_bytes: usize) -> serde_json::Value {
    serde_json::json!({
        "id": "chatcmpl-e2e",
        "object": "chat.completion",
        "model": request["model"],
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": format!("received {request_bytes} bytes")},
            "finish_reason": "stop"
        }],
        "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}
    })
}

fn sse(state: Arc<State>, id: String, events: u64, interval: Duration) -> Response<Body> {
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
    tokio::spawn(async move {
        for i in 0..=events {
            if i > 0 {
                tokio::time::sleep(interval).await;
            }
            let data = if i == events {
                "data: [DONE]\n\n".to_string()
            } else {
                let chunk = serde_json::json!({
                    "id": "chatcmpl-e2e",
                    "object": "chat.completion.chunk",
                    "choices": [{"index": 0, "delta": {"content": format!("token{i} ")}}]
                });
                format!("data: {chunk}\n\n")
            };
            state
                .sse_sent
                .lock()
                .unwrap()
                .entry(id.clone())
                .or_default()
                .push(Instant::now());
            if tx.send(Ok(Frame::data(Bytes::from(data)))).await.is_err() {
                return;
            }
        }
    });
    let mut resp = Response::new(StreamBody::new(ReceiverStream::new(rx)).boxed());
    let h = resp.headers_mut();
    h.insert("content-type", "text/event-stream".parse().unwrap());
    h.insert("cache-control", "no-cache".parse().unwrap());
    resp
}
