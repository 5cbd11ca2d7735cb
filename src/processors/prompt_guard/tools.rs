//! `mcpGuard`: the prompt guard's rules on an MCP route's tool calls — `request` rules
//! on the string values of a `tools/call`'s `params.arguments`, `response` rules on the
//! strings of the tool's `result` (JSON, or the answering message of an SSE stream).
//! Binary payloads (`data`, `blob`) and media types are not scanned. The
//! `Mcp-Param-*` headers of a 2026-07-28 call mirror arguments, so `request` rules scan
//! them too: a masked value is masked in its header as in the body (the target checks
//! that they agree), a rejected one rejects the call.
//!
//! A reject answers the call with a JSON-RPC error on a 200 (`-32000`, the rule's
//! message, `data.rule`), which the SDKs raise while the session goes on; a mask
//! rewrites the strings in place, every other byte kept; an audit counts. Other
//! messages (lists, notifications, …) pass untouched. CEL conditions, webhooks and
//! moderation belong to LLM prompts and are refused here by the config.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde_json::{json, Value};

use super::json::Seg;
use super::request::Decision;
use super::rules::{CompiledSide, SideKind};
use super::{response, Tally};
use crate::config::{ConfigError, FailureMode, PromptGuardPolicy};
use crate::llm::{SseEvent, SseParser};
use crate::mcp::envelope::{decode_header_value, encode_header_value, MCP_PARAM_PREFIX};
use crate::metrics::{GuardLabels, Metrics};
use crate::pipeline::{
    Body, BodyMode, BuildCx, Ctx, Flow, Headers, LocalReply, Processor, ProcessorError,
    ProcessorFactory,
};

/// Keys whose strings are never scanned: binary content and types.
const SKIPPED: &[&str] = &["data", "blob", "mimeType", "type"];

/// Factory of one `mcpGuard` policy.
pub struct McpGuardFactory {
    shared: Arc<Shared>,
}

struct Shared {
    arguments: Option<CompiledSide>,
    results: Option<CompiledSide>,
    failure_mode: FailureMode,
    max_request_bytes: usize,
    max_response_bytes: usize,
    metrics: Arc<Metrics>,
}

impl McpGuardFactory {
    /// Compiles the policy at `path` (`….policies.mcpGuard`).
    pub fn new(p: &PromptGuardPolicy, bcx: &BuildCx<'_>, path: &str) -> Result<Self, ConfigError> {
        if p.request.is_none() && p.response.is_none() {
            return Err(ConfigError::field(path, "give request or response rules"));
        }
        let cel = &bcx.config.limits.cel;
        let side = |s: &Option<crate::config::GuardSide>, kind: SideKind| {
            let Some(s) = s else { return Ok(None) };
            let at = format!("{path}.{}", kind.as_str());
            if s.webhook.is_some() || s.moderation.is_some() {
                let which = if s.webhook.is_some() {
                    "webhook"
                } else {
                    "moderation"
                };
                return Err(ConfigError::field(
                    format!("{at}.{which}"),
                    "not supported by mcpGuard",
                ));
            }
            if let Some(i) = s.rules.iter().position(|r| r.cel.is_some()) {
                return Err(ConfigError::field(
                    format!("{at}.rules[{i}].cel"),
                    "not supported by mcpGuard",
                ));
            }
            CompiledSide::new(s, kind, cel, &at).map(Some)
        };
        Ok(McpGuardFactory {
            shared: Arc::new(Shared {
                arguments: side(&p.request, SideKind::Request)?,
                results: side(&p.response, SideKind::Response)?,
                failure_mode: p.failure_mode,
                max_request_bytes: p.max_request_bytes,
                max_response_bytes: p.max_response_bytes,
                metrics: bcx.services.metrics.clone(),
            }),
        })
    }
}

impl ProcessorFactory for McpGuardFactory {
    fn name(&self) -> &'static str {
        "mcp_guard"
    }

    fn failure_mode(&self) -> FailureMode {
        self.shared.failure_mode
    }

    fn new_processor(&self, _cx: &Ctx) -> Option<Box<dyn Processor>> {
        Some(Box::new(McpGuard {
            shared: self.shared.clone(),
            params: Vec::new(),
            call: None,
            stream: None,
        }))
    }
}

struct McpGuard {
    shared: Arc<Shared>,
    /// The client's `Mcp-Param-*` headers, decoded.
    params: Vec<(HeaderName, String)>,
    /// The id of the `tools/call` this exchange carries.
    call: Option<Value>,
    /// A streamed result: the parser of the answer's events.
    stream: Option<SseParser>,
}

#[async_trait]
impl Processor for McpGuard {
    fn request_body_mode(&self) -> BodyMode {
        BodyMode::Buffer {
            limit: self.shared.max_request_bytes,
        }
    }

    async fn on_request_headers(
        &mut self,
        _cx: &mut Ctx,
        headers: &mut Headers,
    ) -> Result<Flow, ProcessorError> {
        self.params = headers
            .map()
            .iter()
            .filter(|(name, _)| name.as_str().starts_with(MCP_PARAM_PREFIX))
            .filter_map(|(name, value)| Some((name.clone(), decode_header_value(value)?)))
            .collect();
        Ok(Flow::Continue)
    }

    async fn on_request_body(
        &mut self,
        cx: &mut Ctx,
        body: &mut Body,
    ) -> Result<Flow, ProcessorError> {
        if !body.end_of_stream() {
            return Ok(Flow::Continue);
        }
        let Ok(message) = serde_json::from_slice::<Value>(body.data()) else {
            return Ok(Flow::Continue); // not JSON: the gateway answers it
        };
        if message.get("method").and_then(Value::as_str) != Some("tools/call") {
            return Ok(Flow::Continue);
        }
        let id = message.get("id").cloned().unwrap_or(Value::Null);
        self.call = Some(id.clone());
        let Some(side) = &self.shared.arguments else {
            return Ok(Flow::Continue);
        };
        if body.is_truncated() {
            return Ok(self.unchecked(&id, "the tool call is larger than the guard checks"));
        }
        let started = Instant::now();
        let mut tally = Tally::new(side);
        let decision = response::check_strings(side, body.data(), &mut tally, is_argument);
        let params = guard_params(side, &self.params, &mut tally);
        self.report(cx, side, &tally, started);
        match params {
            Err(rule) => return Ok(Flow::Respond(rejection(side, rule, &id))),
            Ok(changed) => cx.late_request_headers.extend(changed),
        }
        match decision {
            Decision::Reject(rule) => Ok(Flow::Respond(rejection(side, rule, &id))),
            Decision::Rewrite(new) => {
                body.replace(Bytes::from(new));
                Ok(Flow::Continue)
            }
            Decision::Pass | Decision::Error(_) => Ok(Flow::Continue),
        }
    }

    async fn on_response_headers(
        &mut self,
        _cx: &mut Ctx,
        headers: &mut Headers,
    ) -> Result<Flow, ProcessorError> {
        if self.call.is_some() && self.shared.results.is_some() {
            let sse = headers
                .get_str("content-type")
                .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
            if sse {
                self.stream = Some(SseParser::new());
            } else {
                headers.remove(&http::header::CONTENT_LENGTH);
            }
        }
        Ok(Flow::Continue)
    }

    fn response_body_mode(&self) -> BodyMode {
        match (&self.call, &self.shared.results, &self.stream) {
            (Some(_), Some(_), Some(_)) => BodyMode::Stream,
            (Some(_), Some(_), None) => BodyMode::Buffer {
                limit: self.shared.max_response_bytes,
            },
            _ => BodyMode::Skip,
        }
    }

    async fn on_response_body(
        &mut self,
        cx: &mut Ctx,
        body: &mut Body,
    ) -> Result<Flow, ProcessorError> {
        let (Some(id), Some(side)) = (self.call.clone(), self.shared.results.as_ref()) else {
            return Ok(Flow::Continue);
        };
        let started = Instant::now();
        let mut tally = Tally::new(side);
        let out = match self.stream.as_mut() {
            Some(parser) => {
                let events: Vec<SseEvent> = parser.push(body.data()).collect();
                let mut out = Vec::new();
                for mut event in events {
                    guard_event(side, &id, &mut event, &mut tally);
                    event.write_to(&mut out);
                }
                if body.end_of_stream() {
                    if let Some(mut event) = parser.finish() {
                        guard_event(side, &id, &mut event, &mut tally);
                        event.write_to(&mut out);
                    }
                }
                Some(out)
            }
            None if body.is_truncated() => {
                let reply = self.unchecked(&id, "the tool result is larger than the guard checks");
                return Ok(reply);
            }
            None if !body.end_of_stream() => None,
            None => match response::check_strings(side, body.data(), &mut tally, is_result) {
                Decision::Reject(rule) => Some(error_body(side, rule, &id)),
                Decision::Rewrite(new) => Some(new),
                Decision::Pass | Decision::Error(_) => None,
            },
        };
        self.report(cx, side, &tally, started);
        if let Some(out) = out {
            body.replace(Bytes::from(out));
        }
        Ok(Flow::Continue)
    }
}

impl McpGuard {
    fn report(&self, cx: &Ctx, side: &CompiledSide, tally: &Tally, started: Instant) {
        let metrics = &self.shared.metrics;
        metrics
            .guard_duration
            .get_or_create(&crate::metrics::SideLabels {
                side: side.kind.as_str(),
            })
            .observe(started.elapsed().as_secs_f64());
        let route = cx.route.clone().unwrap_or_default();
        for (i, &n) in tally.0.iter().enumerate().filter(|(_, &n)| n > 0) {
            let rule = side.rule(i);
            metrics
                .guard_findings
                .get_or_create(&GuardLabels {
                    route: route.clone(),
                    side: side.kind.as_str(),
                    rule: rule.name.clone(),
                    action: rule.action.as_str(),
                })
                .inc_by(n);
        }
    }

    /// A call or result the guard cannot check: fail closed answers with an error.
    fn unchecked(&self, id: &Value, message: &str) -> Flow {
        match self.shared.failure_mode {
            FailureMode::FailClosed => Flow::Respond(rpc_reply(id, message, json!({}))),
            FailureMode::FailOpen => {
                tracing::warn!(target: "tollgate::guard", "{message}; passed unchecked (failOpen)");
                Flow::Continue
            }
        }
    }
}

/// A string under `params.arguments` (not binary).
fn is_argument(path: &[Seg<'_>]) -> bool {
    path.len() > 2
        && path[0].key() == Some("params")
        && path[1].key() == Some("arguments")
        && scanned(path)
}

/// The `Mcp-Param-*` values `side`'s rules change, re-encoded; or the rule that
/// rejects one. Each value is checked as the argument string it mirrors.
fn guard_params(
    side: &CompiledSide,
    params: &[(HeaderName, String)],
    tally: &mut Tally,
) -> Result<Vec<(HeaderName, HeaderValue)>, usize> {
    let mut changed = Vec::new();
    for (name, value) in params {
        let doc = json!({"params": {"arguments": {"value": value}}}).to_string();
        match response::check_strings(side, doc.as_bytes(), tally, is_argument) {
            Decision::Reject(rule) => return Err(rule),
            Decision::Rewrite(new) => {
                let new: Option<Value> = serde_json::from_slice(&new).ok();
                let text = new
                    .as_ref()
                    .and_then(|v| v.pointer("/params/arguments/value"));
                // A value that cannot be rewritten is not sent on unmasked.
                let header = text
                    .and_then(Value::as_str)
                    .map_or_else(|| HeaderValue::from_static(""), encode_header_value);
                changed.push((name.clone(), header));
            }
            Decision::Pass | Decision::Error(_) => {}
        }
    }
    Ok(changed)
}

/// A string under `result` (not binary).
fn is_result(path: &[Seg<'_>]) -> bool {
    path.first().and_then(Seg::key) == Some("result") && scanned(path)
}

fn scanned(path: &[Seg<'_>]) -> bool {
    !path
        .last()
        .and_then(Seg::key)
        .is_some_and(|k| SKIPPED.contains(&k))
}

/// Guards `event` in place when it is the answer to call `id`.
fn guard_event(side: &CompiledSide, id: &Value, event: &mut SseEvent, tally: &mut Tally) {
    let answers = serde_json::from_str::<Value>(&event.data)
        .is_ok_and(|m| m.get("id") == Some(id) && m.get("result").is_some());
    if !answers {
        return;
    }
    match response::check_strings(side, event.data.as_bytes(), tally, is_result) {
        Decision::Reject(rule) => {
            event.data = String::from_utf8(error_body(side, rule, id)).expect("JSON is UTF-8");
        }
        Decision::Rewrite(new) => {
            if let Ok(text) = String::from_utf8(new) {
                event.data = text;
            }
        }
        Decision::Pass | Decision::Error(_) => {}
    }
}

fn error_body(side: &CompiledSide, rule: usize, id: &Value) -> Vec<u8> {
    let rule = side.rule(rule);
    tracing::warn!(target: "tollgate::guard", side = side.kind.as_str(), rule = %rule.name, "MCP guard rejected a tool call");
    let body = json!({"jsonrpc": "2.0", "id": id, "error": {
        "code": crate::mcp::jsonrpc::LIMITED, "message": rule.message, "data": {"rule": rule.name},
    }});
    body.to_string().into_bytes()
}

fn rejection(side: &CompiledSide, rule: usize, id: &Value) -> LocalReply {
    let body = error_body(side, rule, id);
    reply(Bytes::from(body), "mcp_guard_rejected")
}

fn rpc_reply(id: &Value, message: &str, data: Value) -> LocalReply {
    let body = json!({"jsonrpc": "2.0", "id": id, "error": {
        "code": crate::mcp::jsonrpc::INTERNAL_ERROR, "message": message, "data": data,
    }});
    reply(Bytes::from(body.to_string()), "mcp_guard_unchecked")
}

fn reply(body: Bytes, details: &str) -> LocalReply {
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    LocalReply {
        status: StatusCode::OK,
        headers,
        body,
        details: details.to_string(),
    }
}

#[cfg(test)]
mod tests;
