//! MCP clients besides the Python SDK's, through the gateway: the official TypeScript
//! SDK client (lists, calls of each target, an unknown prefix, prompts, resources, an
//! elicitation and a sampling it answers, DELETE at the end), the official Rust SDK's
//! client (rmcp: list, calls, an unknown prefix) and the MCP Inspector's CLI, each
//! against Python SDK 1.x and 2.x servers on loopback.

use serde_json::{json, Value};

use crate::support::free_port;
use crate::support::mcp::{
    gateway_yaml, inspector, run_rmcp_clients, run_ts_clients, McpServer, Sdk,
};
use crate::support::tollgate::Tollgate;

#[tokio::test]
async fn the_typescript_sdk_client_uses_the_gateway() {
    let weather = McpServer::start_asking("weather").await;
    let calendar = McpServer::start(Sdk::V2, "calendar", true).await;
    let port = free_port();
    let _tollgate = Tollgate::start(&gateway_yaml(port, &[&weather, &calendar], "")).await;
    let job = json!({
        "url": format!("http://127.0.0.1:{port}/mcp"),
        "answers": true,
        "calls": [
            {"name": "weather__echo", "arguments": {"text": "hi"}},
            {"name": "calendar__echo", "arguments": {"text": "hi"}},
            {"name": "weather__ask", "arguments": {"question": "rain?"}},
            {"name": "weather__sample", "arguments": {"prompt": "forecast"}},
            {"name": "nope__echo", "arguments": {}},
        ],
        "prompts": [{"name": "calendar__greet", "arguments": {"who": "ann"}}],
        "resources": ["weather://info", "calendar://info"],
    });
    let result = &run_ts_clients(vec![job]).await[0];
    assert_eq!(result["server_name"], "tollgate", "{result}");
    assert!(
        result["session_id"]
            .as_str()
            .is_some_and(|s| s.starts_with("t1.")),
        "{result}"
    );
    let tools = result["tools"].as_array().unwrap();
    assert!(tools.contains(&json!("weather__ask")) && tools.contains(&json!("calendar__echo")));
    let calls = &result["calls"];
    assert_eq!(
        calls[0],
        json!({"text": "weather:hi", "is_error": false}),
        "{result}"
    );
    assert_eq!(
        calls[1],
        json!({"text": "calendar:hi", "is_error": false}),
        "{result}"
    );
    assert_eq!(calls[2]["text"], "weather heard yes to rain?", "{result}");
    assert_eq!(
        calls[3]["text"], "weather sampled model says forecast",
        "{result}"
    );
    assert_eq!(calls[4]["error"]["code"], -32602, "{result}");
    assert_eq!(
        result["got"],
        json!([{"text": "calendar greets ann"}]),
        "{result}"
    );
    assert_eq!(
        result["read"],
        json!([{"text": "about weather"}, {"text": "about calendar"}]),
        "{result}"
    );
}

#[tokio::test]
async fn the_inspector_cli_lists_calls_reads_and_gets() {
    let weather = McpServer::start(Sdk::V1, "weather", false).await;
    let calendar = McpServer::start(Sdk::V2, "calendar", false).await;
    let port = free_port();
    let _tollgate = Tollgate::start(&gateway_yaml(port, &[&weather, &calendar], "")).await;
    let url = format!("http://127.0.0.1:{port}/mcp");
    let listed = inspector(&url, &["--method", "tools/list"]).await;
    let names: Vec<&str> = listed["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "weather__echo",
            "weather__weather_only",
            "calendar__echo",
            "calendar__calendar_only"
        ]
    );
    let args = [
        "--method",
        "tools/call",
        "--tool-name",
        "calendar__echo",
        "--tool-arg",
        "text=hey",
    ];
    let called = inspector(&url, &args).await;
    assert_eq!(called["content"][0]["text"], "calendar:hey", "{called}");
    let read = inspector(
        &url,
        &["--method", "resources/read", "--uri", "weather://info"],
    )
    .await;
    assert_eq!(read["contents"][0]["text"], "about weather", "{read}");
    let args = [
        "--method",
        "prompts/get",
        "--prompt-name",
        "weather__greet",
        "--prompt-args",
        "who=bo",
    ];
    let got: Value = inspector(&url, &args).await;
    assert_eq!(
        got["messages"][0]["content"]["text"], "weather greets bo",
        "{got}"
    );
}

#[tokio::test]
async fn the_rust_sdk_client_uses_the_gateway() {
    let weather = McpServer::start(Sdk::V1, "weather", false).await;
    let calendar = McpServer::start(Sdk::V2, "calendar", true).await;
    let port = free_port();
    let _tollgate = Tollgate::start(&gateway_yaml(port, &[&weather, &calendar], "")).await;
    let job = json!({
        "url": format!("http://127.0.0.1:{port}/mcp"),
        "calls": [
            {"name": "weather__echo", "arguments": {"text": "hi"}},
            {"name": "calendar__echo", "arguments": {"text": "hi"}},
            {"name": "nope__echo", "arguments": {}},
        ],
    });
    let result = &run_rmcp_clients(vec![job]).await[0];
    assert_eq!(result["server_name"], "tollgate", "{result}");
    assert_eq!(result["protocol_version"], "2025-11-25", "{result}");
    assert_eq!(
        result["tools"],
        json!([
            "weather__echo",
            "weather__weather_only",
            "calendar__echo",
            "calendar__calendar_only"
        ])
    );
    assert_eq!(
        result["calls"],
        json!([
            {"text": "weather:hi", "is_error": false},
            {"text": "calendar:hi", "is_error": false},
            {"error": {"code": -32602, "message": "unknown tool \"nope__echo\""}},
        ]),
        "{result}"
    );
}
