//! The processor contract. A `ProcessorFactory` is built once per config snapshot and
//! makes a `Processor` for each exchange its route handles; the processor sees the phases
//! in lifecycle order. Every hook has a no-op default, so a processor implements only the
//! phases it cares about.

use async_trait::async_trait;

use super::{Body, BodyMode, Ctx, Headers, LocalReply, Outcome, ProcessorError};
use crate::config::FailureMode;

/// What a processor wants after a phase.
#[must_use]
#[derive(Debug)]
pub enum Flow {
    /// Go on with the next processor / phase.
    Continue,
    /// Stop here and answer the client with this reply; nothing more goes upstream.
    Respond(LocalReply),
}

/// Built once per config snapshot; makes a processor per exchange.
pub trait ProcessorFactory: Send + Sync {
    /// Name used in logs and metrics.
    fn name(&self) -> &'static str;
    /// What an error of this processor does to the exchange.
    fn failure_mode(&self) -> FailureMode;
    /// A processor for this exchange, or `None` when it does not apply to it.
    fn new_processor(&self, cx: &Ctx) -> Option<Box<dyn Processor>>;
}

/// One processor instance, living for one exchange.
#[async_trait]
pub trait Processor: Send {
    /// Request headers arrived (pseudo-headers are in `cx.request`).
    async fn on_request_headers(
        &mut self,
        _cx: &mut Ctx,
        _headers: &mut Headers,
    ) -> Result<Flow, ProcessorError> {
        Ok(Flow::Continue)
    }

    /// How much of the request body this processor needs. Asked after request headers.
    fn request_body_mode(&self) -> BodyMode {
        BodyMode::Skip
    }

    /// A request body chunk (`Stream`) or the whole body (`Buffer`).
    async fn on_request_body(
        &mut self,
        _cx: &mut Ctx,
        _body: &mut Body,
    ) -> Result<Flow, ProcessorError> {
        Ok(Flow::Continue)
    }

    /// Request trailers, when the transport carries them.
    async fn on_request_trailers(
        &mut self,
        _cx: &mut Ctx,
        _trailers: &mut Headers,
    ) -> Result<Flow, ProcessorError> {
        Ok(Flow::Continue)
    }

    /// Response headers arrived from the upstream (status in `cx.response_status`).
    async fn on_response_headers(
        &mut self,
        _cx: &mut Ctx,
        _headers: &mut Headers,
    ) -> Result<Flow, ProcessorError> {
        Ok(Flow::Continue)
    }

    /// How much of the response body this processor needs. Asked after response headers.
    fn response_body_mode(&self) -> BodyMode {
        BodyMode::Skip
    }

    /// A response body chunk (`Stream`) or the whole body (`Buffer`).
    async fn on_response_body(
        &mut self,
        _cx: &mut Ctx,
        _body: &mut Body,
    ) -> Result<Flow, ProcessorError> {
        Ok(Flow::Continue)
    }

    /// Response trailers, when the transport carries them.
    async fn on_response_trailers(
        &mut self,
        _cx: &mut Ctx,
        _trailers: &mut Headers,
    ) -> Result<Flow, ProcessorError> {
        Ok(Flow::Continue)
    }

    /// The exchange answers the client itself (this processor or another refused the
    /// request, or a body went over a limit): a last look at that reply, as at a
    /// response's headers. Called on every active processor, last in order first.
    fn on_local_reply(&mut self, _cx: &Ctx, _reply: &mut LocalReply) {}

    /// Runs exactly once on every path: completed, answered locally, failed, or client
    /// gone. Usage accounting that must not be lost belongs here.
    fn on_complete(&mut self, _cx: &mut Ctx, _outcome: &Outcome) {}
}
