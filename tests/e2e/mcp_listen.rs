//! `subscriptions/listen` (MCP 2026-07-28) through the gateway: one listen request
//! opens a listen stream on each of two Python SDK 2.x servers; the client's stream
//! carries one acknowledgement, then every target's change notifications.

use serde_json::{json, Value};

use crate::support::client::{self, Req};
use crate::support::free_port;
use crate::support::mcp::{gateway_yaml, post, McpServer};
use crate::support::tollgate::Tollgate;

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
    let weather = McpServer::start_announcing("weather").await;
    let calendar = McpServer::start_announcing("calendar").await;
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
