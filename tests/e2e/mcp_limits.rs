//! Tool-call limits end to end: two tollgate replicas share one Redis counter; the
//! official Python SDK client gets the refused call as an `McpError` (JSON-RPC -32000)
//! and goes on using its session.

use serde_json::{json, Value};

use crate::support::free_port;
use crate::support::mcp::{gateway_yaml, run_clients, McpServer, Sdk};
use crate::support::metric;
use crate::support::redis::RedisServer;
use crate::support::tollgate::Tollgate;

const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";

async fn replica(servers: &[&McpServer], redis: &RedisServer) -> (Tollgate, u16) {
    let port = free_port();
    let policies = "      policies:\n        mcpToolLimit:\n          store: redis\n          limits:\n          - {name: echoes, callsPerMinute: 3, tools: [weather__echo]}\n";
    let mcp = gateway_yaml(
        port,
        servers,
        "        session: {keys: [\"${MCP_SESSION_KEY}\"]}\n",
    )
    .replace("      mcp:\n", &format!("{policies}      mcp:\n"));
    let yaml = format!("llm:\n  redis: {{url: \"{}\"}}\n{mcp}", redis.url());
    let tollgate = Tollgate::start_with_env(&yaml, &[("MCP_SESSION_KEY", KEY)]).await;
    (tollgate, port)
}

fn job(port: u16, calls: &[&str]) -> Value {
    let calls: Vec<Value> = calls
        .iter()
        .map(|n| {
            let arguments = if n.ends_with("echo") {
                json!({"text": "hi"})
            } else {
                json!({})
            };
            json!({"name": n, "arguments": arguments})
        })
        .collect();
    json!({"sdk": "1", "url": format!("http://127.0.0.1:{port}/mcp"), "calls": calls})
}

#[tokio::test]
async fn replicas_share_a_tool_call_limit_and_the_sdk_raises_the_refusal() {
    let redis = RedisServer::start();
    let weather = McpServer::start(Sdk::V1, "weather", false).await;
    let calendar = McpServer::start(Sdk::V1, "calendar", true).await;
    let (_a, port_a) = replica(&[&weather, &calendar], &redis).await;
    let (b, port_b) = replica(&[&weather, &calendar], &redis).await;

    let first = run_clients(
        Sdk::V1,
        vec![job(port_a, &["weather__echo", "weather__echo"])],
    )
    .await;
    let calls = &first[0]["calls"];
    assert_eq!(
        (&calls[0]["text"], &calls[1]["text"]),
        (&json!("weather:hi"), &json!("weather:hi")),
        "{first:?}"
    );

    let jobs = vec![job(
        port_b,
        &["weather__echo", "weather__echo", "calendar__calendar_only"],
    )];
    let second = run_clients(Sdk::V1, jobs).await;
    let calls = &second[0]["calls"];
    assert_eq!(calls[0]["text"], "weather:hi", "{second:?}");
    assert_eq!(calls[1]["error"]["code"], -32000, "{second:?}");
    let message = calls[1]["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with(
            "tool call limit \"echoes\" reached (3 calls per minute, 0 left); retry in"
        ),
        "{message}"
    );
    // The session goes on: a tool no rule limits still answers.
    assert_eq!(calls[2]["text"], "calendar", "{second:?}");

    let keys = redis.keys("tollgate:mcp:tools:echoes:*").await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    let denied = "tollgate_mcp_tool_limit_decisions_total{route=\"tools\",limit=\"echoes\",decision=\"denied\"}";
    assert_eq!(metric(&b.metrics().await, denied), Some(1.0));
}
