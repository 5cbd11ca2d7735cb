//! Drives an MCP endpoint with the official Rust SDK's client (rmcp, Streamable HTTP),
//! for the MCP gateway tests: the jobs and results of `tests/sdk/mcp_client.py`, in
//! part. Reads a JSON list of jobs on stdin and prints a JSON list of results, in order.
//! A job: `{"url": "http://127.0.0.1:PORT/mcp", "calls": [{"name", "arguments"}, ...]}`.
//! Its result: `{"protocol_version", "server_name", "tools": [names],
//! "calls": [{"text", "is_error"} or {"error": {"code", "message"}}]}`.

use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::ServiceError;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::ServiceExt;
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;

#[tokio::main]
async fn main() {
    let mut input = String::new();
    tokio::io::stdin()
        .read_to_string(&mut input)
        .await
        .expect("reading the jobs");
    let jobs: Vec<Value> = serde_json::from_str(&input).expect("a JSON list of jobs");
    let mut results = Vec::new();
    for job in jobs {
        results.push(run(&job).await);
    }
    println!("{}", Value::Array(results));
}

async fn run(job: &Value) -> Value {
    let url = job["url"].as_str().expect("a url").to_string();
    let transport = StreamableHttpClientTransport::from_uri(url);
    let client = ().serve(transport).await.expect("connecting");
    // What the client learned when it connected, as the SDK serializes it.
    let info = client
        .peer_info()
        .map(|i| serde_json::to_value(&*i).expect("peer info serializes"))
        .unwrap_or_default();
    let version = info["protocolVersion"].clone();
    let server = info["serverInfo"]["name"].clone();
    let tools = client.list_all_tools().await.expect("tools/list");
    let names: Vec<String> = tools.iter().map(|t| t.name.to_string()).collect();
    let mut calls = Vec::new();
    for call in job["calls"].as_array().cloned().unwrap_or_default() {
        let name = call["name"].as_str().expect("a tool name").to_string();
        let arguments = call["arguments"].as_object().cloned().unwrap_or_default();
        let params = CallToolRequestParams::new(name).with_arguments(arguments);
        calls.push(match client.call_tool(params).await {
            Ok(result) => called(&result),
            Err(e) => failed(&e),
        });
    }
    client.cancel().await.expect("closing");
    json!({"protocol_version": version, "server_name": server, "tools": names, "calls": calls})
}

fn called(result: &CallToolResult) -> Value {
    let text: String = result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect();
    json!({"text": text, "is_error": result.is_error.unwrap_or(false)})
}

fn failed(e: &ServiceError) -> Value {
    match e {
        ServiceError::McpError(data) => {
            json!({"error": {"code": data.code.0, "message": data.message}})
        }
        other => json!({"error": {"code": null, "message": other.to_string()}}),
    }
}
