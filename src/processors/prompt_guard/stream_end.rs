//! Ending a guarded stream mid-way, and what each stream outcome does to the exchange:
//! a reject rule's error event, a buffer bound passed (per the failure mode), a body
//! that decodes past its bounds. [`end_stream`] is the one place that knows how an
//! adapter closes a stream whose headers are already out.

use http::StatusCode;

use super::rules::CompiledSide;
use super::stream::StreamOut;
use super::{error_reply, PromptGuard, ResponseMode};
use crate::llm::DecodeLimit;
use crate::pipeline::{Adapter, Body, Ctx, Flow, LocalReply};

// === impl PromptGuard ===

impl PromptGuard {
    /// What one chunk of a guarded stream became, applied to the exchange.
    pub(super) fn stream_out(
        &self,
        cx: &Ctx,
        side: &CompiledSide,
        body: &mut Body,
        out: StreamOut,
    ) -> Flow {
        match out {
            StreamOut::Emit(bytes) => {
                if bytes != body.data().as_ref() {
                    body.replace(bytes.into());
                }
                Flow::Continue
            }
            StreamOut::Reject { bytes, rule } => {
                let info = side.rule(rule);
                tracing::warn!(
                    target: "tollgate::guard",
                    request_id = %cx.request_id, route = cx.route.as_deref().unwrap_or(""),
                    side = "response", rule = %info.name, "prompt guard ended the stream"
                );
                let mut reply = LocalReply::error(info.status, "response_rejected", &info.message);
                reply.details = "prompt_guard_rejected".into();
                end_stream(cx, body, bytes, reply)
            }
            StreamOut::Limit {
                bytes,
                limit,
                ended,
            } => {
                self.shared.metrics.buffers.exceeded(
                    cx.route.as_deref(),
                    "prompt_guard",
                    limit.as_str(),
                );
                tracing::warn!(
                    target: "tollgate::guard", request_id = %cx.request_id,
                    limit = limit.as_str(), ended,
                    "response stream over a buffer limit; {}",
                    if ended { "ended (failClosed)" } else { "passed unguarded (failOpen)" }
                );
                if !ended {
                    body.replace(bytes.into());
                    return Flow::Continue;
                }
                let (status, kind) = (StatusCode::BAD_GATEWAY, "upstream_error");
                let mut reply = LocalReply::error(status, kind, "buffer limit");
                reply.details = "prompt_guard_buffer_limit".into();
                end_stream(cx, body, bytes, reply)
            }
        }
    }

    /// The response decodes past a bound: it ends here, whatever the failure mode (the
    /// client was told the body is not encoded; the rest could only go out decoded).
    pub(super) fn decode_limit(&mut self, cx: &Ctx, body: &mut Body, limit: DecodeLimit) -> Flow {
        self.decoder = None;
        self.shared
            .metrics
            .buffers
            .exceeded(cx.route.as_deref(), "prompt_guard", limit.as_str());
        tracing::warn!(
            target: "tollgate::guard", request_id = %cx.request_id,
            limit = limit.as_str(), "response decodes past a buffer limit; ended"
        );
        let (status, kind) = (StatusCode::BAD_GATEWAY, "upstream_error");
        let message = "the upstream response decompresses past the gateway's limits";
        match &mut self.response {
            ResponseMode::Stream(guard) => {
                let mut bytes = Vec::new();
                guard.end(&mut bytes, status.as_u16(), kind, message);
                let mut reply = LocalReply::error(status, kind, message);
                reply.details = "prompt_guard_buffer_limit".into();
                end_stream(cx, body, bytes, reply)
            }
            _ => Flow::Respond(error_reply(self.api, status, kind, message)),
        }
    }
}

/// Ends a stream mid-way with `bytes` as its last bytes. `reply` says why: its status is
/// only recorded (the upstream's went out with the headers).
fn end_stream(cx: &Ctx, body: &mut Body, bytes: Vec<u8>, mut reply: LocalReply) -> Flow {
    if cx.adapter == Adapter::Proxy {
        // The proxy sends this body and closes the stream.
        reply.headers.clear();
        reply.body = bytes.into();
        return Flow::Respond(reply);
    }
    body.replace(bytes.into());
    Flow::Continue
}
