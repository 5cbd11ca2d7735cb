//! The per-stream state machine. It takes Envoy's `ProcessingRequest`s in order and
//! returns the `ProcessingResponse`s to send, with exactly one reply of the matching kind
//! per message (none after an immediate response; FULL_DUPLEX_STREAMED replies may lag
//! and re-chunk). It owns the stream's `Exchange`, so dropping it mid-way (Envoy reset,
//! client gone) still runs `on_complete`.
//!
//! Body modes: `BUFFERED` / `BUFFERED_PARTIAL` / `STREAMED` answer each body message
//! with a `BodyResponse` (a replaced body, or a cleared chunk while tollgate buffers);
//! `FULL_DUPLEX_STREAMED` sends the body back as `streamed_response` chunks of at most
//! `MAX_STREAMED_CHUNK` bytes and defers the header reply while a processor buffers or
//! scans the body (a scan releases it, and the chunks held, as soon as it has read
//! enough; later chunks go back as they come). When processors need a different body mode than Envoy's static one, the header
//! reply carries a `mode_override` (not possible in FULL_DUPLEX_STREAMED); whether Envoy
//! honoured it is read from the body messages themselves (`side`), and each message is
//! answered for the mode it really came in.

mod reply;
mod side;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use envoy_types::pb::envoy::extensions::filters::http::ext_proc::v3::{
    processing_mode::{BodySendMode, HeaderSendMode},
    ProcessingMode,
};
use envoy_types::pb::envoy::service::ext_proc::v3::{
    processing_request::Request as In, processing_response::Response as Out, HttpBody, HttpHeaders,
    HttpTrailers, ProcessingRequest, ProcessingResponse, TrailersResponse,
};
use envoy_types::pb::google::protobuf::Struct;

use super::convert;
use crate::pipeline::{
    Adapter, BodyMode, BodyOutput, Ctx, Direction, Exchange, Headers, LocalReply, Outcome,
    Pipeline, Verdict,
};
pub use reply::MAX_STREAMED_CHUNK;
use reply::{attach_metadata, take_metadata};
pub use side::StreamError;
use side::{Overrides, SideState, Stage};

/// State of one ext_proc stream.
pub struct ExtProcStream {
    pipeline: Arc<Pipeline>,
    exchange: Option<Exchange>,
    request: SideState,
    response: SideState,
    /// What the body messages showed about Envoy honouring `mode_override`.
    overrides: Overrides,
    saw_protocol_config: bool,
    /// Set once an immediate response went out: nothing more is sent.
    local_reply: Option<u16>,
}

impl ExtProcStream {
    pub fn new(pipeline: Arc<Pipeline>) -> Self {
        ExtProcStream {
            pipeline,
            exchange: None,
            request: SideState::new(),
            response: SideState::new(),
            overrides: Overrides::Unknown,
            saw_protocol_config: false,
            local_reply: None,
        }
    }

    /// The replies to one message from Envoy.
    pub async fn on_message(
        &mut self,
        msg: ProcessingRequest,
    ) -> Result<Vec<ProcessingResponse>, StreamError> {
        if !self.saw_protocol_config {
            if let Some(pc) = &msg.protocol_config {
                self.request.configure(pc.request_body_mode);
                self.response.configure(pc.response_body_mode);
                self.saw_protocol_config = true;
            }
        }
        if self.local_reply.is_some() {
            tracing::debug!("ext_proc message after an immediate response; ignored");
            return Ok(Vec::new());
        }
        let observability = msg.observability_mode;
        let attributes = msg.attributes;
        let md = msg.metadata_context.as_ref();
        let (jwt, subset) = (convert::jwt_claims(md), convert::endpoint_subset(md));
        let served = convert::served_endpoint(md);
        let mut out = match msg.request.ok_or(StreamError::Empty)? {
            In::RequestHeaders(h) => self.request_headers(h, &attributes, jwt, subset).await?,
            In::RequestBody(b) => self.body(Direction::Request, b).await?,
            In::RequestTrailers(t) => self.trailers(Direction::Request, t).await?,
            In::ResponseHeaders(h) => self.response_headers(h, served).await?,
            In::ResponseBody(b) => self.body(Direction::Response, b).await?,
            In::ResponseTrailers(t) => self.trailers(Direction::Response, t).await?,
        };
        if observability {
            // Envoy does not wait for (or read) replies in observability mode.
            out.clear();
        }
        Ok(out)
    }

    /// The stream ended: Envoy closed or reset it, or the client went away.
    pub fn end(&mut self) {
        let Some(ex) = self.exchange.as_mut() else {
            return;
        };
        let outcome = match (self.local_reply, ex.cx.response_status) {
            (Some(status), _) => Outcome::LocalReply { status },
            // The response was complete, or its body was of no interest to tollgate (or
            // will not be sent to it).
            (None, Some(status))
                if self.response.stage == Stage::Done
                    || ex.response_body_mode() == BodyMode::Skip
                    || self.response.sends_no_body() =>
            {
                Outcome::Completed { status }
            }
            _ => Outcome::ClientGone,
        };
        ex.finish(outcome);
    }

    // --- phases ---

    async fn request_headers(
        &mut self,
        msg: HttpHeaders,
        attributes: &HashMap<String, Struct>,
        jwt: Option<serde_json::Value>,
        subset: Option<Vec<String>>,
    ) -> Result<Vec<ProcessingResponse>, StreamError> {
        self.request.advance(Stage::Headers, "request_headers")?;
        let (head, map, _) = convert::split_headers(msg.headers.as_ref());
        self.request.declared_len = content_length(&map);
        let envoy_route = convert::attribute(&msg.attributes, "xds.route_name")
            .or_else(|| convert::attribute(attributes, "xds.route_name"));
        let route = self
            .pipeline
            .ext_proc_routes
            .select(&head, &map, envoy_route);
        let request_id = map.get("x-request-id").and_then(|v| v.to_str().ok());
        let mut cx = Ctx::new(Adapter::ExtProc, head, request_id);
        cx.jwt = jwt;
        cx.endpoint_subset = subset;
        cx.request_body_empty = msg.end_of_stream;
        let mut ex = Exchange::new(self.pipeline.clone(), cx, route);
        let mut headers = Headers::new(map);
        let verdict = ex.request_headers(&mut headers).await;
        self.exchange = Some(ex);
        if let Verdict::Respond(reply) = verdict {
            return Ok(self.respond(reply));
        }
        if msg.end_of_stream {
            self.request.stage = Stage::Done;
        }
        let ex = self.exchange.as_mut().expect("set above");
        let needed = ex.request_body_mode();
        let clear = std::mem::take(&mut ex.cx.clear_route_cache);
        let mut common = reply::common(&headers.diff(), clear);
        if let Some(path) = &ex.cx.upstream_path {
            reply::set_path(&mut common, path);
        }
        let mut resp = ProcessingResponse {
            dynamic_metadata: take_metadata(ex),
            response: Some(reply::headers(Direction::Request, common)),
            ..Default::default()
        };
        if !msg.end_of_stream {
            resp.mode_override = self.override_for(Direction::Request, needed);
        }
        if self.request.mode == BodySendMode::FullDuplexStreamed
            && !msg.end_of_stream
            && needed.holds()
        {
            self.request.deferred = Some(resp);
            return Ok(Vec::new());
        }
        Ok(vec![resp])
    }

    async fn response_headers(
        &mut self,
        msg: HttpHeaders,
        served: Option<String>,
    ) -> Result<Vec<ProcessingResponse>, StreamError> {
        self.response.advance(Stage::Headers, "response_headers")?;
        if let Verdict::Respond(reply) = self.request_body_unseen() {
            return Ok(self.respond(reply));
        }
        let (_, map, status) = convert::split_headers(msg.headers.as_ref());
        self.response.declared_len = content_length(&map);
        let ex = self.exchange_or_passthrough();
        ex.cx.response_status = status;
        if served.is_some() {
            ex.cx.served_endpoint = served;
        }
        let mut headers = Headers::new(map);
        if let Verdict::Respond(reply) = ex.response_headers(&mut headers).await {
            return Ok(self.respond(reply));
        }
        let ex = self.exchange.as_mut().expect("created above");
        let needed = ex.response_body_mode();
        let mut resp = ProcessingResponse {
            dynamic_metadata: take_metadata(ex),
            response: Some(reply::headers(
                Direction::Response,
                reply::common(&headers.diff(), false),
            )),
            ..Default::default()
        };
        if msg.end_of_stream {
            self.response.stage = Stage::Done;
        } else {
            resp.mode_override = self.override_for(Direction::Response, needed);
            // A body a processor may rewrite as it streams has no known length.
            if needed == BodyMode::Stream
                && matches!(
                    self.response.intended(),
                    BodySendMode::Streamed | BodySendMode::FullDuplexStreamed
                )
            {
                reply::drop_content_length(&mut resp);
                self.response.dropped_length = true;
            }
        }
        if self.response.mode == BodySendMode::FullDuplexStreamed
            && !msg.end_of_stream
            && needed.holds()
        {
            self.response.deferred = Some(resp);
            return Ok(Vec::new());
        }
        if msg.end_of_stream {
            self.finish_completed();
        }
        Ok(vec![resp])
    }

    async fn body(
        &mut self,
        dir: Direction,
        msg: HttpBody,
    ) -> Result<Vec<ProcessingResponse>, StreamError> {
        let name = dir.pick("request_body", "response_body");
        let side = dir.pick(&mut self.request, &mut self.response);
        side.advance(Stage::Body, name)?;
        let before = self.overrides;
        let mode = side.classify(msg.body.len(), msg.end_of_stream, &mut self.overrides);
        self.count_ignored(before);
        let truncated = mode == BodySendMode::BufferedPartial && !msg.end_of_stream;
        // A BUFFERED message is the whole body even when trailers follow (Envoy then
        // sends it without end_of_stream).
        let whole = msg.end_of_stream || mode == BodySendMode::Buffered;
        let data = Bytes::from(msg.body);
        let ex = self.exchange_or_passthrough();
        let output = match ex.body_chunk(dir, data, whole, truncated).await {
            Verdict::Respond(reply) => return Ok(self.respond(reply)),
            Verdict::Continue(output) => output,
        };
        if msg.end_of_stream {
            self.side(dir).stage = Stage::Done;
        }
        let mut out = Vec::new();
        if mode == BodySendMode::FullDuplexStreamed {
            let sending = !output.data.is_empty() || output.end_of_stream;
            // A scan that ended on a chunk with nothing to send still frees the headers.
            let released = !self.exchange_or_passthrough().body_mode(dir).holds();
            if sending || released {
                out.extend(self.flush_deferred(dir, &output));
            }
            if sending {
                out.extend(reply::streamed_chunks(
                    dir,
                    output.data,
                    output.end_of_stream,
                ));
            }
        } else {
            out.push(self.body_reply(dir, mode, &output));
        }
        // Metadata waits for a reply to carry it (a held FULL_DUPLEX chunk has none).
        if !out.is_empty() {
            let metadata = take_metadata(self.exchange.as_mut().expect("created above"));
            attach_metadata(&mut out, metadata);
        }
        if dir == Direction::Response && msg.end_of_stream {
            self.finish_completed();
        }
        Ok(out)
    }

    async fn trailers(
        &mut self,
        dir: Direction,
        msg: HttpTrailers,
    ) -> Result<Vec<ProcessingResponse>, StreamError> {
        let name = dir.pick("request_trailers", "response_trailers");
        let before = self.side(dir).stage;
        self.side(dir).advance(Stage::Trailers, name)?;
        if dir == Direction::Response {
            if let Verdict::Respond(reply) = self.request_body_unseen() {
                return Ok(self.respond(reply));
            }
        }
        let mode = self.side(dir).mode;
        let mut out = Vec::new();
        // FULL_DUPLEX_STREAMED: trailers end the body; flush what tollgate held.
        if mode == BodySendMode::FullDuplexStreamed && before < Stage::Done {
            let ex = self.exchange_or_passthrough();
            match ex.body_chunk(dir, Bytes::new(), true, false).await {
                Verdict::Respond(reply) => return Ok(self.respond(reply)),
                Verdict::Continue(output) => {
                    out.extend(self.flush_deferred(dir, &output));
                    if !output.data.is_empty() {
                        out.extend(reply::streamed_chunks(dir, output.data, false));
                    }
                }
            }
        }
        let (_, map, _) = convert::split_headers(msg.trailers.as_ref());
        let mut trailers = Headers::new(map);
        let ex = self.exchange_or_passthrough();
        if let Verdict::Respond(reply) = ex.trailers(dir, &mut trailers).await {
            return Ok(self.respond(reply));
        }
        self.side(dir).stage = Stage::Done;
        let reply = TrailersResponse {
            header_mutation: convert::mutation(&trailers.diff()),
        };
        out.push(ProcessingResponse {
            response: Some(match dir {
                Direction::Request => Out::RequestTrailers(reply),
                Direction::Response => Out::ResponseTrailers(reply),
            }),
            ..Default::default()
        });
        let metadata = take_metadata(self.exchange.as_mut().expect("created above"));
        attach_metadata(&mut out, metadata);
        if dir == Direction::Response {
            self.finish_completed();
        }
        Ok(out)
    }

    // --- helpers ---

    /// The reply to a body message that came in `mode` (not FULL_DUPLEX_STREAMED). A
    /// buffered body's headers are still held by Envoy: they get the late headers, the
    /// length of a rewritten body (or the one the header reply removed) and the
    /// route-cache clear.
    fn body_reply(
        &mut self,
        dir: Direction,
        mode: BodySendMode,
        output: &BodyOutput,
    ) -> ProcessingResponse {
        let buffered = matches!(mode, BodySendMode::Buffered | BodySendMode::BufferedPartial);
        let restore_length = buffered && output.end_of_stream && self.side(dir).dropped_length;
        let cx = &mut self.exchange.as_mut().expect("created above").cx;
        let clear = std::mem::take(&mut cx.clear_route_cache);
        if !buffered {
            return reply::body_reply(dir, output, Vec::new(), Vec::new(), false);
        }
        let mut late = cx.take_late_headers(dir, output);
        if restore_length && !late.iter().any(|(n, _)| n == http::header::CONTENT_LENGTH) {
            let len = http::HeaderValue::from(output.data.len());
            late.push((http::header::CONTENT_LENGTH, len));
        }
        let removals = match dir {
            Direction::Request => std::mem::take(&mut cx.late_request_removals),
            Direction::Response => Vec::new(),
        };
        let clear = clear && dir == Direction::Request;
        reply::body_reply(dir, output, late, removals, clear)
    }

    /// FULL_DUPLEX_STREAMED: the held header reply, now completed with what the body
    /// phase decided for the headers — late headers (the pick, usage totals, the new
    /// length of a rewritten body), a route-cache clear and the dynamic metadata, all
    /// on this one reply (the endpoint picker's contract).
    fn flush_deferred(&mut self, dir: Direction, body: &BodyOutput) -> Option<ProcessingResponse> {
        let mut resp = self.side(dir).deferred.take()?;
        let Some(ex) = self.exchange.as_mut() else {
            return Some(resp);
        };
        let late = ex.cx.take_late_headers(dir, body);
        let clear = dir == Direction::Request && std::mem::take(&mut ex.cx.clear_route_cache);
        let removals = match dir {
            Direction::Request => std::mem::take(&mut ex.cx.late_request_removals),
            Direction::Response => Vec::new(),
        };
        if let Some(common) = reply::common_mut(&mut resp) {
            reply::merge_late(common, late);
            reply::merge_removals(common, removals);
            common.clear_route_cache |= clear;
        }
        let metadata = take_metadata(ex);
        attach_metadata(std::slice::from_mut(&mut resp), metadata);
        Some(resp)
    }

    /// Counts the stream once when its messages have just shown Envoy ignoring
    /// `mode_override`.
    fn count_ignored(&self, before: Overrides) {
        if before != Overrides::Ignored && self.overrides == Overrides::Ignored {
            self.pipeline.metrics.mode_override_ignored.inc();
        }
    }

    fn side(&mut self, dir: Direction) -> &mut SideState {
        dir.pick(&mut self.request, &mut self.response)
    }

    /// Envoy went on to the response without the request body tollgate asked for
    /// (`allow_mode_override: false` over a static NONE body mode): the processors that
    /// needed it never saw it, and their failure modes decide.
    fn request_body_unseen(&mut self) -> Verdict {
        let before = self.overrides;
        if self.request.stage != Stage::Headers
            || !self.request.body_never_came(&mut self.overrides)
        {
            return Verdict::Continue(());
        }
        self.count_ignored(before);
        tracing::warn!(
            "Envoy sent no request body although tollgate asked for it with mode_override: \
             set allow_mode_override: true on Envoy's ext_proc filter, or extProc.modeOverride: false"
        );
        match self.exchange.as_mut() {
            Some(ex) => ex.body_unseen(Direction::Request),
            None => Verdict::Continue(()),
        }
    }

    /// The exchange; one with no route when Envoy skipped the request headers.
    fn exchange_or_passthrough(&mut self) -> &mut Exchange {
        let pipeline = &self.pipeline;
        self.exchange.get_or_insert_with(|| {
            let cx = Ctx::new(Adapter::ExtProc, Default::default(), None);
            Exchange::new(pipeline.clone(), cx, None)
        })
    }

    fn respond(&mut self, reply: LocalReply) -> Vec<ProcessingResponse> {
        let status = reply.status.as_u16();
        self.local_reply = Some(status);
        let mut resp = ProcessingResponse {
            response: Some(Out::ImmediateResponse(convert::immediate(&reply))),
            ..Default::default()
        };
        if let Some(ex) = self.exchange.as_mut() {
            resp.dynamic_metadata = take_metadata(ex);
            ex.finish(Outcome::LocalReply { status });
        }
        vec![resp]
    }

    fn finish_completed(&mut self) {
        if let Some(ex) = self.exchange.as_mut() {
            let status = ex.cx.response_status.unwrap_or(0);
            ex.finish(Outcome::Completed { status });
        }
    }

    /// The mode override that gives processors the body they need, if Envoy's mode does
    /// not and overrides are on (and not known to be ignored).
    fn override_for(&mut self, dir: Direction, needed: BodyMode) -> Option<ProcessingMode> {
        let enabled = self
            .pipeline
            .config()
            .ext_proc
            .as_ref()
            .is_none_or(|e| e.mode_override);
        // An override names both directions' modes, and Envoy accepts none that names
        // FULL_DUPLEX_STREAMED: with either direction in it, no override is sent.
        let duplex = BodySendMode::FullDuplexStreamed;
        if !enabled || self.request.mode == duplex || self.response.mode == duplex {
            return None;
        }
        let current = self.side(dir).mode;
        let wanted = match (needed, current) {
            (BodyMode::Skip, _) => BodySendMode::None,
            (BodyMode::Stream, _) => BodySendMode::Streamed,
            // Scanning holds the header reply too: out of FULL_DUPLEX_STREAMED only a
            // buffered body can still change the request's headers.
            (BodyMode::Buffer { .. } | BodyMode::Scan { .. }, BodySendMode::BufferedPartial) => {
                current
            }
            (BodyMode::Buffer { .. } | BodyMode::Scan { .. }, _) => BodySendMode::Buffered,
        };
        let overrides = self.overrides;
        self.side(dir).request_override(wanted, overrides)?;
        Some(ProcessingMode {
            request_header_mode: HeaderSendMode::Send as i32,
            response_header_mode: HeaderSendMode::Send as i32,
            request_body_mode: self.request.intended() as i32,
            response_body_mode: self.response.intended() as i32,
            request_trailer_mode: HeaderSendMode::Skip as i32,
            response_trailer_mode: HeaderSendMode::Skip as i32,
        })
    }
}

impl Drop for ExtProcStream {
    /// Envoy may end a stream by resetting it, and tonic then drops it unread: how the
    /// exchange ended is judged the same way as for a stream that closed.
    fn drop(&mut self) {
        self.end();
    }
}

/// The `content-length` a header block declares.
fn content_length(map: &http::HeaderMap) -> Option<u64> {
    map.get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests;
