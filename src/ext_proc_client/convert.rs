//! The pipeline's phases as ext_proc messages, and the server's answers applied back:
//! header mutations (`append` / `append_action` as Envoy reads them, `:path` as the
//! upstream path), body mutations, immediate responses.

use bytes::Bytes;
use envoy_types::pb::envoy::config::core::v3::{
    header_value_option::HeaderAppendAction, HeaderMap as ProtoHeaderMap,
    HeaderValue as ProtoHeaderValue, HeaderValueOption,
};
use envoy_types::pb::envoy::extensions::filters::http::ext_proc::v3::processing_mode;
use envoy_types::pb::envoy::service::ext_proc::v3::{
    body_mutation, processing_request, CommonResponse, HeaderMutation, HttpBody, HttpHeaders,
    ImmediateResponse, ProcessingRequest, ProtocolConfiguration,
};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use crate::config::{BodySendMode, ProcessingMode};
use crate::pipeline::{Headers, LocalReply, RequestHead};

/// The request headers message: pseudo-headers first, then the headers.
pub fn request_headers(
    head: &RequestHead,
    headers: &HeaderMap,
    end_of_stream: bool,
) -> ProcessingRequest {
    let pseudo = [
        (":method", head.method.as_str()),
        (":path", head.path.as_str()),
        (":authority", head.authority.as_str()),
        (":scheme", head.scheme.as_str()),
    ];
    let map = proto_headers(pseudo.into_iter().filter(|(_, v)| !v.is_empty()), headers);
    message(processing_request::Request::RequestHeaders(HttpHeaders {
        headers: Some(map),
        end_of_stream,
        ..Default::default()
    }))
}

/// The response headers message, with `:status`.
pub fn response_headers(
    status: u16,
    headers: &HeaderMap,
    end_of_stream: bool,
) -> ProcessingRequest {
    let status = status.to_string();
    let map = proto_headers([(":status", status.as_str())].into_iter(), headers);
    message(processing_request::Request::ResponseHeaders(HttpHeaders {
        headers: Some(map),
        end_of_stream,
        ..Default::default()
    }))
}

/// A body message (a chunk, or the whole body) of the request or the response.
pub fn body(request: bool, data: &Bytes, end_of_stream: bool) -> ProcessingRequest {
    let body = HttpBody {
        body: data.to_vec(),
        end_of_stream,
        ..Default::default()
    };
    message(if request {
        processing_request::Request::RequestBody(body)
    } else {
        processing_request::Request::ResponseBody(body)
    })
}

/// The `protocol_config` the first message carries.
pub fn protocol_config(mode: &ProcessingMode) -> ProtocolConfiguration {
    ProtocolConfiguration {
        request_body_mode: body_mode(mode.request_body_mode) as i32,
        response_body_mode: body_mode(mode.response_body_mode) as i32,
        ..Default::default()
    }
}

fn body_mode(mode: BodySendMode) -> processing_mode::BodySendMode {
    match mode {
        BodySendMode::None => processing_mode::BodySendMode::None,
        BodySendMode::Buffered => processing_mode::BodySendMode::Buffered,
        BodySendMode::Streamed => processing_mode::BodySendMode::Streamed,
    }
}

fn message(request: processing_request::Request) -> ProcessingRequest {
    ProcessingRequest {
        request: Some(request),
        ..Default::default()
    }
}

fn proto_headers<'a>(
    pseudo: impl Iterator<Item = (&'a str, &'a str)>,
    headers: &HeaderMap,
) -> ProtoHeaderMap {
    let value = |key: &str, raw: &[u8]| ProtoHeaderValue {
        key: key.to_string(),
        value: String::new(),
        raw_value: raw.to_vec(),
    };
    let mut out: Vec<ProtoHeaderValue> = pseudo.map(|(k, v)| value(k, v.as_bytes())).collect();
    out.extend(headers.iter().map(|(k, v)| value(k.as_str(), v.as_bytes())));
    ProtoHeaderMap { headers: out }
}

/// What a header mutation changed beyond the headers themselves.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// A new `:path` (the upstream's path and query).
    pub path: Option<String>,
}

/// Applies `m` to `headers`: removals first, then each set (overwriting, or appending
/// when `append` / `append_action` say so). `:path` becomes [`Applied::path`],
/// `:authority` the `host` header; other pseudo-headers and invalid names or values are
/// skipped, as Envoy skips them.
pub fn apply_headers(m: &HeaderMutation, headers: &mut Headers) -> Applied {
    let mut applied = Applied::default();
    for name in &m.remove_headers {
        if let Ok(name) = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()) {
            headers.remove(&name);
        }
    }
    for option in &m.set_headers {
        let Some(h) = &option.header else { continue };
        let raw: &[u8] = if h.raw_value.is_empty() {
            h.value.as_bytes()
        } else {
            &h.raw_value
        };
        let key = h.key.to_ascii_lowercase();
        if key == ":path" {
            applied.path = std::str::from_utf8(raw).ok().map(str::to_owned);
            continue;
        }
        let key = if key == ":authority" {
            "host".to_string()
        } else {
            key
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_bytes(raw),
        ) else {
            continue;
        };
        if appends(option) {
            headers.append(name, value);
        } else {
            headers.set(name, value);
        }
    }
    applied
}

/// Whether a set appends: the deprecated `append` flag when given (what Envoy reads),
/// else `append_action`.
#[allow(deprecated)]
fn appends(option: &HeaderValueOption) -> bool {
    match &option.append {
        Some(flag) => flag.value,
        None => option.append_action == HeaderAppendAction::AppendIfExistsOrAdd as i32,
    }
}

/// The body a body mutation asks for: `Some(new)` (empty when cleared), `None` to keep.
pub fn mutated_body(common: &CommonResponse) -> Option<Bytes> {
    match common.body_mutation.as_ref()?.mutation.as_ref()? {
        body_mutation::Mutation::Body(b) => Some(Bytes::from(b.clone())),
        body_mutation::Mutation::ClearBody(true) => Some(Bytes::new()),
        _ => None,
    }
}

/// An immediate response as tollgate's local reply (status 200 when the server set
/// none or an invalid one).
pub fn local_reply(ir: &ImmediateResponse) -> LocalReply {
    let status = ir
        .status
        .as_ref()
        .and_then(|s| u16::try_from(s.code).ok())
        .and_then(|c| StatusCode::from_u16(c).ok())
        .unwrap_or(StatusCode::OK);
    let mut headers = Headers::new(HeaderMap::new());
    if let Some(m) = &ir.headers {
        apply_headers(m, &mut headers);
    }
    LocalReply {
        status,
        headers: headers.into_map(),
        body: Bytes::from(ir.body.clone()),
        details: if ir.details.is_empty() {
            "ext_proc_immediate_response".into()
        } else {
            ir.details.clone()
        },
    }
}

#[cfg(test)]
use envoy_types::pb::envoy::service::ext_proc::v3::BodyMutation;

#[cfg(test)]
mod tests;
