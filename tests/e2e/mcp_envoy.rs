//! The MCP gateway behind a real Envoy, with `deploy/envoy/tollgate-mcp-gateway.yaml` as
//! shipped (ports changed): the official Python SDK clients (1.x and 2.x) talk to Envoy;
//! every MCP message, the merged GET stream and the server requests relayed over it
//! included, passes through Envoy to tollgate's MCP listener and on to the targets.

use serde_json::json;

use crate::support::envoy::Envoy;
use crate::support::mcp::{gateway_yaml, run_clients, McpServer, Sdk};
use crate::support::tollgate::Tollgate;
use crate::support::{free_port, repo_root};

/// The shipped Envoy config with its listener, admin and tollgate ports replaced.
async fn envoy_for(tollgate_port: u16) -> Envoy {
    let shipped =
        std::fs::read_to_string(repo_root().join("deploy/envoy/tollgate-mcp-gateway.yaml"))
            .expect("deploy/envoy/tollgate-mcp-gateway.yaml");
    Envoy::start_with(1, |admin, ports, _log| {
        let replace = |yaml: String, from: &str, to: u16| {
            assert!(yaml.contains(from), "{from} not in the shipped config");
            yaml.replace(from, &format!("port_value: {to} "))
        };
        let yaml = replace(shipped, "port_value: 9901 ", admin);
        let yaml = replace(yaml, "port_value: 10000 ", ports[0]);
        let yaml = replace(yaml, "port_value: 8080 ", tollgate_port);
        yaml.replace("0.0.0.0", "127.0.0.1")
    })
    .await
}

#[tokio::test]
async fn sdk_clients_use_the_gateway_through_envoy() {
    let weather = McpServer::start_asking("weather").await;
    let calendar = McpServer::start(Sdk::V2, "calendar", false).await;
    let port = free_port();
    let _tollgate = Tollgate::start(&gateway_yaml(port, &[&weather, &calendar], "")).await;
    let envoy = envoy_for(port).await;
    let url = format!("http://127.0.0.1:{}/mcp", envoy.port(0));

    let calls = json!([
        {"name": "weather__echo", "arguments": {"text": "hi"}},
        {"name": "calendar__echo", "arguments": {"text": "hi"}},
        {"name": "weather__ask", "arguments": {"question": "rain?"}},
        {"name": "weather__ask", "arguments": {"question": "later?", "standalone": true}},
        {"name": "weather__announce", "arguments": {}},
    ]);
    let job = json!({"sdk": "1", "url": url, "calls": calls, "answers": true});
    let results = run_clients(Sdk::V1, vec![job]).await;
    let texts: Vec<&serde_json::Value> = results[0]["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["text"])
        .collect();
    assert_eq!(
        texts,
        [
            "weather:hi",
            "calendar:hi",
            "weather heard yes to rain?",
            "weather heard yes to later?",
            "weather announced"
        ],
        "{results:?}"
    );
    assert!(
        results[0]["notifications"]
            .as_array()
            .unwrap()
            .contains(&json!("notifications/tools/list_changed")),
        "the GET stream passed Envoy: {results:?}"
    );

    let calls = json!([{"name": "calendar__calendar_only", "arguments": {}}]);
    let job = json!({"sdk": "2", "url": url, "calls": calls});
    let results = run_clients(Sdk::V2, vec![job]).await;
    assert_eq!(
        results[0]["tools"].as_array().unwrap().len(),
        7,
        "{results:?}"
    );
    assert_eq!(results[0]["calls"][0]["text"], "calendar", "{results:?}");
}
