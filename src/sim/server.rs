//! The HTTP face of one simulated instance: OpenAI-compatible `POST /v1/chat/completions`
//! and `POST /v1/completions`, Anthropic-compatible `POST /v1/messages` (each JSON or
//! SSE, see `output`), `GET /v1/models`, `GET /metrics`,
//! `GET /health`. Every response names the instance (`x-sim-endpoint`), the cached
//! prompt tokens (`x-sim-cached-tokens`, 0 when no prompt was run) and the milliseconds
//! the request waited in the instance's queue for a batch slot and cache room
//! (`x-sim-queued-ms`, 0 when it did not) and, on a completion, the milliseconds from its
//! arrival to its first token (`x-sim-ttft-ms`); a completion whose prefill ran on another
//! instance names that one too (`x-sim-prefill-endpoint`, see `pd`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::engine::{block_hashes, prompt_tokens, Instance, Job, Running};
use super::kv_publish::token_ids;
use super::metrics::{render, MetricsStyle};
use super::output::Output;
use super::pd;
use crate::llm::{Api, LlmRequest};

/// The response header with the milliseconds a request waited for a batch slot.
pub const QUEUED_HEADER: &str = "x-sim-queued-ms";
/// The response header with the milliseconds from the request's arrival (its body read)
/// to its first token: the slot wait, the wait for the prefills queued before it, and
/// its own prefill.
pub const TTFT_HEADER: &str = "x-sim-ttft-ms";

/// Largest request body read.
const MAX_BODY: usize = 32 * 1024 * 1024;

type Body = BoxBody<Bytes, Infallible>;

/// What one instance serves.
pub struct Server {
    pub instance: Arc<Instance>,
    pub addr: SocketAddr,
    pub style: MetricsStyle,
    /// Output tokens when the request gives no `max_tokens` / `max_completion_tokens`.
    pub default_max_tokens: u64,
    /// Whether it prefills for others, decodes for others, or both.
    pub role: pd::Role,
    /// The client of prefill calls to other instances.
    pub client: pd::PrefillClient,
}

impl Server {
    /// Accepts connections on `listener` until the task is dropped.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "sim accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let server = self.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let server = server.clone();
                    async move { Ok::<_, Infallible>(server.handle(req).await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }

    /// Answers one request.
    pub async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let (parts, body) = req.into_parts();
        let mut resp = match (&parts.method, parts.uri.path()) {
            (&Method::POST, "/v1/chat/completions") => {
                self.complete(
                    Api::ChatCompletions,
                    "/v1/chat/completions",
                    &parts.headers,
                    body,
                )
                .await
            }
            (&Method::POST, "/v1/completions") => {
                self.complete(Api::Completions, "/v1/completions", &parts.headers, body)
                    .await
            }
            (&Method::POST, "/v1/messages") => {
                self.complete(Api::Messages, "/v1/messages", &parts.headers, body)
                    .await
            }
            (&Method::POST, "/tokenize") => self.tokenize(body).await,
            (&Method::GET, "/v1/models") => self.models(),
            (&Method::GET, "/metrics") => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs_f64())
                    .unwrap_or(0.0);
                let text = render(&self.instance.snapshot(), &self.style, now);
                let mut r = full(StatusCode::OK, text);
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4"),
                );
                r
            }
            (&Method::GET, "/health") => full(StatusCode::OK, ""),
            (_, path) => error(
                StatusCode::NOT_FOUND,
                "not_found",
                &format!("no route for {} {path}", parts.method),
            ),
        };
        let headers = resp.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&self.addr.to_string()) {
            headers.insert("x-sim-endpoint", v);
        }
        headers
            .entry("x-sim-cached-tokens")
            .or_insert(HeaderValue::from_static("0"));
        headers
            .entry(QUEUED_HEADER)
            .or_insert(HeaderValue::from_static("0"));
        resp
    }

    fn models(&self) -> Response<Body> {
        let created = unix_now();
        let data: Vec<Value> = std::iter::once(&self.style.model)
            .chain(self.instance.adapters())
            .map(|id| json!({"id": id, "object": "model", "created": created, "owned_by": "tollgate-sim"}))
            .collect();
        json_response(StatusCode::OK, &json!({"object": "list", "data": data}))
    }

    /// vLLM's `/tokenize`: `{"model", "prompt"}` or `{"model", "messages"}` (joined
    /// as the completions are) → `{"tokens", "count", "max_model_len"}`.
    async fn tokenize(&self, body: Incoming) -> Response<Body> {
        let bytes = match Limited::new(body, MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    &format!("reading the request body: {e}"),
                )
            }
        };
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let prompt = match (v.get("prompt").and_then(Value::as_str), v.get("messages")) {
            (Some(p), _) => p.to_string(),
            (None, Some(_)) => match LlmRequest::parse(Api::ChatCompletions, &bytes) {
                Ok(r) => r.prompt_text(),
                Err(e) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "invalid_request_error",
                        &e.to_string(),
                    )
                }
            },
            (None, None) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "a tokenize request needs a prompt or messages",
                )
            }
        };
        let tokens = token_ids(&prompt);
        let max_model_len = self.instance.cost().kv_blocks * super::engine::BLOCK_TOKENS;
        json_response(
            StatusCode::OK,
            &json!({"tokens": tokens, "count": tokens.len(), "max_model_len": max_model_len}),
        )
    }

    /// A completion of `api`: read, queued for a batch slot, prefilled (here, or on the
    /// prefill instance the request names), then answered as its tokens come.
    async fn complete(
        &self,
        api: Api,
        path: &str,
        headers: &http::HeaderMap,
        body: Incoming,
    ) -> Response<Body> {
        let bad = |message: String| {
            api_error(
                api,
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                &message,
            )
        };
        let bytes = match Limited::new(body, MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => return bad(format!("reading the request body: {e}")),
        };
        let request = match LlmRequest::parse(api, &bytes) {
            Ok(r) => r,
            Err(e) => return bad(e.to_string()),
        };
        let received = tokio::time::Instant::now();
        let prefilled_by = self.prefill_elsewhere(headers, path, &bytes).await;
        let arrived = tokio::time::Instant::now();
        let admitted = self.instance.admit(self.job(&request)).await;
        let queued_ms = arrived.elapsed().as_millis() as u64;
        let mut running = match admitted {
            Ok(r) => r,
            Err(e) => return bad(e.to_string()),
        };
        let cached = match prefilled_by {
            Some(_) => running.transfer().await,
            None => running.prefill().await,
        };
        let ttft_ms = received.elapsed().as_millis() as u64;
        let out = Output {
            api,
            id: format!("sim-{:016x}", rand_id()),
            created: unix_now(),
            capped: request.max_output_tokens.is_some(),
            include_usage: request.include_usage == Some(true),
        };
        let mut resp = respond(running, out, request.stream).await;
        resp.headers_mut()
            .insert("x-sim-cached-tokens", HeaderValue::from(cached));
        resp.headers_mut()
            .insert(QUEUED_HEADER, HeaderValue::from(queued_ms));
        resp.headers_mut()
            .insert(TTFT_HEADER, HeaderValue::from(ttft_ms));
        if let Some(v) = prefilled_by.and_then(|p| HeaderValue::from_str(&p).ok()) {
            resp.headers_mut().insert(pd::PREFILL_ENDPOINT_HEADER, v);
        }
        resp
    }

    /// The engine's work for `request`: its prompt's tokens and blocks, its output cap.
    fn job(&self, request: &LlmRequest) -> Job {
        let model = request
            .model
            .clone()
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| self.style.model.clone());
        let prompt = request.prompt_text();
        Job {
            prompt_tokens: prompt_tokens(&prompt),
            max_tokens: request
                .max_output_tokens
                .unwrap_or(self.default_max_tokens)
                .max(1),
            hashes: block_hashes(&model, prompt.as_bytes()),
            token_ids: if self.instance.publishes() {
                token_ids(&prompt)
            } else {
                Vec::new()
            },
            model,
        }
    }

    /// Runs the prefill on the instance the request names, when this instance decodes
    /// for others; the instance that did, or `None` to prefill here.
    async fn prefill_elsewhere(
        &self,
        headers: &http::HeaderMap,
        path: &str,
        body: &[u8],
    ) -> Option<String> {
        let target = pd::prefiller(self.role, headers)?;
        let result = match target {
            Ok(t) => pd::remote_prefill(&self.client, t, path, body).await,
            Err(e) => Err(e),
        };
        result
            .map_err(|e| tracing::warn!(error = %e, "remote prefill failed: prefilling here"))
            .ok()
    }
}

/// The response to a request whose first token exists: SSE events as tokens come, or
/// one JSON body once all are made.
async fn respond(mut running: Running, out: Output, streamed: bool) -> Response<Body> {
    if streamed {
        let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(16);
        tokio::spawn(stream(running, out, tx));
        let body = StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx));
        let mut r = Response::new(BodyExt::boxed(body));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        return r;
    }
    let mut text = token_text(1);
    while running.generated() < running.job().max_tokens {
        running.decode().await;
        text.push_str(&token_text(running.generated()));
    }
    let body = out.whole(&running, &text);
    drop(running);
    json_response(StatusCode::OK, &body)
}

/// Streams the tokens of `running` (the first one exists: the prefill made it) as SSE
/// events; stops early, releasing the slot, when the client goes away.
async fn stream(
    mut running: Running,
    out: Output,
    tx: mpsc::Sender<Result<Frame<Bytes>, Infallible>>,
) {
    let max = running.job().max_tokens;
    loop {
        let n = running.generated();
        for event in out.token_events(&running, &token_text(n), n == 1, n >= max) {
            if tx.send(Ok(Frame::data(event.encode()))).await.is_err() {
                return;
            }
        }
        if n >= max {
            break;
        }
        running.decode().await;
    }
    for event in out.end_events(&running) {
        if tx.send(Ok(Frame::data(event.encode()))).await.is_err() {
            return;
        }
    }
}

/// The text of output token `n` (1-based): `tok1`, ` tok2`, …
pub fn token_text(n: u64) -> String {
    if n <= 1 {
        "tok1".to_string()
    } else {
        format!(" tok{n}")
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A process-unique id.
fn rand_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    crate::epp::hash::xxh64(
        &NEXT.fetch_add(1, Ordering::Relaxed).to_le_bytes(),
        unix_now(),
    )
}

fn full(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(BodyExt::boxed(Full::new(body.into())));
    *r.status_mut() = status;
    r
}

fn json_response(status: StatusCode, v: &Value) -> Response<Body> {
    let mut r = full(status, v.to_string());
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// An OpenAI-style error.
fn error(status: StatusCode, kind: &str, message: &str) -> Response<Body> {
    api_error(Api::ChatCompletions, status, kind, message)
}

/// An error in the shape of `api`'s.
fn api_error(api: Api, status: StatusCode, kind: &str, message: &str) -> Response<Body> {
    let body = api.error_body(status.as_u16(), kind, message);
    let mut r = full(status, body);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}
