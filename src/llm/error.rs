//! The one error type of the `llm` module. Each variant says what was being read and
//! where it went wrong, so a processor can hand the message to a client or a log as is.

use super::decode::DecodeLimit;
use super::Api;

/// What went wrong while reading LLM traffic.
///
/// The underlying `serde_json` error is part of the message (not a separate `source`), so
/// `to_string()` alone is a complete, client-presentable sentence.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// A request body is not the JSON the API expects. `path` is the JSON path of the
    /// offending value (`messages[2].content`), or `.` for the body itself.
    #[error("invalid {api} request body at {path}: {error}")]
    InvalidRequest {
        api: Api,
        path: String,
        error: serde_json::Error,
    },
    /// A whole (non-streamed) response body is not JSON of the expected shape.
    #[error("invalid {api} response body: {error}")]
    InvalidResponse { api: Api, error: serde_json::Error },
    /// `set_include_usage` was given a body that is not a JSON object.
    #[error("cannot set stream_options.include_usage: {reason}")]
    IncludeUsage { reason: String },
    /// A `content-encoding` this module cannot decode.
    #[error("unsupported content-encoding {0:?} (supported: identity, gzip, x-gzip, deflate, br)")]
    UnsupportedEncoding(String),
    /// The compressed bytes are not a valid stream of the encoding.
    #[error("corrupt {encoding} body after {consumed} compressed bytes: {detail}")]
    CorruptEncoding {
        encoding: &'static str,
        consumed: u64,
        detail: String,
    },
    /// The body ended before its compressed stream did.
    #[error("{encoding} body ends inside its compressed stream, after {consumed} bytes")]
    TruncatedEncoding {
        encoding: &'static str,
        consumed: u64,
    },
    /// Bytes follow the end of the compressed stream.
    #[error("{encoding} body has {extra} bytes after the end of its compressed stream")]
    TrailingData {
        encoding: &'static str,
        extra: usize,
    },
    /// The body decodes to more than its limits allow (a decompression bomb, or a body
    /// far larger than any completion).
    #[error("{encoding} body decodes past its {limit} limit: {decoded} bytes from {consumed} compressed bytes")]
    DecodeLimit {
        encoding: &'static str,
        limit: DecodeLimit,
        decoded: u64,
        consumed: u64,
    },
}
