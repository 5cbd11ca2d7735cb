//! The MCP 2026-07-28 era through the gateway, against Python SDK 2.x servers: a tool
//! that needs the user's input answers `InputRequiredResult`, and the SDK's client
//! answers by calling again (routed by the same prefixed name, state carried by the
//! client); one `subscriptions/listen` request opens a listen stream on each target,
//! and the client's stream carries one acknowledgement, then every target's change
//! notifications.

use serde_json::{json, Value};

use crate::support::client::{self, Req};
use crate::support::mcp::{gateway_yaml, post, run_clients, McpServer, Sdk};
use crate::support::tollgate::Tollgate;
use crate::support::{free_port, metric};

const V: &str = "2026-07-28";

/// A 2026-07-28 request through the gateway (`name`: its `Mcp-Name`).
fn modern(id: u64, method: &str, name: Option<&str>, mut params: Value) -> Req {
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": V,
        "io.modelcontextprotocol/clientCapabilities": {},
    });
    let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    let mut req = post(&body.to_string())
        .header("mcp-protocol-version", V)
        .header("mcp-method", method);
    if let Some(name) = name {
        req = req.header("mcp-name", name);
    }
    req
}

#[tokio::test]
async fn one_listen_stream_carries_every_targets_changes() {
    let weather = McpServer::start_asking_v2("weather").await;
    let calendar = McpServer::start_asking_v2("calendar").await;
    let port = free_port();
    let _tollgate = Tollgate::start(&gateway_yaml(port, &[&weather, &calendar], "")).await;
    let filter = json!({"notifications": {"toolsListChanged": true}});
    let listen = modern(7, "subscriptions/listen", None, filter);
    let mut stream = client::open(port, listen).await.expect("the listen stream");
    assert_eq!(stream.status, 200);
    let first = stream
        .next_event()
        .await
        .unwrap()
        .expect("an acknowledgement");
    let ack: Value = serde_json::from_str(&first.data).unwrap();
    assert_eq!(
        ack["method"], "notifications/subscriptions/acknowledged",
        "{ack}"
    );
    assert_eq!(
        ack["params"]["notifications"]["toolsListChanged"], true,
        "{ack}"
    );
    assert_eq!(
        ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], 7,
        "{ack}"
    );
    for target in ["weather", "calendar"] {
        let name = format!("{target}__announce");
        let call = modern(
            8,
            "tools/call",
            Some(&name),
            json!({"name": name, "arguments": {}}),
        );
        let answer = client::must(port, call).await;
        assert_eq!(answer.status, 200, "{}", answer.text());
        let text = answer.json()["result"]["content"][0]["text"].clone();
        assert_eq!(text, format!("{target} announced"));
        let event = stream.next_event().await.unwrap().expect("a change");
        let change: Value = serde_json::from_str(&event.data).unwrap();
        assert_eq!(
            change["method"], "notifications/tools/list_changed",
            "{change}"
        );
    }
}

#[tokio::test]
async fn input_required_results_are_answered_through_the_gateway() {
    let weather = McpServer::start_asking_v2("weather").await;
    let calendar = McpServer::start_asking_v2("calendar").await;
    let port = free_port();
    let tollgate = Tollgate::start(&gateway_yaml(port, &[&weather, &calendar], "")).await;
    let calls = json!([
        {"name": "weather__ask", "arguments": {"question": "rain?"}},
        {"name": "calendar__ask", "arguments": {"question": "book it?"}},
    ]);
    let job = json!({"sdk": "2", "url": format!("http://127.0.0.1:{port}/mcp"),
                     "calls": calls, "answers": true});
    let results = run_clients(Sdk::V2, vec![job]).await;
    assert_eq!(results[0]["protocol_version"], V, "{}", results[0]);
    assert_eq!(
        results[0]["calls"],
        json!([
            {"text": "weather heard yes to rain?", "is_error": false},
            {"text": "calendar heard yes to book it?", "is_error": false},
        ]),
        "{}",
        results[0]
    );
    // Each target was called twice: the call, then the call again with the answer.
    let metrics = tollgate.metrics().await;
    for target in ["weather", "calendar"] {
        let calls = format!("tollgate_mcp_target_calls_total{{route=\"tools\",target=\"{target}\",method=\"tools/call\",result=\"ok\"}}");
        assert_eq!(metric(&metrics, &calls), Some(2.0), "{metrics}");
    }
}
