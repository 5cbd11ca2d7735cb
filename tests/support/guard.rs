//! A scripted LLM upstream for the prompt-guard tests: it streams a text cut into the
//! pieces a test chose — so that an entity is split across SSE events — one event per
//! transport frame, and records every request it receives.
//!
//! - `POST …/chat/completions`: OpenAI chunks (`choices[0].delta.content`), a
//!   `finish_reason` chunk and `data: [DONE]` when the body asks to stream; else a JSON
//!   completion with the whole text.
//! - `POST …/messages`: Anthropic events (`message_start` … `content_block_delta` …
//!   `message_stop`), or a JSON message.
//!
//! The script is chosen per request by the `x-script` header (a name given to `start`);
//! events go out `INTERVAL` apart so each one is its own chunk all the way through.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::upstream::Recorded;

type Body = BoxBody<Bytes, Infallible>;

const INTERVAL: Duration = Duration::from_millis(15);

/// A running scripted upstream; stops accepting when dropped.
pub struct ScriptedLlm {
    pub port: u16,
    requests: Arc<Mutex<Vec<Recorded>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ScriptedLlm {
    /// Serves `scripts`: name → the pieces of the text, one SSE event each.
    pub async fn start(scripts: HashMap<String, Vec<String>>) -> Self {
        let port = super::free_port();
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("binding the scripted upstream");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let scripts = Arc::new(scripts);
        let (seen, scripts2) = (requests.clone(), scripts.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let (seen, scripts) = (seen.clone(), scripts2.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        handle(seen.clone(), scripts.clone(), req)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        ScriptedLlm {
            port,
            requests,
            task,
        }
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    /// The requests carrying `x-test-id: id`.
    pub fn requests_for(&self, id: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.header("x-test-id").as_deref() == Some(id))
            .collect()
    }
}

impl Drop for ScriptedLlm {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    seen: Arc<Mutex<Vec<Recorded>>>,
    scripts: Arc<HashMap<String, Vec<String>>>,
    req: Request<Incoming>,
) -> Result<Response<Body>, hyper::Error> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let recorded = Recorded {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        headers: parts.headers,
        body,
    };
    seen.lock().unwrap().push(recorded.clone());
    let request: serde_json::Value = serde_json::from_slice(&recorded.body).unwrap_or_default();
    let stream = request["stream"] == json!(true);
    let pieces = recorded
        .header("x-script")
        .and_then(|name| scripts.get(&name).cloned())
        .unwrap_or_else(|| vec!["Hello ".into(), "there.".into()]);
    let anthropic = recorded.path.ends_with("/messages");
    Ok(match (anthropic, stream) {
        (false, false) => json_reply(json!({
            "id": "chatcmpl-guard", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": pieces.concat()}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}
        })),
        (true, false) => json_reply(json!({
            "id": "msg_guard", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
            "content": [{"type": "text", "text": pieces.concat()}], "stop_reason": "end_turn",
            "usage": {"input_tokens": 5, "output_tokens": 7}
        })),
        (false, true) => sse(openai_events(&pieces)),
        (true, true) => sse(anthropic_events(&pieces)),
    })
}

fn openai_events(pieces: &[String]) -> Vec<String> {
    let chunk = |choice: serde_json::Value| {
        let c = json!({"id": "chatcmpl-guard", "object": "chat.completion.chunk", "created": 1,
                       "model": "gpt-4o-mini", "choices": [choice]});
        format!("data: {c}\n\n")
    };
    let mut events: Vec<String> = pieces
        .iter()
        .map(|p| chunk(json!({"index": 0, "delta": {"content": p}, "finish_reason": null})))
        .collect();
    events.insert(
        0,
        chunk(json!({"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null})),
    );
    events.push(chunk(
        json!({"index": 0, "delta": {}, "finish_reason": "stop"}),
    ));
    events.push("data: [DONE]\n\n".into());
    events
}

fn anthropic_events(pieces: &[String]) -> Vec<String> {
    let ev = |name: &str, v: serde_json::Value| format!("event: {name}\ndata: {v}\n\n");
    let mut events = vec![
        ev(
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_guard", "type": "message", "role": "assistant",
                   "model": "claude-sonnet-4-5", "content": [], "stop_reason": null,
                   "usage": {"input_tokens": 5, "output_tokens": 1}}}),
        ),
        ev(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
    ];
    for p in pieces {
        events.push(ev(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}}),
        ));
    }
    events.push(ev(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    ));
    events.push(ev(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 7}}),
    ));
    events.push(ev("message_stop", json!({"type": "message_stop"})));
    events
}

fn json_reply(v: serde_json::Value) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(v.to_string())).boxed());
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    resp
}

fn sse(events: Vec<String>) -> Response<Body> {
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
    tokio::spawn(async move {
        for e in events {
            tokio::time::sleep(INTERVAL).await;
            if tx.send(Ok(Frame::data(Bytes::from(e)))).await.is_err() {
                return;
            }
        }
    });
    let mut resp = Response::new(StreamBody::new(ReceiverStream::new(rx)).boxed());
    resp.headers_mut()
        .insert("content-type", "text/event-stream".parse().unwrap());
    resp
}

/// Cuts `text` so that `entity` (which it contains) is split across `parts` pieces,
/// with the text before and after as pieces of their own.
pub fn split(text: &str, entity: &str, parts: usize) -> Vec<String> {
    let start = text.find(entity).expect("the entity is in the text");
    let mut cuts = vec![0, start];
    for k in 1..parts {
        cuts.push(start + entity.len() * k / parts);
    }
    cuts.push(start + entity.len());
    cuts.push(text.len());
    cuts.dedup();
    cuts.windows(2)
        .map(|w| text[w[0]..w[1]].to_string())
        .collect()
}

/// Runs `tests/sdk/<script>` with the repo's `.venv/bin/python` and `args`; the JSON
/// object it prints.
pub fn python_sdk(script: &str, args: &[String]) -> serde_json::Value {
    let root = super::repo_root();
    let python = root.join(".venv/bin/python");
    let out = std::process::Command::new(&python)
        .arg(root.join("tests/sdk").join(script))
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "running {} ({e}); install the SDKs with {}",
                python.display(),
                super::envoy::INSTALL
            )
        });
    assert!(
        out.status.success(),
        "{script} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{script} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}
