//! Prompt-guard rules on MCP tool calls end to end: arguments masked before the target
//! sees them, results masked before the client does (SSE and JSON answers), a call
//! refused as a JSON-RPC error the Python SDK raises while its session goes on.

use serde_json::json;

use crate::support::free_port;
use crate::support::mcp::{gateway_yaml, run_clients, McpServer, Sdk};
use crate::support::tollgate::Tollgate;

const GUARD: &str = "      policies:\n        mcpGuard:\n          request:\n            rules:\n            - {name: emails, builtins: [email], action: mask}\n            - {name: keys, builtins: [openai_api_key], action: reject, message: no keys in tool calls}\n          response:\n            rules:\n            - {name: ssn, builtins: [ssn], action: mask}\n";

#[tokio::test]
async fn tool_arguments_and_results_are_guarded() {
    let weather = McpServer::start(Sdk::V1, "weather", false).await;
    let calendar = McpServer::start(Sdk::V1, "calendar", true).await;
    let port = free_port();
    let yaml = gateway_yaml(port, &[&weather, &calendar], "")
        .replace("      mcp:\n", &format!("{GUARD}      mcp:\n"));
    let _tollgate = Tollgate::start(&yaml).await;
    let key = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGH";
    let calls = json!([
        {"name": "weather__echo", "arguments": {"text": "mail ann@example.com"}},
        {"name": "weather__echo", "arguments": {"text": "ssn 123-45-6789"}},
        {"name": "calendar__echo", "arguments": {"text": "ssn 123-45-6789"}},
        {"name": "calendar__echo", "arguments": {"text": key}},
        {"name": "calendar__echo", "arguments": {"text": "still here"}},
    ]);
    let job = json!({"sdk": "1", "url": format!("http://127.0.0.1:{port}/mcp"), "calls": calls});
    let results = run_clients(Sdk::V1, vec![job]).await;
    let calls = &results[0]["calls"];
    assert_eq!(calls[0]["text"], "weather:mail <EMAIL>", "{results:?}");
    assert_eq!(
        calls[1]["text"], "weather:ssn <SSN>",
        "SSE answer: {results:?}"
    );
    assert_eq!(
        calls[2]["text"], "calendar:ssn <SSN>",
        "JSON answer: {results:?}"
    );
    assert_eq!(
        calls[3]["error"],
        json!({"code": -32000, "message": "no keys in tool calls"}),
        "{results:?}"
    );
    assert_eq!(calls[4]["text"], "calendar:still here", "{results:?}");
}
