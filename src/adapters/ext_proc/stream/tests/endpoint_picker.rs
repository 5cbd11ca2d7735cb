//! The endpoint picker over ext_proc, as a gateway drives it: the pick header, the
//! `envoy.lb` metadata and `clear_route_cache` on one reply — the deferred header reply
//! in FULL_DUPLEX_STREAMED, the body reply in BUFFERED — a spoofed destination removed,
//! the subset hint in both forms, and the 503 for an empty subset.

use envoy_types::pb::envoy::config::core::v3::Metadata;
use envoy_types::pb::google::protobuf::ListValue;

use super::*;

const EPP: &str = r#"
binds:
- port: 18080
  listeners:
  - routes:
    - name: llm
      policies:
        endpointPicker:
          endpoints: ['127.0.0.11:8000', '127.0.0.12:8000', '[::1]:18003']
"#;

const CHAT: &[u8] = br#"{"model":"m","messages":[{"role":"user","content":"hello"}]}"#;

fn post_spoofed() -> ProcessingRequest {
    request_headers(
        &[
            (":method", "POST"),
            (":path", "/v1/chat/completions"),
            (":authority", "gateway.local"),
            (":scheme", "http"),
            ("x-gateway-destination-endpoint", "6.6.6.6:66"),
            ("x-llm-d-inference-objective", "low"),
        ],
        false,
    )
}

fn with_subset(mut m: ProcessingRequest, subset: Value) -> ProcessingRequest {
    let mut md = Metadata::default();
    md.filter_metadata.insert(
        "envoy.lb.subset_hint".into(),
        Struct {
            fields: [("x-gateway-destination-endpoint-subset".to_string(), subset)].into(),
        },
    );
    m.metadata_context = Some(md);
    m
}

fn string(s: &str) -> Value {
    Value {
        kind: Some(Kind::StringValue(s.into())),
    }
}

/// The pick in the reply's `envoy.lb` metadata.
fn metadata_pick(r: &ProcessingResponse) -> Option<String> {
    let md = r.dynamic_metadata.as_ref()?;
    let Some(Kind::StructValue(ns)) = md.fields.get("envoy.lb")?.kind.as_ref() else {
        return None;
    };
    match ns
        .fields
        .get("x-gateway-destination-endpoint")?
        .kind
        .as_ref()
    {
        Some(Kind::StringValue(s)) => Some(s.clone()),
        _ => None,
    }
}

fn removed(r: &ProcessingResponse) -> Vec<String> {
    common(r)
        .header_mutation
        .as_ref()
        .map(|m| m.remove_headers.clone())
        .unwrap_or_default()
}

/// The pick, checked to be on one reply with the metadata and the route-cache clear.
fn assert_pick(r: &ProcessingResponse) -> String {
    let header = header_set(r, "x-gateway-destination-endpoint").expect("pick header");
    assert_eq!(metadata_pick(r).as_deref(), Some(header.as_str()));
    assert!(common(r).clear_route_cache, "clear_route_cache");
    assert!(!removed(r).contains(&"x-gateway-destination-endpoint".to_string()));
    header
}

#[tokio::test]
async fn full_duplex_puts_the_pick_on_the_deferred_header_reply() {
    let mut s = stream_for(EPP);
    let m = with_modes(
        post_spoofed(),
        BodySendMode::FullDuplexStreamed,
        BodySendMode::FullDuplexStreamed,
    );
    assert!(send(&mut s, m).await.is_empty(), "header reply deferred");
    assert!(send(&mut s, request_body(&CHAT[..10], false))
        .await
        .is_empty());
    let out = send(&mut s, request_body(&CHAT[10..], true)).await;
    assert_eq!(kinds(&out), ["request_headers", "request_body"]);
    let pick = assert_pick(&out[0]);
    assert!(["127.0.0.11:8000", "127.0.0.12:8000", "[::1]:18003"].contains(&pick.as_str()));
    assert!(removed(&out[0]).contains(&"x-llm-d-inference-objective".to_string()));
    assert_eq!(streamed(&out[1]), (CHAT.to_vec(), true));
    assert!(
        out[1].dynamic_metadata.is_none(),
        "metadata only on the header reply"
    );
}

#[tokio::test]
async fn buffered_puts_the_pick_on_the_body_reply() {
    let mut s = stream_for(EPP);
    let m = with_modes(post_spoofed(), BodySendMode::Buffered, BodySendMode::None);
    let h = send_one(&mut s, m).await;
    assert_eq!(kind(&h), "request_headers");
    assert!(removed(&h).contains(&"x-gateway-destination-endpoint".to_string()));
    let b = send_one(&mut s, request_body(CHAT, true)).await;
    assert_eq!(kind(&b), "request_body");
    assert_pick(&b);
}

#[tokio::test]
async fn the_subset_hint_is_read_in_both_forms() {
    let list = Value {
        kind: Some(Kind::ListValue(ListValue {
            values: vec![string("[::1]:18003")],
        })),
    };
    for subset in [list, string("10.9.9.9:1, [::1]:18003")] {
        let mut s = stream_for(EPP);
        let m = with_subset(
            with_modes(post_spoofed(), BodySendMode::Buffered, BodySendMode::None),
            subset,
        );
        send_one(&mut s, m).await;
        let b = send_one(&mut s, request_body(CHAT, true)).await;
        assert_eq!(assert_pick(&b), "[::1]:18003");
    }
}

#[tokio::test]
async fn an_empty_subset_gets_503() {
    let mut s = stream_for(EPP);
    let m = with_subset(
        with_modes(
            post_spoofed(),
            BodySendMode::FullDuplexStreamed,
            BodySendMode::FullDuplexStreamed,
        ),
        string(""),
    );
    assert!(send(&mut s, m).await.is_empty());
    let r = send_one(&mut s, request_body(CHAT, true)).await;
    let i = immediate(&r);
    assert_eq!(i.status.as_ref().unwrap().code, 503);
    let headers = set_headers(i.headers.as_ref().unwrap());
    assert!(headers.contains(&(
        "x-llm-d-request-dropped-reason".to_string(),
        "rejected-no-endpoints".to_string()
    )));
}

#[tokio::test]
async fn a_bad_body_gets_400() {
    let mut s = stream_for(EPP);
    let m = with_modes(post_spoofed(), BodySendMode::Buffered, BodySendMode::None);
    send_one(&mut s, m).await;
    let r = send_one(&mut s, request_body(b"{\"messages\":[]}", true)).await;
    assert_eq!(immediate(&r).status.as_ref().unwrap().code, 400);
}

#[tokio::test]
async fn a_request_without_body_is_picked_on_its_header_reply() {
    let mut s = stream_for(EPP);
    let m = with_modes(
        request_headers(
            &[
                (":method", "POST"),
                (":path", "/v1/chat/completions"),
                (":authority", "gateway.local"),
                (":scheme", "http"),
            ],
            true,
        ),
        BodySendMode::FullDuplexStreamed,
        BodySendMode::FullDuplexStreamed,
    );
    let r = send_one(&mut s, m).await;
    assert_eq!(kind(&r), "request_headers");
    assert_pick(&r);
    assert!(
        header_set(&r, "x-request-id").is_some(),
        "x-request-id made"
    );
}

const REWRITE: &str = r#"
binds:
- port: 18080
  listeners:
  - routes:
    - name: llm
      policies:
        endpointPicker:
          endpoints: ['127.0.0.11:8000']
          modelRewrites: [{model: m, targets: [{model: m-large-v2}]}]
"#;

#[tokio::test]
async fn a_rewritten_body_goes_with_its_length_and_the_response_names_the_client_model() {
    let mut s = stream_for(REWRITE);
    let m = with_modes(
        post_spoofed(),
        BodySendMode::FullDuplexStreamed,
        BodySendMode::FullDuplexStreamed,
    );
    assert!(send(&mut s, m).await.is_empty());
    let out = send(&mut s, request_body(CHAT, true)).await;
    assert_eq!(kinds(&out), ["request_headers", "request_body"]);
    assert_eq!(assert_pick(&out[0]), "127.0.0.11:8000");
    let (body, eos) = streamed(&out[1]);
    assert!(eos);
    let sent: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(sent["model"], "m-large-v2");
    assert_eq!(
        header_set(&out[0], "content-length"),
        Some(body.len().to_string()),
        "the header reply carries the rewritten body's length"
    );

    let mut rh = response_headers("200", false);
    if let Some(In::ResponseHeaders(h)) = rh.request.as_mut() {
        h.headers.get_or_insert_with(Default::default).headers.push(
            envoy_types::pb::envoy::config::core::v3::HeaderValue {
                key: "content-length".into(),
                raw_value: b"60".to_vec(),
                ..Default::default()
            },
        );
    }
    let r = send_one(&mut s, rh).await;
    assert!(
        removed(&r).contains(&"content-length".to_string()),
        "a rewritten response has no known length"
    );
    let json = br#"{"id":"1","model":"m-large-v2","choices":[]}"#;
    let out = send(&mut s, response_body(json, true)).await;
    let (body, _) = streamed(&out[0]);
    assert_eq!(body, br#"{"id":"1","model":"m","choices":[]}"#);
}

#[tokio::test]
async fn large_bodies_come_back_in_chunks_of_at_most_62000_bytes() {
    let mut s = stream_for(EPP);
    let m = with_modes(
        post_spoofed(),
        BodySendMode::FullDuplexStreamed,
        BodySendMode::FullDuplexStreamed,
    );
    assert!(send(&mut s, m).await.is_empty());
    let body = serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x".repeat(200_000)}]})
        .to_string();
    let bytes = body.as_bytes();
    let mut out = Vec::new();
    for (i, chunk) in bytes.chunks(16_384).enumerate() {
        let last = (i + 1) * 16_384 >= bytes.len();
        out.extend(send(&mut s, request_body(chunk, last)).await);
    }
    assert_eq!(kind(&out[0]), "request_headers");
    assert_pick(&out[0]);
    let mut joined = Vec::new();
    for (i, r) in out[1..].iter().enumerate() {
        let (data, eos) = streamed(r);
        assert!(data.len() <= 62_000, "chunk {i} has {} bytes", data.len());
        assert_eq!(eos, i == out.len() - 2);
        joined.extend(data);
    }
    assert!(out.len() >= 5);
    assert_eq!(joined, bytes);
}

#[tokio::test]
async fn the_served_endpoint_is_read_on_the_response_path() {
    let md = Metadata {
        filter_metadata: [(
            "envoy.lb".to_string(),
            Struct {
                fields: [(
                    "x-gateway-destination-endpoint-served".to_string(),
                    string("127.0.0.12:8000"),
                )]
                .into(),
            },
        )]
        .into(),
        ..Default::default()
    };
    assert_eq!(
        crate::adapters::ext_proc::convert::served_endpoint(Some(&md)).as_deref(),
        Some("127.0.0.12:8000")
    );
    let mut s = stream_for(EPP);
    let m = with_modes(post_spoofed(), BodySendMode::Buffered, BodySendMode::None);
    send_one(&mut s, m).await;
    send_one(&mut s, request_body(CHAT, true)).await;
    let mut rh = response_headers("200", true);
    rh.metadata_context = Some(md);
    send_one(&mut s, rh).await;
    assert_eq!(
        s.exchange
            .as_ref()
            .and_then(|e| e.cx.served_endpoint.as_deref()),
        Some("127.0.0.12:8000")
    );
}

/// A chat body with a `chars`-long prompt, the model first or last (as the SDKs send it).
fn long_chat(chars: usize, model_first: bool) -> Vec<u8> {
    let text = "lorem ipsum ".repeat(chars / 12);
    let messages = format!(r#"[{{"role":"user","content":"{text}"}}]"#);
    let body = if model_first {
        format!(r#"{{"model":"m","max_tokens":4,"messages":{messages}}}"#)
    } else {
        format!(r#"{{"messages":{messages},"max_tokens":4,"model":"m"}}"#)
    };
    body.into_bytes()
}

/// Sends `body` in 16 KiB FULL_DUPLEX_STREAMED chunks after `headers`; the replies to
/// each chunk, in order.
async fn duplex_in_chunks(headers: ProcessingRequest, body: &[u8]) -> Vec<Vec<ProcessingResponse>> {
    let mut s = stream_for(EPP);
    let m = with_modes(
        headers,
        BodySendMode::FullDuplexStreamed,
        BodySendMode::FullDuplexStreamed,
    );
    assert!(send(&mut s, m).await.is_empty(), "header reply deferred");
    let chunks: Vec<&[u8]> = body.chunks(16 * 1024).collect();
    let mut replies = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        replies.push(send(&mut s, request_body(chunk, i + 1 == chunks.len())).await);
    }
    replies
}

/// The chunk whose reply carried the (pick on the) header reply, and the body echoed.
fn pick_point(replies: &[Vec<ProcessingResponse>]) -> (usize, Vec<u8>) {
    let at = replies
        .iter()
        .position(|r| !r.is_empty())
        .expect("some reply");
    assert_eq!(kind(&replies[at][0]), "request_headers");
    assert_pick(&replies[at][0]);
    let mut echoed = Vec::new();
    for r in replies
        .iter()
        .flatten()
        .filter(|r| kind(r) == "request_body")
    {
        echoed.extend(streamed(r).0);
    }
    // Every chunk after the pick is answered at once.
    assert!(replies[at..].iter().all(|r| !r.is_empty()));
    (at, echoed)
}

#[tokio::test]
async fn a_long_prompt_is_picked_on_its_first_blocks_and_the_rest_streams_through() {
    let body = long_chat(220_000, true);
    let replies = duplex_in_chunks(post_spoofed(), &body).await;
    let (at, echoed) = pick_point(&replies);
    assert!(at <= 2, "picked at chunk {at} of {}", replies.len());
    assert_eq!(echoed, body, "the body goes on whole and in order");
}

#[tokio::test]
async fn a_model_named_last_waits_for_it_unless_a_router_read_it_into_the_header() {
    let body = long_chat(100_000, false);
    let replies = duplex_in_chunks(post_spoofed(), &body).await;
    let (at, echoed) = pick_point(&replies);
    assert_eq!(at, replies.len() - 1, "the model ends the body");
    assert_eq!(echoed, body);

    let mut headers = post_spoofed();
    if let Some(In::RequestHeaders(h)) = headers.request.as_mut() {
        let map = h.headers.as_mut().unwrap();
        map.headers
            .push(envoy_types::pb::envoy::config::core::v3::HeaderValue {
                key: "x-gateway-model-name".into(),
                raw_value: b"m".to_vec(),
                ..Default::default()
            });
    }
    let replies = duplex_in_chunks(headers, &body).await;
    let (at, echoed) = pick_point(&replies);
    assert!(at <= 2, "picked at chunk {at} of {}", replies.len());
    assert_eq!(echoed, body);
}
