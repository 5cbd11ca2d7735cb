//! `Exchange`, the only driver of processors. It runs the route's processors in order for
//! each phase, stops at the first local reply, applies each processor's failure mode to
//! its errors, buffers bodies when a processor asks for the whole body (or holds them
//! while one scans their start), and calls
//! `on_complete` exactly once on every processor — from `finish`, or from `Drop` when the
//! client or Envoy went away. Adapters translate its verdicts and nothing else.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::StatusCode;

use super::{
    Body, BodyMode, BodyOutput, CompiledRoute, Ctx, Direction, Flow, Headers, LocalReply, Outcome,
    Pipeline, Processor, ProcessorError,
};
use crate::config::FailureMode;
use crate::metrics::ProcessorLabels;

/// The answer to one phase.
#[must_use]
#[derive(Debug)]
pub enum Verdict<T = ()> {
    /// Go on (with this output, for body phases).
    Continue(T),
    /// Answer the client with this reply and end the exchange.
    Respond(LocalReply),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HeaderPhase {
    Request,
    RequestTrailers,
    Response,
    ResponseTrailers,
}

struct Slot {
    name: &'static str,
    failure_mode: FailureMode,
    processor: Box<dyn Processor>,
    /// False once the processor failed open: it is skipped from then on.
    active: bool,
    request_body: BodyMode,
    response_body: BodyMode,
}

#[derive(Default)]
struct BodyState {
    mode: Option<BodyMode>,
    held: BytesMut,
    /// The processors already saw the whole body: a transport that sends more (a chunk
    /// it had not announced) gets it passed on untouched, never a second "whole" body.
    delivered: bool,
    /// A processor ended the body (`Body::end_stream`): later chunks are dropped.
    ended: bool,
}

/// One HTTP exchange in flight.
pub struct Exchange {
    pipeline: Arc<Pipeline>,
    route: Option<Arc<CompiledRoute>>,
    slots: Vec<Slot>,
    pub cx: Ctx,
    request_body: BodyState,
    response_body: BodyState,
    /// What the access line's CEL fields read (headers, bodies), kept as it passes.
    capture: Option<Box<crate::access_log::Capture>>,
    finished: bool,
}

// === impl Exchange ===

impl Exchange {
    /// Starts an exchange on `route` (none: no processors run).
    pub fn new(pipeline: Arc<Pipeline>, mut cx: Ctx, route: Option<Arc<CompiledRoute>>) -> Self {
        cx.route = route.as_ref().map(|r| r.name.clone());
        let slots = route
            .iter()
            .flat_map(|r| r.factories.iter())
            .filter_map(|f| {
                f.new_processor(&cx).map(|processor| Slot {
                    name: f.name(),
                    failure_mode: f.failure_mode(),
                    processor,
                    active: true,
                    request_body: BodyMode::Skip,
                    response_body: BodyMode::Skip,
                })
            })
            .collect();
        let capture = crate::access_log::Capture::new(&pipeline.access_log);
        Exchange {
            pipeline,
            route,
            slots,
            cx,
            request_body: BodyState::default(),
            response_body: BodyState::default(),
            capture,
            finished: false,
        }
    }

    pub fn route(&self) -> Option<&Arc<CompiledRoute>> {
        self.route.as_ref()
    }

    pub fn pipeline(&self) -> &Arc<Pipeline> {
        &self.pipeline
    }

    /// True when no processor runs for this exchange.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Runs the request-header phase. Sets `cx.clear_route_cache` when a routing header
    /// changed, unless a processor keeps the route (`cx.keep_route`).
    pub async fn request_headers(&mut self, headers: &mut Headers) -> Verdict {
        let verdict = self.header_phase(HeaderPhase::Request, headers).await;
        self.capture_headers(Direction::Request, headers);
        if let Verdict::Respond(reply) = verdict {
            return Verdict::Respond(reply);
        }
        let routing = &self.pipeline.clear_route_cache_on;
        if !self.cx.keep_route && headers.touched().iter().any(|n| routing.contains(n)) {
            self.cx.clear_route_cache = true;
        }
        self.negotiate_body(Direction::Request);
        Verdict::Continue(())
    }

    /// The request body mode the processors need; `Skip` before request headers ran.
    pub fn request_body_mode(&self) -> BodyMode {
        self.request_body.mode.unwrap_or(BodyMode::Skip)
    }

    /// Runs the response-header phase; `cx.response_status` must be set.
    pub async fn response_headers(&mut self, headers: &mut Headers) -> Verdict {
        let verdict = self.header_phase(HeaderPhase::Response, headers).await;
        self.capture_headers(Direction::Response, headers);
        if let Verdict::Respond(reply) = verdict {
            return Verdict::Respond(reply);
        }
        self.negotiate_body(Direction::Response);
        Verdict::Continue(())
    }

    /// The response body mode the processors need; `Skip` before response headers ran.
    pub fn response_body_mode(&self) -> BodyMode {
        self.response_body.mode.unwrap_or(BodyMode::Skip)
    }

    /// One request body chunk in; what to forward now out. `truncated`: the transport
    /// will send no more of this body to tollgate (Envoy BUFFERED_PARTIAL).
    pub async fn request_body(
        &mut self,
        data: Bytes,
        end_of_stream: bool,
        truncated: bool,
    ) -> Verdict<BodyOutput> {
        self.body(Direction::Request, data, end_of_stream, truncated)
            .await
    }

    /// One response body chunk in; what to forward now out.
    pub async fn response_body(
        &mut self,
        data: Bytes,
        end_of_stream: bool,
        truncated: bool,
    ) -> Verdict<BodyOutput> {
        self.body(Direction::Response, data, end_of_stream, truncated)
            .await
    }

    /// The body mode `dir`'s processors need (`request_body_mode` / `response_body_mode`).
    pub fn body_mode(&self, dir: Direction) -> BodyMode {
        dir.pick(&self.request_body, &self.response_body)
            .mode
            .unwrap_or(BodyMode::Skip)
    }

    /// One body chunk of `dir` in; what to forward now out.
    pub async fn body_chunk(
        &mut self,
        dir: Direction,
        data: Bytes,
        end_of_stream: bool,
        truncated: bool,
    ) -> Verdict<BodyOutput> {
        self.body(dir, data, end_of_stream, truncated).await
    }

    /// The transport went past `dir`'s body without delivering it although processors
    /// asked for it (Envoy ignoring a `mode_override`). A fail-closed processor that
    /// needed the body answers 500 (`<name>_body_unseen`); fail-open ones carry on
    /// without it.
    pub fn body_unseen(&mut self, dir: Direction) -> Verdict {
        let needed = |s: &Slot| s.active && slot_mode(s, dir) != BodyMode::Skip;
        if let Some(slot) = self
            .slots
            .iter()
            .find(|s| needed(s) && s.failure_mode == FailureMode::FailClosed)
        {
            let message = format!(
                "policy {} could not inspect the {} body",
                slot.name,
                dir.as_str()
            );
            let mut reply =
                LocalReply::error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", &message);
            reply.details = format!("{}_body_unseen", slot.name);
            return Verdict::Respond(self.local_reply(reply));
        }
        for slot in self.slots.iter_mut().filter(|s| needed(s)) {
            tracing::warn!(
                processor = slot.name,
                direction = dir.as_str(),
                request_id = %self.cx.request_id,
                "the transport did not deliver the body; processor skips it (fail open)"
            );
        }
        Verdict::Continue(())
    }

    /// The trailers of `dir`.
    pub async fn trailers(&mut self, dir: Direction, trailers: &mut Headers) -> Verdict {
        let phase = dir.pick(HeaderPhase::RequestTrailers, HeaderPhase::ResponseTrailers);
        self.header_phase(phase, trailers).await
    }

    pub async fn request_trailers(&mut self, trailers: &mut Headers) -> Verdict {
        self.header_phase(HeaderPhase::RequestTrailers, trailers)
            .await
    }

    pub async fn response_trailers(&mut self, trailers: &mut Headers) -> Verdict {
        self.header_phase(HeaderPhase::ResponseTrailers, trailers)
            .await
    }

    /// Ends the exchange: `on_complete` on every processor, the metrics and the log
    /// line. Later calls (and `Drop`) do nothing.
    pub fn finish(&mut self, outcome: Outcome) {
        if self.finished {
            return;
        }
        self.finished = true;
        for slot in &mut self.slots {
            slot.processor.on_complete(&mut self.cx, &outcome);
        }
        self.record(&outcome);
    }

    // --- phases ---

    /// Runs every active processor's hook for a header block, in order.
    async fn header_phase(&mut self, phase: HeaderPhase, block: &mut Headers) -> Verdict {
        for i in 0..self.slots.len() {
            if !self.slots[i].active {
                continue;
            }
            let (p, cx) = (&mut self.slots[i].processor, &mut self.cx);
            let result = match phase {
                HeaderPhase::Request => p.on_request_headers(cx, block),
                HeaderPhase::RequestTrailers => p.on_request_trailers(cx, block),
                HeaderPhase::Response => p.on_response_headers(cx, block),
                HeaderPhase::ResponseTrailers => p.on_response_trailers(cx, block),
            }
            .await;
            if let Some(reply) = self.settle(i, result) {
                return Verdict::Respond(reply);
            }
        }
        Verdict::Continue(())
    }

    /// Asks the active processors (and the access-log capture) which body they need;
    /// the strongest mode wins.
    fn negotiate_body(&mut self, dir: Direction) {
        let mut mode = self.capture_body_mode(dir);
        for slot in self.slots.iter_mut().filter(|s| s.active) {
            let wanted = match dir {
                Direction::Request => {
                    slot.request_body = slot.processor.request_body_mode();
                    slot.request_body
                }
                Direction::Response => {
                    slot.response_body = slot.processor.response_body_mode();
                    slot.response_body
                }
            };
            mode = mode.strongest(wanted);
        }
        self.body_state(dir).mode = Some(mode);
    }

    async fn body(
        &mut self,
        dir: Direction,
        data: Bytes,
        end_of_stream: bool,
        truncated: bool,
    ) -> Verdict<BodyOutput> {
        let state = self.body_state(dir);
        if state.ended || state.delivered {
            let ended = state.ended;
            return Verdict::Continue(BodyOutput {
                data: if ended { Bytes::new() } else { data.clone() },
                end_of_stream,
                changed: ended && !data.is_empty(),
                ends_stream: false,
            });
        }
        let mut mode = state.mode.unwrap_or(BodyMode::Skip);
        if let Some(limit) = mode.limit() {
            let total = self.body_state(dir).held.len() + data.len();
            if total > limit {
                match self.shed_buffering(dir, total) {
                    Verdict::Respond(reply) => return Verdict::Respond(reply),
                    Verdict::Continue(left) => mode = left,
                }
            }
        }
        match mode {
            BodyMode::Buffer { .. } => {
                return self.buffer(dir, data, end_of_stream, truncated).await
            }
            BodyMode::Scan { .. } => return self.scan(dir, data, end_of_stream, truncated).await,
            _ => {}
        }
        // Skip or Stream; anything held from an earlier Buffer goes out with this chunk.
        let state = self.body_state(dir);
        let released = !state.held.is_empty();
        let data = if released {
            state.held.extend_from_slice(&data);
            state.held.split().freeze()
        } else {
            data
        };
        let verdict = match mode {
            BodyMode::Stream => {
                self.run_body(dir, Body::new(data, end_of_stream, false, truncated))
                    .await
            }
            _ => Verdict::Continue(BodyOutput {
                data,
                end_of_stream,
                changed: false,
                ends_stream: false,
            }),
        };
        match verdict {
            Verdict::Continue(mut out) => {
                out.changed |= released;
                Verdict::Continue(out)
            }
            respond => respond,
        }
    }

    /// Buffer mode within the limit: hold the chunk, or run the processors on the whole
    /// body once it is complete.
    async fn buffer(
        &mut self,
        dir: Direction,
        data: Bytes,
        end_of_stream: bool,
        truncated: bool,
    ) -> Verdict<BodyOutput> {
        let state = self.body_state(dir);
        if !end_of_stream && !truncated {
            state.held.extend_from_slice(&data);
            return Verdict::Continue(BodyOutput {
                data: Bytes::new(),
                end_of_stream: false,
                changed: !data.is_empty(),
                ends_stream: false,
            });
        }
        state.delivered = true;
        let held_before = !state.held.is_empty();
        let whole = if held_before {
            state.held.extend_from_slice(&data);
            state.held.split().freeze()
        } else {
            data
        };
        match self
            .run_body(dir, Body::new(whole, end_of_stream, true, truncated))
            .await
        {
            Verdict::Continue(mut out) => {
                out.changed |= held_before;
                Verdict::Continue(out)
            }
            respond => respond,
        }
    }

    /// Scan mode: the chunk goes to the processors as it comes, and is held (with what
    /// came before) while one of them still scans; once none does — or the body ended —
    /// everything held goes out with it.
    async fn scan(
        &mut self,
        dir: Direction,
        data: Bytes,
        end_of_stream: bool,
        truncated: bool,
    ) -> Verdict<BodyOutput> {
        let body = Body::new(data, end_of_stream, false, truncated);
        let out = match self.run_body(dir, body).await {
            Verdict::Continue(out) => out,
            respond => return respond,
        };
        let scanning = self.renegotiate_scan(dir);
        let state = self.body_state(dir);
        if scanning && !end_of_stream && !truncated && !out.ends_stream {
            state.held.extend_from_slice(&out.data);
            return Verdict::Continue(BodyOutput {
                data: Bytes::new(),
                end_of_stream: false,
                changed: true,
                ends_stream: false,
            });
        }
        let held_before = !state.held.is_empty();
        let data = if held_before {
            state.held.extend_from_slice(&out.data);
            state.held.split().freeze()
        } else {
            out.data
        };
        Verdict::Continue(BodyOutput {
            data,
            changed: out.changed || held_before,
            ..out
        })
    }

    /// After a scanned chunk: asks the scanning processors again which body they need
    /// (a scan only ever gets weaker) and settles the exchange's mode; true while some
    /// processor still scans.
    fn renegotiate_scan(&mut self, dir: Direction) -> bool {
        let mut mode = self.capture_body_mode(dir);
        for slot in self.slots.iter_mut().filter(|s| s.active) {
            if matches!(slot_mode(slot, dir), BodyMode::Scan { .. }) {
                let now = match dir {
                    Direction::Request => slot.processor.request_body_mode(),
                    Direction::Response => slot.processor.response_body_mode(),
                };
                if !now.holds() {
                    match dir {
                        Direction::Request => slot.request_body = now,
                        Direction::Response => slot.response_body = now,
                    }
                }
            }
            mode = mode.strongest(slot_mode(slot, dir));
        }
        self.body_state(dir).mode = Some(mode);
        matches!(mode, BodyMode::Scan { .. })
    }

    /// The body reached `total` bytes, over some buffering processor's limit. A
    /// fail-closed processor whose own limit is exceeded answers 413 (request) or 502
    /// (response); fail-open ones whose limit is exceeded stop seeing this body. Returns
    /// the body mode the remaining processors need.
    fn shed_buffering(&mut self, dir: Direction, total: usize) -> Verdict<BodyMode> {
        let over =
            |s: &Slot| s.active && slot_mode(s, dir).limit().is_some_and(|limit| limit < total);
        if let Some(slot) = self
            .slots
            .iter()
            .find(|s| over(s) && s.failure_mode == FailureMode::FailClosed)
        {
            let Some(limit) = slot_mode(slot, dir).limit() else {
                unreachable!("filtered on a limit above")
            };
            let (status, kind, what) = match dir {
                Direction::Request => (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "request_too_large",
                    "request body",
                ),
                Direction::Response => (StatusCode::BAD_GATEWAY, "upstream_error", "response body"),
            };
            let message = format!(
                "{what} exceeds the {limit}-byte limit of policy {}",
                slot.name
            );
            let reply = LocalReply::error(status, kind, &message);
            return Verdict::Respond(self.local_reply(reply));
        }
        let mut mode = self.capture_body_mode(dir);
        for slot in self.slots.iter_mut() {
            if over(slot) {
                tracing::warn!(
                    processor = slot.name,
                    total,
                    "body over the buffer limit; processor skips it (fail open)"
                );
                match dir {
                    Direction::Request => slot.request_body = BodyMode::Skip,
                    Direction::Response => slot.response_body = BodyMode::Skip,
                }
            }
            if slot.active {
                mode = mode.strongest(slot_mode(slot, dir));
            }
        }
        self.body_state(dir).mode = Some(mode);
        Verdict::Continue(mode)
    }

    fn body_state(&mut self, dir: Direction) -> &mut BodyState {
        match dir {
            Direction::Request => &mut self.request_body,
            Direction::Response => &mut self.response_body,
        }
    }

    async fn run_body(&mut self, dir: Direction, mut body: Body) -> Verdict<BodyOutput> {
        for i in 0..self.slots.len() {
            let slot = &mut self.slots[i];
            if !slot.active || slot_mode(slot, dir) == BodyMode::Skip {
                continue;
            }
            let result = match dir {
                Direction::Request => slot.processor.on_request_body(&mut self.cx, &mut body),
                Direction::Response => slot.processor.on_response_body(&mut self.cx, &mut body),
            }
            .await;
            if let Some(reply) = self.settle(i, result) {
                return Verdict::Respond(reply);
            }
        }
        let out = body.into_output();
        self.capture_body(dir, &out.data);
        if out.ends_stream {
            self.body_state(dir).ended = true;
        }
        Verdict::Continue(out)
    }

    /// Lets every processor that ran see a reply the exchange gives itself (CORS
    /// headers on a 401 a later policy answered), last in the list first, as on a
    /// response.
    fn local_reply(&mut self, mut reply: LocalReply) -> LocalReply {
        for slot in self.slots.iter_mut().rev().filter(|s| s.active) {
            slot.processor.on_local_reply(&self.cx, &mut reply);
        }
        self.capture_reply(&reply);
        reply
    }

    /// Applies a processor's answer: `Some(reply)` when the exchange must answer now.
    fn settle(&mut self, i: usize, result: Result<Flow, ProcessorError>) -> Option<LocalReply> {
        let reply = self.settled(i, result)?;
        Some(self.local_reply(reply))
    }

    fn settled(&mut self, i: usize, result: Result<Flow, ProcessorError>) -> Option<LocalReply> {
        match result {
            Ok(Flow::Continue) => None,
            Ok(Flow::Respond(reply)) => Some(reply),
            Err(err) => {
                let slot = &mut self.slots[i];
                let mode = match slot.failure_mode {
                    FailureMode::FailOpen => "fail_open",
                    FailureMode::FailClosed => "fail_closed",
                };
                self.pipeline
                    .metrics
                    .processor_errors
                    .get_or_create(&ProcessorLabels {
                        processor: slot.name,
                        failure_mode: mode,
                    })
                    .inc();
                tracing::warn!(processor = slot.name, failure_mode = mode, request_id = %self.cx.request_id, error = %err, "processor failed");
                match slot.failure_mode {
                    FailureMode::FailOpen => {
                        slot.active = false;
                        None
                    }
                    FailureMode::FailClosed => Some(error_reply(slot.name, &err, &self.cx)),
                }
            }
        }
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        self.finish(Outcome::ClientGone);
    }
}

fn slot_mode(slot: &Slot, dir: Direction) -> BodyMode {
    dir.pick(slot.request_body, slot.response_body)
}

/// The one place a processor error becomes a reply: in the LLM API's own error format
/// when the exchange is an LLM call. A server-side failure's detail stays in the log
/// (written by `settle`), not in the reply.
fn error_reply(processor: &str, err: &ProcessorError, cx: &Ctx) -> LocalReply {
    let kind = if err.status.is_server_error() {
        "server_error"
    } else {
        "invalid_request_error"
    };
    let message = match err.status {
        StatusCode::SERVICE_UNAVAILABLE => format!("policy {processor} is unavailable"),
        s if s.is_server_error() => format!("policy {processor} failed"),
        // A client error's message is meant for the client.
        _ => format!("policy {processor} failed: {}", err.message),
    };
    let mut reply = LocalReply::error(err.status, kind, &message);
    if let Some(llm) = &cx.llm {
        reply.body = llm
            .api
            .error_body(err.status.as_u16(), kind, &message)
            .into();
    }
    reply.details = format!("{processor}_failed");
    reply
}

mod capture;
mod record;

#[cfg(test)]
mod tests;
