//! Server→client requests through the MCP gateway: Python SDK 1.x servers whose tools
//! elicit from the user and ask the client's model, behind one gateway endpoint, and the
//! SDK's client answering them; each answer must reach the target that asked, whether
//! the request came on the call's stream or on the client's GET stream, which merges
//! every target's.

use serde_json::json;

use crate::support::free_port;
use crate::support::mcp::{gateway_yaml, run_clients, McpServer, Sdk};
use crate::support::tollgate::Tollgate;

#[tokio::test]
async fn elicitations_and_samplings_are_answered_by_the_client_through_the_gateway() {
    relay_both_ways("").await;
}

/// The same with `mcp.direct`: the standalone proxy carries the calls `mcp_router`
/// planned for their targets, and the router tags their streams' server requests.
#[tokio::test]
async fn with_direct_calls_the_proxy_carries_the_plan() {
    relay_both_ways("        direct: {}\n").await;
}

async fn relay_both_ways(extra: &str) {
    let weather = McpServer::start_asking("weather").await;
    let calendar = McpServer::start_asking("calendar").await;
    let port = free_port();
    let _tollgate = Tollgate::start(&gateway_yaml(port, &[&weather, &calendar], extra)).await;
    let calls = json!([
        {"name": "weather__ask", "arguments": {"question": "rain?"}},
        {"name": "calendar__sample", "arguments": {"prompt": "free slots"}},
        {"name": "calendar__ask", "arguments": {"question": "book it?"}},
        {"name": "weather__sample", "arguments": {"prompt": "forecast"}},
        {"name": "calendar__ask", "arguments": {"question": "later?", "standalone": true}},
        {"name": "weather__announce", "arguments": {}},
        {"name": "calendar__announce", "arguments": {}},
    ]);
    let job = json!({"sdk": "1", "url": format!("http://127.0.0.1:{port}/mcp"),
                     "calls": calls, "answers": true});
    let results = run_clients(Sdk::V1, vec![job]).await;
    let texts: Vec<&str> = results[0]["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["text"].as_str().unwrap_or_else(|| panic!("{c}")))
        .collect();
    assert_eq!(
        texts,
        [
            "weather heard yes to rain?",
            "calendar sampled model says free slots",
            "calendar heard yes to book it?",
            "weather sampled model says forecast",
            "calendar heard yes to later?",
            "weather announced",
            "calendar announced",
        ]
    );
    // Both targets' notifications on their GET streams reached the client's one stream.
    let changed = results[0]["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| *m == "notifications/tools/list_changed")
        .count();
    assert_eq!(changed, 2, "{}", results[0]);
}
