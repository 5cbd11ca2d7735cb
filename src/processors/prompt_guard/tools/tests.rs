use serde_json::{json, Value};

use crate::pipeline::testing::{build_error, exchange_at, receive, send};

fn yaml(extra: &str) -> String {
    format!(
        "binds:\n- port: 1\n  listeners:\n  - routes:\n    - matches: [{{path: {{exact: /mcp}}}}]\n      policies:\n        mcpGuard:\n          request:\n            rules:\n            - {{name: emails, builtins: [email], action: mask}}\n            - {{name: keys, builtins: [openai_api_key], action: reject, message: no keys in tool calls}}\n          response:\n            rules:\n            - {{name: ssn, builtins: [ssn], action: mask}}\n{extra}"
    )
}

fn call(arguments: Value) -> Vec<u8> {
    json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call",
           "params": {"name": "crm__lookup", "arguments": arguments}})
    .to_string()
    .into_bytes()
}

const H: &[(&str, &str)] = &[("content-type", "application/json")];

#[tokio::test]
async fn arguments_are_masked_or_the_call_is_refused_as_a_jsonrpc_error() {
    let y = yaml("");
    let mut ex = exchange_at(&y, "POST", "/mcp");
    let sent = send(&mut ex, H, &call(json!({"who": "ann@example.com", "n": 3})))
        .await
        .unwrap();
    let sent: Value = serde_json::from_slice(&sent).unwrap();
    assert_eq!(sent["params"]["arguments"]["who"], "<EMAIL>");
    assert_eq!(sent["params"]["arguments"]["n"], 3);
    assert_eq!(
        sent["params"]["name"], "crm__lookup",
        "only the arguments are scanned"
    );

    let mut ex = exchange_at(&y, "POST", "/mcp");
    let key = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGH";
    let reply = send(&mut ex, H, &call(json!({"q": {"deep": [key]}})))
        .await
        .unwrap_err();
    assert_eq!(reply.status, 200);
    let body: Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(
        body,
        json!({"jsonrpc": "2.0", "id": 4, "error": {"code": -32000,
               "message": "no keys in tool calls", "data": {"rule": "keys"}}})
    );
}

#[tokio::test]
async fn results_are_masked_in_json_and_in_the_answering_sse_event() {
    let y = yaml("");
    let result = json!({"jsonrpc": "2.0", "id": 4, "result": {"content": [
        {"type": "text", "text": "ssn 123-45-6789"},
        {"type": "image", "data": "MTIzLTQ1LTY3ODk=", "mimeType": "image/png"}]}});
    let mut ex = exchange_at(&y, "POST", "/mcp");
    send(&mut ex, H, &call(json!({}))).await.unwrap();
    let out = receive(
        &mut ex,
        "application/json",
        &[result.to_string().as_bytes()],
    )
    .await
    .unwrap();
    let out: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(out["result"]["content"][0]["text"], "ssn <SSN>");
    assert_eq!(out["result"]["content"][1]["data"], "MTIzLTQ1LTY3ODk=");

    let mut ex = exchange_at(&y, "POST", "/mcp");
    send(&mut ex, H, &call(json!({}))).await.unwrap();
    let progress =
        r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"data":"123-45-6789"}}"#;
    let stream = format!("data: {progress}\n\ndata: {result}\n\n");
    let (a, b) = stream.as_bytes().split_at(stream.len() / 2);
    let out = receive(&mut ex, "text/event-stream", &[a, b])
        .await
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("ssn <SSN>"), "{text}");
    assert!(text.contains(progress), "other messages pass: {text}");
}

#[tokio::test]
async fn other_messages_pass_untouched() {
    let y = yaml("");
    let mut ex = exchange_at(&y, "POST", "/mcp");
    let list = br#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"arguments":{"a":"ann@example.com"}}}"#;
    let sent = send(&mut ex, H, list).await.unwrap();
    assert_eq!(&sent[..], &list[..]);
}

#[test]
fn llm_only_features_are_config_errors() {
    let y = yaml("").replace(
        "message: no keys in tool calls}\n          response:",
        "message: no keys in tool calls}\n            webhook: {url: 'http://127.0.0.1:1/'}\n          response:",
    );
    let err = build_error(&y);
    assert!(
        err.contains("policies.mcpGuard.request.webhook: not supported by mcpGuard"),
        "{err}"
    );
}

/// 2026-07-28 `Mcp-Param-*` headers mirror arguments: masked like them (base64-wrapped
/// when the mask is not a plain header value), or the call is refused.
#[tokio::test]
async fn argument_headers_are_guarded_like_the_arguments() {
    let y = yaml("");
    let mut ex = exchange_at(&y, "POST", "/mcp");
    let headers = [
        ("content-type", "application/json"),
        ("mcp-param-who", "ann@example.com"),
        ("mcp-param-region", "eu"),
    ];
    let args = json!({"who": "ann@example.com", "region": "eu"});
    send(&mut ex, &headers, &call(args.clone())).await.unwrap();
    let late = std::mem::take(&mut ex.cx.late_request_headers);
    assert_eq!(late.len(), 1, "{late:?}");
    assert_eq!(late[0].0, "mcp-param-who");
    assert_eq!(late[0].1, "<EMAIL>");

    let mut ex = exchange_at(&y, "POST", "/mcp");
    let key = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGH";
    let headers = [("content-type", "application/json"), ("mcp-param-q", key)];
    let reply = send(&mut ex, &headers, &call(json!({"q": "fine"})))
        .await
        .unwrap_err();
    let body: Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(body["error"]["data"]["rule"], "keys", "{body}");
}
