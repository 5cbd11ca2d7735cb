//! OTLP traces: tollgate's spans reach an OTLP receiver written with OpenTelemetry's own
//! protocol stubs (Python, `opentelemetry-proto`), over gRPC and over HTTP. A chat
//! request with a client `traceparent` gets a span under the client's, carrying the
//! GenAI attributes (operation, provider, models, token usage) and no secret; the
//! upstream gets a `traceparent` naming tollgate's span; a client's unsampled trace
//! exports nothing.

use std::time::Duration;

use serde_json::Value;

use crate::support::client::{self, Req};
use crate::support::eventually;
use crate::support::free_port;
use crate::support::py_server::PyServer;
use crate::support::tollgate::Tollgate;
use crate::support::upstream::MockUpstream;

const PARENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN: &str = "00f067aa0ba902b7";

fn config(port: u16, upstream: u16, endpoint: &str, protocol: &str) -> String {
    format!(
        r#"tracing: {{ otlpEndpoint: "{endpoint}", otlpProtocol: {protocol} }}
binds:
- port: {port}
  listeners:
  - routes:
    - name: chat
      policies: {{ tokenAccounting: {{}} }}
      backends: [ {{ host: "127.0.0.1:{upstream}" }} ]
"#
    )
}

/// The spans the receiver wrote so far.
fn spans(out: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

async fn span_named(out: &std::path::Path, name: &str) -> Value {
    eventually(
        &format!("a span {name:?}"),
        Duration::from_secs(15),
        || async { spans(out).into_iter().find(|s| s["name"] == name) },
    )
    .await
}

fn chat(model: &str, traceparent: Option<&str>) -> Req {
    let body = format!(
        r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}],"max_tokens":50}}"#
    );
    let req = Req::post("/v1/chat/completions", body)
        .header("authorization", "Bearer sk-client-secret")
        .header("x-test-id", model);
    match traceparent {
        Some(tp) => req.header("traceparent", tp),
        None => req,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_an_otlp_receiver_over_grpc_and_http() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("spans.jsonl");
    let receiver = PyServer::start("otlp_receiver.py", &["--out", out.to_str().unwrap()]).await;
    let (grpc, http) = (receiver.ports[0], receiver.ports[1]);
    let upstream = MockUpstream::start().await;
    let (p1, p2) = (free_port(), free_port());
    let _over_grpc = Tollgate::start(&config(
        p1,
        upstream.port,
        &format!("http://127.0.0.1:{grpc}"),
        "grpc",
    ))
    .await;
    let _over_http = Tollgate::start(&config(
        p2,
        upstream.port,
        &format!("http://127.0.0.1:{http}"),
        "http",
    ))
    .await;

    // A client that says "not sampled": nothing is exported, the upstream is told so.
    let unsampled = format!("00-{PARENT_TRACE}-{PARENT_SPAN}-00");
    assert_eq!(
        client::must(p1, chat("m-unsampled", Some(&unsampled)))
            .await
            .status,
        200
    );
    let tp = upstream
        .request("m-unsampled")
        .header("traceparent")
        .unwrap();
    assert!(
        tp.starts_with(&format!("00-{PARENT_TRACE}-")) && tp.ends_with("-00"),
        "{tp}"
    );

    // A sampled client trace: tollgate's span is its child, and the upstream's parent.
    let sampled = format!("00-{PARENT_TRACE}-{PARENT_SPAN}-01");
    assert_eq!(
        client::must(p1, chat("m-grpc", Some(&sampled)))
            .await
            .status,
        200
    );
    let span = span_named(&out, "chat m-grpc").await;
    assert_eq!(span["protocol"], "grpc");
    assert_eq!(span["service"], "tollgate");
    assert_eq!(span["trace_id"], PARENT_TRACE);
    assert_eq!(span["parent_span_id"], PARENT_SPAN);
    assert_eq!(span["kind"], 3, "SPAN_KIND_CLIENT");
    let tp = upstream.request("m-grpc").header("traceparent").unwrap();
    assert_eq!(
        tp,
        format!("00-{PARENT_TRACE}-{}-01", span["span_id"].as_str().unwrap()),
        "the upstream's parent is tollgate's span"
    );
    let a = &span["attributes"];
    assert_eq!(a["gen_ai.operation.name"], "chat");
    assert_eq!(a["gen_ai.provider.name"], "openai");
    assert_eq!(a["gen_ai.request.model"], "m-grpc");
    assert_eq!(a["gen_ai.response.model"], "m-grpc");
    assert_eq!(a["gen_ai.request.max_tokens"], 50);
    assert_eq!(
        a["gen_ai.usage.input_tokens"], 12,
        "the mock's prompt tokens"
    );
    assert_eq!(a["gen_ai.usage.output_tokens"], 3);
    assert_eq!(a["http.response.status_code"], 200);
    assert_eq!(a["url.path"], "/v1/chat/completions");
    assert_eq!(a["tollgate.route"], "chat");
    let text = serde_json::to_string(&spans(&out)).unwrap();
    assert!(!text.contains("sk-client-secret"), "no secret in any span");

    // Over HTTP, without a client trace: a root span, its trace the upstream's.
    assert_eq!(client::must(p2, chat("m-http", None)).await.status, 200);
    let span = span_named(&out, "chat m-http").await;
    assert_eq!(span["protocol"], "http");
    assert_eq!(span["parent_span_id"], "");
    let tp = upstream.request("m-http").header("traceparent").unwrap();
    assert!(tp.contains(span["trace_id"].as_str().unwrap()), "{tp}");
    assert!(
        spans(&out).iter().all(|s| s["name"] != "chat m-unsampled"),
        "the unsampled exchange exported no span"
    );
}
