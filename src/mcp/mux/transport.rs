//! The Streamable HTTP side of the multiplexer's answers: the `Accept`,
//! `Content-Type` and `MCP-Protocol-Version` checks, and the replies it builds (its own
//! JSON, refusals with the status their error and era call for).

use bytes::Bytes;
use http::header::{ACCEPT, ALLOW, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::Value;

use super::{modern, McpBody};
use crate::mcp::error::McpError;
use crate::mcp::upstream::{PROTOCOL_VERSION, SESSION_ID};
use crate::mcp::versions;

/// Both `application/json` and `text/event-stream` accepted (wildcards count).
pub(super) fn check_accept(headers: &HeaderMap) -> Result<(), McpError> {
    if accepts(headers, ["application/json", "application/*", "*/*"])
        && accepts(headers, ["text/event-stream", "text/*", "*/*"])
    {
        return Ok(());
    }
    Err(McpError::Accept)
}

/// Whether `Accept` lists one of `wanted` (lower-case media ranges).
pub(super) fn accepts(headers: &HeaderMap, wanted: [&str; 3]) -> bool {
    let types: Vec<String> = headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| {
            t.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .collect();
    types.iter().any(|t| wanted.contains(&t.as_str()))
}

pub(super) fn check_content_type(headers: &HeaderMap) -> Result<(), McpError> {
    let json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
    if json {
        Ok(())
    } else {
        Err(McpError::ContentType)
    }
}

/// `MCP-Protocol-Version`, when present, must be a legacy-era version.
pub(super) fn check_version(headers: &HeaderMap) -> Result<(), McpError> {
    let Some(v) = headers.get(PROTOCOL_VERSION) else {
        return Ok(());
    };
    let v = String::from_utf8_lossy(v.as_bytes());
    if versions::is_legacy(&v) {
        return Ok(());
    }
    Err(McpError::ProtocolVersion {
        id: None,
        version: v.into_owned(),
    })
}

/// The answer to a refused request; in the 2026-07-28 era (`modern`) with the HTTP
/// status its JSON-RPC code calls for.
pub(super) fn error_response(e: &McpError, modern: bool) -> Response<McpBody> {
    let (mut status, body) = e.reply();
    if modern {
        status = modern::status_for(status, &body);
    }
    let mut response = reply(status, Bytes::from(body), None);
    if status == StatusCode::METHOD_NOT_ALLOWED {
        let allow = if matches!(e, McpError::Stateless { .. }) {
            "POST"
        } else {
            "GET, POST, DELETE"
        };
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static(allow));
    }
    response
}

/// 200 with a JSON body, and a session id for `initialize`.
pub(super) fn json_reply(value: &Value, session: Option<&str>) -> Response<McpBody> {
    let body = Bytes::from(serde_json::to_vec(value).expect("a Value serializes"));
    reply(StatusCode::OK, body, session)
}

pub(super) fn reply(status: StatusCode, body: Bytes, session: Option<&str>) -> Response<McpBody> {
    let json = !body.is_empty();
    let mut response = Response::new(Full::new(body).map_err(|never| match never {}).boxed());
    *response.status_mut() = status;
    if json {
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    if let Some(v) = session.and_then(|s| HeaderValue::from_str(s).ok()) {
        response.headers_mut().insert(SESSION_ID, v);
    }
    response
}
