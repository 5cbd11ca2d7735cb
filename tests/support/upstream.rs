//! The mock upstream: a hyper HTTP/1.1 server on an ephemeral loopback port (TCP_NODELAY
//! on every accepted socket) that records each request and answers like a tiny OpenAI /
//! Anthropic API, with the token usage the request's `x-mock-*` headers ask for (see
//! [`MockUsage`]), so tests can assert exact counts.
//!
//! - `POST /v1/chat/completions`: a chat completion as JSON with `usage` (cached and
//!   reasoning details included); with `"stream": true` in the body, an SSE stream of
//!   `x-mock-events` (default 5) content chunks spaced `x-mock-interval-ms` (default 100)
//!   apart, then — only when the body has `stream_options.include_usage: true`, as OpenAI
//!   does — a usage chunk with `"choices": []`, then `data: [DONE]`.
//! - `POST /v1/messages`: an Anthropic message as JSON with `usage`; with `"stream":
//!   true`, Anthropic's event stream (`event:` lines; `message_start` with the input and
//!   cache counts, text deltas, `message_delta` with the final `output_tokens`,
//!   `message_stop`), spaced the same way.
//!   Either stream ends `x-mock-linger-ms` (default 0) after its last event.
//! - Either with a body that is not JSON: `400`; with `x-mock-status: N`, status `N`
//!   with an error body in the provider's shape.
//! - Either with `tools` in the body: the answer also calls the first tool
//!   ([`TOOL_CALL_ID`], [`TOOL_ARGUMENTS`]; streamed in pieces) and stops for it.
//! - `POST /v1/chat/completions` with `x-mock-hostile`: a hostile answer (a gzip bomb, a
//!   huge SSE line; see `hostile.rs`).
//!
//! The instant each SSE event is handed to hyper is kept under the request's `x-test-id`.
//! - `/slow`: answers after `x-mock-delay-ms` (default 2000).
//! - `GET …/.well-known/agent-card.json`: an A2A agent card whose `url` is the address
//!   the request was sent to (`http://<Host>/agent`).
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
        // chose (and has not bound yet) can be taken here. Another process on the
        // machine may still take it between the two: then another one.
        let mut attempts = 0;
        let (port, listener) = loop {
            let port = super::free_port();
            match TcpListener::bind(("127.0.0.1", port)).await {
                Ok(listener) => break (port, listener),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && attempts < 5 => {
                    attempts += 1;
                }
                Err(e) => panic!("binding the mock upstream: {e}"),
            }
        };
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
        ("GET", p) if p.ends_with("/.well-known/agent-card.json") => {
            // An A2A agent card naming the agent's own (internal) address.
            let host = recorded.header("host").unwrap_or_default();
            let url = format!("http://{host}/agent");
            json(
                StatusCode::OK,
                serde_json::json!({"name": "mock-agent", "url": url, "version": "1.0.0"}),
            )
        }
        ("POST", "/v1/chat/completions") if recorded.header("x-mock-hostile").is_some() => {
            super::hostile::response(&recorded.header("x-mock-hostile").unwrap(), &number)
        }
        ("POST", "/v1/chat/completions" | "/v1/messages") => {
            let Ok(request) = serde_json::from_slice::<serde_json::Value>(&recorded.body) else {
                return Ok(json(
                    StatusCode::BAD_REQUEST,
                    serde_json::json!({"error": "bad JSON"}),
                ));
            };
            let anthropic = path == "/v1/messages";
            if let Some(status) = recorded.header("x-mock-status") {
                return Ok(provider_error(anthropic, status.parse()?));
            }
            let stream = request["stream"] == serde_json::Value::Bool(true);
            let tool = requested_tool(&request, anthropic);
            let events = number("x-mock-events", 5);
            let usage =
                MockUsage::from_headers(&number, anthropic, if stream { events } else { 3 });
            let model = request["model"]
                .as_str()
                .unwrap_or("mock-model")
                .to_string();
            match (anthropic, stream) {
                (false, false) => json(
                    StatusCode::OK,
                    completion(&model, recorded.body.len(), &usage, tool.as_deref()),
                ),
                (true, false) => json(
                    StatusCode::OK,
                    message(&model, recorded.body.len(), &usage, tool.as_deref()),
                ),
                (false, true) => {
                    let include_usage =
                        request["stream_options"]["include_usage"] == serde_json::Value::Bool(true);
                    sse(
                        state,
                        recorded.header("x-test-id").unwrap_or_default(),
                        chat_events(
                            &model,
                            events,
                            include_usage.then_some(&usage),
                            tool.as_deref(),
                        ),
                        Duration::from_millis(number("x-mock-interval-ms", 100)),
                        Duration::from_millis(number("x-mock-linger-ms", 0)),
                    )
                }
                (true, true) => sse(
                    state,
                    recorded.header("x-test-id").unwrap_or_default(),
                    message_events(&model, events, &usage, tool.as_deref()),
                    Duration::from_millis(number("x-mock-interval-ms", 100)),
                    Duration::from_millis(number("x-mock-linger-ms", 0)),
                ),
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

/// The token counts the mock reports, from the request's `x-mock-*` headers.
///
/// OpenAI: `x-mock-prompt-tokens` (default 12), `x-mock-completion-tokens` (default 3,
/// or the number of content events of a stream), `x-mock-cached-tokens` and
/// `x-mock-reasoning-tokens` (default 0); `total_tokens` is prompt + completion.
/// Anthropic: `x-mock-input-tokens` (default 12), `x-mock-output-tokens` (default as for
/// completion tokens), `x-mock-cache-read-tokens` and `x-mock-cache-creation-tokens`
/// (default 0).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MockUsage {
    /// `prompt_tokens` / Anthropic `input_tokens` (which excludes cache reads and writes).
    pub input: u64,
    /// `completion_tokens` / `output_tokens`.
    pub output: u64,
    /// `prompt_tokens_details.cached_tokens` / `cache_read_input_tokens`.
    pub cached: u64,
    /// `cache_creation_input_tokens` (Anthropic).
    pub cache_creation: u64,
    /// `completion_tokens_details.reasoning_tokens` (OpenAI).
    pub reasoning: u64,
}

impl MockUsage {
    fn from_headers(number: &dyn Fn(&str, u64) -> u64, anthropic: bool, output: u64) -> Self {
        if anthropic {
            MockUsage {
                input: number("x-mock-input-tokens", 12),
                output: number("x-mock-output-tokens", output),
                cached: number("x-mock-cache-read-tokens", 0),
                cache_creation: number("x-mock-cache-creation-tokens", 0),
                reasoning: 0,
            }
        } else {
            MockUsage {
                input: number("x-mock-prompt-tokens", 12),
                output: number("x-mock-completion-tokens", output),
                cached: number("x-mock-cached-tokens", 0),
                cache_creation: 0,
                reasoning: number("x-mock-reasoning-tokens", 0),
            }
        }
    }

    fn openai(&self) -> serde_json::Value {
        serde_json::json!({
            "prompt_tokens": self.input,
            "completion_tokens": self.output,
            "total_tokens": self.input + self.output,
            "prompt_tokens_details": {"cached_tokens": self.cached, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": self.reasoning, "audio_tokens": 0},
        })
    }

    fn anthropic(&self) -> serde_json::Value {
        serde_json::json!({
            "input_tokens": self.input,
            "output_tokens": self.output,
            "cache_read_input_tokens": self.cached,
            "cache_creation_input_tokens": self.cache_creation,
        })
    }
}

/// The call the mock makes to the first tool a request offers, and its arguments.
pub const TOOL_CALL_ID: &str = "call_e2e_1";
pub const TOOL_ARGUMENTS: &str = r#"{"city":"Oslo"}"#;

/// The name of the first tool the request offers (`tools[0].name`, or OpenAI's
/// `tools[0].function.name`), which the mock then calls.
fn requested_tool(request: &serde_json::Value, anthropic: bool) -> Option<String> {
    let tool = &request["tools"][0];
    let name = if anthropic {
        &tool["name"]
    } else {
        &tool["function"]["name"]
    };
    name.as_str().map(str::to_owned)
}

/// The error a provider answers with `status`, in its own shape (`x-mock-status`).
fn provider_error(anthropic: bool, status: u16) -> Response<Body> {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let message = format!("mock provider error {}", status.as_u16());
    let body = if anthropic {
        serde_json::json!({"type": "error", "error": {"type": "rate_limit_error", "message": message}})
    } else {
        serde_json::json!({"error": {"message": message, "type": "requests", "param": null, "code": "mock"}})
    };
    json(status, body)
}

/// What every stream chunk of a chat completion shares.
const CREATED: u64 = 1_700_000_000;

/// An OpenAI-style chat completion.
fn completion(
    model: &str,
    request_bytes: usize,
    usage: &MockUsage,
    tool: Option<&str>,
) -> serde_json::Value {
    let mut message = serde_json::json!({"role": "assistant", "content": format!("received {request_bytes} bytes")});
    if let Some(name) = tool {
        message["tool_calls"] = serde_json::json!([{"id": TOOL_CALL_ID, "type": "function",
            "function": {"name": name, "arguments": TOOL_ARGUMENTS}}]);
    }
    serde_json::json!({
        "id": "chatcmpl-e2e",
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "choices": [{
            "index": 0,
            "message": message,
            "finish_reason": if tool.is_some() { "tool_calls" } else { "stop" }
        }],
        "usage": usage.openai()
    })
}

/// An Anthropic-style message.
fn message(
    model: &str,
    request_bytes: usize,
    usage: &MockUsage,
    tool: Option<&str>,
) -> serde_json::Value {
    let mut content = vec![
        serde_json::json!({"type": "text", "text": format!("received {request_bytes} bytes")}),
    ];
    if let Some(name) = tool {
        let input: serde_json::Value = serde_json::from_str(TOOL_ARGUMENTS).unwrap();
        content.push(
            serde_json::json!({"type": "tool_use", "id": TOOL_CALL_ID, "name": name, "input": input}),
        );
    }
    serde_json::json!({
        "id": "msg_e2e",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": if tool.is_some() { "tool_use" } else { "end_turn" },
        "stop_sequence": null,
        "usage": usage.anthropic()
    })
}

/// A chat completion stream: `events` content chunks (`token0 `, `token1 `, …), then —
/// only when the request asked for it — the usage chunk with empty `choices`, then
/// `[DONE]`.
fn chat_events(
    model: &str,
    events: u64,
    usage: Option<&MockUsage>,
    tool: Option<&str>,
) -> Vec<String> {
    let chunk = |choices: serde_json::Value| {
        serde_json::json!({
            "id": "chatcmpl-e2e",
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": model,
            "choices": choices,
        })
    };
    let mut out: Vec<String> = (0..events)
        .map(|i| {
            let c = chunk(serde_json::json!([{
                "index": 0,
                "delta": {"content": format!("token{i} ")},
                "finish_reason": null
            }]));
            format!("data: {c}\n\n")
        })
        .collect();
    if let Some(name) = tool {
        // The call split over three chunks, as OpenAI streams it, then its finish.
        let (head, tail) = TOOL_ARGUMENTS.split_at(TOOL_ARGUMENTS.len() / 2);
        let deltas = [
            serde_json::json!({"index": 0, "id": TOOL_CALL_ID, "type": "function",
                "function": {"name": name, "arguments": ""}}),
            serde_json::json!({"index": 0, "function": {"arguments": head}}),
            serde_json::json!({"index": 0, "function": {"arguments": tail}}),
        ];
        for d in deltas {
            let c = chunk(
                serde_json::json!([{"index": 0, "delta": {"tool_calls": [d]},
                "finish_reason": null}]),
            );
            out.push(format!("data: {c}\n\n"));
        }
    }
    if tool.is_some() {
        let c =
            chunk(serde_json::json!([{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]));
        out.push(format!("data: {c}\n\n"));
    }
    if let Some(usage) = usage {
        let mut c = chunk(serde_json::json!([]));
        c["usage"] = usage.openai();
        out.push(format!("data: {c}\n\n"));
    }
    out.push("data: [DONE]\n\n".to_string());
    out
}

/// An Anthropic Messages stream: `message_start` (input and cache counts),
/// `content_block_start`, `ping`, `events` text deltas, `content_block_stop`,
/// `message_delta` (the final `output_tokens`), `message_stop`.
fn message_events(model: &str, events: u64, usage: &MockUsage, tool: Option<&str>) -> Vec<String> {
    let event = |name: &str, data: serde_json::Value| format!("event: {name}\ndata: {data}\n\n");
    let mut start_usage = usage.anthropic();
    start_usage["output_tokens"] = 1.into();
    let mut out = vec![
        event(
            "message_start",
            serde_json::json!({"type": "message_start", "message": {
                "id": "msg_e2e", "type": "message", "role": "assistant", "model": model,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": start_usage
            }}),
        ),
        event(
            "content_block_start",
            serde_json::json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "text", "text": ""}}),
        ),
        event("ping", serde_json::json!({"type": "ping"})),
    ];
    for i in 0..events {
        out.push(event(
            "content_block_delta",
            serde_json::json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "text_delta", "text": format!("token{i} ")}}),
        ));
    }
    out.push(event(
        "content_block_stop",
        serde_json::json!({"type": "content_block_stop", "index": 0}),
    ));
    if let Some(name) = tool {
        let (head, tail) = TOOL_ARGUMENTS.split_at(TOOL_ARGUMENTS.len() / 2);
        out.push(event(
            "content_block_start",
            serde_json::json!({"type": "content_block_start", "index": 1, "content_block":
                {"type": "tool_use", "id": TOOL_CALL_ID, "name": name, "input": {}}}),
        ));
        for part in [head, tail] {
            out.push(event(
                "content_block_delta",
                serde_json::json!({"type": "content_block_delta", "index": 1,
                    "delta": {"type": "input_json_delta", "partial_json": part}}),
            ));
        }
        out.push(event(
            "content_block_stop",
            serde_json::json!({"type": "content_block_stop", "index": 1}),
        ));
    }
    let stop = if tool.is_some() {
        "tool_use"
    } else {
        "end_turn"
    };
    out.push(event(
        "message_delta",
        serde_json::json!({"type": "message_delta",
            "delta": {"stop_reason": stop, "stop_sequence": null},
            "usage": {"output_tokens": usage.output}}),
    ));
    out.push(event(
        "message_stop",
        serde_json::json!({"type": "message_stop"}),
    ));
    out
}

/// Streams `events` (whole SSE events) `interval` apart, keeping the instant each is
/// handed to hyper under `id`, and ends the body `linger` after the last one.
fn sse(
    state: Arc<State>,
    id: String,
    events: Vec<String>,
    interval: Duration,
    linger: Duration,
) -> Response<Body> {
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
    tokio::spawn(async move {
        for (i, data) in events.into_iter().enumerate() {
            if i > 0 {
                tokio::time::sleep(interval).await;
            }
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
        // The body ends when `tx` is dropped.
        tokio::time::sleep(linger).await;
    });
    let mut resp = Response::new(StreamBody::new(ReceiverStream::new(rx)).boxed());
    let h = resp.headers_mut();
    h.insert("content-type", "text/event-stream".parse().unwrap());
    h.insert("cache-control", "no-cache".parse().unwrap());
    resp
}
