//! The 2026-07-28 request envelope: what each stateless request carries instead of a
//! session. The body's `params._meta` names the protocol version and the client's
//! capabilities; the `MCP-Protocol-Version`, `Mcp-Method` and `Mcp-Name` headers mirror
//! the body for intermediaries and must agree with it. The checks run in the order the
//! spec's validation ladder gives (envelope → headers → version), so a client that
//! disagrees with itself hears that before it hears its version is unsupported.
//!
//! Going upstream the routing headers are made again from the body tollgate sends, so
//! a tool renamed for its target carries its new name in `Mcp-Name` too.

use base64::Engine;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use serde_json::Value;

use super::error::McpError;
use super::upstream::PROTOCOL_VERSION;
use super::versions;

/// `Mcp-Method`: the JSON-RPC method.
pub const MCP_METHOD: HeaderName = HeaderName::from_static("mcp-method");
/// `Mcp-Name`: the tool's or prompt's `params.name`, the resource's `params.uri`.
pub const MCP_NAME: HeaderName = HeaderName::from_static("mcp-name");
/// `Mcp-Param-*`: a tool argument its schema marks for a header (passed on unchanged).
pub const MCP_PARAM_PREFIX: &str = "mcp-param-";
/// The `_meta` key of the request's protocol version.
pub const META_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// The `_meta` key of the client's capabilities.
pub const META_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
/// The `_meta` key of a result's server identity.
pub const META_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";

/// The `params` field `Mcp-Name` mirrors for `method`.
fn name_field(method: &str) -> Option<&'static str> {
    match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        _ => None,
    }
}

/// Whether a POST belongs to the stateless era: its `MCP-Protocol-Version` header names
/// a modern version, or its body's `_meta` names a version (then the checks say whether
/// the two agree). `initialize` is always the handshake era's.
pub fn is_modern(headers: &HeaderMap, message: &Value) -> bool {
    if message.get("method").and_then(Value::as_str) == Some("initialize") {
        return false;
    }
    let header = headers.get(PROTOCOL_VERSION).and_then(|v| v.to_str().ok());
    header.is_some_and(versions::is_modern)
        || message
            .pointer("/params/_meta")
            .and_then(|m| m.get(META_VERSION))
            .is_some()
}

/// Whether the request's headers name a modern version (GET and DELETE have no body).
pub fn header_is_modern(headers: &HeaderMap) -> bool {
    let header = headers.get(PROTOCOL_VERSION).and_then(|v| v.to_str().ok());
    header.is_some_and(versions::is_modern)
}

/// Checks a stateless request (`message`, whose id is `id`); its protocol version.
/// A missing envelope key is -32602, a header that disagrees with the body (or is
/// missing or sent twice) -32020, an unsupported version -32022; all 400.
pub fn check(headers: &HeaderMap, message: &Value, id: &Value) -> Result<String, McpError> {
    let meta = message.pointer("/params/_meta").filter(|m| m.is_object());
    let Some(meta) = meta else {
        let reason = format!(
            "params._meta must be an object with {META_VERSION:?} and {META_CAPABILITIES:?}"
        );
        return Err(McpError::Envelope {
            id: id.clone(),
            reason,
        });
    };
    let missing: Vec<&str> = [META_VERSION, META_CAPABILITIES]
        .into_iter()
        .filter(|k| meta.get(*k).is_none())
        .collect();
    if !missing.is_empty() {
        let reason = format!("params._meta lacks {}", missing.join(", "));
        return Err(McpError::Envelope {
            id: id.clone(),
            reason,
        });
    }
    let version = &meta[META_VERSION];
    let method = message.get("method").and_then(Value::as_str).unwrap_or("");
    let mismatch = |header: &'static str| McpError::HeaderMismatch {
        id: id.clone(),
        header,
    };
    if single(headers, &PROTOCOL_VERSION, "MCP-Protocol-Version", id)?.and_then(|v| v.to_str().ok())
        != version.as_str()
    {
        return Err(mismatch("MCP-Protocol-Version"));
    }
    if single(headers, &MCP_METHOD, "Mcp-Method", id)?.and_then(|v| v.to_str().ok()) != Some(method)
    {
        return Err(mismatch("Mcp-Method"));
    }
    if let Some(field) = name_field(method) {
        let body = message
            .pointer(&format!("/params/{field}"))
            .and_then(Value::as_str);
        let header = single(headers, &MCP_NAME, "Mcp-Name", id)?.and_then(decode_header_value);
        if body.is_some() && header.as_deref() != body {
            return Err(mismatch("Mcp-Name"));
        }
    }
    let Some(version) = version.as_str() else {
        let reason = "the protocol version in params._meta must be a string".to_string();
        return Err(McpError::Envelope {
            id: id.clone(),
            reason,
        });
    };
    if !versions::is_modern(version) {
        let (id, version) = (Some(id.clone()), version.to_string());
        return Err(McpError::ProtocolVersion { id, version });
    }
    Ok(version.to_string())
}

/// The one value of `name`, if any; a repeated routing header is a mismatch (a first-
/// copy reader and a last-copy reader would disagree).
fn single<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
    label: &'static str,
    id: &Value,
) -> Result<Option<&'a HeaderValue>, McpError> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        let id = id.clone();
        return Err(McpError::HeaderMismatch { id, header: label });
    }
    Ok(first)
}

/// The client's `Mcp-Param-*` headers, passed on to the target as they came.
pub fn param_headers(headers: &HeaderMap) -> Vec<(HeaderName, HeaderValue)> {
    headers
        .iter()
        .filter(|(name, _)| name.as_str().starts_with(MCP_PARAM_PREFIX))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}

#[derive(Deserialize)]
struct Routing<'a> {
    #[serde(borrow)]
    method: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    params: Option<RoutingParams<'a>>,
}

#[derive(Deserialize)]
struct RoutingParams<'a> {
    #[serde(borrow)]
    name: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    uri: Option<std::borrow::Cow<'a, str>>,
}

/// `Mcp-Method` and `Mcp-Name` for `body`, a request going to a target.
pub fn routing_headers(body: &[u8]) -> Vec<(HeaderName, HeaderValue)> {
    let Ok(routing) = serde_json::from_slice::<Routing>(body) else {
        return Vec::new();
    };
    let Some(method) = routing.method else {
        return Vec::new();
    };
    let mut headers = vec![(MCP_METHOD, encode_header_value(&method))];
    let name = match (name_field(&method), routing.params) {
        (Some("name"), Some(p)) => p.name,
        (Some("uri"), Some(p)) => p.uri,
        _ => None,
    };
    if let Some(name) = name {
        headers.push((MCP_NAME, encode_header_value(&name)));
    }
    headers
}

/// A header value for `text`: as it is when it is visible ASCII without surrounding
/// spaces, else `=?base64?<text as base64>?=`.
pub fn encode_header_value(text: &str) -> HeaderValue {
    let plain = text.bytes().all(|b| (0x20..=0x7e).contains(&b)) && text.trim() == text;
    if plain {
        if let Ok(v) = HeaderValue::from_str(text) {
            return v;
        }
    }
    let encoded = base64::engine::general_purpose::STANDARD.encode(text);
    HeaderValue::from_str(&format!("=?base64?{encoded}?=")).expect("base64 is a valid header")
}

/// The text of a header value [`encode_header_value`] made (or a client did).
pub fn decode_header_value(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?;
    let Some(payload) = text
        .strip_prefix("=?base64?")
        .and_then(|t| t.strip_suffix("?="))
    else {
        return Some(text.to_string());
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(payload)
        .ok()?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests;
