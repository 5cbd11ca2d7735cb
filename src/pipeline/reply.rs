//! Local replies: answers tollgate gives itself instead of the upstream's. Error replies
//! use the OpenAI-style JSON error shape, which is what LLM clients parse.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};

/// A reply produced by tollgate: ext_proc sends it as an `ImmediateResponse`, the proxy
/// as its response.
#[derive(Clone, Debug)]
pub struct LocalReply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// A short reason for logs (`details` in ext_proc).
    pub details: String,
}

impl LocalReply {
    /// A JSON error reply: `{"error":{"message":…,"type":…,"code":…}}`.
    pub fn error(status: StatusCode, kind: &str, message: &str) -> Self {
        let body = serde_json::json!({
            "error": {
                "message": message,
                "type": kind,
                "code": status.as_u16(),
            }
        });
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        LocalReply {
            status,
            headers,
            body: Bytes::from(body.to_string()),
            details: kind.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_is_openai_shaped_json() {
        let r = LocalReply::error(StatusCode::BAD_GATEWAY, "upstream_error", "no \"route\"");
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["error"]["message"], "no \"route\"");
        assert_eq!(v["error"]["type"], "upstream_error");
        assert_eq!(v["error"]["code"], 502);
        assert_eq!(r.headers["content-type"], "application/json");
    }
}
