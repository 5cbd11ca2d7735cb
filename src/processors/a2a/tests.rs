use serde_json::{json, Value};

use super::rewrite_card;
use crate::pipeline::testing::{build_error, exchange_at, receive, send};
use crate::pipeline::Outcome;

const YAML: &str = "binds:\n- port: 1\n  listeners:\n  - routes:\n    - name: agent\n      policies:\n        a2a: {}\n";

fn card() -> Value {
    json!({"name": "travel", "url": "http://10.0.0.7:9999/", "skills": [{"id": "book"}],
           "additionalInterfaces": [{"url": "http://10.0.0.7:9999/", "transport": "JSONRPC"},
                                    {"url": "grpc://10.0.0.7:9000", "transport": "GRPC"}]})
}

#[tokio::test]
async fn cards_point_at_the_gateway() {
    let mut ex = exchange_at(YAML, "GET", "/agents/travel/.well-known/agent-card.json");
    send(&mut ex, &[], b"").await.unwrap();
    let out = receive(
        &mut ex,
        "application/json",
        &[card().to_string().as_bytes()],
    )
    .await
    .unwrap();
    let out: Value = serde_json::from_slice(&out).unwrap();
    let gateway = "http://api.test/agents/travel";
    assert_eq!(out["url"], gateway);
    assert_eq!(out["additionalInterfaces"][0]["url"], gateway);
    assert_eq!(
        out["additionalInterfaces"][1]["url"],
        "grpc://10.0.0.7:9000"
    );
    assert_eq!(out["skills"], json!([{"id": "book"}]));

    let yaml = YAML.replace(
        "a2a: {}",
        "a2a: {publicUrl: 'https://agents.example.com/travel'}",
    );
    let mut ex = exchange_at(&yaml, "GET", "/.well-known/agent.json");
    send(&mut ex, &[], b"").await.unwrap();
    let out = receive(
        &mut ex,
        "application/json",
        &[card().to_string().as_bytes()],
    )
    .await
    .unwrap();
    let out: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(out["url"], "https://agents.example.com/travel");
}

#[test]
fn a_card_without_a_url_or_not_json_is_left_alone() {
    assert_eq!(rewrite_card(br#"{"name":"x"}"#, "http://g"), None);
    assert_eq!(rewrite_card(b"not json", "http://g"), None);
}

#[tokio::test]
async fn requests_are_counted_by_method() {
    let mut ex = exchange_at(YAML, "POST", "/agents/travel");
    let body =
        json!({"jsonrpc": "2.0", "id": 1, "method": "tasks/get", "params": {"id": "task-9"}});
    let sent = send(
        &mut ex,
        &[("content-type", "application/json")],
        body.to_string().as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(sent, body.to_string(), "the request passes unchanged");
    receive(&mut ex, "application/json", &[b"{}"])
        .await
        .unwrap();
    ex.finish(Outcome::Completed { status: 200 });
    let text = ex.pipeline().metrics.encode();
    let line = r#"tollgate_a2a_requests_total{route="agent",method="tasks/get"} 1"#;
    assert!(text.contains(line), "{text}");
    let timed =
        r#"tollgate_a2a_request_duration_seconds_count{route="agent",method="tasks/get"} 1"#;
    assert!(text.contains(timed), "{text}");
}

#[test]
fn a_public_url_must_be_absolute() {
    let yaml = YAML.replace("a2a: {}", "a2a: {publicUrl: agents.example.com}");
    let err = build_error(&yaml);
    assert!(
        err.contains(
            "routes[0].policies.a2a.publicUrl: \"agents.example.com\" must be an absolute"
        ),
        "{err}"
    );
}
