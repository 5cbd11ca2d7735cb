use serde_json::json;

use super::*;

const V: &str = "2026-07-28";

fn call(name: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
        "name": name, "arguments": {},
        "_meta": {META_VERSION: V, META_CAPABILITIES: {}},
    }})
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn routed(name: &str) -> HeaderMap {
    headers(&[
        ("mcp-protocol-version", V),
        ("mcp-method", "tools/call"),
        ("mcp-name", name),
    ])
}

/// The JSON-RPC code of a refusal.
fn code(e: McpError) -> (u16, i64, Value) {
    let (status, body) = e.reply();
    let body: Value = serde_json::from_slice(&body).unwrap();
    (
        status.as_u16(),
        body["error"]["code"].as_i64().unwrap(),
        body["id"].clone(),
    )
}

#[test]
fn a_consistent_request_passes_with_its_version() {
    let id = json!(7);
    assert_eq!(check(&routed("a__echo"), &call("a__echo"), &id).unwrap(), V);
    // A base64-wrapped name is compared decoded.
    let wrapped = encode_header_value("wéather__echo");
    assert!(wrapped.to_str().unwrap().starts_with("=?base64?"));
    let mut h = routed("x");
    h.insert(MCP_NAME, wrapped);
    assert_eq!(check(&h, &call("wéather__echo"), &id).unwrap(), V);
}

#[test]
fn the_ladder_reports_the_first_failing_rung() {
    let id = json!(7);
    let mut bare = call("a__echo");
    bare["params"].as_object_mut().unwrap().remove("_meta");
    assert_eq!(
        code(check(&routed("a__echo"), &bare, &id).unwrap_err()),
        (400, -32602, json!(7))
    );
    let mut no_caps = call("a__echo");
    no_caps["params"]["_meta"]
        .as_object_mut()
        .unwrap()
        .remove(META_CAPABILITIES);
    let e = check(&routed("a__echo"), &no_caps, &id).unwrap_err();
    assert!(e.to_string().contains(META_CAPABILITIES), "{e}");
    // Headers before the version: a renamed tool, a missing or repeated header.
    let e = check(&routed("b__echo"), &call("a__echo"), &id).unwrap_err();
    assert_eq!(
        e.to_string(),
        "Mcp-Name header does not match the request body"
    );
    assert_eq!(code(e), (400, -32020, json!(7)));
    let no_method = headers(&[("mcp-protocol-version", V), ("mcp-name", "a__echo")]);
    let e = check(&no_method, &call("a__echo"), &id).unwrap_err();
    assert!(e.to_string().starts_with("Mcp-Method"), "{e}");
    let mut twice = routed("a__echo");
    twice.append(MCP_METHOD, HeaderValue::from_static("tools/call"));
    assert_eq!(
        code(check(&twice, &call("a__echo"), &id).unwrap_err()).1,
        -32020
    );
    let mut old = call("a__echo");
    old["params"]["_meta"][META_VERSION] = json!("2099-01-01");
    let h = headers(&[
        ("mcp-protocol-version", "2099-01-01"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "a__echo"),
    ]);
    let (status, body) = check(&h, &old, &id).unwrap_err().reply();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (status.as_u16(), &body["error"]["code"]),
        (400, &json!(-32022))
    );
    assert_eq!(body["error"]["data"]["requested"], "2099-01-01");
    assert!(body["error"]["data"]["supported"]
        .as_array()
        .unwrap()
        .contains(&json!(V)));
}

#[test]
fn the_era_comes_from_the_header_or_the_envelope() {
    let legacy = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
    assert!(!is_modern(
        &headers(&[("mcp-protocol-version", "2025-11-25")]),
        &legacy
    ));
    assert!(is_modern(&headers(&[("mcp-protocol-version", V)]), &legacy));
    assert!(is_modern(&HeaderMap::new(), &call("x")));
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}});
    assert!(!is_modern(&headers(&[("mcp-protocol-version", V)]), &init));
}

#[test]
fn routing_headers_follow_the_body_sent() {
    let body = serde_json::to_vec(&call("echo")).unwrap();
    let h = routing_headers(&body);
    assert_eq!(h[0], (MCP_METHOD, HeaderValue::from_static("tools/call")));
    assert_eq!(h[1], (MCP_NAME, HeaderValue::from_static("echo")));
    let read = json!({"method": "resources/read", "params": {"uri": "w://a b"}});
    let h = routing_headers(read.to_string().as_bytes());
    assert_eq!(h[1].1, "w://a b");
    let list = json!({"method": "tools/list", "params": {"name": "ignored"}});
    assert_eq!(routing_headers(list.to_string().as_bytes()).len(), 1);
    assert!(routing_headers(b"not json").is_empty());
    // A name with a leading space or a newline is wrapped, and decodes back.
    for odd in [" lead", "two\nlines", "ünï"] {
        let v = encode_header_value(odd);
        assert_eq!(decode_header_value(&v).as_deref(), Some(odd));
    }
}
