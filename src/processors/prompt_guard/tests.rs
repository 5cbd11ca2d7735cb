//! The prompt guard driven through an `Exchange`, as the adapters drive it: rejects in
//! each API's error format before anything goes upstream, masks that rewrite the body
//! into valid JSON, audits that only count, CEL rules, and JSON completions.

use std::sync::Arc;

use bytes::Bytes;

use crate::pipeline::testing::{build_error, exchange_on, metric, receive, send};
use crate::pipeline::{Adapter, Exchange, Headers, Pipeline, Verdict};

pub const EMAIL: &str = "jane.doe+billing@example.co.uk";
pub const CARD: &str = "4111 1111 1111 1111";
pub const SECRET: &str = "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb7cDe0fGh";

/// A pipeline whose route `llm` has `policies` (YAML lines indented for `policies:`).
pub fn pipeline(policies: &str) -> Arc<Pipeline> {
    pipeline_after("", policies)
}

/// [`pipeline`], with `top` (top-level YAML, e.g. `limits:`) before `binds`.
pub fn pipeline_after(top: &str, policies: &str) -> Arc<Pipeline> {
    crate::pipeline::testing::pipeline(&format!(
        "{top}binds:\n- port: 1\n  listeners:\n  - routes:\n    - name: llm\n      policies:\n{policies}"
    ))
}

/// A `POST path` exchange on the route `llm`.
pub fn exchange(p: &Arc<Pipeline>, adapter: Adapter, path: &str) -> Exchange {
    exchange_on(p, "llm", adapter, "POST", path)
}

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(bytes)))
}

const GUARD: &str = r#"        promptGuard:
          request:
            rules:
            - { name: secrets, builtins: [openai_api_key, aws_access_key_id, private_key], action: reject }
            - { name: pii, builtins: [email, credit_card, phone], action: mask }
            - { name: ticket, regex: 'TICKET-\d{4}', action: mask, placeholder: "[ticket]" }
            - { name: codenames, keywords: { words: [bluebird] }, action: audit }
            - name: research-only
              cel: 'llm.model == "o1" && request.headers["x-team"] != "research"'
              action: reject
              status: 451
              message: "o1 is for the research team"
"#;

fn chat(content: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": content}]
    }))
    .unwrap()
}

#[tokio::test]
async fn a_secret_in_the_prompt_is_rejected_in_openai_format_and_counted() {
    let p = pipeline(GUARD);
    let mut ex = exchange(&p, Adapter::Proxy, "/v1/chat/completions");
    let reply = send(&mut ex, &[], &chat(&format!("my key is {SECRET}, thanks")))
        .await
        .unwrap_err();
    assert_eq!(reply.status, 403);
    let body = json(&reply.body);
    assert_eq!(
        body,
        serde_json::json!({"error": {
            "message": "request blocked by prompt guard rule secrets",
            "type": "permission_error", "param": null, "code": "prompt_rejected"}})
    );
    assert!(!String::from_utf8_lossy(&reply.body).contains("sk-proj"));
    assert_eq!(
        metric(
            &p,
            r#"tollgate_guard_findings_total{route="llm",side="request",rule="secrets",action="reject"}"#
        ),
        Some(1.0)
    );
    assert!(p
        .metrics
        .encode()
        .contains(r#"tollgate_guard_duration_seconds_count{side="request"} 1"#));
}

#[tokio::test]
async fn anthropic_rejects_use_anthropics_error_shape_and_see_every_block() {
    let p = pipeline(GUARD);
    let mut ex = exchange(&p, Adapter::ExtProc, "/v1/messages");
    // The key hides in a tool result inside a content block list.
    let body = serde_json::json!({
        "model": "claude-sonnet-4-5", "max_tokens": 10,
        "system": [{"type": "text", "text": "be brief"}],
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "what did the tool say?"},
            {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "AKIAIOSFODNN7EXAMPLE"}]}
        ]}]
    });
    let reply = send(&mut ex, &[], body.to_string().as_bytes())
        .await
        .unwrap_err();
    assert_eq!(reply.status, 403);
    assert_eq!(
        json(&reply.body),
        serde_json::json!({"type": "error", "error": {"type": "permission_error",
            "message": "request blocked by prompt guard rule secrets"}})
    );
}

#[tokio::test]
async fn masking_rewrites_every_prompt_string_and_keeps_the_rest_byte_for_byte() {
    let p = pipeline(GUARD);
    let mut ex = exchange(&p, Adapter::Proxy, "/v1/chat/completions");
    let body = format!(
        r#"{{"model":"gpt-4o","temperature":0.70,
  "messages":[{{"role":"system","content":"Reply to {EMAIL}"}},
   {{"role":"user","content":[{{"type":"text","text":"card {CARD}, ref TICKET-1234"}},{{"type":"image_url","image_url":{{"url":"data:image/png;base64,AAAA"}}}}]}},
   {{"role":"assistant","tool_calls":[{{"id":"call_1","type":"function","function":{{"name":"lookup","arguments":"{{\"email\":\"{EMAIL}\"}}"}}}}]}},
   {{"role":"tool","tool_call_id":"call_1","content":"found {EMAIL} \u00e9"}}],
  "tools":[{{"type":"function","function":{{"name":"lookup","description":"mail admin@example.com","parameters":{{}}}}}}]}}"#
    );
    json(body.as_bytes()); // the test body itself is valid JSON
    let sent = send(&mut ex, &[], body.as_bytes()).await.unwrap();
    let sent = String::from_utf8(sent.to_vec()).unwrap();
    let v = json(sent.as_bytes());
    assert_eq!(v["messages"][0]["content"], "Reply to <EMAIL>");
    assert_eq!(
        v["messages"][1]["content"][0]["text"],
        "card <CREDIT_CARD>, ref [ticket]"
    );
    assert_eq!(
        v["messages"][2]["tool_calls"][0]["function"]["arguments"],
        r#"{"email":"<EMAIL>"}"#
    );
    assert_eq!(v["messages"][3]["content"], "found <EMAIL> é");
    // Tool definitions are read by the model: masked too, their schema vocabulary kept.
    assert_eq!(v["tools"][0]["function"]["description"], "mail <EMAIL>");
    assert_eq!(v["tools"][0]["type"], "function");
    assert_eq!(v["tools"][0]["function"]["name"], "lookup");
    assert!(!sent.contains(EMAIL) && !sent.contains(CARD));
    // Everything outside the masked strings is unchanged (number spelling, spacing).
    assert!(sent.starts_with("{\"model\":\"gpt-4o\",\"temperature\":0.70,\n  \"messages\""));
    assert_eq!(
        metric(
            &p,
            r#"tollgate_guard_findings_total{route="llm",side="request",rule="pii",action="mask"}"#
        ),
        Some(5.0),
        "three emails and a card in the prompt parts, an email in a tool definition"
    );
}

#[tokio::test]
async fn responses_and_anthropic_bodies_are_masked_too() {
    let p = pipeline(GUARD);
    let mut ex = exchange(&p, Adapter::Proxy, "/v1/responses");
    let body = serde_json::json!({
        "model": "gpt-4o", "instructions": format!("cc {EMAIL}"),
        "input": [{"role": "user", "content": [{"type": "input_text", "text": format!("pay {CARD}")}]},
                  {"type": "function_call_output", "call_id": "c1", "output": EMAIL}]
    });
    let sent = json(
        &send(&mut ex, &[], body.to_string().as_bytes())
            .await
            .unwrap(),
    );
    assert_eq!(sent["instructions"], "cc <EMAIL>");
    assert_eq!(sent["input"][0]["content"][0]["text"], "pay <CREDIT_CARD>");
    assert_eq!(sent["input"][1]["output"], "<EMAIL>");
    assert_eq!(sent["input"][1]["call_id"], "c1");

    let mut ex = exchange(&p, Adapter::Proxy, "/v1/messages");
    let body = serde_json::json!({
        "model": "claude", "max_tokens": 5, "system": format!("owner {EMAIL}"),
        "messages": [{"role": "user", "content": [{"type": "text", "text": CARD}]}]
    });
    let sent = json(
        &send(&mut ex, &[], body.to_string().as_bytes())
            .await
            .unwrap(),
    );
    assert_eq!(sent["system"], "owner <EMAIL>");
    assert_eq!(sent["messages"][0]["content"][0]["text"], "<CREDIT_CARD>");
}

#[tokio::test]
async fn audit_passes_the_body_unchanged_and_counts() {
    let p = pipeline(GUARD);
    let mut ex = exchange(&p, Adapter::Proxy, "/v1/chat/completions");
    let body = chat("Project Bluebird and bluebird again");
    let sent = send(&mut ex, &[], &body).await.unwrap();
    assert_eq!(sent, body);
    assert_eq!(
        metric(
            &p,
            r#"tollgate_guard_findings_total{route="llm",side="request",rule="codenames",action="audit"}"#
        ),
        Some(2.0)
    );
    // A clean prompt passes without a findings line.
    let mut ex = exchange(&p, Adapter::Proxy, "/v1/chat/completions");
    let body = chat("What is the capital of France?");
    assert_eq!(send(&mut ex, &[], &body).await.unwrap(), body);
}

#[tokio::test]
async fn cel_rules_see_model_prompt_and_headers() {
    let p = pipeline(GUARD);
    let o1 = br#"{"model":"o1","messages":[{"role":"user","content":"hi"}]}"#;
    let mut ex = exchange(&p, Adapter::Proxy, "/v1/chat/completions");
    let reply = send(&mut ex, &[("x-team", "sales")], o1).await.unwrap_err();
    assert_eq!(reply.status, 451);
    assert_eq!(
        json(&reply.body)["error"]["message"],
        "o1 is for the research team"
    );
    let mut ex = exchange(&p, Adapter::Proxy, "/v1/chat/completions");
    assert!(send(&mut ex, &[("x-team", "research")], o1).await.is_ok());
    // A missing header makes the expression fail: the rule does not apply.
    let mut ex = exchange(&p, Adapter::Proxy, "/v1/chat/completions");
    assert!(send(&mut ex, &[], o1).await.is_ok());

    let p = pipeline(
        r#"        promptGuard:
          request:
            rules:
            - { name: no-sql, cel: 'llm.prompt.contains("DROP TABLE")', action: reject }
"#,
    );
    let mut ex = exchange(&p, Adapter::Proxy, "/v1/messages");
    let body = br#"{"model":"claude","max_tokens":5,"system":"x","messages":[{"role":"user","content":"please DROP TABLE users"}]}"#;
    assert_eq!(send(&mut ex, &[], body).await.unwrap_err().status, 403);
}

#[tokio::test]
async fn without_token_accounting_the_guard_parses_the_request_itself() {
    let p = pipeline(GUARD);
    let mut ex = exchange(&p, Adapter::Proxy, "/v1/chat/completions");
    send(&mut ex, &[], &chat("hello")).await.unwrap();
    let facts = ex.cx.llm.as_ref().expect("the guard set cx.llm");
    assert_eq!(facts.request.model.as_deref(), Some("gpt-4o"));
    // Invalid JSON and invalid UTF-8 get a 400 in the API's format, never a panic.
    for bad in [
        &b"{not json"[..],
        b"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\xff\xfe\"}]}",
    ] {
        let mut ex = exchange(&p, Adapter::Proxy, "/v1/chat/completions");
        let reply = send(&mut ex, &[], bad).await.unwrap_err();
        assert_eq!(reply.status, 400);
        assert_eq!(json(&reply.body)["error"]["code"], "invalid_request_error");
    }
    // Paths that are no LLM API pass untouched.
    let mut ex = exchange(&p, Adapter::Proxy, "/v1/models");
    let body = SECRET.to_string();
    assert_eq!(
        send(&mut ex, &[], body.as_bytes()).await.unwrap(),
        body.as_bytes()
    );
}

#[tokio::test]
async fn with_token_accounting_and_a_limit_a_rejected_prompt_is_not_charged() {
    let p = pipeline(&format!(
        "        tokenAccounting: {{}}\n        tokenLimit:\n          limits:\n          - {{ name: all, tokensPerMinute: 1000 }}\n{GUARD}"
    ));
    let mut ex = exchange(&p, Adapter::Proxy, "/v1/chat/completions");
    let reply = send(&mut ex, &[], &chat(&format!("key {SECRET}")))
        .await
        .unwrap_err();
    assert_eq!(reply.status, 403);
    assert_eq!(
        metric(&p, r#"tollgate_token_limit_decisions_total{"#),
        None,
        "the limit never ran"
    );
    // A masked prompt goes on to the limit.
    let mut ex = exchange(&p, Adapter::Proxy, "/v1/chat/completions");
    let sent = send(&mut ex, &[], &chat(&format!("mail {EMAIL}")))
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&sent).contains("mail <EMAIL>"));
    assert!(metric(&p, r#"tollgate_token_limit_decisions_total{"#).is_some());
}

const RESPONSE_GUARD: &str = r#"        promptGuard:
          response:
            rules:
            - { name: pii, builtins: [email, credit_card], action: mask }
            - { name: keys, builtins: [openai_api_key], action: reject }
"#;

#[tokio::test]
async fn json_completions_are_masked_in_their_text_only() {
    let p = pipeline(RESPONSE_GUARD);
    let mut ex = exchange(&p, Adapter::Proxy, "/v1/chat/completions");
    send(&mut ex, &[], &chat("hi")).await.unwrap();
    let body = format!(
        r#"{{"id":"x","object":"chat.completion","model":"gpt-4o","choices":[{{"index":0,"message":{{"role":"assistant","content":"write to {EMAIL}","tool_calls":[{{"id":"t","type":"function","function":{{"name":"f","arguments":"{{\"to\":\"{EMAIL}\"}}"}}}}]}},"finish_reason":"stop"}}],"usage":{{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}}}"#
    );
    let out = receive(&mut ex, "application/json", &[body.as_bytes()])
        .await
        .unwrap();
    let v = json(&out);
    assert_eq!(v["choices"][0]["message"]["content"], "write to <EMAIL>");
    // Tool arguments are JSON for a program: left alone.
    assert_eq!(
        v["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
        format!(r#"{{"to":"{EMAIL}"}}"#)
    );
    assert_eq!(v["usage"]["total_tokens"], 7);
    assert_eq!(
        metric(
            &p,
            r#"tollgate_guard_findings_total{route="llm",side="response",rule="pii",action="mask"}"#
        ),
        Some(1.0)
    );

    // Anthropic content blocks; and a rejected answer is replaced by an error.
    let mut ex = exchange(&p, Adapter::Proxy, "/v1/messages");
    let body = format!(
        r#"{{"type":"message","role":"assistant","content":[{{"type":"text","text":"card {CARD}"}}],"usage":{{"input_tokens":1,"output_tokens":2}}}}"#
    );
    let out = receive(&mut ex, "application/json", &[body.as_bytes()])
        .await
        .unwrap();
    assert_eq!(json(&out)["content"][0]["text"], "card <CREDIT_CARD>");
    let mut ex = exchange(&p, Adapter::Proxy, "/v1/messages");
    let body = format!(r#"{{"type":"message","content":[{{"type":"text","text":"{SECRET}"}}]}}"#);
    let (_, reply) = receive(&mut ex, "application/json", &[body.as_bytes()])
        .await
        .unwrap_err();
    assert_eq!(reply.status, 403);
    assert_eq!(json(&reply.body)["error"]["type"], "permission_error");
    assert!(!String::from_utf8_lossy(&reply.body).contains("sk-proj"));
}

#[tokio::test]
async fn a_gzipped_json_completion_is_decoded_masked_and_sent_plain() {
    use std::io::Write;
    let p = pipeline(RESPONSE_GUARD);
    let mut ex = exchange(&p, Adapter::Proxy, "/v1/chat/completions");
    send(&mut ex, &[], &chat("hi")).await.unwrap();
    let body = format!(r#"{{"choices":[{{"index":0,"message":{{"content":"{EMAIL}"}}}}]}}"#);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(body.as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    let mut map = http::HeaderMap::new();
    map.insert("content-type", "application/json".parse().unwrap());
    map.insert("content-encoding", "gzip".parse().unwrap());
    map.insert("content-length", gz.len().into());
    ex.cx.response_status = Some(200);
    let mut h = Headers::new(map);
    assert!(matches!(
        ex.response_headers(&mut h).await,
        Verdict::Continue(())
    ));
    assert!(h.get_str("content-encoding").is_none());
    let (a, b) = gz.split_at(gz.len() / 2);
    let mut out = Vec::new();
    for (chunk, eos) in [(a, false), (b, true)] {
        match ex
            .response_body(Bytes::copy_from_slice(chunk), eos, false)
            .await
        {
            Verdict::Continue(o) => out.extend_from_slice(&o.data),
            Verdict::Respond(r) => panic!("{r:?}"),
        }
    }
    assert_eq!(json(&out)["choices"][0]["message"]["content"], "<EMAIL>");
}

#[test]
fn config_errors_name_the_policy_path() {
    let yaml = "binds:\n- port: 1\n  listeners:\n  - routes:\n    - policies:\n        promptGuard:\n          request:\n            rules:\n            - { name: a, builtins: [email], action: mask }\n            - { name: b, regex: '[', action: reject }\n";
    let err = build_error(yaml);
    assert!(
        err.starts_with(
            "binds[0].listeners[0].routes[0].policies.promptGuard.request.rules[1].regex: invalid regex"
        ),
        "{err}"
    );
    let yaml = "policies:\n  promptGuard:\n    response:\n      rules:\n      - { name: a, builtins: [emial], action: mask }\n";
    let err = build_error(yaml);
    assert!(
        err.starts_with("policies.promptGuard.response.rules[0].builtins[0]: unknown built-in detector `emial` (known: "),
        "{err}"
    );
    let yaml = "policies:\n  promptGuard: {}\n";
    let err = build_error(yaml);
    assert_eq!(err, "policies.promptGuard: give request or response rules");
}

#[tokio::test]
async fn cel_rules_see_verified_jwt_claims() {
    let p = pipeline(
        r#"        promptGuard:
          request:
            rules:
            - { name: interns, cel: 'jwt != null && jwt.role == "intern" && llm.model == "o1"', action: reject }
"#,
    );
    let o1 = br#"{"model":"o1","messages":[{"role":"user","content":"hi"}]}"#;
    let mut ex = exchange(&p, Adapter::ExtProc, "/v1/chat/completions");
    ex.cx.jwt = Some(serde_json::json!({"sub": "u1", "role": "intern"}));
    assert_eq!(send(&mut ex, &[], o1).await.unwrap_err().status, 403);
    let mut ex = exchange(&p, Adapter::ExtProc, "/v1/chat/completions");
    ex.cx.jwt = Some(serde_json::json!({"sub": "u2", "role": "staff"}));
    assert!(send(&mut ex, &[], o1).await.is_ok());
    let mut ex = exchange(&p, Adapter::ExtProc, "/v1/chat/completions");
    assert!(send(&mut ex, &[], o1).await.is_ok(), "no claims");
}
