//! The accounting processor driven through an `Exchange`, as either adapter drives it:
//! usage from JSON and streamed responses, the include_usage injection and the removal
//! of the usage chunk the client did not ask for, metadata, errors in the API's format,
//! and streams that end early.

use bytes::Bytes;

use crate::pipeline::testing::{
    exchange_at, receive, receive_with, response_headers, send, send_output,
};
use crate::pipeline::{Exchange, Outcome};

const YAML: &str = r#"
llm:
  prices: { "gpt-4o*": { input: 2.5, output: 10, cachedInput: 1.25 } }
binds:
- port: 1
  listeners:
  - routes:
    - name: llm
      policies:
        tokenAccounting:
          metadata:
          - { key: llm_input_token, type: InputToken }
          - { key: llm_total_token, type: TotalToken }
          - { key: llm_weighted, type: CEL, cel: "input_tokens + output_tokens * 4u" }
"#;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/llm/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn split(bytes: &[u8], size: usize) -> Vec<&[u8]> {
    bytes.chunks(size).collect()
}

fn metadata(ex: &Exchange, key: &str) -> Option<u64> {
    ex.cx
        .dynamic_metadata
        .get("io.envoy.ai_gateway")?
        .get(key)?
        .as_u64()
}

#[tokio::test]
async fn streamed_chat_without_usage_request_gets_it_injected_and_hidden() {
    let mut ex = exchange_at(YAML, "POST", "/v1/chat/completions");
    let body = br#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"What is the capital of France?"}]}"#;
    let Ok(out) = send_output(&mut ex, &[], body).await else {
        panic!()
    };
    let sent: serde_json::Value = serde_json::from_slice(&out.data).unwrap();
    assert_eq!(
        sent["stream_options"]["include_usage"], true,
        "asked the upstream for usage"
    );
    assert_eq!(
        sent["messages"][0]["content"],
        "What is the capital of France?"
    );
    let estimate = ex.cx.llm.as_mut().unwrap().estimated_input_tokens();
    assert!(estimate > 5 && estimate < 40, "{estimate}");

    let stream = fixture("chat_usage.sse");
    let client = receive(&mut ex, "text/event-stream", &split(&stream, 37))
        .await
        .unwrap();
    let text = String::from_utf8(client).unwrap();
    assert!(!text.contains("\"usage\":{"), "usage chunk removed: {text}");
    assert!(text.contains(" Paris"), "content kept");
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    let usage = ex.cx.llm.as_ref().unwrap().usage.unwrap();
    assert_eq!(
        (usage.input_tokens, usage.output_tokens, usage.total_tokens),
        (1117, 46, 1163)
    );
    assert_eq!(usage.cached_input_tokens, 1024);
    assert_eq!(usage.reasoning_tokens, 12);
    assert_eq!(metadata(&ex, "llm_input_token"), Some(1117));
    assert_eq!(metadata(&ex, "llm_total_token"), Some(1163));
    assert_eq!(metadata(&ex, "llm_weighted"), Some(1117 + 46 * 4));
    let facts = ex.cx.llm.as_ref().unwrap();
    assert!(facts.usage_reported);
    assert!(facts.time_to_first_token.is_some());
    // 93 plain input × 2.5 + 1024 cached × 1.25 + 46 output × 10, per million.
    let cost = facts.cost_usd.unwrap();
    assert!(
        (cost - (93.0 * 2.5 + 1024.0 * 1.25 + 460.0) / 1e6).abs() < 1e-12,
        "{cost}"
    );
    ex.finish(Outcome::Completed { status: 200 });
    let m = ex.pipeline().metrics.encode();
    assert!(m.contains("gen_ai_client_token_usage_count{gen_ai_operation_name=\"chat\",gen_ai_provider_name=\"openai\""), "{m}");
    assert!(m.contains("gen_ai_token_type=\"cached_input\""), "{m}");
    assert!(m.contains("gen_ai_server_time_to_first_token_count"), "{m}");
    assert!(m.contains("tollgate_llm_cost_usd_total"), "{m}");
}

#[tokio::test]
async fn explicit_include_usage_false_is_treated_like_absent() {
    let mut ex = exchange_at(YAML, "POST", "/v1/chat/completions");
    let body = br#"{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":false},"messages":[{"role":"user","content":"hi"}]}"#;
    let Ok(out) = send_output(&mut ex, &[], body).await else {
        panic!()
    };
    let sent: serde_json::Value = serde_json::from_slice(&out.data).unwrap();
    assert_eq!(sent["stream_options"]["include_usage"], true);
    let text = receive(&mut ex, "text/event-stream", &[&fixture("chat_usage.sse")])
        .await
        .unwrap();
    assert!(!String::from_utf8(text).unwrap().contains("\"usage\":{"));
}

#[tokio::test]
async fn client_that_asked_for_usage_gets_the_stream_untouched() {
    let mut ex = exchange_at(YAML, "POST", "/v1/chat/completions");
    let body = br#"{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"#;
    let Ok(out) = send_output(&mut ex, &[], body).await else {
        panic!()
    };
    assert!(!out.changed, "body left alone");
    let stream = fixture("chat_usage.sse");
    let text = receive(&mut ex, "text/event-stream", &split(&stream, 100))
        .await
        .unwrap();
    assert_eq!(text, stream, "byte for byte");
    assert_eq!(
        ex.cx.llm.as_ref().unwrap().usage.unwrap().total_tokens,
        1163
    );
}

#[tokio::test]
async fn json_response_usage() {
    let mut ex = exchange_at(YAML, "POST", "/v1/chat/completions");
    let mut body: serde_json::Value =
        serde_json::from_slice(&fixture("requests/chat.json")).unwrap();
    body["stream"] = false.into();
    let body = serde_json::to_vec(&body).unwrap();
    let Ok(out) = send_output(&mut ex, &[], &body).await else {
        panic!()
    };
    assert!(!out.changed, "a non-streamed request is left alone");
    let resp = fixture("chat.json");
    let got = receive(&mut ex, "application/json", &split(&resp, 50))
        .await
        .unwrap();
    assert_eq!(got, resp);
    let usage = ex.cx.llm.as_ref().unwrap().usage.unwrap();
    assert!(usage.input_tokens > 0 && usage.output_tokens > 0);
    assert_eq!(metadata(&ex, "llm_total_token"), Some(usage.total_tokens));
}

#[tokio::test]
async fn anthropic_stream_usage_is_merged() {
    let mut ex = exchange_at(YAML, "POST", "/v1/messages");
    let body = fixture("requests/messages.json");
    let Ok(out) = send_output(&mut ex, &[], &body).await else {
        panic!()
    };
    assert!(
        !out.changed,
        "Anthropic streams carry usage: nothing to inject"
    );
    let stream = fixture("anthropic.sse");
    let got = receive(&mut ex, "text/event-stream", &split(&stream, 29))
        .await
        .unwrap();
    assert_eq!(got, stream);
    let usage = ex.cx.llm.as_ref().unwrap().usage.unwrap();
    assert!(
        usage.input_tokens > 0 && usage.output_tokens > 0,
        "{usage:?}"
    );
}

#[tokio::test]
async fn malformed_json_gets_400_in_the_api_format() {
    let mut ex = exchange_at(YAML, "POST", "/v1/chat/completions");
    let Err(reply) = send(&mut ex, &[], b"{\"model\": ").await else {
        panic!()
    };
    assert_eq!(reply.status, 400);
    let v: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");

    let mut ex = exchange_at(YAML, "POST", "/v1/messages");
    let Err(reply) = send(&mut ex, &[], b"[1,2").await else {
        panic!()
    };
    let v: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(v["type"], "error", "Anthropic's shape: {v}");
    assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
}

#[tokio::test]
async fn request_over_the_limit_is_413() {
    let yaml = YAML.replace(
        "tokenAccounting:",
        "tokenAccounting:\n          maxRequestBytes: 64",
    );
    let mut ex = exchange_at(&yaml, "POST", "/v1/chat/completions");
    let big = format!(
        r#"{{"model":"gpt-4o","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(200)
    );
    let Err(reply) = send(&mut ex, &[], big.as_bytes()).await else {
        panic!()
    };
    assert_eq!(reply.status, 413);
}

#[tokio::test]
async fn abandoned_stream_is_counted_with_what_was_delivered() {
    let mut ex = exchange_at(YAML, "POST", "/v1/chat/completions");
    let body =
        br#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi there"}]}"#;
    let _ = send(&mut ex, &[], body).await;
    let stream = fixture("chat_usage.sse");
    // Deliver the first four events, then the client goes away.
    let cut = stream
        .windows(2)
        .enumerate()
        .filter(|(_, w)| w == b"\n\n")
        .nth(3)
        .map(|(i, _)| i + 2)
        .unwrap();
    let _ = response_headers(&mut ex, &[("content-type", "text/event-stream")]).await;
    let _ = ex
        .response_body(Bytes::copy_from_slice(&stream[..cut]), false, false)
        .await;
    let estimate = ex.cx.llm.as_mut().unwrap().estimated_input_tokens();
    ex.finish(Outcome::ClientGone);
    let facts = ex.cx.llm.as_ref().unwrap();
    let usage = facts.usage.unwrap();
    assert!(!facts.usage_reported);
    assert_eq!(usage.input_tokens, estimate);
    assert_eq!(
        usage.output_tokens, 3,
        "three content events were delivered"
    );
}

#[tokio::test]
async fn non_llm_paths_are_left_alone() {
    let ex = exchange_at(YAML, "GET", "/v1/models");
    assert!(ex.is_empty(), "no processor for a path that is no LLM API");
}

#[tokio::test]
async fn usage_headers_follow_a_buffered_json_response() {
    let yaml = YAML.replace(
        "tokenAccounting:",
        "tokenAccounting:\n          responseHeaders: true",
    );
    let mut ex = exchange_at(&yaml, "POST", "/v1/chat/completions");
    let _ = send(
        &mut ex,
        &[],
        br#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    let _ = response_headers(&mut ex, &[("content-type", "application/json")]).await;
    assert!(
        matches!(
            ex.response_body_mode(),
            crate::pipeline::BodyMode::Buffer { .. }
        ),
        "the body is held so the headers can follow it"
    );
    let resp = fixture("chat.json");
    let _ = ex.response_body(Bytes::from(resp), true, false).await;
    let usage = ex.cx.llm.as_ref().unwrap().usage.unwrap();
    let late: std::collections::HashMap<String, String> = ex
        .cx
        .late_response_headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
        .collect();
    assert_eq!(
        late["x-tollgate-total-tokens"],
        usage.total_tokens.to_string()
    );
    assert_eq!(
        late["x-tollgate-input-tokens"],
        usage.input_tokens.to_string()
    );
    // The response model (gpt-4.1-…) has no price in the table: no cost header.
    assert!(!late.contains_key("x-tollgate-cost-usd"), "{late:?}");
}

#[tokio::test]
async fn streams_are_never_held_for_usage_headers() {
    let yaml = YAML.replace(
        "tokenAccounting:",
        "tokenAccounting:\n          responseHeaders: true",
    );
    let mut ex = exchange_at(&yaml, "POST", "/v1/chat/completions");
    let _ = send(
        &mut ex,
        &[],
        br#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    let _ = response_headers(&mut ex, &[("content-type", "text/event-stream")]).await;
    assert_eq!(ex.response_body_mode(), crate::pipeline::BodyMode::Stream);
}

// === buffer limits and usage validation ===

const LIMITED: &str = r#"
limits:
  buffers: { sseLineBytes: 1024, sseEventBytes: 4096, jsonBodyBytes: 2048 }
binds:
- port: 1
  listeners:
  - routes:
    - name: llm
      policies:
        tokenAccounting: {}
"#;

const CHAT: &[u8] =
    br#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hello there"}]}"#;

fn exceeded(ex: &Exchange, limit: &str) -> bool {
    ex.pipeline().metrics.encode().contains(&format!(
        "tollgate_buffer_limit_exceeded_total{{route=\"llm\",processor=\"token_accounting\",limit=\"{limit}\"}} 1"
    ))
}

#[tokio::test]
async fn a_gzip_sse_bomb_passes_untouched_and_uncounted() {
    let mut ex = exchange_at(LIMITED, "POST", "/v1/chat/completions");
    let sent = send(&mut ex, &[], CHAT).await;
    assert!(sent.is_ok());
    let mut plain = fixture("chat_usage.sse")[..200].to_vec();
    while plain.len() < 20 << 20 {
        plain.extend_from_slice(b"data: {}\n\n");
    }
    let bomb = crate::llm::decode::tests::gzip(&plain);
    let headers = [
        ("content-type", "text/event-stream"),
        ("content-encoding", "gzip"),
    ];
    let out = receive_with(&mut ex, &headers, &split(&bomb, 16 * 1024))
        .await
        .unwrap();
    assert_eq!(out, bomb, "the client gets what the upstream sent");
    assert!(exceeded(&ex, "decompression_ratio"));
    ex.finish(Outcome::Completed { status: 200 });
    let facts = ex.cx.llm.as_ref().unwrap();
    assert!(!facts.usage_reported);
    assert!(facts.usage.unwrap().input_tokens > 0, "estimated");
}

#[tokio::test]
async fn a_long_line_stops_accounting_and_the_rest_passes_as_sent() {
    // The request did not ask for usage: tollgate does, and re-emits the stream.
    let first = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n";
    let rest = format!(
        "data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{}\"}}}}]}}\n\ndata: {{\"choices\":[],\"usage\":{{\"prompt_tokens\":1,\"completion_tokens\":2}}}}\n\ndata: [DONE]\n\n",
        "x".repeat(3000)
    );
    let upstream = format!("{first}{rest}");
    for size in [5, 64, 1500, upstream.len()] {
        let mut ex = exchange_at(LIMITED, "POST", "/v1/chat/completions");
        let sent = send(&mut ex, &[], CHAT).await;
        assert!(sent.is_ok());
        let out = receive(
            &mut ex,
            "text/event-stream",
            &split(upstream.as_bytes(), size),
        )
        .await
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with(first) && text.ends_with(&rest),
            "size {size}: {text}"
        );
        assert_eq!(text.len(), upstream.len());
        assert!(exceeded(&ex, "sse_line"));
        ex.finish(Outcome::Completed { status: 200 });
        assert!(!ex.cx.llm.as_ref().unwrap().usage_reported);
    }
}

#[tokio::test]
async fn a_json_body_over_its_bound_is_not_collected() {
    let mut ex = exchange_at(LIMITED, "POST", "/v1/chat/completions");
    let sent = send(
        &mut ex,
        &[],
        br#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    assert!(sent.is_ok());
    let body = format!(
        r#"{{"choices":[{{"message":{{"content":"{}"}}}}],"usage":{{"prompt_tokens":1,"completion_tokens":2}}}}"#,
        "a".repeat(4000)
    );
    let out = receive(&mut ex, "application/json", &split(body.as_bytes(), 1000))
        .await
        .unwrap();
    assert_eq!(out, body.as_bytes());
    assert!(exceeded(&ex, "json_body"));
    ex.finish(Outcome::Completed { status: 200 });
    assert!(!ex.cx.llm.as_ref().unwrap().usage_reported);
}

#[tokio::test]
async fn invalid_usage_is_counted_and_estimated_not_charged() {
    for (usage, reason) in [
        ("[1,2,3]", "not_an_object"),
        (
            r#"{"prompt_tokens":18446744073709551615,"completion_tokens":1}"#,
            "out_of_range",
        ),
        (
            r#"{"prompt_tokens":5,"completion_tokens":1,"prompt_tokens_details":{"cached_tokens":9}}"#,
            "inconsistent",
        ),
    ] {
        let mut ex = exchange_at(YAML, "POST", "/v1/chat/completions");
        let sent = send(
            &mut ex,
            &[],
            br#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#,
        )
        .await;
        assert!(sent.is_ok());
        let body = format!(r#"{{"model":"gpt-4o","choices":[],"usage":{usage}}}"#);
        receive(&mut ex, "application/json", &[body.as_bytes()])
            .await
            .unwrap();
        ex.finish(Outcome::Completed { status: 200 });
        let facts = ex.cx.llm.as_ref().unwrap();
        assert!(!facts.usage_reported, "{usage}");
        let u = facts.usage.unwrap();
        assert!(
            u.input_tokens < 100 && u.output_tokens == 0,
            "{usage}: {u:?}"
        );
        assert!(facts.cost_usd.unwrap() < 0.001, "{usage}");
        let m = ex.pipeline().metrics.encode();
        let line = format!("tollgate_usage_invalid_total{{route=\"llm\",reason=\"{reason}\"}} 1");
        assert!(m.contains(&line), "{line}\n{m}");
    }
}
