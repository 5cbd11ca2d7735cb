//! Prefill/decode roles of simulated instances. A `decode` (or `both`) instance that
//! receives `x-prefiller-host-port` first sends the prompt to that instance — a real
//! HTTP call, so the prefill instance's queue and compute are really used: the same
//! request with `max_tokens` 1, not streamed — then, instead of prefilling itself,
//! pulls the prompt's KV blocks (see `Running::transfer`) and decodes. A `prefill`
//! instance ignores the header (it never hands work on). When the prefill call fails
//! the decode instance prefills itself.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// The request header naming the prefill instance.
pub const PREFILLER_HEADER: &str = "x-prefiller-host-port";
/// The response header naming the instance that ran the prefill.
pub const PREFILL_ENDPOINT_HEADER: &str = "x-sim-prefill-endpoint";

/// What an instance serves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// Prefills for decode instances (and serves whatever it is sent, aggregated).
    Prefill,
    /// Decodes, pulling the KV cache of the prefill instance a request names.
    Decode,
    /// Both (the default): a request naming a prefill instance is decoded as `decode`.
    #[default]
    Both,
}

/// The HTTP client of prefill calls.
pub type PrefillClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> PrefillClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Why a prefill call failed.
#[derive(Debug, thiserror::Error)]
pub enum PrefillError {
    #[error("{0:?} is not an ip:port")]
    Target(String),
    #[error("the request body is not a JSON object")]
    Body,
    #[error("calling the prefill instance: {0}")]
    Call(String),
    #[error("the prefill instance answered {0}")]
    Status(StatusCode),
}

/// The prefill instance a request to an instance in `role` names, if it is to be used.
pub fn prefiller(role: Role, headers: &HeaderMap) -> Option<Result<SocketAddr, PrefillError>> {
    if role == Role::Prefill {
        return None;
    }
    let value = headers.get(PREFILLER_HEADER)?.to_str().unwrap_or_default();
    let value = value.trim();
    Some(
        value
            .parse()
            .map_err(|_| PrefillError::Target(value.to_string())),
    )
}

/// The request sent for a prefill: `body` with `max_tokens` 1, not streamed.
pub fn prefill_body(body: &[u8]) -> Result<Vec<u8>, PrefillError> {
    let mut v: serde_json::Value = serde_json::from_slice(body).map_err(|_| PrefillError::Body)?;
    let o = v.as_object_mut().ok_or(PrefillError::Body)?;
    o.remove("max_completion_tokens");
    o.remove("stream_options");
    o.insert("max_tokens".into(), 1.into());
    o.insert("stream".into(), false.into());
    serde_json::to_vec(&v).map_err(|_| PrefillError::Body)
}

/// Runs the prefill of `body` (a request to `path`) at `target`; the name it answers
/// under (`x-sim-endpoint`, else `target`).
pub async fn remote_prefill(
    client: &PrefillClient,
    target: SocketAddr,
    path: &str,
    body: &[u8],
) -> Result<String, PrefillError> {
    let req = Request::builder()
        .method(Method::POST)
        .uri(format!("http://{target}{path}"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(prefill_body(body)?)))
        .map_err(|e| PrefillError::Call(e.to_string()))?;
    let resp = client
        .request(req)
        .await
        .map_err(|e| PrefillError::Call(e.to_string()))?;
    let status = resp.status();
    let name = resp
        .headers()
        .get("x-sim-endpoint")
        .and_then(|v| v.to_str().ok())
        .map_or_else(|| target.to_string(), str::to_string);
    // The body is the one token; read it so the prefill instance finishes the request.
    let _ = resp.into_body().collect().await;
    if status != StatusCode::OK {
        return Err(PrefillError::Status(status));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefill_request_asks_for_one_token_unstreamed() {
        let body = br#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"max_completion_tokens":50,"messages":[]}"#;
        let v: serde_json::Value = serde_json::from_slice(&prefill_body(body).unwrap()).unwrap();
        assert_eq!(v["max_tokens"], 1);
        assert_eq!(v["stream"], false);
        assert!(v.get("stream_options").is_none() && v.get("max_completion_tokens").is_none());
        assert_eq!(v["model"], "m");
        assert!(prefill_body(b"[1]").is_err());
    }

    #[test]
    fn only_decoding_roles_follow_the_header() {
        let mut h = HeaderMap::new();
        assert!(prefiller(Role::Decode, &h).is_none());
        h.insert(PREFILLER_HEADER, "127.0.0.1:9".parse().unwrap());
        assert_eq!(
            prefiller(Role::Both, &h).unwrap().unwrap(),
            "127.0.0.1:9".parse::<SocketAddr>().unwrap()
        );
        assert!(prefiller(Role::Prefill, &h).is_none());
        h.insert(PREFILLER_HEADER, "nope".parse().unwrap());
        assert!(prefiller(Role::Decode, &h).unwrap().is_err());
    }
}
