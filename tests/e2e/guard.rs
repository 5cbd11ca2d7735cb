//! The prompt guard with real processes: the official `openai` and `anthropic` SDKs as
//! clients, through Envoy (STREAMED and FULL_DUPLEX_STREAMED) and through the standalone
//! proxy, against a scripted upstream that splits entities across SSE events.

use std::collections::HashMap;
use std::time::Duration;

use crate::support::client::{self, Req};
use crate::support::envoy::{Envoy, ListenerSpec, Mode};
use crate::support::guard::{python_sdk, split, ScriptedLlm};
use crate::support::scenario::Ports;
use crate::support::tollgate::Tollgate;
use crate::support::upstream::MockUpstream;
use crate::support::{eventually, metric};

const EMAIL: &str = "jane.doe+billing@example.co.uk";
const CARD: &str = "4111 1111 1111 1111";
const SECRET: &str = "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb7cDe0fGh";

fn config(ports: Ports, upstream: u16) -> String {
    format!(
        r#"extProc: {{ address: "127.0.0.1:{ext_proc}" }}
logging: {{ format: json }}
upstream: {{ connectTimeout: 1s, requestTimeout: 10s }}
binds:
- port: {proxy}
  listeners:
  - routes:
    - name: llm
      policies:
        tokenAccounting: {{}}
        promptGuard:
          request:
            rules:
            - {{ name: secrets, builtins: [openai_api_key, aws_access_key_id], action: reject }}
            - {{ name: pii, builtins: [email], action: mask }}
          response:
            rules:
            - {{ name: pii, builtins: [email, credit_card], action: mask }}
            - {{ name: keys, builtins: [openai_api_key], action: mask }}
            - {{ name: passwords, keywords: {{ words: [hunter2] }}, action: reject, message: "answer withheld" }}
      backends: [ {{ host: "127.0.0.1:{upstream}" }} ]
"#,
        ext_proc = ports.ext_proc,
        proxy = ports.proxy,
    )
}

/// Script name → the pieces the upstream streams.
type Scripts = HashMap<String, Vec<String>>;

/// The scripts: each entity in a sentence, split across two and three events; and what
/// the client must read.
fn scripts() -> (Scripts, Vec<(String, String)>) {
    let mut scripts = HashMap::new();
    let mut expect = Vec::new();
    for (kind, entity, placeholder) in [
        ("email", EMAIL, "<EMAIL>"),
        ("card", CARD, "<CREDIT_CARD>"),
        ("secret", SECRET, "<SECRET>"),
    ] {
        let text = format!("Sure: reach {entity} today.");
        for parts in [2, 3] {
            let name = format!("{kind}-{parts}");
            let pieces = split(&text, entity, parts);
            assert_eq!(pieces.concat(), text);
            scripts.insert(name.clone(), pieces);
            expect.push((name, text.replace(entity, placeholder)));
        }
    }
    scripts.insert(
        "password".into(),
        vec![
            "The password is hun".into(),
            "ter2, keep it".into(),
            " safe.".into(),
        ],
    );
    (scripts, expect)
}

struct Setup {
    upstream: ScriptedLlm,
    tollgate: Tollgate,
    envoy: Envoy,
    ports: Ports,
    expect: Vec<(String, String)>,
}

async fn setup() -> Setup {
    let (scripts, expect) = scripts();
    let upstream = ScriptedLlm::start(scripts).await;
    let ports = Ports::free();
    let tollgate = Tollgate::start(&config(ports, upstream.port)).await;
    let envoy = Envoy::start(&[
        ListenerSpec::new(ports.ext_proc, upstream.port, Mode::Streamed),
        ListenerSpec::new(ports.ext_proc, upstream.port, Mode::FullDuplex),
    ])
    .await;
    Setup {
        upstream,
        tollgate,
        envoy,
        ports,
        expect,
    }
}

impl Setup {
    /// `(name, port)` of every way in: the proxy, Envoy STREAMED, Envoy FULL_DUPLEX.
    fn ways(&self) -> [(&'static str, u16); 3] {
        [
            ("proxy", self.ports.proxy),
            ("envoy-streamed", self.envoy.port(0)),
            ("envoy-full-duplex", self.envoy.port(1)),
        ]
    }
}

fn sdk_args(port: u16, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "--base-url".to_string(),
        format!("http://127.0.0.1:{port}/v1"),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Runs SDK invocations a few at a time (each starts a Python process).
async fn run_sdk(script: &'static str, jobs: Vec<Vec<String>>) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for batch in jobs.chunks(4) {
        let handles: Vec<_> = batch
            .iter()
            .cloned()
            .map(|args| tokio::task::spawn_blocking(move || python_sdk(script, &args)))
            .collect();
        for h in handles {
            out.push(h.await.expect("SDK task"));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_completions_reach_the_openai_sdk_masked_through_envoy_and_the_proxy() {
    let s = setup().await;
    let mut jobs = Vec::new();
    let mut want = Vec::new();
    for (way, port) in s.ways() {
        for (script, text) in &s.expect {
            let id = format!("{way}-{script}");
            jobs.push(sdk_args(
                port,
                &[
                    "--stream",
                    "--header",
                    &format!("x-script={script}"),
                    "--header",
                    &format!("x-test-id={id}"),
                ],
            ));
            want.push((id, text.clone()));
        }
        // A JSON (non-streamed) completion is masked too.
        jobs.push(sdk_args(port, &["--header", "x-script=card-2"]));
        want.push((
            format!("{way}-json"),
            "Sure: reach <CREDIT_CARD> today.".into(),
        ));
    }
    let results = run_sdk("openai_client.py", jobs).await;
    for ((id, text), got) in want.iter().zip(&results) {
        assert_eq!(got["text"], text.as_str(), "{id}: {got}");
    }
    let metrics = eventually("guard findings in /metrics", Duration::from_secs(5), || async {
        let m = s.tollgate.metrics().await;
        let n = metric(
            &m,
            r#"tollgate_guard_findings_total{route="llm",side="response",rule="pii",action="mask"}"#,
        )?;
        (n >= 12.0).then_some(m)
    })
    .await;
    // Rule names and counts only: no entity in the metrics or the log.
    for entity in [EMAIL, CARD, SECRET, "jane.doe"] {
        assert!(!metrics.contains(entity));
        assert!(!s.tollgate.log().contains(entity), "{entity} in the log");
    }
    assert!(s.tollgate.log().contains("prompt guard findings"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_anthropic_answer_reaches_the_anthropic_sdk_masked() {
    let s = setup().await;
    for (way, port) in [("proxy", s.ports.proxy), ("envoy", s.envoy.port(0))] {
        let got = tokio::task::spawn_blocking(move || {
            python_sdk(
                "anthropic_client.py",
                &[
                    format!("--base-url=http://127.0.0.1:{port}"),
                    "--stream".into(),
                    "--header".into(),
                    "x-script=email-3".into(),
                ],
            )
        })
        .await
        .unwrap();
        assert_eq!(got["text"], "Sure: reach <EMAIL> today.", "{way}: {got}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_prompt_never_reaches_the_upstream() {
    let s = setup().await;
    let prompt = format!("--prompt=Use my key {SECRET} please");
    let mut jobs = Vec::new();
    for (way, port) in s.ways() {
        jobs.push(sdk_args(
            port,
            &[&prompt, "--header", &format!("x-test-id=reject-{way}")],
        ));
    }
    let results = run_sdk("openai_client.py", jobs).await;
    for ((way, _), got) in s.ways().iter().zip(&results) {
        let error = &got["error"];
        assert_eq!(error["status"], 403, "{way}: {got}");
        let body = &error["body"];
        let code = body
            .get("code")
            .or_else(|| body.pointer("/error/code"))
            .cloned();
        assert_eq!(code, Some("prompt_rejected".into()), "{way}: {got}");
        assert!(!got.to_string().contains("sk-proj"), "{way}: {got}");
        assert!(
            s.upstream.requests_for(&format!("reject-{way}")).is_empty(),
            "{way}: the upstream received the rejected prompt"
        );
    }
    // Anthropic clients get Anthropic's error shape.
    let body = r#"{"model":"claude","max_tokens":5,"messages":[{"role":"user","content":"AKIAIOSFODNN7EXAMPLE"}]}"#;
    for (way, port) in s.ways() {
        let reply = client::must(
            port,
            Req::post("/v1/messages", body).header("x-test-id", &format!("ant-{way}")),
        )
        .await;
        assert_eq!(reply.status, 403, "{way}");
        assert_eq!(reply.json()["error"]["type"], "permission_error", "{way}");
        assert!(s.upstream.requests_for(&format!("ant-{way}")).is_empty());
    }
    // A masked prompt goes upstream masked.
    for (way, port) in s.ways() {
        let id = format!("mask-{way}");
        let body = format!(
            r#"{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"mail {EMAIL} now"}}]}}"#
        );
        let reply = client::must(
            port,
            Req::post("/v1/chat/completions", body).header("x-test-id", &id),
        )
        .await;
        assert_eq!(reply.status, 200, "{way}: {}", reply.text());
        let seen = s.upstream.requests_for(&id);
        assert_eq!(seen.len(), 1, "{way}");
        let sent: serde_json::Value = serde_json::from_slice(&seen[0].body).unwrap();
        assert_eq!(sent["messages"][0]["content"], "mail <EMAIL> now", "{way}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reject_mid_stream_ends_the_stream_with_an_error_event() {
    let s = setup().await;
    let body =
        r#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    for (way, port) in s.ways() {
        let req = Req::post("/v1/chat/completions", body).header("x-script", "password");
        let mut stream = client::open(port, req).await.unwrap();
        assert_eq!(stream.status, 200, "{way}");
        let events = stream
            .all_events()
            .await
            .unwrap_or_else(|e| panic!("{way}: {e}"));
        let all: Vec<&str> = events.iter().map(|e| e.data.as_str()).collect();
        let joined = all.join("\n");
        assert!(
            !joined.contains("hunter2") && !joined.contains("ter2"),
            "{way}: {joined}"
        );
        let last: serde_json::Value = serde_json::from_str(all.last().unwrap()).unwrap();
        assert_eq!(
            last["error"]["code"], "response_rejected",
            "{way}: {joined}"
        );
        assert_eq!(last["error"]["message"], "answer withheld", "{way}");
        assert!(!joined.contains("[DONE]"), "{way}: nothing after the error");
    }
}

// === hardening: what the guard reads, Unicode tricks, bounded labels (standalone proxy) ===

fn proxy_config(port: u16, upstream: u16) -> String {
    format!(
        r#"logging: {{ format: json }}
upstream: {{ connectTimeout: 1s, requestTimeout: 10s }}
binds:
- port: {port}
  listeners:
  - routes:
    - name: llm
      policies:
        tokenAccounting: {{}}
        promptGuard:
          request:
            rules:
            - {{ name: secrets, builtins: [openai_api_key], action: reject }}
            - {{ name: pii, builtins: [email], action: mask }}
      backends: [ {{ host: "127.0.0.1:{upstream}" }} ]
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_in_definitions_or_hidden_by_unicode_never_reach_the_upstream() {
    let upstream = MockUpstream::start().await;
    let port = crate::support::free_port();
    let _tollgate = Tollgate::start(&proxy_config(port, upstream.port)).await;
    let msg = serde_json::json!([{"role": "user", "content": "hi"}]);
    let split = format!("key {}\u{200B}{}", &SECRET[..9], &SECRET[9..]);
    let cases = [
        (
            "tool-description",
            serde_json::json!({"model": "m", "messages": msg,
            "tools": [{"type": "function", "function": {"name": "f", "description": SECRET}}]}),
        ),
        (
            "response-schema",
            serde_json::json!({"model": "m", "messages": msg,
            "response_format": {"type": "json_schema", "json_schema": {"name": "o",
                "schema": {"type": "object", "properties": {"a": {"type": "string", "description": SECRET}}}}}}),
        ),
        (
            "zero-width",
            serde_json::json!({"model": "m",
            "messages": [{"role": "user", "content": split}]}),
        ),
    ];
    for (id, body) in cases {
        let req = Req::post("/v1/chat/completions", body.to_string()).header("x-test-id", id);
        let reply = client::must(port, req).await;
        assert_eq!(reply.status, 403, "{id}: {}", reply.text());
        assert_eq!(reply.json()["error"]["code"], "prompt_rejected", "{id}");
        assert!(!reply.text().contains("sk-proj"), "{id}");
    }
    let fullwidth = EMAIL.replace('@', "＠");
    let body = serde_json::json!({"model": "m",
        "messages": [{"role": "user", "content": format!("write to {fullwidth} — merci")}]});
    let req = Req::post("/v1/chat/completions", body.to_string()).header("x-test-id", "fullwidth");
    let reply = client::must(port, req).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let seen = upstream.requests();
    assert_eq!(seen.len(), 1, "only the masked request went upstream");
    let sent: serde_json::Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(sent["messages"][0]["content"], "write to <EMAIL> — merci");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_stay_bounded_after_thousands_of_models_and_a_huge_one() {
    let upstream = MockUpstream::start().await;
    let port = crate::support::free_port();
    let tollgate = Tollgate::start(&proxy_config(port, upstream.port)).await;
    let chat = |model: &str| {
        let body =
            serde_json::json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
        Req::post("/v1/chat/completions", body.to_string())
    };
    let huge = "m".repeat(1 << 20);
    assert_eq!(client::must(port, chat(&huge)).await.status, 200);
    let one = tollgate.metrics().await.len();
    assert!(one < 200_000, "one model: {one} bytes of /metrics");
    assert!(!tollgate.metrics().await.contains(&"m".repeat(129)));
    // 5,000 distinct names, 16 at a time.
    let names: Vec<String> = (0..5000).map(|i| format!("model-{i}")).collect();
    for batch in names.chunks(16) {
        let sends = batch.iter().map(|m| client::must(port, chat(m)));
        for reply in futures::future::join_all(sends).await {
            assert_eq!(reply.status, 200);
        }
    }
    let text = tollgate.metrics().await;
    let models: std::collections::HashSet<&str> = text
        .lines()
        .filter_map(|l| l.split("gen_ai_request_model=\"").nth(1))
        .filter_map(|rest| rest.split('"').next())
        .collect();
    assert!(
        models.contains("other"),
        "names past the bound count as other"
    );
    assert!(
        models.len() <= 257,
        "{} distinct model labels",
        models.len()
    );
    assert!(models.iter().all(|m| m.len() <= 128));
    assert!(
        text.len() < 300 * one,
        "/metrics grew to {} bytes from {one}",
        text.len()
    );
    // The access log carries the name cut too.
    eventually("access lines", Duration::from_secs(5), || async {
        tollgate.log().contains("model-4999").then_some(())
    })
    .await;
    assert!(!tollgate.log().contains(&"m".repeat(129)));
}
