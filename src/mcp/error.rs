//! What can go wrong with one client message at the gateway, and the one place each
//! problem becomes an HTTP status and a JSON-RPC error body. The statuses follow the
//! Streamable HTTP transport: 400 for a malformed message or a missing session, 404
//! only for a session that is unknown or gone (the client then re-initializes), 403 for
//! a foreign `Origin`; a failed target is a JSON-RPC error on a 200, never an HTTP
//! error the SDKs would take for a broken transport.

use http::StatusCode;
use serde_json::{json, Value};

use super::jsonrpc::{self, RpcError};
use super::upstream::CallError;

/// Why the gateway answers a client's message itself, with an error.
#[derive(Debug, thiserror::Error)]
pub enum McpError {
    #[error("origin {origin:?} is not allowed")]
    Origin { origin: String },
    #[error("method {method} is not allowed: POST sends a message, GET opens the server's stream, DELETE ends a session")]
    Method { method: http::Method },
    #[error("Accept must list application/json and text/event-stream")]
    Accept,
    #[error("Accept must list text/event-stream")]
    AcceptEvents,
    #[error("Content-Type must be application/json")]
    ContentType,
    /// GET or DELETE in the 2026-07-28 era, which has neither.
    #[error("method {method} is not allowed: MCP {version} sends every message as a POST")]
    Stateless {
        method: http::Method,
        version: String,
    },
    #[error("unsupported MCP-Protocol-Version {version:?}")]
    ProtocolVersion { id: Option<Value>, version: String },
    /// A 2026-07-28 request whose `params._meta` lacks the protocol version or the
    /// client capabilities.
    #[error("{reason}")]
    Envelope { id: Value, reason: String },
    /// A 2026-07-28 routing header disagrees with the body (or is missing or repeated).
    #[error("{header} header does not match the request body")]
    HeaderMismatch { id: Value, header: &'static str },
    #[error(transparent)]
    Rpc(RpcError),
    #[error("Mcp-Session-Id is required: send initialize first")]
    MissingSession { id: Option<Value> },
    #[error("session not found: initialize again")]
    UnknownSession { id: Option<Value> },
    #[error("{reason}")]
    InvalidParams { id: Value, reason: String },
    /// A `tools/call` or `prompts/get` name that no target lists under (`kind`: `tool`
    /// or `prompt`).
    #[error("unknown {kind} {name:?}")]
    UnknownTool {
        id: Value,
        kind: &'static str,
        name: String,
    },
    /// `mcpAuthorization` allows no such call for this caller.
    #[error("not allowed to use {kind} {name:?}")]
    Forbidden {
        id: Value,
        kind: &'static str,
        name: String,
    },
    /// An `mcpToolLimit` rule's limit is reached.
    #[error("{message}")]
    Limited {
        id: Value,
        message: String,
        retry_after: Option<std::time::Duration>,
    },
    /// The tool-call limits' shared store failed (and fails closed).
    #[error("tool call limits are unavailable: {reason}")]
    LimitsUnavailable { id: Value, reason: String },
    #[error("method {method:?} is not served by a gateway with several targets")]
    Unsupported { id: Value, method: String },
    #[error("target {target}: {error}")]
    Target {
        id: Value,
        target: String,
        error: CallError,
    },
}

impl McpError {
    /// The status and JSON-RPC body answering this error.
    pub fn reply(&self) -> (StatusCode, Vec<u8>) {
        use McpError as E;
        let (status, id, code) = match self {
            E::Origin { .. } => (StatusCode::FORBIDDEN, None, jsonrpc::INVALID_REQUEST),
            E::Method { .. } => (
                StatusCode::METHOD_NOT_ALLOWED,
                None,
                jsonrpc::INVALID_REQUEST,
            ),
            E::Accept | E::AcceptEvents => {
                (StatusCode::NOT_ACCEPTABLE, None, jsonrpc::INVALID_REQUEST)
            }
            E::ContentType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                None,
                jsonrpc::INVALID_REQUEST,
            ),
            E::Stateless { .. } => (
                StatusCode::METHOD_NOT_ALLOWED,
                None,
                jsonrpc::INVALID_REQUEST,
            ),
            E::ProtocolVersion { id, version } => {
                let body = super::versions::unsupported(id.as_ref(), version);
                return (StatusCode::BAD_REQUEST, body);
            }
            E::Envelope { id, .. } => (StatusCode::BAD_REQUEST, Some(id), jsonrpc::INVALID_PARAMS),
            E::HeaderMismatch { id, .. } => {
                (StatusCode::BAD_REQUEST, Some(id), jsonrpc::HEADER_MISMATCH)
            }
            E::Rpc(e) => return (StatusCode::BAD_REQUEST, e.body()),
            E::MissingSession { id } => (
                StatusCode::BAD_REQUEST,
                id.as_ref(),
                jsonrpc::INVALID_REQUEST,
            ),
            E::UnknownSession { id } => {
                (StatusCode::NOT_FOUND, id.as_ref(), jsonrpc::INVALID_REQUEST)
            }
            E::InvalidParams { id, .. } | E::UnknownTool { id, .. } => {
                (StatusCode::OK, Some(id), jsonrpc::INVALID_PARAMS)
            }
            E::Forbidden { id, .. } => (StatusCode::FORBIDDEN, Some(id), jsonrpc::UNAUTHORIZED),
            E::Limited {
                id,
                message,
                retry_after,
            } => {
                let body = json!({"jsonrpc": "2.0", "id": id, "error": {
                    "code": jsonrpc::LIMITED, "message": message,
                    "data": super::limits::refusal_data(*retry_after),
                }});
                return (StatusCode::OK, body.to_string().into_bytes());
            }
            E::LimitsUnavailable { id, .. } => (StatusCode::OK, Some(id), jsonrpc::INTERNAL_ERROR),
            E::Unsupported { id, .. } => (StatusCode::OK, Some(id), jsonrpc::METHOD_NOT_FOUND),
            E::Target { id, error, .. } => match error {
                // The target lost its session (expired, or ended by a DELETE).
                CallError::Status(404) => {
                    (StatusCode::NOT_FOUND, Some(id), jsonrpc::INVALID_REQUEST)
                }
                CallError::Rpc { code, .. } => {
                    let code = i32::try_from(*code).unwrap_or(jsonrpc::INTERNAL_ERROR);
                    (StatusCode::OK, Some(id), code)
                }
                _ => (StatusCode::OK, Some(id), jsonrpc::INTERNAL_ERROR),
            },
        };
        let message = match self {
            E::Target {
                error: CallError::Status(404),
                ..
            } => "session not found: initialize again".to_string(),
            other => other.to_string(),
        };
        (status, jsonrpc::error_body(id, code, &message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reply(e: McpError) -> (u16, Value) {
        let (status, body) = e.reply();
        (status.as_u16(), serde_json::from_slice(&body).unwrap())
    }

    #[test]
    fn statuses_and_codes() {
        let (s, b) = reply(McpError::MissingSession { id: Some(json!(4)) });
        assert_eq!(
            (s, &b["id"], &b["error"]["code"]),
            (400, &json!(4), &json!(-32600))
        );
        let (s, b) = reply(McpError::UnknownSession { id: None });
        assert_eq!((s, &b["id"]), (404, &Value::Null));
        let (s, b) = reply(McpError::UnknownTool {
            id: json!("a"),
            kind: "tool",
            name: "nope__echo".into(),
        });
        assert_eq!((s, &b["error"]["code"]), (200, &json!(-32602)));
        assert_eq!(b["error"]["message"], "unknown tool \"nope__echo\"");
        let (s, b) = reply(McpError::Target {
            id: json!(1),
            target: "weather".into(),
            error: CallError::Unreachable {
                reason: "connect 127.0.0.1:9 refused".into(),
            },
        });
        assert_eq!((s, &b["error"]["code"]), (200, &json!(-32603)));
        assert_eq!(
            b["error"]["message"], "target weather: unreachable",
            "no address"
        );
        let (s, _) = reply(McpError::Target {
            id: json!(1),
            target: "weather".into(),
            error: CallError::Status(404),
        });
        assert_eq!(s, 404);
        assert_eq!(reply(McpError::Accept).0, 406);
        assert_eq!(
            reply(McpError::Origin {
                origin: "http://evil".into()
            })
            .0,
            403
        );
        let (s, b) = reply(McpError::Rpc(RpcError::Batch));
        assert_eq!((s, &b["error"]["code"]), (400, &json!(-32600)));
    }
}
