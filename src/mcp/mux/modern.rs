//! The 2026-07-28 era's requests, once `envelope` has checked them. There are no
//! sessions: each request gets a session of its own, with no target sessions, at its
//! protocol version, and runs through the same dispatch table as a legacy session's
//! (lists merged, calls routed by prefix, rules and limits applied). What differs:
//!
//! | message | answer |
//! |---|---|
//! | `server/discover` | sent to every target; a modern version is offered only when every target offers it (else the client falls back to `initialize`) |
//! | `subscriptions/listen` | with several targets, sent to every target; their streams merged (`listen`): one acknowledgement, every notification, one result |
//! | notification | 202; dropped (the era defines none a server acts on) |
//! | a response from the client | 400: the era has no server→client requests |
//! | an error | its HTTP status follows its JSON-RPC code (400, or 404 for an unknown method) |
//!
//! Requests go to the targets with `Mcp-Method` / `Mcp-Name` made from the body sent,
//! and the client's `Mcp-Param-*` headers.

use bytes::Bytes;
use futures::future::join_all;
use std::time::Instant;

use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use serde_json::{json, Value};

use super::{json_reply, reply, Caller, McpBody, Multiplexer, Session};
use crate::mcp::envelope;
use crate::mcp::error::McpError;
use crate::mcp::events::{self, TargetStream};
use crate::mcp::jsonrpc::{self, Message, RpcError};
use crate::mcp::merge::merge_discover;
use crate::mcp::upstream::CallError;
use crate::mcp::TargetSession;

impl Multiplexer {
    /// A POST of the 2026-07-28 era (`value`, classified as `message`; `body` as sent).
    pub(super) async fn modern(
        &self,
        headers: &HeaderMap,
        value: Value,
        message: Message,
        body: Bytes,
        caller: Caller<'_>,
    ) -> Result<Response<McpBody>, McpError> {
        let (id, method) = match message {
            Message::Notification { .. } => {
                return Ok(reply(StatusCode::ACCEPTED, Bytes::new(), None));
            }
            Message::Response { id } | Message::Error { id } => {
                let reason = "MCP 2026-07-28 has no server requests to answer";
                return Err(McpError::Rpc(RpcError::Invalid {
                    id: Some(id),
                    reason,
                }));
            }
            Message::Request { id, method } => (id, method),
        };
        let version = envelope::check(headers, &value, &id)?;
        let state = self.stateless(&version, caller, headers);
        match method.as_str() {
            "server/discover" => self.discover(&state, id, body).await,
            "subscriptions/listen" if self.upstreams.len() > 1 => {
                self.listen(&state, id, body).await
            }
            _ => self.request(&state, id, &method, value, body).await,
        }
    }

    /// The session of one stateless request at `version`: no target sessions.
    pub(super) fn stateless(
        &self,
        version: &str,
        caller: Caller<'_>,
        headers: &HeaderMap,
    ) -> Session {
        let targets = self
            .upstreams
            .iter()
            .map(|t| TargetSession {
                target: t.name.clone(),
                session_id: None,
                protocol_version: version.to_string(),
            })
            .collect();
        let mut state = self.state(targets, version.to_string());
        state.subject = caller.subject().map(str::to_string);
        Session {
            token: String::new(),
            state,
            claims: caller.claims.cloned(),
            params: envelope::param_headers(headers),
        }
    }

    /// `server/discover`: the client's request to every target, the answers merged. A
    /// target that refuses it (an HTTP or JSON-RPC error) speaks only the handshake
    /// era, so the gateway offers only that era; a target that cannot be reached fails
    /// the request, as in every fan-out.
    async fn discover(
        &self,
        state: &Session,
        id: Value,
        body: Bytes,
    ) -> Result<Response<McpBody>, McpError> {
        let calls = (0..self.upstreams.len()).map(|i| {
            let sent = self.send_renewing(state, i, body.clone());
            let answer = self.answer(i, sent, &id, "server/discover");
            async move { (i, answer.await) }
        });
        let mut results = Vec::with_capacity(self.upstreams.len());
        let mut legacy = Vec::new();
        for (i, answer) in join_all(calls).await {
            match answer {
                Ok((_, result)) => results.push((i, result)),
                Err(CallError::Status(_) | CallError::Rpc { .. }) => legacy.push(i),
                Err(error) => {
                    let target = self.upstreams[i].name.clone();
                    return Err(McpError::Target { id, target, error });
                }
            }
        }
        if !legacy.is_empty() {
            let names: Vec<&str> = legacy
                .iter()
                .map(|&i| self.upstreams[i].name.as_str())
                .collect();
            tracing::debug!(route = %self.route, targets = ?names, "MCP targets speak only the handshake era; discover offers only it");
        }
        let merged = merge_discover(&self.targets, &results, legacy.is_empty());
        let answer = json!({"jsonrpc": "2.0", "id": id, "result": merged});
        Ok(json_reply(&answer, None))
    }
}

impl Multiplexer {
    /// `subscriptions/listen` with several targets: the client's request to every
    /// target, their listen streams merged into the client's. A target that does not
    /// open one is left out (logged); none at all is the first failure.
    async fn listen(
        &self,
        state: &Session,
        id: Value,
        body: Bytes,
    ) -> Result<Response<McpBody>, McpError> {
        let opened = (0..self.upstreams.len()).map(|i| {
            let sent = self.send_renewing(state, i, body.clone());
            async move {
                let started = Instant::now();
                let sent = sent.await;
                let ok = matches!(&sent, Ok(r) if r.status().is_success() && is_sse(r));
                self.count(i, "subscriptions/listen", ok, started);
                (i, sent)
            }
        });
        let mut streams = Vec::new();
        let mut failed = None;
        for (i, sent) in join_all(opened).await {
            match sent {
                Ok(r) if r.status().is_success() && is_sse(&r) => streams.push(TargetStream {
                    index: i,
                    body: r.into_body(),
                }),
                Ok(r) => {
                    let status = r.status().as_u16();
                    tracing::warn!(route = %self.route, target = %self.upstreams[i].name, status, "an MCP target opened no listen stream");
                    failed.get_or_insert((i, CallError::Status(status)));
                }
                Err(error) => {
                    failed.get_or_insert((i, error));
                }
            }
        }
        if streams.is_empty() {
            let (i, error) = failed.expect("a route has a target");
            let target = self.upstreams[i].name.clone();
            return Err(McpError::Target { id, target, error });
        }
        let body = events::merge_listen(streams, self.upstreams.len(), self.limit);
        let mut response = Response::new(body);
        let h = response.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        Ok(response)
    }
}

/// Whether `response` is an SSE stream.
fn is_sse<B>(response: &Response<B>) -> bool {
    response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/event-stream"))
}

/// The HTTP status of a 2026-07-28 error answer: 400 for a malformed, mismatched or
/// unsupported request, 404 for an unknown method; any other keeps `status` (403, 405,
/// 406, 415, or 200 for a failure on the way).
pub(super) fn status_for(status: StatusCode, body: &[u8]) -> StatusCode {
    let code = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|b| b.pointer("/error/code").and_then(Value::as_i64));
    let Some(code) = code.and_then(|c| i32::try_from(c).ok()) else {
        return status;
    };
    if status != StatusCode::OK && status != StatusCode::BAD_REQUEST {
        return status;
    }
    match code {
        jsonrpc::PARSE_ERROR
        | jsonrpc::INVALID_REQUEST
        | jsonrpc::INVALID_PARAMS
        | jsonrpc::HEADER_MISMATCH
        | jsonrpc::UNSUPPORTED_PROTOCOL_VERSION => StatusCode::BAD_REQUEST,
        jsonrpc::METHOD_NOT_FOUND => StatusCode::NOT_FOUND,
        _ => status,
    }
}

#[cfg(test)]
mod tests;
