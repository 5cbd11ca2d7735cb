//! `mcp_router`: on an MCP route with `mcp.direct`, sends each single-target call
//! (`tools/call`, `prompts/get`) straight to its target, as the route's multiplexer
//! plans it (`mcp::mux::direct`): the body under the item's own name, the target's
//! session, version and credentials, the client's token removed, the target's name in
//! the configured header and the route cache cleared — Envoy's route for that target
//! then carries it, and the standalone proxy sends it there itself (`cx.mcp_target`).
//! A call the gateway refuses (unknown prefix, a rule, a limit, a bad session) is
//! answered here, as the gateway would; every other message goes on unchanged — except
//! that a target header the client sent itself is removed (with the route cache
//! cleared), on every request, so no client picks Envoy's route to a target.
//!
//! On the answer it settles the call (limits kept or refunded, counted), turns a
//! target's 404 (it lost the session) into a JSON-RPC error after renewing that session,
//! and, with several targets, tags the ids of the server requests on a streamed answer
//! so the client's answers find their target through the gateway.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::Value;

use crate::config::FailureMode;
use crate::llm::{SseEvent, SseParser};
use crate::mcp::mux::{Caller, DirectCall, Multiplexer, Plan};
use crate::mcp::relay;
use crate::pipeline::{
    Body, BodyMode, Ctx, Flow, Headers, LocalReply, Processor, ProcessorError, ProcessorFactory,
};

/// Makes the router of one MCP route.
pub struct McpRouterFactory {
    mux: Arc<Multiplexer>,
    /// The most bytes of a client message read (the JSON body limit).
    limit: usize,
}

impl McpRouterFactory {
    pub fn new(mux: Arc<Multiplexer>, limit: usize) -> Self {
        McpRouterFactory { mux, limit }
    }
}

impl ProcessorFactory for McpRouterFactory {
    fn name(&self) -> &'static str {
        "mcp_router"
    }

    fn failure_mode(&self) -> FailureMode {
        FailureMode::FailClosed
    }

    fn new_processor(&self, cx: &Ctx) -> Option<Box<dyn Processor>> {
        Some(Box::new(McpRouter {
            mux: self.mux.clone(),
            limit: self.limit,
            // Only POSTs carry calls.
            post: cx.request.method == "POST",
            headers: HeaderMap::new(),
            call: None,
            relabel: None,
        }))
    }
}

struct McpRouter {
    mux: Arc<Multiplexer>,
    limit: usize,
    post: bool,
    /// The client's request headers, as the plan needs them.
    headers: HeaderMap,
    /// The call sent straight to its target, until its answer settles it.
    call: Option<Box<DirectCall>>,
    /// A streamed answer whose server requests get tagged with the target.
    relabel: Option<SseParser>,
}

#[async_trait]
impl Processor for McpRouter {
    async fn on_request_headers(
        &mut self,
        cx: &mut Ctx,
        headers: &mut Headers,
    ) -> Result<Flow, ProcessorError> {
        if let Some(name) = self.mux.direct_header() {
            if headers.map().contains_key(name) {
                headers.remove(name);
                cx.clear_route_cache = true;
            }
        }
        if self.post {
            self.headers = headers.map().clone();
        }
        Ok(Flow::Continue)
    }

    fn request_body_mode(&self) -> BodyMode {
        if self.post {
            BodyMode::Buffer { limit: self.limit }
        } else {
            BodyMode::Skip
        }
    }

    async fn on_request_body(
        &mut self,
        cx: &mut Ctx,
        body: &mut Body,
    ) -> Result<Flow, ProcessorError> {
        if !body.end_of_stream() || body.is_truncated() {
            // Too large to be a call: the gateway refuses it with its 413.
            return Ok(Flow::Continue);
        }
        let caller = Caller {
            claims: cx.jwt.as_ref(),
        };
        match self.mux.plan(&self.headers, body.data(), caller).await {
            Plan::Gateway => Ok(Flow::Continue),
            Plan::Answer { status, body } => Ok(Flow::Respond(json_reply(status, body))),
            Plan::Direct(call) => {
                body.replace(call.body.clone());
                cx.late_request_headers.extend(call.set.iter().cloned());
                cx.late_request_removals.extend(call.remove.iter().cloned());
                cx.clear_route_cache = true;
                cx.mcp_target = Some(call.index);
                self.call = Some(call);
                Ok(Flow::Continue)
            }
        }
    }

    async fn on_response_headers(
        &mut self,
        cx: &mut Ctx,
        headers: &mut Headers,
    ) -> Result<Flow, ProcessorError> {
        let Some(call) = self.call.as_mut() else {
            return Ok(Flow::Continue);
        };
        let status = cx.response_status.unwrap_or(0);
        if let Some((status, body)) = self.mux.finish_direct(call, status).await {
            self.call = None;
            return Ok(Flow::Respond(json_reply(status, body)));
        }
        let sse = headers
            .get_str("content-type")
            .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
        if sse && self.mux.tags_requests() {
            self.relabel = Some(SseParser::new());
        }
        Ok(Flow::Continue)
    }

    fn response_body_mode(&self) -> BodyMode {
        if self.relabel.is_some() {
            BodyMode::Stream
        } else {
            BodyMode::Skip
        }
    }

    async fn on_response_body(
        &mut self,
        _cx: &mut Ctx,
        body: &mut Body,
    ) -> Result<Flow, ProcessorError> {
        let (Some(parser), Some(call)) = (self.relabel.as_mut(), self.call.as_ref()) else {
            return Ok(Flow::Continue);
        };
        let mut events: Vec<SseEvent> = parser.push(body.data()).collect();
        if body.end_of_stream() {
            events.extend(parser.finish());
        }
        let mut out = Vec::new();
        for mut event in events {
            tag(&mut event, call.index);
            event.write_to(&mut out);
        }
        body.replace(Bytes::from(out));
        Ok(Flow::Continue)
    }
}

/// Tags `event`'s message with target `index` when it is a server request.
fn tag(event: &mut SseEvent, index: usize) {
    if !event.data.contains("\"method\"") {
        return;
    }
    if let Ok(mut message) = serde_json::from_str::<Value>(&event.data) {
        if relay::tag_request(&mut message, index) {
            event.data = message.to_string();
        }
    }
}

fn json_reply(status: StatusCode, body: Vec<u8>) -> LocalReply {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    LocalReply {
        status,
        headers,
        body: Bytes::from(body),
        details: "mcp_router".into(),
    }
}
