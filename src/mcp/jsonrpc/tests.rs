//! Classifying client messages (every kind, every rejected shape with the id it keeps),
//! parse errors, and the exact bytes of error bodies.

use super::*;
use serde_json::json;

fn class(v: Value) -> Result<Message, RpcError> {
    classify(&v)
}

fn invalid_id(r: Result<Message, RpcError>) -> Option<Value> {
    match r {
        Err(e @ RpcError::Invalid { .. }) => {
            assert_eq!(e.code(), INVALID_REQUEST);
            e.id().cloned()
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn requests_keep_number_and_string_ids() {
    let m = class(json!({"jsonrpc":"2.0","id":7,"method":"tools/list"})).unwrap();
    assert_eq!(
        m,
        Message::Request {
            id: json!(7),
            method: "tools/list".into()
        }
    );
    let m = class(json!({"jsonrpc":"2.0","id":"a-1","method":"ping","params":{}})).unwrap();
    assert_eq!(
        m,
        Message::Request {
            id: json!("a-1"),
            method: "ping".into()
        }
    );
}

#[test]
fn notifications_responses_and_errors() {
    let m = class(json!({"jsonrpc":"2.0","method":"notifications/initialized"})).unwrap();
    assert_eq!(
        m,
        Message::Notification {
            method: "notifications/initialized".into()
        }
    );
    let m = class(json!({"jsonrpc":"2.0","id":3,"result":{}})).unwrap();
    assert_eq!(m, Message::Response { id: json!(3) });
    let err = json!({"code":-32601,"message":"nope"});
    let m = class(json!({"jsonrpc":"2.0","id":"x","error":err})).unwrap();
    assert_eq!(m, Message::Error { id: json!("x") });
    let m = class(json!({"jsonrpc":"2.0","id":null,"error":err})).unwrap();
    assert_eq!(m, Message::Error { id: Value::Null });
    let m = class(json!({"jsonrpc":"2.0","error":err})).unwrap();
    assert_eq!(m, Message::Error { id: Value::Null });
}

#[test]
fn batches_are_rejected() {
    let e = class(json!([{"jsonrpc":"2.0","id":1,"method":"ping"}])).unwrap_err();
    assert!(matches!(e, RpcError::Batch));
    assert_eq!(e.code(), INVALID_REQUEST);
    assert!(matches!(class(json!([])), Err(RpcError::Batch)));
}

#[test]
fn bad_shapes_are_invalid_requests() {
    assert_eq!(invalid_id(class(json!("ping"))), None);
    assert_eq!(invalid_id(class(json!(1))), None);
    assert_eq!(
        invalid_id(class(json!({"id":1,"method":"ping"}))),
        Some(json!(1))
    );
    assert_eq!(
        invalid_id(class(json!({"jsonrpc":"1.0","id":"q","method":"ping"}))),
        Some(json!("q"))
    );
    assert_eq!(
        invalid_id(class(json!({"jsonrpc":"2.0","id":1,"method":5}))),
        Some(json!(1))
    );
    assert_eq!(
        invalid_id(class(json!({"jsonrpc":"2.0","id":1,"method":""}))),
        Some(json!(1))
    );
    assert_eq!(
        invalid_id(class(json!({"jsonrpc":"2.0","id":null,"method":"ping"}))),
        None
    );
    assert_eq!(
        invalid_id(class(json!({"jsonrpc":"2.0","id":{},"method":"ping"}))),
        None
    );
    assert_eq!(
        invalid_id(class(json!({"jsonrpc":"2.0","id":true,"method":"ping"}))),
        None
    );
    let p = json!({"jsonrpc":"2.0","id":2,"method":"ping","params":"x"});
    assert_eq!(invalid_id(class(p)), Some(json!(2)));
    let both = json!({"jsonrpc":"2.0","id":4,"method":"ping","result":{}});
    assert_eq!(invalid_id(class(both)), Some(json!(4)));
    let both = json!({"jsonrpc":"2.0","id":4,"result":{},"error":{"code":1,"message":"m"}});
    assert_eq!(invalid_id(class(both)), Some(json!(4)));
    assert_eq!(
        invalid_id(class(json!({"jsonrpc":"2.0","result":{}}))),
        None
    );
    let e = json!({"jsonrpc":"2.0","id":5,"error":{"code":"x","message":"m"}});
    assert_eq!(invalid_id(class(e)), Some(json!(5)));
    assert_eq!(
        invalid_id(class(json!({"jsonrpc":"2.0","id":6}))),
        Some(json!(6))
    );
}

#[test]
fn parse_maps_bad_json_to_parse_error() {
    let e = parse(b"{\"jsonrpc\":").unwrap_err();
    assert!(matches!(e, RpcError::Parse { .. }));
    assert_eq!(e.code(), PARSE_ERROR);
    assert_eq!(e.id(), None);
    assert_eq!(parse(b"").unwrap_err().code(), PARSE_ERROR);
    assert_eq!(parse(b"[]").unwrap_err().code(), INVALID_REQUEST);
    let (v, m) =
        parse(br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"}}"#).unwrap();
    assert_eq!(v["params"]["name"], "a");
    assert!(matches!(m, Message::Request { .. }));
}

#[test]
fn error_bodies_are_exact() {
    assert_eq!(
        error_body(Some(&json!(1)), METHOD_NOT_FOUND, "no such method"),
        br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"no such method"}}"#
    );
    assert_eq!(
        error_body(None, PARSE_ERROR, "say \"hi\"\n"),
        br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"say \"hi\"\n"}}"#
    );
    let body = error_body(Some(&json!("a\"b")), INVALID_PARAMS, "x");
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["id"], "a\"b");
    assert_eq!(v["error"]["code"], -32602);
}

#[test]
fn error_body_of_an_error_echoes_its_id() {
    let e = class(json!({"jsonrpc":"2.0","id":9,"method":"ping","params":3})).unwrap_err();
    let v: Value = serde_json::from_slice(&e.body()).unwrap();
    assert_eq!(v["id"], 9);
    assert_eq!(v["error"]["code"], INVALID_REQUEST);
    assert!(v["error"]["message"].as_str().unwrap().contains("params"));
}

#[test]
fn codes() {
    assert_eq!(
        [
            PARSE_ERROR,
            INVALID_REQUEST,
            METHOD_NOT_FOUND,
            INVALID_PARAMS,
            INTERNAL_ERROR
        ],
        [-32700, -32600, -32601, -32602, -32603]
    );
    assert_eq!(
        [HEADER_MISMATCH, UNSUPPORTED_PROTOCOL_VERSION],
        [-32020, -32022]
    );
}

#[test]
fn the_method_is_read_for_labels_without_a_document() {
    let of = |b: &str| method_of(b.as_bytes()).map(|m| m.to_string());
    assert_eq!(
        of(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"x":[1,2]}}"#).as_deref(),
        Some("tools/call")
    );
    assert_eq!(
        of(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#).as_deref(),
        Some("response")
    );
    assert_eq!(
        of(r#"{"jsonrpc":"2.0","id":1,"error":{"code":1}}"#).as_deref(),
        Some("response")
    );
    assert_eq!(of(r#"[{"method":"x"}]"#), None);
    assert_eq!(of("{"), None);
    assert_eq!(
        of(r#"{"method":"tools\/list"}"#).as_deref(),
        Some("tools/list")
    );
}
