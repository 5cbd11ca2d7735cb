//! Envoy with `allow_mode_override: false`: tollgate still asks for the bodies it needs
//! with `mode_override`, Envoy ignores it and keeps its static mode, and tollgate must
//! tell from the body messages what Envoy really sends. A guarded JSON route
//! through Envoy in STREAMED and BUFFERED, with request bodies sent in pieces (chunked)
//! and whole (content-length): the guard sees the whole prompt (masking changes its
//! length), rejects a secret split across pieces, and SSE answers are masked. In NONE, the
//! body asked for never comes, and the fail-closed guard answers 500.

use std::collections::HashMap;
use std::time::Duration;

use crate::support::client::{self, Req};
use crate::support::envoy::{Envoy, ListenerSpec, Mode};
use crate::support::guard::ScriptedLlm;
use crate::support::scenario::Ports;
use crate::support::tollgate::Tollgate;

const EMAIL: &str = "jane.doe@example.com";
const SECRET: &str = "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb7cDe0fGh";

fn config(ports: Ports, upstream: u16) -> String {
    format!(
        r#"extProc: {{ address: "127.0.0.1:{ext_proc}" }}
binds:
- port: {proxy}
  listeners:
  - routes:
    - name: llm
      policies:
        promptGuard:
          request:
            rules:
            - {{ name: secrets, builtins: [openai_api_key], action: reject }}
            - {{ name: pii, builtins: [email], action: mask }}
          response:
            rules:
            - {{ name: pii, builtins: [email], action: mask }}
      backends: [ {{ host: "127.0.0.1:{upstream}" }} ]
"#,
        ext_proc = ports.ext_proc,
        proxy = ports.proxy,
    )
}

/// A chat request whose prompt carries `content`, padded so that its pieces are real
/// chunks on the wire.
fn chat(id: &str, content: &str, stream: bool) -> Req {
    let pad = "lorem ipsum ".repeat(40);
    let body = serde_json::json!({
        "model": "gpt-4o-mini",
        "stream": stream,
        "messages": [{"role": "user", "content": format!("{pad}{content} {pad}")}],
    });
    Req::post("/v1/chat/completions", body.to_string())
        .header("x-test-id", id)
        .header("x-script", "mail")
}

/// How the client sends the body.
#[derive(Clone, Copy, Debug)]
enum Send {
    /// Five chunks 30 ms apart (chunked encoding): Envoy gets it in pieces.
    Pieces,
    /// One piece with a content-length.
    Whole,
}

async fn send(port: u16, req: Req, how: Send) -> client::Reply {
    let sent = match how {
        Send::Pieces => client::send_in_pieces(port, req, 5, Duration::from_millis(30)).await,
        Send::Whole => client::send(port, req).await,
    };
    sent.unwrap_or_else(|e| panic!("{e}"))
}

async fn override_ignored(mode: Mode) {
    let scripts = HashMap::from([(
        "mail".to_string(),
        vec!["Write to ".to_string(), format!("{EMAIL} today.")],
    )]);
    let upstream = ScriptedLlm::start(scripts).await;
    let ports = Ports::free();
    let _tollgate = Tollgate::start(&config(ports, upstream.port)).await;
    let envoy = Envoy::start(&[
        ListenerSpec::new(ports.ext_proc, upstream.port, mode).allow_mode_override(false)
    ])
    .await;
    let port = envoy.port(0);

    for how in [Send::Pieces, Send::Whole] {
        // The prompt reaches the upstream whole, masked, as valid JSON.
        let id = format!("{mode:?}-{how:?}-mask");
        let reply = send(port, chat(&id, &format!("mail {EMAIL}"), false), how).await;
        assert_eq!(reply.status, 200, "{id}: {}", reply.text());
        assert_eq!(
            reply.json()["choices"][0]["message"]["content"],
            "Write to <EMAIL> today.",
            "{id}: the JSON answer is masked"
        );
        let seen = upstream.requests_for(&id);
        assert_eq!(seen.len(), 1, "{id}");
        let sent: serde_json::Value = serde_json::from_slice(&seen[0].body)
            .unwrap_or_else(|e| panic!("{id}: upstream got invalid JSON ({e})"));
        let content = sent["messages"][0]["content"].as_str().unwrap();
        assert!(content.contains("mail <EMAIL> "), "{id}: {content}");
        assert!(!content.contains(EMAIL), "{id}: {content}");
        if let Send::Pieces = how {
            // Envoy kept its static mode: BUFFERED sent headers and one body each way,
            // STREAMED every piece of the request (the override to BUFFERED ignored).
            let sent = envoy.ext_proc_counter(0, "stream_msgs_sent").await;
            match mode {
                Mode::Buffered => assert_eq!(sent, 4, "{id}"),
                // Two headers, five request pieces, at least one response chunk.
                _ => assert!(sent >= 8, "{id}: {sent} messages"),
            }
        }

        // A secret split across the pieces is still found: the guard saw the whole body.
        let id = format!("{mode:?}-{how:?}-reject");
        let reply = send(port, chat(&id, &format!("key {SECRET}"), false), how).await;
        assert_eq!(reply.status, 403, "{id}: {}", reply.text());
        assert_eq!(reply.json()["error"]["code"], "prompt_rejected", "{id}");
        assert!(
            upstream.requests_for(&id).is_empty(),
            "{id} reached the upstream"
        );

        // SSE: STREAMED answers event by event, BUFFERED (override ignored) at once;
        // both masked.
        let id = format!("{mode:?}-{how:?}-sse");
        let reply = send(port, chat(&id, "hello", true), how).await;
        assert_eq!(reply.status, 200, "{id}: {}", reply.text());
        let text = reply.text();
        assert!(text.contains("<EMAIL>"), "{id}: {text}");
        assert!(!text.contains(EMAIL), "{id}: {text}");
        assert!(text.contains("data: [DONE]"), "{id}: {text}");
    }

    for zero in [
        "streams_failed",
        "spurious_msgs_received",
        "message_timeouts",
        "rejected_header_mutations",
    ] {
        assert_eq!(envoy.ext_proc_counter(0, zero).await, 0, "{zero}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_static_mode_with_overrides_ignored() {
    override_ignored(Mode::Streamed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffered_static_mode_with_overrides_ignored() {
    override_ignored(Mode::Buffered).await;
}

/// Static mode NONE: the request body tollgate asked for never comes, Envoy sends the
/// request on and tollgate learns it at the response headers. The fail-closed guard could
/// not inspect the prompt, so the client gets a 500 instead of the upstream's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_body_mode_with_overrides_ignored_fails_closed() {
    let upstream = ScriptedLlm::start(HashMap::new()).await;
    let ports = Ports::free();
    let tollgate = Tollgate::start(&config(ports, upstream.port)).await;
    let envoy = Envoy::start(&[
        ListenerSpec::new(ports.ext_proc, upstream.port, Mode::NoBody).allow_mode_override(false),
    ])
    .await;
    let reply = send(envoy.port(0), chat("none", "hello", false), Send::Whole).await;
    assert_eq!(reply.status, 500, "{}", reply.text());
    assert_eq!(reply.json()["error"]["type"], "server_error");
    assert!(
        reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("could not inspect the request body"),
        "{}",
        reply.text()
    );
    let log = crate::support::eventually(
        "the warning about the missing body",
        Duration::from_secs(5),
        || async {
            let log = tollgate.log();
            log.contains("Envoy sent no request body").then_some(log)
        },
    )
    .await;
    assert!(log.contains("allow_mode_override"), "{log}");
}
