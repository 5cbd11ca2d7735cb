//! The guard at its buffer bounds, through an `Exchange`: an SSE line over its bound
//! ends the stream (fail closed) or lets the rest pass unguarded (fail open), byte for
//! byte; a gzip bomb ends a stream or a JSON body whatever the failure mode, with the
//! bytes sent bounded; each counts in `tollgate_buffer_limit_exceeded_total`.

use crate::llm::decode::tests::gzip;
use crate::pipeline::testing::{metric, receive_with, send};
use crate::pipeline::{Adapter, LocalReply};

use super::tests::{exchange, pipeline_after, EMAIL};

const LIMITS: &str = "limits:\n  buffers: { sseLineBytes: 1024, sseEventBytes: 4096 }\n";

fn guard(failure_mode: &str) -> String {
    format!(
        r#"        promptGuard:
          failureMode: {failure_mode}
          response:
            rules:
            - {{ name: pii, builtins: [email], action: mask }}
"#
    )
}

const PATH: &str = "/v1/chat/completions";
const REQUEST: &[u8] =
    br#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
const SSE: (&str, &str) = ("content-type", "text/event-stream");

fn chunk(text: &str) -> String {
    let v = serde_json::json!({"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]});
    format!("data: {v}\n\n")
}

/// A first event with an email, then a line of `n` bytes, then a last event and `[DONE]`.
fn long_line_stream(n: usize) -> (String, String) {
    let first = chunk(&format!("mail {EMAIL} now"));
    let rest = format!(
        "data: {}\n\n{}data: [DONE]\n\n",
        "x".repeat(n),
        chunk(EMAIL)
    );
    (first, rest)
}

fn limit_metric(p: &crate::pipeline::Pipeline, limit: &str) -> Option<f64> {
    metric(
        p,
        &format!(
            "tollgate_buffer_limit_exceeded_total{{route=\"llm\",processor=\"prompt_guard\",limit=\"{limit}\"}}"
        ),
    )
}

/// Runs a response through the guard; what the client got, and the closing reply if any.
async fn run(
    failure_mode: &str,
    adapter: Adapter,
    headers: &[(&str, &str)],
    chunks: &[&[u8]],
) -> (
    Vec<u8>,
    Option<LocalReply>,
    std::sync::Arc<crate::pipeline::Pipeline>,
) {
    let p = pipeline_after(LIMITS, &guard(failure_mode));
    let mut ex = exchange(&p, adapter, PATH);
    send(&mut ex, &[], REQUEST).await.unwrap();
    match receive_with(&mut ex, headers, chunks).await {
        Ok(out) => (out, None, p),
        Err((mut out, reply)) => {
            out.extend_from_slice(&reply.body);
            (out, Some(reply), p)
        }
    }
}

#[tokio::test]
async fn a_long_line_ends_the_stream_with_an_error_event_when_fail_closed() {
    let (first, rest) = long_line_stream(5000);
    let upstream = format!("{first}{rest}");
    for size in [7, 100, 4096, upstream.len()] {
        let chunks: Vec<&[u8]> = upstream.as_bytes().chunks(size).collect();
        let (out, reply, p) = run("failClosed", Adapter::Proxy, &[SSE], &chunks).await;
        let text = String::from_utf8(out).unwrap();
        assert!(
            reply.is_none(),
            "the stream ends with its last bytes, not a reply"
        );
        assert!(!text.contains(EMAIL) && text.contains("<EMAIL>"), "{text}");
        assert!(!text.contains("xxxx") && !text.contains("[DONE]"), "{text}");
        assert!(
            text.contains("exceeds the gateway's buffer limits"),
            "{text}"
        );
        assert_eq!(limit_metric(&p, "sse_line"), Some(1.0));
    }
}

#[tokio::test]
async fn a_long_line_passes_the_rest_unguarded_when_fail_open() {
    let (first, rest) = long_line_stream(5000);
    let upstream = format!("{first}{rest}");
    for size in [7, 100, 4096, upstream.len()] {
        let chunks: Vec<&[u8]> = upstream.as_bytes().chunks(size).collect();
        let (out, reply, p) = run("failOpen", Adapter::Proxy, &[SSE], &chunks).await;
        assert!(reply.is_none());
        let text = String::from_utf8(out).unwrap();
        // The first event guarded, the rest exactly as the upstream sent it.
        assert!(text.ends_with(&rest), "size {size}: {text}");
        let guarded = &text[..text.len() - rest.len()];
        assert!(
            guarded.contains("<EMAIL>") && !guarded.contains(EMAIL),
            "{guarded}"
        );
        assert_eq!(limit_metric(&p, "sse_line"), Some(1.0));
    }
}

#[tokio::test]
async fn a_large_event_of_short_lines_is_bounded_too() {
    let line = format!("data: {}\n", "y".repeat(500));
    let upstream = format!("{}{}\n", chunk("hi"), line.repeat(20));
    let (out, _, p) = run("failClosed", Adapter::Proxy, &[SSE], &[upstream.as_bytes()]).await;
    let text = String::from_utf8(out).unwrap();
    assert!(
        !text.contains("yyyy") && text.contains("buffer limits"),
        "{text}"
    );
    assert_eq!(limit_metric(&p, "sse_event"), Some(1.0));
}

/// Events of a few bytes repeated: gzip shrinks them about 1000 times.
fn sse_bomb() -> (Vec<u8>, usize) {
    let mut plain = chunk("hello").into_bytes();
    while plain.len() < 20 * 1024 * 1024 {
        plain.extend_from_slice(b"data: {}\n\n");
    }
    let body = gzip(&plain);
    let len = body.len();
    (body, len)
}

#[tokio::test]
async fn a_gzip_bomb_ends_a_guarded_stream_in_both_modes_and_adapters() {
    let (bomb, _) = sse_bomb();
    let headers = [SSE, ("content-encoding", "gzip")];
    let chunks: Vec<&[u8]> = bomb.chunks(16 * 1024).collect();
    for mode in ["failOpen", "failClosed"] {
        for adapter in [Adapter::Proxy, Adapter::ExtProc] {
            let (out, reply, p) = run(mode, adapter, &headers, &chunks).await;
            assert!(
                reply.is_none(),
                "the stream ends with its last bytes, not a reply"
            );
            // Decoded bytes sent: the ratio grace (1 MiB) plus a codec buffer, not 20 MiB.
            assert!(
                out.len() < 2 * 1024 * 1024,
                "{mode} {adapter:?}: {}",
                out.len()
            );
            let tail = String::from_utf8_lossy(&out[out.len().saturating_sub(300)..]);
            assert!(
                tail.contains("decompresses past the gateway's limits"),
                "{tail}"
            );
            assert_eq!(limit_metric(&p, "decompression_ratio"), Some(1.0));
        }
    }
}

#[tokio::test]
async fn a_gzip_bomb_json_completion_gets_502() {
    let plain = format!(
        r#"{{"choices":[{{"message":{{"content":"{}"}}}}]}}"#,
        "a".repeat(10 * 1024 * 1024)
    );
    let bomb = gzip(plain.as_bytes());
    let headers = [
        ("content-type", "application/json"),
        ("content-encoding", "gzip"),
    ];
    for mode in ["failOpen", "failClosed"] {
        let (_, reply, p) = run(mode, Adapter::Proxy, &headers, &[&bomb]).await;
        let reply = reply.expect("answered");
        assert_eq!(reply.status, http::StatusCode::BAD_GATEWAY);
        assert!(String::from_utf8_lossy(&reply.body).contains("decompresses past"));
        assert_eq!(limit_metric(&p, "decompression_ratio"), Some(1.0));
    }
}
