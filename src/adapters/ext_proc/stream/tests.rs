//! `ExtProcStream` tests: Envoy's `ProcessingRequest`s built by hand, fed in order, and
//! the replies checked against Envoy 1.40's ext_proc protocol rules:
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
use crate::pipeline::testing::{entries, pipeline, pipeline_with, scripted, Script};
use crate::pipeline::BodyMode;

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

mod bodies;
mod endpoint_picker;
mod headers;
mod lifecycle;
mod modes;
mod routing;
