//! HTTP tests of a simulated instance on a loopback ephemeral port.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

use super::{server_for, SimArgs};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    sim: SimArgs,
}

fn args(extra: &[&str]) -> SimArgs {
    Cli::parse_from(std::iter::once("sim").chain(extra.iter().copied())).sim
}

/// One instance on 127.0.0.1:0; its address.
async fn start(extra: &[&str]) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let args = args(extra);
    let server = Arc::new(server_for(&args, addr, args.role_of(0)));
    tokio::spawn(server.serve(listener));
    addr
}

struct Reply {
    status: StatusCode,
    headers: http::HeaderMap,
    body: String,
    /// When the first body frame arrived, from the request's start.
    first_frame: Duration,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    fn header(&self, name: &str) -> &str {
        self.headers.get(name).unwrap().to_str().unwrap()
    }
}

async fn send(addr: std::net::SocketAddr, method: &str, path: &str, body: &str) -> Reply {
    send_with(addr, method, path, body, &[]).await
}

async fn send_with(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let start = Instant::now();
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string())
        .header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::from(body.to_string()))).unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let mut body = resp.into_body();
    let mut text = Vec::new();
    let mut first_frame = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.unwrap();
        first_frame.get_or_insert_with(|| start.elapsed());
        if let Some(d) = frame.data_ref() {
            text.extend_from_slice(d);
        }
    }
    Reply {
        status,
        headers,
        body: String::from_utf8(text).unwrap(),
        first_frame: first_frame.unwrap_or_else(|| start.elapsed()),
    }
}

const FAST: &[&str] = &[
    "--prefill-us-per-token",
    "200",
    "--prefill-overhead-us",
    "0",
    "--decode-step-us",
    "1000",
    "--lora",
    "ad-1,ad-2",
];

#[test]
fn flags_and_addresses() {
    let a = args(&[]);
    assert_eq!(a.instances, 1);
    assert_eq!(a.model, "sim-model");
    assert_eq!(a.address(3).unwrap().to_string(), "127.0.0.1:0");
    let a = args(&["--base-port", "8101", "--instances", "4"]);
    assert_eq!(a.address(3).unwrap().to_string(), "127.0.0.1:8104");
    let a = args(&["--listen", "[::1]:65535", "--instances", "2"]);
    assert!(a.address(1).is_err());
    assert_eq!(args(&["--lora", "a,b"]).lora, vec!["a", "b"]);
    assert!(Cli::try_parse_from(["sim", "--listen", "127.0.0.1:1", "--base-port", "2"]).is_err());
}

#[tokio::test]
async fn chat_json_and_the_prefix_cache() {
    let addr = start(FAST).await;
    // 4000 characters: 1000 tokens, 800 ms of prefill uncached.
    let system = "s".repeat(4000);
    let body = json!({
        "model": "m-1",
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": "hi"}],
        "max_tokens": 3,
    })
    .to_string();
    let first = send(addr, "POST", "/v1/chat/completions", &body).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.header("x-sim-endpoint"), addr.to_string());
    assert_eq!(first.header("x-sim-cached-tokens"), "0");
    assert_eq!(first.header("x-sim-queued-ms"), "0", "an idle instance");
    let v = first.json();
    assert_eq!(v["model"], "m-1");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["content"], "tok1 tok2 tok3");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    // "system\nhi" = 4003 characters → 1001 tokens.
    assert_eq!(v["usage"]["prompt_tokens"], 1001);
    assert_eq!(v["usage"]["completion_tokens"], 3);
    assert_eq!(v["usage"]["total_tokens"], 1004);
    assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    assert!(first.first_frame >= Duration::from_millis(200));

    let second = send(addr, "POST", "/v1/chat/completions", &body).await;
    let v = second.json();
    // 62 whole 64-character blocks are cached: 992 tokens.
    assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 992);
    assert_eq!(second.header("x-sim-cached-tokens"), "992");
    assert!(
        second.first_frame < first.first_frame,
        "{:?} vs {:?}",
        second.first_frame,
        first.first_frame
    );

    let metrics = send(addr, "GET", "/metrics", "").await;
    assert_eq!(metrics.status, 200);
    let m = crate::epp::metrics::parse(&metrics.body)
        .expect("vLLM families")
        .metrics;
    assert_eq!((m.running, m.waiting, m.kv_cache), (0.0, 0.0, 0.0));
    assert!(metrics
        .body
        .contains("vllm:prefix_cache_hits_total{model_name=\"sim-model\"} 992\n"));
    assert!(metrics
        .body
        .contains("vllm:prefix_cache_queries_total{model_name=\"sim-model\"} 2002\n"));
    assert!(metrics
        .body
        .contains("vllm:request_success_total{model_name=\"sim-model\"} 2\n"));
    assert!(metrics.body.contains("max_lora=\"2\""));
}

#[tokio::test]
async fn a_request_waiting_for_a_slot_says_how_long() {
    let mut flags = FAST.to_vec();
    flags.extend(["--max-running", "1"]);
    let addr = start(&flags).await;
    // 1000 tokens: 200 ms of prefill, which the second request waits out for the slot.
    let body = json!({
        "model": "m-1",
        "messages": [{"role": "user", "content": "q".repeat(4000)}],
        "max_tokens": 2,
    })
    .to_string();
    let (a, b) = tokio::join!(
        send(addr, "POST", "/v1/chat/completions", &body),
        send(addr, "POST", "/v1/chat/completions", &body)
    );
    let mut queued: Vec<u64> = [&a, &b]
        .iter()
        .map(|r| r.header("x-sim-queued-ms").parse().unwrap())
        .collect();
    queued.sort_unstable();
    assert_eq!(queued[0], 0, "the first took the free slot");
    assert!(queued[1] >= 150, "the second waited: {queued:?}");
    // Each first token came after the slot wait and the prefill: the first's a full
    // one, the second's (the same prompt, cached by then) only its fixed part.
    let mut ttfts: Vec<(u64, u64)> = [&a, &b]
        .iter()
        .map(|r| {
            let waited = r.header("x-sim-queued-ms").parse().unwrap();
            (waited, r.header("x-sim-ttft-ms").parse().unwrap())
        })
        .collect();
    ttfts.sort_unstable();
    assert!(ttfts[0].1 >= 150, "{ttfts:?}");
    assert!(ttfts[1].1 >= ttfts[1].0, "{ttfts:?}");
}

/// Anthropic Messages as vLLM's `/v1/messages` answers: read back by tollgate's own
/// usage tracker, JSON and streamed, and errors in Anthropic's shape.
#[tokio::test]
async fn anthropic_messages_json_and_streamed() {
    use crate::llm::sse::SseParser;
    use crate::llm::usage::ResponseTracker;
    use crate::llm::Api;

    let addr = start(FAST).await;
    let body = json!({
        "model": "m",
        "max_tokens": 3,
        "system": "be brief",
        "messages": [{"role": "user", "content": "hello there"}],
    });
    let r = send(addr, "POST", "/v1/messages", &body.to_string()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(
        (v["type"].as_str(), v["role"].as_str()),
        (Some("message"), Some("assistant"))
    );
    assert_eq!(v["content"][0]["text"], "tok1 tok2 tok3");
    assert_eq!(v["stop_reason"], "max_tokens");
    let mut tracker = ResponseTracker::new(Api::Messages);
    tracker.observe_json(r.body.as_bytes()).unwrap();
    let usage = tracker.usage().expect("usage");
    assert_eq!(usage.output_tokens, 3);
    assert!(usage.input_tokens > 0, "{usage:?}");

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let r = send(addr, "POST", "/v1/messages", &streamed.to_string()).await;
    assert_eq!(r.header("content-type"), "text/event-stream");
    let mut parser = SseParser::new();
    let events: Vec<_> = parser.push(r.body.as_bytes()).collect();
    let names: Vec<&str> = events.iter().filter_map(|e| e.event.as_deref()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    let mut tracker = ResponseTracker::new(Api::Messages);
    let with_content = events
        .iter()
        .filter(|e| tracker.observe_event(e).has_content)
        .count();
    assert_eq!(with_content, 3);
    assert!(tracker.is_done());
    let usage = tracker.usage().expect("usage");
    assert_eq!(usage.output_tokens, 3);
    assert!(usage.input_tokens > 0, "{usage:?}");

    let r = send(addr, "POST", "/v1/messages", r#"{"messages": 5}"#).await;
    assert_eq!(r.status, 400);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["type"], "error", "{v}");
}

#[tokio::test]
async fn streams_with_usage() {
    let addr = start(FAST).await;
    let body = json!({
        "model": "ad-2",
        "messages": [{"role": "user", "content": "hello"}],
        "stream": true,
        "stream_options": {"include_usage": true},
        "max_completion_tokens": 4,
    })
    .to_string();
    let r = send(addr, "POST", "/v1/chat/completions", &body).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), "text/event-stream");
    let events: Vec<&str> = r
        .body
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| e.strip_prefix("data: ").unwrap())
        .collect();
    assert_eq!(events.len(), 6, "{}", r.body);
    assert_eq!(events[5], "[DONE]");
    let chunks: Vec<Value> = events[..5]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let text: String = chunks[..4]
        .iter()
        .map(|c| c["choices"][0]["delta"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(text, "tok1 tok2 tok3 tok4");
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(chunks[3]["choices"][0]["finish_reason"], "length");
    assert!(chunks[0]["usage"].is_null());
    assert_eq!(chunks[4]["choices"], json!([]));
    assert_eq!(chunks[4]["usage"]["completion_tokens"], 4);
    assert_eq!(chunks[4]["usage"]["prompt_tokens"], 2);
    assert!(chunks.iter().all(|c| c["model"] == "ad-2"));

    // Completions, streamed without usage; the default output length.
    let body = json!({"model": "m", "prompt": "abc", "stream": true}).to_string();
    let r = send(addr, "POST", "/v1/completions", &body).await;
    let events: Vec<&str> = r.body.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(events.len(), 33, "32 tokens and [DONE]");
    let last: Value = serde_json::from_str(events[31].strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(last["object"], "text_completion");
    assert_eq!(last["choices"][0]["text"], " tok32");
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert!(last.get("usage").is_none());
}

#[tokio::test]
async fn errors_models_and_a_running_adapter() {
    let addr = start(&["--decode-step-us", "50000", "--lora", "ad-1,ad-2"]).await;
    let r = send(addr, "POST", "/v1/chat/completions", "{not json").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");
    let r = send(addr, "POST", "/v1/chat/completions", r#"{"messages": 5}"#).await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = send(addr, "GET", "/nope", "").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.header("x-sim-endpoint"), addr.to_string());

    let r = send(addr, "GET", "/v1/models", "").await;
    let models = r.json();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["sim-model", "ad-1", "ad-2"]);

    // A slow adapter request is running while /metrics is read.
    let body = json!({"model": "ad-1", "prompt": "x", "max_tokens": 20}).to_string();
    let slow = tokio::spawn(async move { send(addr, "POST", "/v1/completions", &body).await });
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = send(addr, "GET", "/metrics", "").await.body;
        if text.contains("running_lora_adapters=\"ad-1\"") {
            assert_eq!(
                crate::epp::metrics::parse(&text).unwrap().metrics.running,
                1.0
            );
            break;
        }
        assert!(Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(slow.await.unwrap().json()["usage"]["completion_tokens"], 20);
}

#[tokio::test]
async fn a_decode_instance_pulls_the_prefill_from_the_named_instance() {
    let prefill = start(&["--role", "prefill", "--prefill-overhead-us", "0"]).await;
    let decode = start(&["--role", "decode", "--kv-transfer-us-per-token", "1"]).await;
    let body = json!({
        "model": "m",
        "stream": true,
        "max_tokens": 3,
        "messages": [{"role": "user", "content": "p".repeat(4000)}],
    })
    .to_string();
    let target = prefill.to_string();
    let split = [("x-prefiller-host-port", target.as_str())];
    let r = send_with(decode, "POST", "/v1/chat/completions", &body, &split).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.header("x-sim-endpoint"), decode.to_string());
    assert_eq!(r.header("x-sim-prefill-endpoint"), target);
    assert_eq!(
        r.body.matches("tok").count(),
        3,
        "streamed as asked: {}",
        r.body
    );
    let prefilled = send(prefill, "GET", "/metrics", "").await.body;
    assert!(
        prefilled.contains("vllm:prompt_tokens_total{model_name=\"sim-model\"} 1000"),
        "{prefilled}"
    );
    assert!(
        prefilled.contains("vllm:generation_tokens_total{model_name=\"sim-model\"} 1"),
        "{prefilled}"
    );
    // The decode instance now caches the prompt: asked again aggregated, it hits.
    let again = send(decode, "POST", "/v1/chat/completions", &body).await;
    assert_eq!(again.header("x-sim-cached-tokens"), "992");
    assert!(again.headers.get("x-sim-prefill-endpoint").is_none());
    // A prefill instance ignores the header; a dead prefiller falls back to a local prefill.
    let r = send_with(
        prefill,
        "POST",
        "/v1/chat/completions",
        &body,
        &[("x-prefiller-host-port", "127.0.0.1:1")],
    )
    .await;
    assert!(r.headers.get("x-sim-prefill-endpoint").is_none());
    let r = send_with(
        decode,
        "POST",
        "/v1/chat/completions",
        &body.replace('p', "q"),
        &[("x-prefiller-host-port", "127.0.0.1:1")],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.headers.get("x-sim-prefill-endpoint").is_none());
}
