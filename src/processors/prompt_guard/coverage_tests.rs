//! What the request guard reads besides the prompt (tool definitions, output schemas),
//! text hidden by Unicode tricks, and CEL rules that cannot stall other requests.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::tests::{exchange, pipeline, EMAIL, SECRET};
use crate::pipeline::testing::{exchange_on, send};
use crate::pipeline::{Adapter, Pipeline};
use crate::services::Services;

const GUARD: &str = r#"        promptGuard:
          request:
            rules:
            - { name: secrets, builtins: [openai_api_key], action: reject }
            - { name: pii, builtins: [email, phone], action: mask }
"#;

fn rejected(p: &Arc<Pipeline>, path: &str, body: serde_json::Value) -> bool {
    let mut ex = exchange(p, Adapter::Proxy, path);
    let body = body.to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    match rt.block_on(send(&mut ex, &[], body.as_bytes())) {
        Ok(sent) => {
            assert!(!String::from_utf8_lossy(&sent).contains(SECRET));
            false
        }
        Err(reply) => reply.status == 403,
    }
}

#[test]
fn secrets_in_definitions_a_model_reads_are_rejected() {
    let p = pipeline(GUARD);
    let chat = "/v1/chat/completions";
    let msg = serde_json::json!([{"role": "user", "content": "hi"}]);
    let cases = [
        (
            chat,
            serde_json::json!({"model": "m", "messages": msg,
            "tools": [{"type": "function", "function": {"name": "f", "description": format!("use {SECRET}")}}]}),
        ),
        (
            chat,
            serde_json::json!({"model": "m", "messages": msg,
            "tools": [{"type": "function", "function": {"name": "f",
                "parameters": {"type": "object", "properties": {"k": {"type": "string", "enum": [SECRET]}}}}}]}),
        ),
        (
            chat,
            serde_json::json!({"model": "m", "messages": msg,
            "response_format": {"type": "json_schema", "json_schema": {"name": "o",
                "schema": {"type": "object", "description": SECRET}}}}),
        ),
        (
            "/v1/messages",
            serde_json::json!({"model": "c", "max_tokens": 5, "messages": msg,
            "tools": [{"name": "t", "description": "x",
                "input_schema": {"type": "object", "properties": {"a": {"description": SECRET}}}}]}),
        ),
        (
            "/v1/responses",
            serde_json::json!({"model": "m", "input": "hi",
            "tools": [{"type": "function", "name": "f", "description": SECRET, "parameters": {}}]}),
        ),
        (
            "/v1/responses",
            serde_json::json!({"model": "m", "input": "hi",
            "text": {"format": {"type": "json_schema", "name": "o", "schema": {"description": SECRET}}}}),
        ),
    ];
    for (path, body) in cases {
        assert!(rejected(&p, path, body.clone()), "{path}: {body}");
    }
    // Hidden by a zero-width space in the prompt.
    let split = format!("{}\u{200B}{}", &SECRET[..9], &SECRET[9..]);
    let body = serde_json::json!({"model": "m", "messages": [{"role": "user", "content": split}]});
    assert!(rejected(&p, chat, body));
}

#[tokio::test]
async fn obfuscated_pii_is_masked_in_its_original_bytes_and_definitions_too() {
    let p = pipeline(GUARD);
    let fullwidth = EMAIL.replace('@', "＠");
    let body = serde_json::json!({"model": "m",
        "messages": [{"role": "user", "content": format!("mail {fullwidth}, call (268) 195-0446 — merci")}],
        "tools": [{"type": "function", "function": {"name": "notify",
            "description": format!("copies go to {EMAIL}"),
            "parameters": {"type": "object", "required": ["to"],
                "properties": {"to": {"type": "string", "format": "email"}}}}}]});
    let mut ex = exchange(&p, Adapter::Proxy, "/v1/chat/completions");
    let sent = send(&mut ex, &[], body.to_string().as_bytes())
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&sent).unwrap();
    assert_eq!(
        v["messages"][0]["content"],
        "mail <EMAIL>, call <PHONE> — merci"
    );
    let f = &v["tools"][0]["function"];
    assert_eq!(f["description"], "copies go to <EMAIL>");
    // The schema's vocabulary is left as it was.
    assert_eq!(f["parameters"]["required"][0], "to");
    assert_eq!(f["parameters"]["properties"]["to"]["format"], "email");
    assert_eq!(f["name"], "notify");
}

/// A route whose CEL rule does 400 `contains` calls on the prompt (seconds on a 1 MiB
/// prompt in a debug build), and a route beside it.
const HEAVY_AND_LIGHT: &str = r#"limits:
  cel: { maxComprehensionDepth: 2, evaluationTimeout: 60s }
binds:
- port: 1
  listeners:
  - routes:
    - name: heavy
      policies:
        promptGuard:
          request:
            rules:
            - name: slow
              cel: 'LIST.exists(a, LIST.exists(b, llm.prompt.contains("needle")))'
              action: reject
    - name: light
      policies:
        promptGuard:
          request:
            rules:
            - { name: pii, builtins: [email], action: mask }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_costly_cel_rule_does_not_delay_other_requests() {
    let list = format!("[{}]", vec!["0"; 20].join(","));
    let yaml = HEAVY_AND_LIGHT.replace("LIST", &list);
    let config = crate::config::parse_str(&yaml).unwrap();
    let p = Arc::new(Pipeline::build(config, Services::new()).unwrap());
    let prompt = "x".repeat(1 << 20);
    let body = serde_json::json!({"model": "m", "messages": [{"role": "user", "content": prompt}]})
        .to_string();
    // More heavy requests than there are workers.
    let heavy: Vec<_> = (0..3)
        .map(|_| {
            let (p, body) = (p.clone(), body.clone());
            tokio::spawn(async move {
                let mut ex =
                    exchange_on(&p, "heavy", Adapter::Proxy, "POST", "/v1/chat/completions");
                send(&mut ex, &[], body.as_bytes()).await.is_ok()
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let mut ex = exchange_on(&p, "light", Adapter::Proxy, "POST", "/v1/chat/completions");
    let light = format!(r#"{{"model":"m","messages":[{{"role":"user","content":"to {EMAIL}"}}]}}"#);
    let sent = send(&mut ex, &[], light.as_bytes()).await.unwrap();
    let took = started.elapsed();
    assert!(String::from_utf8_lossy(&sent).contains("<EMAIL>"));
    assert!(
        heavy.iter().any(|h| !h.is_finished()),
        "the heavy rules were meant to still be running"
    );
    // Generous: the heavy rules take seconds; a stalled worker would show as much.
    assert!(took < Duration::from_secs(2), "light request took {took:?}");
    for h in heavy {
        assert!(
            h.await.unwrap(),
            "the heavy rule finds nothing and passes in the end"
        );
    }
}

#[test]
fn cel_limits_are_config_errors_with_their_path() {
    let build = |yaml: &str| {
        let config = crate::config::parse_str(yaml).unwrap();
        Pipeline::build(config, Services::new())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    let route = |cel: &str| {
        format!(
            "binds:\n- port: 1\n  listeners:\n  - routes:\n    - name: llm\n      policies:\n        promptGuard:\n          request:\n            rules:\n            - {{ name: r, cel: '{cel}', action: reject }}\n"
        )
    };
    let err = build(&route("[1].all(a, [2].all(b, a == b))"));
    assert!(
        err.starts_with("binds[0].listeners[0].routes[0].policies.promptGuard.request.rules[0].cel: comprehensions nested 2 deep"),
        "{err}"
    );
    let long = format!("llm.model == \"{}\"", "m".repeat(5000));
    let err = build(&route(&long));
    assert!(err.contains("rules[0].cel: expression is"), "{err}");
    let err = build("limits: { cel: { maxConcurrentEvaluations: 0 } }\nbinds: []\n");
    assert!(
        err.starts_with("limits.cel.maxConcurrentEvaluations: must be at least 1"),
        "{err}"
    );
    let err = build("limits: { labels: { maxValueBytes: 2 } }\nbinds: []\n");
    assert!(
        err.starts_with("limits.labels.maxValueBytes: must be at least 8"),
        "{err}"
    );
}
