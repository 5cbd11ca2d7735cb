//! `ExtProcStream` tests: Envoy's `ProcessingRequest`s built by hand, fed in order, and
//! the replies checked against the protocol rules in `shared/reference/ext_proc.md`:
//! exactly one reply of the matching kind per message (none after an immediate
//! response), header values in `raw_value`, `mode_override` only where Envoy honours it,
//! FULL_DUPLEX_STREAMED bodies echoed as `streamed_response`, and `on_complete` exactly
//! once however the stream ends.

use std::sync::{Arc, Mutex};

use envoy_types::pb::envoy::config::core::v3::{
    HeaderMap as ProtoHeaderMap, HeaderValue as ProtoHeaderValue,
};
use envoy_types::pb::envoy::extensions::filters::http::ext_proc::v3::processing_mode::BodySendMode;
use envoy_types::pb::envoy::service::ext_proc::v3::{
    body_mutation::Mutation, processing_request::Request as In,
    processing_response::Response as Out, CommonResponse, HeaderMutation, HttpBody, HttpHeaders,
    HttpTrailers, ImmediateResponse, ProcessingRequest, ProcessingResponse, ProtocolConfiguration,
};
use envoy_types::pb::google::protobuf::{value::Kind, Struct, Value};

use super::{ExtProcStream, StreamError, MAX_STREAMED_CHUNK};
use crate::config::FailureMode;
use crate::pipeline::testing::{entries, pipeline_with, scripted, Script};
use crate::pipeline::{BodyMode, Pipeline};

type Journal = Arc<Mutex<Vec<String>>>;

// --- configs ---

/// One header-only route that changes request and response headers.
const HEADER_ONLY: &str = r#"
binds:
- port: 18080
  listeners:
  - routes:
    - name: chat
      policies:
        requestHeaderModifier:
          set: {x-tollgate: v1}
          remove: [x-drop]
        responseHeaderModifier:
          set: {x-served-by: tollgate}
"#;

/// `HEADER_ONLY` with mode overrides switched off.
const HEADER_ONLY_NO_OVERRIDE: &str = r#"
extProc:
  address: 127.0.0.1:50051
  modeOverride: false
binds:
- port: 18080
  listeners:
  - routes:
    - name: chat
      policies:
        requestHeaderModifier:
          set: {x-tollgate: v1}
        responseHeaderModifier:
          set: {x-served-by: tollgate}
"#;

const NO_OVERRIDE: &str = "extProc: {address: '127.0.0.1:50051', modeOverride: false}\n";

/// Routes told apart by the `x-route` header each one sets.
const ROUTES: &str = r#"
binds:
- port: 18080
  listeners:
  - hostnames: [api.example.com]
    routes:
    - name: api-host
      policies: {requestHeaderModifier: {set: {x-route: api-host}}}
  - routes:
    - name: chat-post
      matches:
      - path: {pathPrefix: /v1/chat}
        method: POST
      policies: {requestHeaderModifier: {set: {x-route: chat-post}}}
    - name: by-header
      matches:
      - headers:
        - name: X-Tenant
          value: {exact: acme}
      - path: {regex: "/tenants/[a-z]+"}
      policies: {requestHeaderModifier: {set: {x-route: by-header}}}
    - name: fallback
      policies: {requestHeaderModifier: {set: {x-route: fallback}}}
- port: 18081
  listeners:
  - routes:
    - name: named-only
      matches:
      - path: {exact: /never}
      policies: {requestHeaderModifier: {set: {x-route: named-only}}}
"#;

fn pipeline(yaml: &str) -> Arc<Pipeline> {
    Arc::new(
        Pipeline::build(
            crate::config::parse_str(yaml).unwrap(),
            crate::services::Services::new(),
        )
        .unwrap(),
    )
}

fn stream_for(yaml: &str) -> ExtProcStream {
    ExtProcStream::new(pipeline(yaml))
}

/// A stream whose only matching route runs one scripted processor.
fn scripted_stream(yaml: &str, script: Script) -> (ExtProcStream, Journal) {
    let (f, j) = scripted(script);
    (
        ExtProcStream::new(pipeline_with(yaml, "scripted", vec![f])),
        j,
    )
}

// --- messages Envoy sends ---

fn proto_headers(pairs: &[(&str, &str)]) -> Option<ProtoHeaderMap> {
    Some(ProtoHeaderMap {
        headers: pairs
            .iter()
            .map(|(k, v)| ProtoHeaderValue {
                key: k.to_string(),
                value: String::new(),
                raw_value: v.as_bytes().to_vec(),
            })
            .collect(),
    })
}

fn msg(request: In) -> ProcessingRequest {
    ProcessingRequest {
        request: Some(request),
        ..Default::default()
    }
}

fn request_headers(pairs: &[(&str, &str)], end_of_stream: bool) -> ProcessingRequest {
    msg(In::RequestHeaders(HttpHeaders {
        headers: proto_headers(pairs),
        end_of_stream,
        ..Default::default()
    }))
}

/// A POST with a body to come.
fn post(path: &str) -> ProcessingRequest {
    request_headers(
        &[
            (":method", "POST"),
            (":path", path),
            (":authority", "gateway.local"),
            (":scheme", "http"),
            ("content-type", "application/json"),
            ("x-drop", "secret"),
        ],
        false,
    )
}

/// `post` carrying Envoy's static body modes, as the first message does.
fn first(request: BodySendMode, response: BodySendMode) -> ProcessingRequest {
    with_modes(post("/v1/chat/completions"), request, response)
}

fn with_modes(
    mut m: ProcessingRequest,
    request: BodySendMode,
    response: BodySendMode,
) -> ProcessingRequest {
    m.protocol_config = Some(ProtocolConfiguration {
        request_body_mode: request as i32,
        response_body_mode: response as i32,
        send_body_without_waiting_for_header_response: false,
    });
    m
}

fn request_body(data: &[u8], end_of_stream: bool) -> ProcessingRequest {
    msg(In::RequestBody(HttpBody {
        body: data.to_vec(),
        end_of_stream,
        ..Default::default()
    }))
}

fn response_headers(status: &str, end_of_stream: bool) -> ProcessingRequest {
    msg(In::ResponseHeaders(HttpHeaders {
        headers: proto_headers(&[(":status", status), ("content-type", "text/event-stream")]),
        end_of_stream,
        ..Default::default()
    }))
}

fn response_body(data: &[u8], end_of_stream: bool) -> ProcessingRequest {
    msg(In::ResponseBody(HttpBody {
        body: data.to_vec(),
        end_of_stream,
        ..Default::default()
    }))
}

fn request_trailers() -> ProcessingRequest {
    msg(In::RequestTrailers(HttpTrailers {
        trailers: proto_headers(&[("x-checksum", "1")]),
    }))
}

fn response_trailers() -> ProcessingRequest {
    msg(In::ResponseTrailers(HttpTrailers {
        trailers: proto_headers(&[("grpc-status", "0")]),
    }))
}

/// `m` with Envoy's route name in the ext_proc filter's attributes.
fn with_route_name(mut m: ProcessingRequest, name: &str) -> ProcessingRequest {
    let fields = [(
        "xds.route_name".to_string(),
        Value {
            kind: Some(Kind::StringValue(name.to_string())),
        },
    )]
    .into_iter()
    .collect();
    m.attributes
        .insert("envoy.filters.http.ext_proc".into(), Struct { fields });
    m
}

// --- sending and reading replies ---

/// Feeds one message; the replies must never be empty `ProcessingResponse`s.
async fn send(s: &mut ExtProcStream, m: ProcessingRequest) -> Vec<ProcessingResponse> {
    let replies = s.on_message(m).await.expect("message accepted");
    for r in &replies {
        assert!(r.response.is_some(), "empty ProcessingResponse: {r:?}");
    }
    replies
}

/// Feeds one message that must get exactly one reply.
async fn send_one(s: &mut ExtProcStream, m: ProcessingRequest) -> ProcessingResponse {
    let mut replies = send(s, m).await;
    assert_eq!(replies.len(), 1, "expected one reply: {replies:?}");
    replies.pop().unwrap()
}

fn kind(r: &ProcessingResponse) -> &'static str {
    match r.response.as_ref().expect("response set") {
        Out::RequestHeaders(_) => "request_headers",
        Out::ResponseHeaders(_) => "response_headers",
        Out::RequestBody(_) => "request_body",
        Out::ResponseBody(_) => "response_body",
        Out::RequestTrailers(_) => "request_trailers",
        Out::ResponseTrailers(_) => "response_trailers",
        Out::ImmediateResponse(_) => "immediate_response",
        Out::StreamedImmediateResponse(_) => "streamed_immediate_response",
    }
}

fn kinds(replies: &[ProcessingResponse]) -> Vec<&'static str> {
    replies.iter().map(kind).collect()
}

/// The `CommonResponse` of a header or body reply (always present in tollgate's replies).
fn common(r: &ProcessingResponse) -> &CommonResponse {
    let c = match r.response.as_ref().unwrap() {
        Out::RequestHeaders(h) | Out::ResponseHeaders(h) => h.response.as_ref(),
        Out::RequestBody(b) | Out::ResponseBody(b) => b.response.as_ref(),
        other => panic!("no CommonResponse in {other:?}"),
    };
    c.expect("CommonResponse set")
}

fn immediate(r: &ProcessingResponse) -> &ImmediateResponse {
    match r.response.as_ref().unwrap() {
        Out::ImmediateResponse(i) => i,
        other => panic!("expected an immediate response, got {other:?}"),
    }
}

/// A header mutation's set headers as (name, raw value), checking `value` is empty.
fn set_headers(m: &HeaderMutation) -> Vec<(String, String)> {
    m.set_headers
        .iter()
        .map(|o| {
            let h = o.header.as_ref().unwrap();
            assert!(
                h.value.is_empty(),
                "value must be empty, raw_value used: {h:?}"
            );
            (
                h.key.clone(),
                String::from_utf8(h.raw_value.clone()).unwrap(),
            )
        })
        .collect()
}

fn header_set(r: &ProcessingResponse, name: &str) -> Option<String> {
    common(r)
        .header_mutation
        .as_ref()
        .and_then(|m| set_headers(m).into_iter().find(|(k, _)| k == name))
        .map(|(_, v)| v)
}

/// The bytes and end_of_stream of a FULL_DUPLEX_STREAMED body reply.
fn streamed(r: &ProcessingResponse) -> (Vec<u8>, bool) {
    match common(r)
        .body_mutation
        .as_ref()
        .and_then(|m| m.mutation.as_ref())
    {
        Some(Mutation::StreamedResponse(s)) => (s.body.clone(), s.end_of_stream),
        other => panic!("expected streamed_response, got {other:?}"),
    }
}

fn body_mutation(r: &ProcessingResponse) -> Option<&Mutation> {
    common(r)
        .body_mutation
        .as_ref()
        .and_then(|m| m.mutation.as_ref())
}

fn override_modes(r: &ProcessingResponse) -> Option<(BodySendMode, BodySendMode)> {
    r.mode_override.as_ref().map(|m| {
        (
            BodySendMode::try_from(m.request_body_mode).unwrap(),
            BodySendMode::try_from(m.response_body_mode).unwrap(),
        )
    })
}

fn completions(j: &Journal) -> Vec<String> {
    entries(j)
        .into_iter()
        .filter(|e| e.starts_with("complete:"))
        .collect()
}

use BodySendMode::{
    Buffered, BufferedPartial, FullDuplexStreamed as FullDuplex, None as NoBody, Streamed,
};

// === header-only ===

#[tokio::test]
async fn header_only_request_headers_get_one_reply_with_raw_value_mutation() {
    let mut s = stream_for(HEADER_ONLY);
    let r = send_one(&mut s, post("/v1/chat/completions")).await;
    assert_eq!(kind(&r), "request_headers");
    let m = common(&r)
        .header_mutation
        .as_ref()
        .expect("a header mutation");
    assert_eq!(
        set_headers(m),
        [("x-tollgate".to_string(), "v1".to_string())]
    );
    assert_eq!(m.remove_headers, ["x-drop"]);
    assert!(r.mode_override.is_none());
    assert!(common(&r).body_mutation.is_none());
    assert!(!common(&r).clear_route_cache);
}

#[tokio::test]
async fn header_only_response_headers_get_one_reply() {
    let mut s = stream_for(HEADER_ONLY);
    send_one(&mut s, post("/v1/chat/completions")).await;
    let r = send_one(&mut s, response_headers("200", false)).await;
    assert_eq!(kind(&r), "response_headers");
    assert_eq!(header_set(&r, "x-served-by").as_deref(), Some("tollgate"));
    assert!(r.mode_override.is_none());
}

#[tokio::test]
async fn headers_without_changes_still_get_a_full_reply() {
    let mut s = stream_for(
        "binds:\n- port: 1\n  listeners:\n  - routes:\n    - policies: {responseHeaderModifier: {set: {x-a: b}}}\n",
    );
    let r = send_one(&mut s, post("/")).await;
    assert_eq!(kind(&r), "request_headers");
    assert!(common(&r).header_mutation.is_none());
}

#[tokio::test]
async fn get_without_body_then_response_without_body() {
    let mut s = stream_for(HEADER_ONLY);
    let get = with_modes(
        request_headers(&[(":method", "GET"), (":path", "/v1/models")], true),
        Buffered,
        Buffered,
    );
    let r = send_one(&mut s, get).await;
    assert_eq!(kind(&r), "request_headers");
    // No body follows: nothing to override.
    assert!(r.mode_override.is_none());
    let r = send_one(&mut s, response_headers("204", true)).await;
    assert_eq!(kind(&r), "response_headers");
    assert!(r.mode_override.is_none());
}

#[tokio::test]
async fn no_route_still_answers_every_phase() {
    let mut s = stream_for("");
    let r = send_one(&mut s, first(Streamed, Streamed)).await;
    assert_eq!(kind(&r), "request_headers");
    assert!(common(&r).header_mutation.is_none());
    let r = send_one(&mut s, request_body(b"{}", true)).await;
    assert_eq!(kind(&r), "request_body");
    let r = send_one(&mut s, response_headers("200", false)).await;
    assert_eq!(kind(&r), "response_headers");
    let r = send_one(&mut s, response_body(b"ok", true)).await;
    assert_eq!(kind(&r), "response_body");
    assert!(body_mutation(&r).is_none());
}

#[tokio::test]
async fn response_phases_without_request_headers_are_answered() {
    // Envoy with request_header_mode SKIP sends the response side only.
    let mut s = stream_for(HEADER_ONLY);
    let r = send_one(
        &mut s,
        with_modes(response_headers("200", false), NoBody, Streamed),
    )
    .await;
    assert_eq!(kind(&r), "response_headers");
    let r = send_one(&mut s, response_body(b"x", true)).await;
    assert_eq!(kind(&r), "response_body");
}

#[tokio::test]
async fn observability_mode_gets_no_replies() {
    let mut s = stream_for(HEADER_ONLY);
    let mut m = post("/");
    m.observability_mode = true;
    assert!(send(&mut s, m).await.is_empty());
}

// === mode_override ===

#[tokio::test]
async fn buffered_static_mode_with_header_only_route_overrides_body_to_none() {
    let mut s = stream_for(HEADER_ONLY);
    let r = send_one(&mut s, first(Buffered, Streamed)).await;
    assert_eq!(kind(&r), "request_headers");
    // Request body not needed; the response mode stays as configured.
    assert_eq!(override_modes(&r), Some((NoBody, Streamed)));
    // The response side then gets its own override.
    let r = send_one(&mut s, response_headers("200", false)).await;
    assert_eq!(override_modes(&r), Some((NoBody, NoBody)));
}

#[tokio::test]
async fn streamed_static_mode_with_header_only_route_overrides_body_to_none() {
    let mut s = stream_for(HEADER_ONLY);
    let r = send_one(&mut s, first(Streamed, Buffered)).await;
    assert_eq!(override_modes(&r), Some((NoBody, Buffered)));
}

#[tokio::test]
async fn override_only_for_sides_that_differ() {
    let mut s = stream_for(HEADER_ONLY);
    let r = send_one(&mut s, first(NoBody, Streamed)).await;
    assert!(r.mode_override.is_none());
    let r = send_one(&mut s, response_headers("200", false)).await;
    assert_eq!(override_modes(&r), Some((NoBody, NoBody)));
}

#[tokio::test]
async fn mode_override_disabled_sends_no_override() {
    let mut s = stream_for(HEADER_ONLY_NO_OVERRIDE);
    let r = send_one(&mut s, first(Buffered, Streamed)).await;
    assert_eq!(kind(&r), "request_headers");
    assert!(r.mode_override.is_none());
    assert_eq!(header_set(&r, "x-tollgate").as_deref(), Some("v1"));
    let r = send_one(&mut s, response_headers("200", false)).await;
    assert!(r.mode_override.is_none());
}

#[tokio::test]
async fn full_duplex_never_gets_an_override() {
    let mut s = stream_for(HEADER_ONLY);
    let r = send_one(&mut s, first(FullDuplex, FullDuplex)).await;
    assert!(r.mode_override.is_none());
    let r = send_one(&mut s, response_headers("200", false)).await;
    assert!(r.mode_override.is_none());
}

#[tokio::test]
async fn full_duplex_with_processors_needing_bodies_gets_no_override() {
    let (mut s, _j) = scripted_stream(
        "",
        Script {
            request_body: Some(BodyMode::Stream),
            response_body: Some(BodyMode::Buffer { limit: 1024 }),
            ..Default::default()
        },
    );
    let r = send_one(&mut s, first(FullDuplex, FullDuplex)).await;
    assert!(r.mode_override.is_none());
    send_one(&mut s, request_body(b"x", true)).await;
    // Buffering in FULL_DUPLEX defers the header reply instead of overriding.
    assert!(send(&mut s, response_headers("200", false))
        .await
        .is_empty());
}

#[tokio::test]
async fn streaming_processor_overrides_none_to_streamed() {
    let (mut s, _j) = scripted_stream(
        "",
        Script {
            request_body: Some(BodyMode::Stream),
            ..Default::default()
        },
    );
    let r = send_one(&mut s, first(NoBody, NoBody)).await;
    assert_eq!(override_modes(&r), Some((Streamed, NoBody)));
}

#[tokio::test]
async fn buffering_processor_overrides_streamed_to_buffered() {
    let (mut s, _j) = scripted_stream(
        "",
        Script {
            request_body: Some(BodyMode::Buffer { limit: 1 << 20 }),
            ..Default::default()
        },
    );
    let r = send_one(&mut s, first(Streamed, NoBody)).await;
    assert_eq!(override_modes(&r), Some((Buffered, NoBody)));
}

#[tokio::test]
async fn buffering_processor_keeps_buffered_partial() {
    let (mut s, _j) = scripted_stream(
        "",
        Script {
            request_body: Some(BodyMode::Buffer { limit: 1 << 20 }),
            ..Default::default()
        },
    );
    let r = send_one(&mut s, first(BufferedPartial, NoBody)).await;
    assert!(r.mode_override.is_none());
}

// === BUFFERED / STREAMED bodies arriving anyway ===

#[tokio::test]
async fn buffered_body_messages_get_one_unchanged_reply_each() {
    let mut s = stream_for(HEADER_ONLY_NO_OVERRIDE);
    send_one(&mut s, first(Buffered, Buffered)).await;
    let r = send_one(&mut s, request_body(br#"{"model":"m"}"#, true)).await;
    assert_eq!(kind(&r), "request_body");
    assert!(common(&r).body_mutation.is_none());
    assert!(common(&r).header_mutation.is_none());
    send_one(&mut s, response_headers("200", false)).await;
    let r = send_one(&mut s, response_body(b"{}", true)).await;
    assert_eq!(kind(&r), "response_body");
    assert!(common(&r).body_mutation.is_none());
}

#[tokio::test]
async fn streamed_body_messages_get_one_reply_each_in_order() {
    let mut s = stream_for(HEADER_ONLY_NO_OVERRIDE);
    send_one(&mut s, first(Streamed, Streamed)).await;
    for (chunk, eos) in [(&b"a"[..], false), (b"", false), (b"bc", true)] {
        let r = send_one(&mut s, request_body(chunk, eos)).await;
        assert_eq!(kind(&r), "request_body");
        assert!(common(&r).body_mutation.is_none());
    }
    send_one(&mut s, response_headers("200", false)).await;
    for i in 0..5 {
        let event = format!("data: {i}\n\n");
        let r = send_one(&mut s, response_body(event.as_bytes(), i == 4)).await;
        assert_eq!(kind(&r), "response_body");
        assert!(common(&r).body_mutation.is_none());
    }
}

#[tokio::test]
async fn buffered_partial_body_gets_one_unchanged_reply() {
    let mut s = stream_for(HEADER_ONLY_NO_OVERRIDE);
    send_one(&mut s, first(BufferedPartial, NoBody)).await;
    let r = send_one(&mut s, request_body(b"first part", false)).await;
    assert_eq!(kind(&r), "request_body");
    assert!(common(&r).body_mutation.is_none());
}

#[tokio::test]
async fn streamed_mode_with_a_buffering_processor_clears_chunks_then_sends_the_whole_body() {
    let (mut s, j) = scripted_stream(
        NO_OVERRIDE,
        Script {
            request_body: Some(BodyMode::Buffer { limit: 1024 }),
            ..Default::default()
        },
    );
    send_one(&mut s, first(Streamed, NoBody)).await;
    let r = send_one(&mut s, request_body(b"ab", false)).await;
    assert_eq!(body_mutation(&r), Some(&Mutation::ClearBody(true)));
    let r = send_one(&mut s, request_body(b"cd", true)).await;
    assert_eq!(body_mutation(&r), Some(&Mutation::Body(b"abcd".to_vec())));
    // STREAMED: Envoy removed content-length itself.
    assert!(common(&r).header_mutation.is_none());
    assert_eq!(entries(&j).last().unwrap(), "request_body(abcd,eos,whole)");
}

#[tokio::test]
async fn buffered_mode_changed_body_sets_content_length() {
    let (mut s, _j) = scripted_stream(
        "",
        Script {
            request_body: Some(BodyMode::Buffer { limit: 1024 }),
            uppercase: true,
            ..Default::default()
        },
    );
    let r = send_one(&mut s, first(Buffered, NoBody)).await;
    assert!(r.mode_override.is_none());
    let r = send_one(&mut s, request_body(b"hello", true)).await;
    assert_eq!(body_mutation(&r), Some(&Mutation::Body(b"HELLO".to_vec())));
    assert_eq!(header_set(&r, "content-length").as_deref(), Some("5"));
}

/// Envoy BUFFERED with trailers sends the whole body with `end_of_stream: false` (the
/// trailers end the stream). It is still the whole body and the only body message.
#[tokio::test]
async fn buffered_body_followed_by_trailers_is_not_lost() {
    let (mut s, j) = scripted_stream(
        "",
        Script {
            request_body: Some(BodyMode::Buffer { limit: 1024 }),
            ..Default::default()
        },
    );
    send_one(&mut s, first(Buffered, NoBody)).await;
    let r = send_one(&mut s, request_body(b"whole body", false)).await;
    assert_eq!(kind(&r), "request_body");
    assert_ne!(
        body_mutation(&r),
        Some(&Mutation::ClearBody(true)),
        "the body was cleared and will never be sent again"
    );
    assert!(
        entries(&j)
            .iter()
            .any(|e| e.starts_with("request_body(whole body")),
        "the processor never saw the body: {:?}",
        entries(&j)
    );
    let r = send_one(&mut s, request_trailers()).await;
    assert_eq!(kind(&r), "request_trailers");
}

#[tokio::test]
async fn streamed_body_with_a_streaming_processor_changes_each_chunk() {
    let (mut s, _j) = scripted_stream(
        "",
        Script {
            response_body: Some(BodyMode::Stream),
            uppercase: true,
            ..Default::default()
        },
    );
    send_one(&mut s, first(NoBody, Streamed)).await;
    let r = send_one(&mut s, response_headers("200", false)).await;
    assert!(r.mode_override.is_none());
    let r = send_one(&mut s, response_body(b"data: a\n\n", false)).await;
    assert_eq!(
        body_mutation(&r),
        Some(&Mutation::Body(b"DATA: A\n\n".to_vec()))
    );
    let r = send_one(&mut s, response_body(b"data: b\n\n", true)).await;
    assert_eq!(kind(&r), "response_body");
    assert_eq!(
        body_mutation(&r),
        Some(&Mutation::Body(b"DATA: B\n\n".to_vec()))
    );
}

// === FULL_DUPLEX_STREAMED ===

#[tokio::test]
async fn full_duplex_echoes_every_chunk_as_streamed_response() {
    let mut s = stream_for(HEADER_ONLY);
    send_one(&mut s, first(FullDuplex, FullDuplex)).await;
    let chunks: [(&[u8], bool); 3] = [(b"{\"a\":", false), (b"1", false), (b"}", true)];
    for (data, eos) in chunks {
        let r = send_one(&mut s, request_body(data, eos)).await;
        assert_eq!(kind(&r), "request_body");
        assert_eq!(streamed(&r), (data.to_vec(), eos));
    }
    send_one(&mut s, response_headers("200", false)).await;
    for i in 0..3 {
        let event = format!("data: {i}\n\n");
        let r = send_one(&mut s, response_body(event.as_bytes(), i == 2)).await;
        assert_eq!(kind(&r), "response_body");
        assert_eq!(streamed(&r), (event.into_bytes(), i == 2));
    }
}

#[tokio::test]
async fn full_duplex_rechunks_large_bodies() {
    let mut s = stream_for(HEADER_ONLY);
    send_one(&mut s, first(FullDuplex, FullDuplex)).await;
    let body: Vec<u8> = (0..150_000u32).map(|i| (i % 251) as u8).collect();
    let replies = send(&mut s, request_body(&body, true)).await;
    assert_eq!(replies.len(), 3);
    let mut joined = Vec::new();
    for (i, r) in replies.iter().enumerate() {
        assert_eq!(kind(r), "request_body");
        let (data, eos) = streamed(r);
        assert!(data.len() <= MAX_STREAMED_CHUNK, "chunk of {}", data.len());
        assert_eq!(eos, i == replies.len() - 1);
        joined.extend(data);
    }
    assert_eq!(joined, body);
}

#[tokio::test]
async fn full_duplex_chunk_of_exactly_the_maximum_is_not_split() {
    let mut s = stream_for(HEADER_ONLY);
    send_one(&mut s, first(NoBody, FullDuplex)).await;
    send_one(&mut s, response_headers("200", false)).await;
    let body = vec![b'x'; MAX_STREAMED_CHUNK + 1];
    let replies = send(&mut s, response_body(&body[..MAX_STREAMED_CHUNK], false)).await;
    assert_eq!(replies.len(), 1);
    assert_eq!(streamed(&replies[0]).0.len(), MAX_STREAMED_CHUNK);
    let replies = send(&mut s, response_body(&body, false)).await;
    let sizes: Vec<_> = replies.iter().map(|r| streamed(r).0.len()).collect();
    assert_eq!(sizes, [MAX_STREAMED_CHUNK, 1]);
    assert!(replies.iter().all(|r| !streamed(r).1));
}

#[tokio::test]
async fn full_duplex_trailers_get_a_reply_after_the_body() {
    let mut s = stream_for(HEADER_ONLY);
    let mut all = Vec::new();
    all.extend(send(&mut s, first(FullDuplex, FullDuplex)).await);
    all.extend(send(&mut s, request_body(b"ab", false)).await);
    all.extend(send(&mut s, request_body(b"cd", false)).await);
    all.extend(send(&mut s, request_trailers()).await);
    assert_eq!(
        kinds(&all),
        [
            "request_headers",
            "request_body",
            "request_body",
            "request_trailers"
        ]
    );
    assert_eq!(streamed(&all[1]), (b"ab".to_vec(), false));
    assert_eq!(streamed(&all[2]), (b"cd".to_vec(), false));
    // The response side ends the same way.
    send_one(&mut s, response_headers("200", false)).await;
    send_one(&mut s, response_body(b"x", false)).await;
    let r = send_one(&mut s, response_trailers()).await;
    assert_eq!(kind(&r), "response_trailers");
}

#[tokio::test]
async fn full_duplex_buffering_processor_defers_the_header_reply_until_the_body_ends() {
    let (mut s, j) = scripted_stream(
        "",
        Script {
            request_body: Some(BodyMode::Buffer { limit: 1024 }),
            uppercase: true,
            ..Default::default()
        },
    );
    assert!(send(&mut s, first(FullDuplex, FullDuplex)).await.is_empty());
    assert!(send(&mut s, request_body(b"ab", false)).await.is_empty());
    let replies = send(&mut s, request_body(b"cd", true)).await;
    assert_eq!(kinds(&replies), ["request_headers", "request_body"]);
    assert!(replies[0].mode_override.is_none());
    assert_eq!(streamed(&replies[1]), (b"ABCD".to_vec(), true));
    assert_eq!(entries(&j).last().unwrap(), "request_body(abcd,eos,whole)");
}

#[tokio::test]
async fn full_duplex_buffering_processor_flushes_at_trailers() {
    let (mut s, j) = scripted_stream(
        "",
        Script {
            request_body: Some(BodyMode::Buffer { limit: 1024 }),
            ..Default::default()
        },
    );
    assert!(send(&mut s, first(FullDuplex, FullDuplex)).await.is_empty());
    assert!(send(&mut s, request_body(b"ab", false)).await.is_empty());
    assert!(send(&mut s, request_body(b"cd", false)).await.is_empty());
    let replies = send(&mut s, request_trailers()).await;
    assert_eq!(
        kinds(&replies),
        ["request_headers", "request_body", "request_trailers"]
    );
    assert_eq!(streamed(&replies[1]), (b"abcd".to_vec(), false));
    assert!(entries(&j).contains(&"request_body(abcd,eos,whole)".to_string()));
}

// === out of order and malformed ===

#[tokio::test]
async fn second_request_headers_is_out_of_order() {
    let mut s = stream_for(HEADER_ONLY);
    send_one(&mut s, post("/")).await;
    let err = s.on_message(post("/")).await.unwrap_err();
    assert!(
        matches!(
            err,
            StreamError::OutOfOrder {
                got: "request_headers",
                after: "headers"
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn request_body_after_request_trailers_is_out_of_order() {
    let mut s = stream_for(HEADER_ONLY);
    send_one(&mut s, first(Streamed, NoBody)).await;
    send_one(&mut s, request_body(b"a", false)).await;
    send_one(&mut s, request_trailers()).await;
    let err = s.on_message(request_body(b"b", false)).await.unwrap_err();
    assert!(
        matches!(
            err,
            StreamError::OutOfOrder {
                got: "request_body",
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn body_after_the_last_chunk_and_repeated_trailers_are_out_of_order() {
    let mut s = stream_for(HEADER_ONLY);
    send_one(&mut s, first(Streamed, Streamed)).await;
    send_one(&mut s, request_body(b"a", true)).await;
    assert!(matches!(
        s.on_message(request_body(b"b", false)).await,
        Err(StreamError::OutOfOrder { .. })
    ));
    send_one(&mut s, response_headers("200", false)).await;
    send_one(&mut s, response_trailers()).await;
    assert!(matches!(
        s.on_message(response_trailers()).await,
        Err(StreamError::OutOfOrder {
            got: "response_trailers",
            ..
        })
    ));
    assert!(matches!(
        s.on_message(response_headers("200", false)).await,
        Err(StreamError::OutOfOrder {
            got: "response_headers",
            ..
        })
    ));
}

#[tokio::test]
async fn message_without_a_request_is_empty() {
    let mut s = stream_for(HEADER_ONLY);
    let err = s
        .on_message(ProcessingRequest::default())
        .await
        .unwrap_err();
    assert!(matches!(err, StreamError::Empty), "{err:?}");
    // The stream is still usable.
    send_one(&mut s, post("/")).await;
}

// === immediate responses ===

#[tokio::test]
async fn nothing_is_sent_after_an_immediate_response() {
    let (mut s, j) = scripted_stream(
        "",
        Script {
            respond_at: Some("request_headers"),
            ..Default::default()
        },
    );
    let r = send_one(&mut s, first(Streamed, Streamed)).await;
    let imm = immediate(&r);
    assert_eq!(imm.status.as_ref().unwrap().code, 403);
    assert_eq!(imm.details, "scripted");
    let body: serde_json::Value = serde_json::from_slice(&imm.body).unwrap();
    assert_eq!(body["error"]["code"], 403);
    let hdrs = set_headers(imm.headers.as_ref().unwrap());
    assert!(hdrs.contains(&("content-type".into(), "application/json".into())));
    assert_eq!(completions(&j), ["complete:local_reply"]);
    // Whatever Envoy still sends gets no reply, and no error either.
    for m in [
        request_body(b"x", true),
        request_trailers(),
        response_headers("200", false),
        response_body(b"y", true),
        response_trailers(),
        post("/"),
        ProcessingRequest::default(),
    ] {
        assert!(s.on_message(m).await.unwrap().is_empty());
    }
    s.end();
    drop(s);
    assert_eq!(completions(&j), ["complete:local_reply"]);
}

#[tokio::test]
async fn immediate_response_from_a_body_phase() {
    let (mut s, j) = scripted_stream(
        "",
        Script {
            request_body: Some(BodyMode::Stream),
            respond_at: Some("request_body"),
            ..Default::default()
        },
    );
    send_one(&mut s, first(Streamed, NoBody)).await;
    let r = send_one(&mut s, request_body(b"x", false)).await;
    assert_eq!(immediate(&r).status.as_ref().unwrap().code, 403);
    assert!(send(&mut s, request_body(b"y", true)).await.is_empty());
    assert_eq!(completions(&j), ["complete:local_reply"]);
}

#[tokio::test]
async fn fail_closed_error_becomes_an_immediate_500() {
    let (mut s, j) = scripted_stream(
        "",
        Script {
            fail_at: Some("response_headers"),
            failure_mode: FailureMode::FailClosed,
            ..Default::default()
        },
    );
    send_one(&mut s, post("/")).await;
    let r = send_one(&mut s, response_headers("200", false)).await;
    let imm = immediate(&r);
    assert_eq!(imm.status.as_ref().unwrap().code, 500);
    assert_eq!(imm.details, "scripted_failed");
    assert_eq!(completions(&j), ["complete:local_reply"]);
}

#[tokio::test]
async fn full_duplex_immediate_response_drops_the_deferred_header_reply() {
    let (mut s, _j) = scripted_stream(
        "",
        Script {
            request_body: Some(BodyMode::Buffer { limit: 1024 }),
            respond_at: Some("request_body"),
            ..Default::default()
        },
    );
    assert!(send(&mut s, first(FullDuplex, FullDuplex)).await.is_empty());
    let replies = send(&mut s, request_body(b"x", true)).await;
    assert_eq!(kinds(&replies), ["immediate_response"]);
}

#[tokio::test]
async fn buffer_overflow_answers_413_as_an_immediate_response() {
    let (mut s, _j) = scripted_stream(
        NO_OVERRIDE,
        Script {
            request_body: Some(BodyMode::Buffer { limit: 4 }),
            ..Default::default()
        },
    );
    send_one(&mut s, first(Streamed, NoBody)).await;
    send_one(&mut s, request_body(b"abc", false)).await;
    let r = send_one(&mut s, request_body(b"de", true)).await;
    assert_eq!(immediate(&r).status.as_ref().unwrap().code, 413);
}

// === reset / cancel ===

#[tokio::test]
async fn dropping_the_stream_mid_way_completes_once_as_client_gone() {
    let (mut s, j) = scripted_stream(
        "",
        Script {
            request_body: Some(BodyMode::Stream),
            ..Default::default()
        },
    );
    send_one(&mut s, first(Streamed, NoBody)).await;
    send_one(&mut s, request_body(b"part", false)).await;
    assert!(completions(&j).is_empty());
    drop(s);
    assert_eq!(completions(&j), ["complete:client_gone"]);
}

#[tokio::test]
async fn end_mid_stream_then_drop_completes_once() {
    let (mut s, j) = scripted_stream(
        "",
        Script {
            response_body: Some(BodyMode::Stream),
            ..Default::default()
        },
    );
    send_one(&mut s, post("/")).await;
    send_one(&mut s, response_headers("200", false)).await;
    send_one(&mut s, response_body(b"data: 1\n\n", false)).await;
    s.end();
    s.end();
    drop(s);
    assert_eq!(completions(&j), ["complete:client_gone"]);
}

#[tokio::test]
async fn end_after_the_full_response_reports_completed_once() {
    let (mut s, j) = scripted_stream(
        "",
        Script {
            response_body: Some(BodyMode::Stream),
            ..Default::default()
        },
    );
    send_one(&mut s, post("/")).await;
    send_one(&mut s, response_headers("200", false)).await;
    send_one(&mut s, response_body(b"done", true)).await;
    assert_eq!(completions(&j), ["complete:completed"]);
    s.end();
    drop(s);
    assert_eq!(completions(&j), ["complete:completed"]);
}

#[tokio::test]
async fn response_headers_ending_the_stream_complete_it() {
    let (mut s, j) = scripted_stream("", Script::default());
    send_one(&mut s, post("/")).await;
    send_one(&mut s, response_headers("304", true)).await;
    assert_eq!(completions(&j), ["complete:completed"]);
    drop(s);
    assert_eq!(completions(&j), ["complete:completed"]);
}

#[tokio::test]
async fn end_after_response_headers_of_a_header_only_route_is_completed() {
    let (mut s, j) = scripted_stream("", Script::default());
    send_one(&mut s, post("/")).await;
    send_one(&mut s, response_headers("200", false)).await;
    s.end();
    assert_eq!(completions(&j), ["complete:completed"]);
}

#[tokio::test]
async fn response_trailers_complete_the_exchange() {
    let (mut s, j) = scripted_stream("", Script::default());
    send_one(&mut s, first(NoBody, Streamed)).await;
    send_one(&mut s, response_headers("200", false)).await;
    send_one(&mut s, response_body(b"x", false)).await;
    send_one(&mut s, response_trailers()).await;
    assert_eq!(completions(&j), ["complete:completed"]);
}

#[tokio::test]
async fn end_before_any_message_does_nothing() {
    let (mut s, j) = scripted_stream("", Script::default());
    s.end();
    drop(s);
    assert!(entries(&j).is_empty());
}

// === route selection ===

async fn route_of(m: ProcessingRequest) -> Option<String> {
    let mut s = stream_for(ROUTES);
    let r = send_one(&mut s, m).await;
    header_set(&r, "x-route")
}

fn get(path: &str, authority: &str, extra: &[(&str, &str)]) -> ProcessingRequest {
    let mut pairs = vec![
        (":method", "GET"),
        (":path", path),
        (":authority", authority),
        (":scheme", "https"),
    ];
    pairs.extend_from_slice(extra);
    request_headers(&pairs, true)
}

#[tokio::test]
async fn xds_route_name_attribute_selects_the_named_route() {
    let m = with_route_name(post("/v1/chat/completions"), "named-only");
    assert_eq!(route_of(m).await.as_deref(), Some("named-only"));
    let m = with_route_name(get("/", "api.example.com", &[]), "chat-post");
    assert_eq!(route_of(m).await.as_deref(), Some("chat-post"));
}

#[tokio::test]
async fn unknown_route_name_falls_back_to_matching() {
    let m = with_route_name(post("/v1/chat/completions"), "not-configured");
    assert_eq!(route_of(m).await.as_deref(), Some("chat-post"));
}

#[tokio::test]
async fn routes_match_on_path_method_headers_and_authority() {
    let cases: Vec<(ProcessingRequest, &str)> = vec![
        (post("/v1/chat/completions"), "chat-post"),
        (post("/v1/chat"), "chat-post"),
        // Prefix at a segment boundary only.
        (post("/v1/chatter"), "fallback"),
        // Wrong method.
        (
            get("/v1/chat/completions", "gateway.local", &[]),
            "fallback",
        ),
        // The query string is not part of the path.
        (post("/v1/chat?stream=true"), "chat-post"),
        (
            get("/v1/models", "gateway.local", &[("x-tenant", "acme")]),
            "by-header",
        ),
        (
            get("/v1/models", "gateway.local", &[("x-tenant", "other")]),
            "fallback",
        ),
        (get("/tenants/acme", "gateway.local", &[]), "by-header"),
        (get("/tenants/acme/x", "gateway.local", &[]), "fallback"),
        // The host picks the listener, with or without a port, in any case.
        (get("/v1/chat", "api.example.com", &[]), "api-host"),
        (get("/v1/chat", "API.example.com:8443", &[]), "api-host"),
        (get("/v1/chat", "www.example.com", &[]), "fallback"),
    ];
    for (m, want) in cases {
        let desc = format!("{:?}", m.request);
        assert_eq!(route_of(m).await.as_deref(), Some(want), "{desc}");
    }
}

#[tokio::test]
async fn host_header_stands_in_for_a_missing_authority() {
    let m = request_headers(
        &[
            (":method", "GET"),
            (":path", "/"),
            ("host", "api.example.com"),
        ],
        true,
    );
    assert_eq!(route_of(m).await.as_deref(), Some("api-host"));
}

#[tokio::test]
async fn route_name_in_the_header_message_attributes_is_honoured() {
    let mut m = post("/v1/chat/completions");
    if let Some(In::RequestHeaders(h)) = m.request.as_mut() {
        let fields = [(
            "xds.route_name".to_string(),
            Value {
                kind: Some(Kind::StringValue("named-only".into())),
            },
        )]
        .into_iter()
        .collect();
        h.attributes
            .insert("envoy.filters.http.ext_proc".into(), Struct { fields });
    }
    assert_eq!(route_of(m).await.as_deref(), Some("named-only"));
}

// === protocol_config ===

#[tokio::test]
async fn only_the_first_protocol_config_counts() {
    let mut s = stream_for(HEADER_ONLY_NO_OVERRIDE);
    send_one(&mut s, first(FullDuplex, FullDuplex)).await;
    // A later protocol_config (Envoy sends one only on the first message) is ignored.
    let body = with_modes(request_body(b"x", true), Streamed, Streamed);
    let r = send_one(&mut s, body).await;
    assert_eq!(streamed(&r), (b"x".to_vec(), true));
}

// === dynamic metadata and route cache ===

/// The keys of the `scripted` namespace in a reply's dynamic metadata.
fn metadata_keys(r: &ProcessingResponse) -> Vec<String> {
    let Some(md) = r.dynamic_metadata.as_ref() else {
        return Vec::new();
    };
    match md.fields.get("scripted").and_then(|v| v.kind.as_ref()) {
        Some(Kind::StructValue(s)) => {
            let mut keys: Vec<String> = s.fields.keys().cloned().collect();
            keys.sort();
            keys
        }
        other => panic!("unexpected metadata {other:?}"),
    }
}

fn all_metadata_keys(replies: &[ProcessingResponse]) -> Vec<String> {
    replies.iter().flat_map(metadata_keys).collect()
}

#[tokio::test]
async fn metadata_rides_on_the_reply_of_its_phase() {
    let (mut s, _j) = scripted_stream(
        "",
        Script {
            metadata_at: Some("request_headers"),
            ..Default::default()
        },
    );
    let r = send_one(&mut s, first(NoBody, NoBody)).await;
    assert_eq!(metadata_keys(&r), ["request_headers"]);
    // Sent once, not again on later replies.
    let r = send_one(&mut s, response_headers("200", false)).await;
    assert!(r.dynamic_metadata.is_none());
}

#[tokio::test]
async fn metadata_from_a_body_chunk_rides_on_its_reply() {
    let (mut s, _j) = scripted_stream(
        "",
        Script {
            response_body: Some(BodyMode::Stream),
            metadata_at: Some("response_body"),
            ..Default::default()
        },
    );
    send_one(&mut s, first(NoBody, Streamed)).await;
    send_one(&mut s, response_headers("200", false)).await;
    let r = send_one(&mut s, response_body(b"a", false)).await;
    assert_eq!(metadata_keys(&r), ["response_body(a)"]);
}

#[tokio::test]
async fn metadata_rides_on_an_immediate_response() {
    let (mut s, _j) = scripted_stream(
        "",
        Script {
            metadata_at: Some("request_headers"),
            respond_at: Some("request_headers"),
            ..Default::default()
        },
    );
    let r = send_one(&mut s, post("/")).await;
    immediate(&r);
    assert_eq!(metadata_keys(&r), ["request_headers"]);
}

#[tokio::test]
async fn full_duplex_rechunked_body_carries_metadata_once_on_the_last_chunk() {
    let (mut s, _j) = scripted_stream(
        "",
        Script {
            request_body: Some(BodyMode::Stream),
            metadata_at: Some("request_body"),
            ..Default::default()
        },
    );
    send_one(&mut s, first(FullDuplex, FullDuplex)).await;
    let body = vec![b'z'; MAX_STREAMED_CHUNK + 10];
    let replies = send(&mut s, request_body(&body, true)).await;
    assert_eq!(replies.len(), 2);
    assert!(replies[0].dynamic_metadata.is_none());
    assert_eq!(metadata_keys(&replies[1]).len(), 1);
}

/// Usage-style metadata computed in the last phase of a response (trailers) must reach
/// Envoy: there is no later reply to carry it.
#[tokio::test]
async fn metadata_set_at_response_trailers_is_sent() {
    let (mut s, _j) = scripted_stream(
        "",
        Script {
            metadata_at: Some("response_trailers"),
            ..Default::default()
        },
    );
    send_one(&mut s, first(NoBody, Streamed)).await;
    send_one(&mut s, response_headers("200", false)).await;
    send_one(&mut s, response_body(b"x", false)).await;
    let r = send_one(&mut s, response_trailers()).await;
    assert_eq!(metadata_keys(&r), ["response_trailers"]);
}

/// FULL_DUPLEX_STREAMED with trailers: the buffered body is processed when the trailers
/// arrive; what the processor records then must be sent.
#[tokio::test]
async fn metadata_from_a_full_duplex_flush_at_trailers_is_sent() {
    let (mut s, _j) = scripted_stream(
        "",
        Script {
            response_body: Some(BodyMode::Buffer { limit: 1024 }),
            metadata_at: Some("response_body"),
            ..Default::default()
        },
    );
    send_one(&mut s, first(NoBody, FullDuplex)).await;
    assert!(send(&mut s, response_headers("200", false))
        .await
        .is_empty());
    assert!(send(&mut s, response_body(b"abc", false)).await.is_empty());
    let replies = send(&mut s, response_trailers()).await;
    assert_eq!(
        kinds(&replies),
        ["response_headers", "response_body", "response_trailers"]
    );
    assert_eq!(
        all_metadata_keys(&replies),
        ["response_body(abc,eos,whole)"]
    );
}

/// FULL_DUPLEX_STREAMED: a chunk that produces no reply (empty, not the last) must not
/// swallow the metadata its processing recorded.
#[tokio::test]
async fn metadata_from_a_chunk_without_reply_is_sent_with_the_next_reply() {
    let (mut s, _j) = scripted_stream(
        "",
        Script {
            request_body: Some(BodyMode::Stream),
            metadata_at: Some("request_body"),
            ..Default::default()
        },
    );
    send_one(&mut s, first(FullDuplex, FullDuplex)).await;
    assert!(send(&mut s, request_body(b"", false)).await.is_empty());
    let r = send_one(&mut s, request_body(b"x", true)).await;
    assert_eq!(metadata_keys(&r), ["request_body()", "request_body(x,eos)"]);
}

#[tokio::test]
async fn routing_header_change_clears_the_route_cache() {
    let yaml = |header: &str, ext: bool| {
        format!(
            "{}binds:\n- port: 1\n  listeners:\n  - routes:\n    - policies: {{requestHeaderModifier: {{set: {{{header}: 10.0.0.1}}}}}}\n",
            if ext { "extProc: {address: '127.0.0.1:50051'}\n" } else { "" }
        )
    };
    for (header, ext, want) in [
        ("x-gateway-destination-endpoint", true, true),
        ("host", false, true),
        ("x-other", true, false),
    ] {
        let mut s = stream_for(&yaml(header, ext));
        let r = send_one(&mut s, post("/")).await;
        assert_eq!(common(&r).clear_route_cache, want, "{header}");
        assert!(header_set(&r, header).is_some());
        // Only the header reply asks for it.
        let r = send_one(&mut s, response_headers("200", false)).await;
        assert!(!common(&r).clear_route_cache);
    }
}
