//! Long prompts and the endpoint picker: a 220 KB chat request is picked on the start
//! of its body — the model and the prompt's first blocks — while the rest streams on to
//! the model server, behind a real Envoy (FULL_DUPLEX_STREAMED) and in tollgate's own
//! proxy. A body naming its model last (as the OpenAI and Anthropic SDKs write it) waits
//! for it, unless a router in front named it in `x-gateway-model-name`. Each body
//! arrives whole: the simulated server counts the same prompt tokens for all three.
//! Bodies are sent in pieces (chunked), as they come over a network. An Anthropic
//! Messages prompt starts with its `system`, so it is picked once that has come: on the
//! body's start when it comes first, before the tools when it comes after the messages
//! (the Python SDK's order). With the body
//! BUFFERED_PARTIAL and a 32 KB listener buffer (Envoy's edge default), Envoy sends the
//! picker only a body's first bytes and streams the rest itself: a body whose model is
//! not in them gets a 413 that says so, unless a router named it.

use std::time::Duration;

use crate::support::client::{self, Req};
use crate::support::epp_envoy::{start_gateway, start_partial_gateway, Forwarding};
use crate::support::sim::Sim;
use crate::support::tollgate::Tollgate;
use crate::support::{free_port, metric};

const PROMPT_CHARS: usize = 220_000;

/// A chat body with a long prompt, its model first or last.
fn body(model_first: bool) -> String {
    let prompt = "the quick brown fox jumps over the lazy dog ".repeat(PROMPT_CHARS / 44);
    let messages = serde_json::json!([
        {"role": "system", "content": "Summarize."},
        {"role": "user", "content": prompt},
    ]);
    if model_first {
        format!(r#"{{"model":"m","max_tokens":2,"messages":{messages}}}"#)
    } else {
        format!(r#"{{"messages":{messages},"max_tokens":2,"model":"m"}}"#)
    }
}

/// The body bytes the picker had read at its picks so far (sum, count).
async fn read_at_pick(tollgate: &Tollgate) -> (f64, f64) {
    let m = tollgate.metrics().await;
    let sum = metric(&m, "tollgate_epp_body_read_at_pick_bytes_sum").unwrap_or(0.0);
    let count = metric(&m, "tollgate_epp_body_read_at_pick_bytes_count").unwrap_or(0.0);
    (sum, count)
}

/// Sends one long body to `port` — its model first or last, named in
/// `x-gateway-model-name` when `header`, uploaded in pieces when `pieces` — and asserts a
/// simulated server answered it after one pick; its prompt tokens and the body bytes
/// the picker had read when it picked.
async fn one(
    port: u16,
    tollgate: &Tollgate,
    endpoints: &[String],
    (name, model_first, header): (&str, bool, bool),
    pieces: bool,
) -> (u64, f64) {
    let mut req = Req::post("/v1/chat/completions", body(model_first))
        .header("content-type", "application/json");
    if header {
        req = req.header("x-gateway-model-name", "m");
    }
    let (reply, read) = picked(port, tollgate, endpoints, (name, req), pieces).await;
    (reply["usage"]["prompt_tokens"].as_u64().unwrap(), read)
}

/// Sends `req` to `port`, uploaded in pieces when `pieces`, and asserts a simulated
/// server answered it after one pick; its JSON answer and the body bytes the picker had
/// read when it picked.
async fn picked(
    port: u16,
    tollgate: &Tollgate,
    endpoints: &[String],
    (name, req): (&str, Req),
    pieces: bool,
) -> (serde_json::Value, f64) {
    let before = read_at_pick(tollgate).await;
    // In 16 KB pieces 10 ms apart, as a body comes over a network (on loopback a client's
    // whole body reaches Envoy in one read, and there is nothing to start early on).
    let reply = if pieces {
        client::send_in_pieces(port, req, 14, Duration::from_millis(10)).await
    } else {
        client::send(port, req).await
    };
    let reply = reply.unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(reply.status, 200, "{name}: {}", reply.text());
    let served = reply.header("x-sim-endpoint").expect("a sim answered");
    assert!(endpoints.iter().any(|e| e == served), "{name}: {served}");
    let json: serde_json::Value = serde_json::from_str(&reply.text()).unwrap();
    let after = read_at_pick(tollgate).await;
    assert_eq!(after.1 - before.1, 1.0, "{name}: one pick");
    (json, after.0 - before.0)
}

/// Asserts every body reached the server whole: the same prompt tokens for each.
fn all_whole(prompt_tokens: &[u64]) {
    assert!(prompt_tokens[0] > 40_000, "{prompt_tokens:?}");
    assert!(
        prompt_tokens.iter().all(|t| *t == prompt_tokens[0]),
        "every body reached the server whole: {prompt_tokens:?}"
    );
}

/// Sends the three shapes to `port`, in pieces; asserts each was served whole and
/// picked after the bytes expected.
async fn three_shapes(port: u16, tollgate: &Tollgate, endpoints: &[String]) {
    let mut prompt_tokens = Vec::new();
    for shape in [
        ("model first", true, false),
        ("model last", false, false),
        ("model last, named by a router", false, true),
    ] {
        let (name, model_first, header) = shape;
        let len = body(model_first).len() as f64;
        let (tokens, read) = one(port, tollgate, endpoints, shape, true).await;
        prompt_tokens.push(tokens);
        if model_first || header {
            assert!(
                read <= 64.0 * 1024.0,
                "{name}: picked after {read} of {len} bytes"
            );
        } else {
            assert_eq!(read, len, "{name}: the model came with the last bytes");
        }
    }
    all_whole(&prompt_tokens);
}

/// Two simulated servers (two output tokens each answer) and tollgate picking over
/// them, its ext_proc on `ext_proc`.
async fn picker_over_sims(ext_proc: u16) -> (Sim, Vec<String>, Tollgate) {
    let sim = Sim::start(2, &["--default-max-tokens", "2"]);
    let endpoints: Vec<String> = sim.addrs.iter().map(|a| a.to_string()).collect();
    let tollgate = Tollgate::start(&format!(
        "extProc: {{ address: \"127.0.0.1:{ext_proc}\" }}\npolicies:\n  endpointPicker:\n    endpoints: {endpoints:?}\n"
    ))
    .await;
    (sim, endpoints, tollgate)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_envoy_a_long_prompt_is_picked_on_its_start() {
    let ext_proc = free_port();
    let (_sim, endpoints, tollgate) = picker_over_sims(ext_proc).await;
    let envoy = start_gateway(ext_proc, &endpoints, Forwarding::OriginalDstHeader, false).await;
    three_shapes(envoy.port(0), &tollgate, &endpoints).await;
}

/// An Anthropic Messages body with a long prompt: `system` before the messages, or
/// after them with the model between and long `tools` last (the Python SDK's order).
fn messages_body(system_first: bool) -> String {
    let prompt = "the quick brown fox jumps over the lazy dog ".repeat(PROMPT_CHARS / 44);
    let messages = serde_json::json!([{"role": "user", "content": prompt}]);
    let tools = serde_json::json!([{
        "name": "lookup",
        "description": "look it up ".repeat(6_000),
        "input_schema": {"type": "object"},
    }]);
    if system_first {
        format!(r#"{{"model":"m","max_tokens":2,"system":"Summarize.","messages":{messages}}}"#)
    } else {
        format!(
            r#"{{"max_tokens":2,"messages":{messages},"model":"m","system":"Summarize.","tools":{tools}}}"#
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_envoy_an_anthropic_prompt_is_picked_once_its_system_has_come() {
    let ext_proc = free_port();
    let (_sim, endpoints, tollgate) = picker_over_sims(ext_proc).await;
    let envoy = start_gateway(ext_proc, &endpoints, Forwarding::OriginalDstHeader, false).await;
    let mut input_tokens = Vec::new();
    for (name, system_first) in [("system first", true), ("system after the messages", false)] {
        let body = messages_body(system_first);
        let len = body.len() as f64;
        let tools_at = body.find(r#","tools""#).unwrap_or(body.len()) as f64;
        let req = Req::post("/v1/messages", body).header("content-type", "application/json");
        let (reply, read) = picked(envoy.port(0), &tollgate, &endpoints, (name, req), true).await;
        assert_eq!(reply["type"], "message", "{name}: {reply}");
        let usage = &reply["usage"];
        let uncached = usage["input_tokens"].as_u64().unwrap();
        input_tokens.push(uncached + usage["cache_read_input_tokens"].as_u64().unwrap());
        if system_first {
            assert!(
                read <= 64.0 * 1024.0,
                "{name}: picked after {read} of {len} bytes"
            );
        } else {
            // Once the system has come, before the tools have.
            assert!(
                read >= tools_at && read < len,
                "{name}: picked after {read} of {len} bytes, the tools at {tools_at}"
            );
        }
    }
    // The tools are not prompt text the simulator counts: both prompts the same.
    all_whole(&input_tokens);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_envoy_buffering_partially_the_picker_reads_a_long_bodys_start_only() {
    let ext_proc = free_port();
    let (_sim, endpoints, tollgate) = picker_over_sims(ext_proc).await;
    let envoy = start_partial_gateway(ext_proc, &endpoints, 32 * 1024).await;
    let port = envoy.port(0);
    let mut prompt_tokens = Vec::new();
    for shape in [
        ("model first", true, false),
        ("model last, named by a router", false, true),
    ] {
        let (tokens, read) = one(port, &tollgate, &endpoints, shape, false).await;
        prompt_tokens.push(tokens);
        // Envoy reads past its limit by up to one read (64 KB), then stops.
        let len = body(shape.1).len() as f64;
        assert!(
            read <= 2.0 * 64.0 * 1024.0 && read < len / 2.0,
            "{}: {read} bytes",
            shape.0
        );
    }
    all_whole(&prompt_tokens);
    // The SDKs' order with nothing naming the model: told, not sent on unpicked.
    let req =
        Req::post("/v1/chat/completions", body(false)).header("content-type", "application/json");
    let reply = client::send(port, req).await.unwrap();
    assert_eq!(reply.status, 413, "{}", reply.text());
    assert_eq!(
        reply.header("x-llm-d-request-dropped-reason"),
        Some("rejected-invalid-request")
    );
    let json: serde_json::Value = serde_json::from_str(&reply.text()).unwrap();
    assert_eq!(json["error"]["type"], "request_too_large", "{json}");
    let message = json["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("BUFFERED_PARTIAL") && message.contains("x-gateway-model-name"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_the_proxy_a_long_prompt_is_picked_on_its_start() {
    let sim = Sim::start(2, &["--default-max-tokens", "2"]);
    let endpoints: Vec<String> = sim.addrs.iter().map(|a| a.to_string()).collect();
    let port = free_port();
    let tollgate = Tollgate::start(&format!(
        "binds:\n- port: {port}\n  listeners:\n  - routes:\n    - name: pool\n      policies:\n        endpointPicker:\n          endpoints: {endpoints:?}\n"
    ))
    .await;
    three_shapes(port, &tollgate, &endpoints).await;
    drop(sim);
}
