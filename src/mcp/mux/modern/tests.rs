//! The 2026-07-28 era through the multiplexer, with canned and recording targets.

use std::time::Duration;

use http::{HeaderMap, Method};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::mcp::mux::tests::{canned, headers, mux, mux_at, send};

const V: &str = "2026-07-28";

/// A 2026-07-28 request with its envelope.
fn request(id: u64, method: &str, params: Value) -> String {
    let mut params = params;
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": V,
        "io.modelcontextprotocol/clientCapabilities": {},
    });
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string()
}

/// The headers of a 2026-07-28 request for `method` (and `name`).
fn routed(method: &str, name: Option<&str>) -> HeaderMap {
    let mut pairs = vec![("mcp-protocol-version", V), ("mcp-method", method)];
    if let Some(name) = name {
        pairs.push(("mcp-name", name));
    }
    headers(&pairs)
}

fn ok_json(body: &str) -> &'static str {
    let raw = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    Box::leak(raw.into_boxed_str())
}

fn discover_answer(versions: &[&str], capability: &str) -> &'static str {
    let body = json!({"jsonrpc": "2.0", "id": 1, "result": {
        "supportedVersions": versions,
        "capabilities": {capability: {"listChanged": true}},
        "resultType": "complete", "ttlMs": 0, "cacheScope": "private",
    }});
    ok_json(&body.to_string())
}

/// A target that answers every request with `raw` and sends each request it got
/// (head and body, as text) to the receiver.
async fn recording(raw: &'static str) -> (u16, mpsc::UnboundedReceiver<String>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let n = conn.read(&mut buf).await.unwrap_or(0);
                let _ = tx.send(String::from_utf8_lossy(&buf[..n]).to_lowercase());
                let _ = conn.write_all(raw.as_bytes()).await;
            });
        }
    });
    (port, rx)
}

#[tokio::test]
async fn discover_offers_the_modern_era_only_when_every_target_does() {
    let a = canned(discover_answer(&[V], "tools")).await;
    let b = canned(discover_answer(&["2025-11-25", V], "prompts")).await;
    let m = mux_at(&["a", "b"], &[a, b], &[], Duration::from_secs(5));
    let body = request(1, "server/discover", json!({}));
    let (s, _, answer) = send(&m, Method::POST, &routed("server/discover", None), &body).await;
    assert_eq!(s, 200, "{answer}");
    let result = &answer["result"];
    let versions = result["supportedVersions"].as_array().unwrap();
    assert!(versions.contains(&json!(V)) && versions.contains(&json!("2025-11-25")));
    assert_eq!(result["capabilities"]["tools"]["listChanged"], true);
    assert_eq!(result["capabilities"]["prompts"]["listChanged"], true);
    assert_eq!(
        result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "tollgate"
    );

    // A target of the handshake era refuses `server/discover`: no modern version.
    let legacy = canned(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}",
    )
    .await;
    let m = mux_at(&["a", "old"], &[a, legacy], &[], Duration::from_secs(5));
    let (s, _, answer) = send(&m, Method::POST, &routed("server/discover", None), &body).await;
    assert_eq!(s, 200, "{answer}");
    let versions = answer["result"]["supportedVersions"].as_array().unwrap();
    assert!(!versions.contains(&json!(V)), "{answer}");
    assert!(versions.contains(&json!("2025-11-25")));
}

#[tokio::test]
async fn refusals_carry_the_status_the_era_gives_their_code() {
    let m = mux(&["a", "b"], &[]);
    // GET and DELETE do not exist in the era.
    for method in [Method::GET, Method::DELETE] {
        let (s, h, _) = send(&m, method, &routed("tools/list", None), "").await;
        assert_eq!((s, h["allow"].to_str().unwrap()), (405, "POST"));
    }
    // A renamed tool in the header, before any target is asked.
    let call = request(2, "tools/call", json!({"name": "a__echo", "arguments": {}}));
    let (s, _, b) = send(
        &m,
        Method::POST,
        &routed("tools/call", Some("b__echo")),
        &call,
    )
    .await;
    assert_eq!(
        (s, &b["id"], &b["error"]["code"]),
        (400, &json!(2), &json!(-32020))
    );
    // A version no one serves: -32022 naming what is served.
    let mut old = routed("tools/list", None);
    old.insert("mcp-protocol-version", "2099-01-01".parse().unwrap());
    let list = request(3, "tools/list", json!({})).replace(V, "2099-01-01");
    let (s, _, b) = send(&m, Method::POST, &old, &list).await;
    assert_eq!((s, &b["error"]["code"]), (400, &json!(-32022)), "{b}");
    assert!(b["error"]["data"]["supported"]
        .as_array()
        .unwrap()
        .contains(&json!(V)));
    // An unknown tool is invalid params: 400; an unknown method with several targets: 404.
    let unknown = request(4, "tools/call", json!({"name": "nope__echo"}));
    let (s, _, b) = send(
        &m,
        Method::POST,
        &routed("tools/call", Some("nope__echo")),
        &unknown,
    )
    .await;
    assert_eq!((s, &b["error"]["code"]), (400, &json!(-32602)), "{b}");
    let odd = request(5, "odd/method", json!({}));
    let (s, _, b) = send(&m, Method::POST, &routed("odd/method", None), &odd).await;
    assert_eq!((s, &b["error"]["code"]), (404, &json!(-32601)), "{b}");
    // Notifications are taken and dropped; answers have no request to go to.
    let note = json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {
        "_meta": {"io.modelcontextprotocol/protocolVersion": V}}});
    let (s, _, _) = send(
        &m,
        Method::POST,
        &routed("notifications/cancelled", None),
        &note.to_string(),
    )
    .await;
    assert_eq!(s, 202);
    let answer = json!({"jsonrpc": "2.0", "id": "tg.0.1", "result": {}});
    let (s, _, b) = send(&m, Method::POST, &routed("x", None), &answer.to_string()).await;
    assert_eq!((s, &b["error"]["code"]), (400, &json!(-32600)), "{b}");
}

#[tokio::test]
async fn a_call_reaches_its_target_renamed_in_body_and_headers() {
    let answer = r#"{"jsonrpc":"2.0","id":9,"result":{"content":[],"resultType":"complete"}}"#;
    let (port, mut seen) = recording(ok_json(answer)).await;
    let m = mux_at(
        &["a", "b"],
        &[crate::mcp::mux::tests::dead_port(), port],
        &[],
        Duration::from_secs(5),
    );
    let call = request(
        9,
        "tools/call",
        json!({"name": "b__echo", "arguments": {"text": "hi"}}),
    );
    let mut h = routed("tools/call", Some("b__echo"));
    h.insert("mcp-param-region", "eu".parse().unwrap());
    let (s, _, b) = send(&m, Method::POST, &h, &call).await;
    assert_eq!(
        (s, &b["result"]["resultType"]),
        (200, &json!("complete")),
        "{b}"
    );
    let sent = seen.recv().await.unwrap();
    for line in [
        "mcp-protocol-version: 2026-07-28",
        "mcp-method: tools/call",
        "mcp-name: echo\r\n",
        "mcp-param-region: eu",
    ] {
        assert!(sent.contains(line), "{line} in {sent}");
    }
    assert!(!sent.contains("mcp-session-id"), "{sent}");
    assert!(
        sent.contains(r#""name":"echo""#) && sent.contains("protocolversion"),
        "{sent}"
    );
}
