//! Prompt-guard rules on MCP tool calls end to end: arguments masked before the target
//! sees them, results masked before the client does (SSE and JSON answers), a call
//! refused as a JSON-RPC error the Python SDK raises while its session goes on.

use serde_json::json;

use crate::support::client;
use crate::support::free_port;
use crate::support::mcp::{gateway_yaml, post, run_clients, McpServer, Sdk};
use crate::support::tollgate::Tollgate;
use crate::support::upstream::MockUpstream;

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

/// A 2026-07-28 call's `Mcp-Param-*` header mirrors an argument: the target gets it
/// masked like the argument, so the two still agree and neither leaks.
#[tokio::test]
async fn a_masked_argument_is_masked_in_its_header_too() {
    let target = MockUpstream::start().await;
    let port = free_port();
    let yaml = format!(
        "binds:\n- port: {port}\n  listeners:\n  - routes:\n    - name: tools\n      matches: [{{path: {{exact: /mcp}}}}]\n{GUARD}      mcp:\n        targets:\n        - {{name: crm, url: \"http://127.0.0.1:{}/mcp\"}}\n",
        target.port
    );
    let _tollgate = Tollgate::start(&yaml).await;
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "lookup", "arguments": {"who": "ann@example.com"},
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                  "io.modelcontextprotocol/clientCapabilities": {}}}});
    let req = post(&body.to_string())
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "lookup")
        .header("mcp-param-who", "ann@example.com")
        .header("x-test-id", "param");
    client::must(port, req).await;
    let sent = &target.requests()[0];
    assert_eq!(sent.header("mcp-param-who").as_deref(), Some("<EMAIL>"));
    assert_eq!(sent.header("mcp-name").as_deref(), Some("lookup"));
    let sent: serde_json::Value = serde_json::from_slice(&sent.body).unwrap();
    assert_eq!(sent["params"]["arguments"]["who"], "<EMAIL>");
}
