//! JSON-RPC 2.0 framing of MCP messages: telling a client's message apart (request,
//! notification, response, error), rejecting what is not one message of a valid shape,
//! and writing JSON-RPC error bodies. Message bodies stay `serde_json::Value`; only the
//! envelope is checked, never `params` or `result` beyond their type.

use serde_json::{Map, Value};

/// The body is not JSON.
pub const PARSE_ERROR: i32 = -32700;
/// JSON, but not a valid JSON-RPC message (a batch included: MCP has none since 2025-06-18).
pub const INVALID_REQUEST: i32 = -32600;
/// The method does not exist or is not served here.
pub const METHOD_NOT_FOUND: i32 = -32601;
/// The method exists; its parameters are wrong (an unknown tool included).
pub const INVALID_PARAMS: i32 = -32602;
/// Something failed on the way (an upstream included).
pub const INTERNAL_ERROR: i32 = -32603;
/// An MCP header disagrees with the body, or a required one is missing (2026-07-28).
pub const HEADER_MISMATCH: i32 = -32020;
/// The caller is not authenticated, or not allowed this call (implementation-defined).
pub const UNAUTHORIZED: i32 = -32001;
/// A tool-call limit is reached (implementation-defined; `data.retryAfterSeconds`).
pub const LIMITED: i32 = -32000;
/// The requested protocol version is not supported (2026-07-28).
pub const UNSUPPORTED_PROTOCOL_VERSION: i32 = -32022;

/// What a client's message is. Ids are JSON numbers or strings, kept as they came.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    /// Wants an answer with the same id.
    Request { id: Value, method: String },
    /// Wants no answer.
    Notification { method: String },
    /// Answers a request the server sent.
    Response { id: Value },
    /// Answers a request the server sent with an error; the id is `null` when the client
    /// could not tell which request it answers.
    Error { id: Value },
}

/// Why a body is not one valid JSON-RPC message.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("invalid JSON: {error}")]
    Parse { error: serde_json::Error },
    #[error("batches are not supported: send one JSON-RPC message per request")]
    Batch,
    /// `id` is the message's id when it has a usable one, to answer with.
    #[error("invalid JSON-RPC message: {reason}")]
    Invalid {
        id: Option<Value>,
        reason: &'static str,
    },
}

impl RpcError {
    /// The JSON-RPC error code to answer with.
    pub fn code(&self) -> i32 {
        match self {
            RpcError::Parse { .. } => PARSE_ERROR,
            RpcError::Batch | RpcError::Invalid { .. } => INVALID_REQUEST,
        }
    }

    /// The id to answer with, when the message had a usable one.
    pub fn id(&self) -> Option<&Value> {
        match self {
            RpcError::Invalid { id, .. } => id.as_ref(),
            RpcError::Parse { .. } | RpcError::Batch => None,
        }
    }

    /// The JSON-RPC error body answering this error.
    pub fn body(&self) -> Vec<u8> {
        error_body(self.id(), self.code(), &self.to_string())
    }
}

/// Parses a body as one JSON-RPC message: bad JSON is [`PARSE_ERROR`], a batch or a bad
/// shape [`INVALID_REQUEST`]. The `Value` is the whole message, for reading `params`.
pub fn parse(bytes: &[u8]) -> Result<(Value, Message), RpcError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|error| RpcError::Parse { error })?;
    let message = classify(&value)?;
    Ok((value, message))
}

/// The method of one JSON-RPC message, `response` for a result or error, without
/// building the document (for metric labels); `None` when it is neither, or not JSON.
pub fn method_of(bytes: &[u8]) -> Option<std::borrow::Cow<'_, str>> {
    #[derive(serde::Deserialize)]
    struct Head<'a> {
        #[serde(borrow, default)]
        method: Option<std::borrow::Cow<'a, str>>,
        #[serde(default)]
        result: Option<serde::de::IgnoredAny>,
        #[serde(default)]
        error: Option<serde::de::IgnoredAny>,
    }
    let head: Head<'_> = serde_json::from_slice(bytes).ok()?;
    match head.method {
        Some(m) => Some(m),
        None if head.result.is_some() || head.error.is_some() => Some("response".into()),
        None => None,
    }
}

/// What `value` is as a JSON-RPC 2.0 message from a client.
pub fn classify(value: &Value) -> Result<Message, RpcError> {
    let obj = match value {
        Value::Object(obj) => obj,
        Value::Array(_) => return Err(RpcError::Batch),
        _ => return Err(invalid(None, "not a JSON object")),
    };
    let id = Id::of(obj);
    let usable = id.usable();
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(invalid(usable, "\"jsonrpc\" must be \"2.0\""));
    }
    let (result, error) = (obj.get("result"), obj.get("error"));
    if let Some(method) = obj.get("method") {
        let method = match method.as_str() {
            Some(m) if !m.is_empty() => m.to_string(),
            _ => return Err(invalid(usable, "\"method\" must be a non-empty string")),
        };
        if result.is_some() || error.is_some() {
            return Err(invalid(
                usable,
                "a message has a method, a result or an error, not several",
            ));
        }
        // `null` is taken as absent: some clients write it for "no params".
        if !matches!(
            obj.get("params"),
            None | Some(Value::Null | Value::Object(_) | Value::Array(_))
        ) {
            return Err(invalid(usable, "\"params\" must be an object"));
        }
        return match id {
            Id::Absent => Ok(Message::Notification { method }),
            Id::Usable(id) => Ok(Message::Request {
                id: id.clone(),
                method,
            }),
            Id::Null => Err(invalid(None, "a request's id must not be null")),
            Id::Bad => Err(invalid(None, "\"id\" must be a string or a number")),
        };
    }
    match (result, error) {
        (Some(_), Some(_)) => Err(invalid(
            usable,
            "a response has a result or an error, not both",
        )),
        (Some(_), None) => match id {
            Id::Usable(id) => Ok(Message::Response { id: id.clone() }),
            _ => Err(invalid(None, "a response needs a string or number id")),
        },
        (None, Some(error)) => {
            let shaped = error.get("code").is_some_and(|c| c.is_i64())
                && error.get("message").is_some_and(Value::is_string);
            if !shaped {
                return Err(invalid(
                    usable,
                    "\"error\" must be an object with an integer code and a string message",
                ));
            }
            match id {
                Id::Usable(id) => Ok(Message::Error { id: id.clone() }),
                Id::Absent | Id::Null => Ok(Message::Error { id: Value::Null }),
                Id::Bad => Err(invalid(None, "\"id\" must be a string or a number")),
            }
        }
        (None, None) => Err(invalid(usable, "no method, result or error")),
    }
}

/// `{"jsonrpc":"2.0","id":<id or null>,"error":{"code":<code>,"message":<message>}}`.
pub fn error_body(id: Option<&Value>, code: i32, message: &str) -> Vec<u8> {
    let id = id.unwrap_or(&Value::Null);
    let message = Value::from(message);
    format!(r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":{code},"message":{message}}}}}"#)
        .into_bytes()
}

fn invalid(id: Option<&Value>, reason: &'static str) -> RpcError {
    RpcError::Invalid {
        id: id.cloned(),
        reason,
    }
}

/// A message's `id` member.
enum Id<'a> {
    Absent,
    Null,
    /// A string or a number.
    Usable(&'a Value),
    Bad,
}

impl<'a> Id<'a> {
    fn of(obj: &'a Map<String, Value>) -> Self {
        match obj.get("id") {
            None => Id::Absent,
            Some(Value::Null) => Id::Null,
            Some(v @ (Value::String(_) | Value::Number(_))) => Id::Usable(v),
            Some(_) => Id::Bad,
        }
    }

    fn usable(&self) -> Option<&'a Value> {
        match self {
            Id::Usable(v) => Some(v),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
