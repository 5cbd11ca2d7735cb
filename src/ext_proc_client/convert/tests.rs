use envoy_types::pb::envoy::r#type::v3::HttpStatus;
use envoy_types::pb::google::protobuf::BoolValue;

use super::*;

fn option(key: &str, value: &str, append: Option<bool>) -> HeaderValueOption {
    #[allow(deprecated)]
    HeaderValueOption {
        header: Some(ProtoHeaderValue {
            key: key.into(),
            value: String::new(),
            raw_value: value.as_bytes().to_vec(),
        }),
        append: append.map(|value| BoolValue { value }),
        ..Default::default()
    }
}

#[test]
fn request_headers_carry_pseudo_headers_first_and_raw_values() {
    let head = RequestHead {
        method: "POST".into(),
        path: "/v1/chat?x=1".into(),
        authority: "api.test".into(),
        scheme: "http".into(),
    };
    let mut h = HeaderMap::new();
    h.insert("x-a", HeaderValue::from_static("1"));
    let msg = request_headers(&head, &h, true);
    let Some(processing_request::Request::RequestHeaders(hh)) = msg.request else {
        panic!("{msg:?}")
    };
    assert!(hh.end_of_stream);
    let pairs: Vec<(String, Vec<u8>)> = hh
        .headers
        .unwrap()
        .headers
        .into_iter()
        .map(|v| (v.key, v.raw_value))
        .collect();
    assert_eq!(pairs[0], (":method".into(), b"POST".to_vec()));
    assert_eq!(pairs[1], (":path".into(), b"/v1/chat?x=1".to_vec()));
    assert_eq!(pairs[4], ("x-a".into(), b"1".to_vec()));
}

#[test]
fn mutations_remove_then_set_or_append_and_path_is_reported() {
    let mut headers = Headers::new(HeaderMap::new());
    headers.set(
        HeaderName::from_static("x-old"),
        HeaderValue::from_static("a"),
    );
    headers.set(
        HeaderName::from_static("x-multi"),
        HeaderValue::from_static("1"),
    );
    let m = HeaderMutation {
        set_headers: vec![
            option("X-New", "yes", None),
            option("x-multi", "2", Some(true)),
            option(":path", "/rewritten", None),
            option(":authority", "other.test", None),
            option("bad name", "x", None),
        ],
        remove_headers: vec!["X-Old".into()],
    };
    let applied = apply_headers(&m, &mut headers);
    assert_eq!(applied.path.as_deref(), Some("/rewritten"));
    let map = headers.into_map();
    assert!(map.get("x-old").is_none());
    assert_eq!(map["x-new"], "yes");
    assert_eq!(map.get_all("x-multi").iter().count(), 2);
    assert_eq!(map["host"], "other.test");
}

#[test]
fn body_mutations_and_immediate_responses() {
    let common = |m| CommonResponse {
        body_mutation: Some(BodyMutation { mutation: Some(m) }),
        ..Default::default()
    };
    assert_eq!(
        mutated_body(&common(body_mutation::Mutation::Body(b"new".to_vec()))),
        Some(Bytes::from_static(b"new"))
    );
    assert_eq!(
        mutated_body(&common(body_mutation::Mutation::ClearBody(true))),
        Some(Bytes::new())
    );
    assert_eq!(mutated_body(&CommonResponse::default()), None);
    let ir = ImmediateResponse {
        status: Some(HttpStatus { code: 403 }),
        headers: Some(HeaderMutation {
            set_headers: vec![option("content-type", "text/plain", None)],
            remove_headers: vec![],
        }),
        body: b"denied".to_vec(),
        details: String::new(),
        grpc_status: None,
    };
    let reply = local_reply(&ir);
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.headers["content-type"], "text/plain");
    assert_eq!(reply.body, Bytes::from_static(b"denied"));
    assert_eq!(reply.details, "ext_proc_immediate_response");
    let odd = ImmediateResponse {
        status: Some(HttpStatus { code: 99_999 }),
        ..ir
    };
    assert_eq!(local_reply(&odd).status, StatusCode::OK);
}
