//! agentgateway's reference config (`tests/fixtures/agentgateway-reference.yaml`, a copy
//! of the shared reference) run by `tollgate serve` with its addresses moved to loopback
//! ports, `hostOverride` at a local TLS upstream, and `backendTLS` given that upstream's
//! CA (the file's `{}` trusts the web roots). The upstream gets what agentgateway sends:
//! the model overridden, the provider key injected, the host rewritten, over TLS; the
//! MCP route answers CORS preflights; the access line carries the file's CEL
//! `logging.fields`; the provider key and the caller's token are in no log line.

use crate::support::client::{self, Req};
use crate::support::tls::{localhost_cert, tls_front};
use crate::support::tollgate::Tollgate;
use crate::support::upstream::MockUpstream;
use crate::support::{free_port, repo_root};

/// The reference file with each `(from, to)` replaced; every `from` must be there.
fn reference(replacements: &[(&str, String)]) -> String {
    let path = repo_root().join("tests/fixtures/agentgateway-reference.yaml");
    let mut text = std::fs::read_to_string(path).expect("the reference config");
    for (from, to) in replacements {
        assert!(text.contains(from), "{from} not in the reference file");
        text = text.replace(from, to);
    }
    text
}

#[tokio::test]
async fn the_reference_file_sends_what_agentgateway_sends() {
    let upstream = MockUpstream::start().await;
    // The "provider": a TLS bind of a second tollgate in front of the mock upstream.
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = localhost_cert(dir.path());
    let provider = free_port();
    let _provider = tls_front(provider, &cert, &key, upstream.port).await;

    let (ai, mcp, admin) = (free_port(), free_port(), free_port());
    let yaml = reference(&[
        ("port: 3100", format!("port: {ai}")),
        ("port: 3101", format!("port: {mcp}")),
        ("\"0.0.0.0:15000\"", format!("\"127.0.0.1:{admin}\"")),
        ("127.0.0.1:18123", format!("127.0.0.1:{}", free_port())),
        ("127.0.0.1:4317", format!("127.0.0.1:{}", free_port())),
        (
            "hostOverride: dashscope.aliyuncs.com:443",
            format!("hostOverride: localhost:{provider}"),
        ),
        (
            "backendTLS: {}",
            format!("backendTLS: {{ root: {} }}", cert.display()),
        ),
    ]);
    let gateway = Tollgate::start_exact(&yaml, admin).await;

    let chat =
        r#"{"model":"gpt-4o","temperature":0.5,"messages":[{"role":"user","content":"hello"}]}"#;
    let reply = client::must(
        ai,
        Req::post("/compatible-mode/v1/chat/completions", chat)
            .header("authorization", "Bearer client-token")
            .header("x-test-id", "agw-chat"),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let seen = upstream.request("agw-chat");
    assert_eq!(seen.path, "/compatible-mode/v1/chat/completions");
    assert_eq!(
        seen.header("host").as_deref(),
        Some("dashscope.aliyuncs.com")
    );
    assert_eq!(
        seen.header("authorization").as_deref(),
        Some("Bearer sk-abc")
    );
    let body: serde_json::Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(body["model"], "qwen-plus", "the provider's model");
    assert_eq!(body["messages"][0]["content"], "hello");

    // `passthrough`: the body goes as it came.
    let models = client::must(
        ai,
        Req::get("/compatible-mode/v1/models").header("x-test-id", "agw-models"),
    )
    .await;
    assert_eq!(models.status, 200, "{}", models.text());
    let seen = upstream.request("agw-models");
    assert_eq!(seen.path, "/compatible-mode/v1/models");
    assert_eq!(
        seen.header("authorization").as_deref(),
        Some("Bearer sk-abc")
    );

    // The MCP route answers a browser's preflight itself.
    let preflight = client::must(
        mcp,
        Req {
            method: "OPTIONS".into(),
            ..Req::get("/mcp")
        }
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "mcp-protocol-version"),
    )
    .await;
    assert_eq!(preflight.status, 200, "{}", preflight.text());
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some("https://app.example.com"),
        "allowOrigins `*` allows it; the origin is echoed"
    );
    assert!(preflight
        .header("access-control-allow-headers")
        .is_some_and(|h| h.contains("mcp-protocol-version")));

    let log = gateway.log();
    assert!(
        log.contains("config.tracing.fields: known agentgateway key"),
        "{log}"
    );
    // `config.logging.fields`: the CEL fields are on the chat's access line, the
    // caller's credential is redacted even though a field selects all request headers.
    let line = log
        .lines()
        .find(|l| l.contains("tollgate::access") && l.contains("agw-chat"))
        .unwrap_or_else(|| panic!("no access line for the chat:\n{log}"));
    for field in [
        r#"span.name="openai.chat""#,
        r#"llm.system="openai""#,
        "llm.params.temperature=0.5",
        r#"llm.input_messages.0.message.content="hello""#,
        r#"gen_ai.prompt.0.role="user""#,
        r#""authorization":"<redacted>""#,
        r#"request.body="{\"messages\""#,
    ] {
        assert!(
            line.contains(field),
            "{field} not in the access line:\n{line}"
        );
    }
    for secret in ["sk-abc", "client-token"] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
}
