//! Ending a guarded stream mid-way, and what each stream outcome does to the exchange:
//! a reject rule's error event, a buffer bound passed (per the failure mode), a body
//! that decodes past its bounds. A stream whose headers are already out ends with the
//! pipeline's `Body::end_stream` verb, which each adapter carries out its own way.

use http::StatusCode;

use super::rules::CompiledSide;
use super::stream::StreamOut;
use super::{error_reply, PromptGuard, ResponseMode};
use crate::llm::DecodeLimit;
use crate::pipeline::{Body, Ctx, Flow};

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
            // The caller has put the decoded bytes in place of an encoded body.
            StreamOut::Unchanged => Flow::Continue,
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
                end_stream(body, bytes)
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
                end_stream(body, bytes)
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
                end_stream(body, bytes)
            }
            _ => Flow::Respond(error_reply(self.api, status, kind, message)),
        }
    }
}

/// Ends a stream mid-way with `bytes` as its last bytes (the upstream's status went out
/// with the headers; each adapter closes the stream its own way).
fn end_stream(body: &mut Body, bytes: Vec<u8>) -> Flow {
    body.end_stream(bytes.into());
    Flow::Continue
}
