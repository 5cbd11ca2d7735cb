//! The per-stream state machine. It takes Envoy's `ProcessingRequest`s in order and
//! returns the `ProcessingResponse`s to send, with exactly one reply of the matching kind
//! per message (none after an immediate response; FULL_DUPLEX_STREAMED replies may lag
//! and re-chunk). It owns the stream's `Exchange`, so dropping it mid-way (Envoy reset,
//! client gone) still runs `on_complete`.
//!
//! Body modes: `BUFFERED` / `BUFFERED_PARTIAL` / `STREAMED` answer each body message
//! with a `BodyResponse` (a replaced body, or a cleared chunk while tollgate buffers);
//! `FULL_DUPLEX_STREAMED` sends the body back as `streamed_response` chunks of at most
//! `MAX_STREAMED_CHUNK` bytes and defers the header reply while a processor buffers the
//! body. When processors need a different body mode than Envoy's static one, the header
//! reply carries a `mode_override` (not possible in FULL_DUPLEX_STREAMED).

use std::sync::Arc;

use bytes::Bytes;
use envoy_types::pb::envoy::extensions::filters::http::ext_proc::v3::{
    processing_mode::{BodySendMode, HeaderSendMode},
    ProcessingMode,
};
use envoy_types::pb::envoy::service::ext_proc::v3::{
    body_mutation::Mutation, processing_request::Request as In,
    processing_response::Response as Out, BodyMutation, BodyResponse, CommonResponse,
    HeadersResponse, HttpBody, HttpHeaders, HttpTrailers, ProcessingRequest, ProcessingResponse,
    StreamedBodyResponse, TrailersResponse,
};
use http::{HeaderName, HeaderValue};

use super::convert;
use crate::pipeline::{
    Adapter, BodyMode, BodyOutput, Ctx, Exchange, HeaderDiff, Headers, LocalReply, Outcome,
    Pipeline, Verdict,
};

/// Largest body chunk sent back in one `streamed_response` (Envoy's gRPC message budget
/// with room for framing).
pub const MAX_STREAMED_CHUNK: usize = 62_000;

/// A message Envoy should not have sent at this point.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("ext_proc message without a request phase")]
    Empty,
    #[error("ext_proc {got} received after {after}")]
    OutOfOrder {
        got: &'static str,
        after: &'static str,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    None,
    Headers,
    Body,
    Trailers,
    Done,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Request,
    Response,
}

/// One direction's progress.
struct SideState {
    stage: Stage,
    /// Body mode Envoy is believed to use now (static, or as overridden).
    mode: BodySendMode,
    /// FULL_DUPLEX_STREAMED: the header reply held back until the body is processed.
    deferred: Option<ProcessingResponse>,
}

/// State of one ext_proc stream.
pub struct ExtProcStream {
    pipeline: Arc<Pipeline>,
    exchange: Option<Exchange>,
    request: SideState,
    response: SideState,
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
                self.request.mode = body_mode(pc.request_body_mode);
                self.response.mode = body_mode(pc.response_body_mode);
                self.saw_protocol_config = true;
            }
        }
        if self.local_reply.is_some() {
            tracing::debug!("ext_proc message after an immediate response; ignored");
            return Ok(Vec::new());
        }
        let observability = msg.observability_mode;
        let attributes = msg.attributes;
        let jwt = convert::jwt_claims(msg.metadata_context.as_ref());
        let subset = convert::endpoint_subset(msg.metadata_context.as_ref());
        let served = convert::served_endpoint(msg.metadata_context.as_ref());
        let mut out = match msg.request.ok_or(StreamError::Empty)? {
            In::RequestHeaders(h) => self.request_headers(h, &attributes, jwt, subset).await?,
            In::RequestBody(b) => self.body(Side::Request, b).await?,
            In::RequestTrailers(t) => self.trailers(Side::Request, t).await?,
            In::ResponseHeaders(h) => self.response_headers(h, served).await?,
            In::ResponseBody(b) => self.body(Side::Response, b).await?,
            In::ResponseTrailers(t) => self.trailers(Side::Response, t).await?,
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
            // The response was complete, or its body was of no interest to tollgate.
            (None, Some(status))
                if self.response.stage == Stage::Done
                    || ex.response_body_mode() == BodyMode::Skip =>
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
        attributes: &std::collections::HashMap<String, envoy_types::pb::google::protobuf::Struct>,
        jwt: Option<serde_json::Value>,
        subset: Option<Vec<String>>,
    ) -> Result<Vec<ProcessingResponse>, StreamError> {
        advance(&mut self.request, Stage::Headers, "request_headers")?;
        let (head, map, _) = convert::split_headers(msg.headers.as_ref());
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
        let mut common = common(&headers.diff(), ex.cx.clear_route_cache);
        ex.cx.clear_route_cache = false;
        let mut reply = HeadersResponse {
            response: Some(std::mem::take(&mut common)),
        };
        let mut resp = ProcessingResponse {
            dynamic_metadata: take_metadata(ex),
            ..Default::default()
        };
        if !msg.end_of_stream {
            if let Some(mode) = self.override_for(Side::Request, needed) {
                resp.mode_override = Some(mode);
            }
        }
        reply.response.get_or_insert_with(Default::default);
        resp.response = Some(Out::RequestHeaders(reply));
        if self.request.mode == BodySendMode::FullDuplexStreamed
            && !msg.end_of_stream
            && matches!(needed, BodyMode::Buffer { .. })
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
        advance(&mut self.response, Stage::Headers, "response_headers")?;
        let (_, map, status) = convert::split_headers(msg.headers.as_ref());
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
            response: Some(Out::ResponseHeaders(HeadersResponse {
                response: Some(common(&headers.diff(), false)),
            })),
            ..Default::default()
        };
        if msg.end_of_stream {
            self.response.stage = Stage::Done;
        } else {
            if let Some(mode) = self.override_for(Side::Response, needed) {
                resp.mode_override = Some(mode);
            }
            // A body a processor may rewrite as it streams has no known length.
            if needed == BodyMode::Stream
                && matches!(
                    self.response.mode,
                    BodySendMode::Streamed | BodySendMode::FullDuplexStreamed
                )
            {
                drop_content_length(&mut resp);
            }
        }
        if self.response.mode == BodySendMode::FullDuplexStreamed
            && !msg.end_of_stream
            && matches!(needed, BodyMode::Buffer { .. })
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
        side: Side,
        msg: HttpBody,
    ) -> Result<Vec<ProcessingResponse>, StreamError> {
        let name = match side {
            Side::Request => "request_body",
            Side::Response => "response_body",
        };
        advance(self.side(side), Stage::Body, name)?;
        let mode = self.side(side).mode;
        let truncated = mode == BodySendMode::BufferedPartial && !msg.end_of_stream;
        // A BUFFERED message is the whole body even when trailers follow (Envoy then
        // sends it without end_of_stream).
        let whole = msg.end_of_stream || mode == BodySendMode::Buffered;
        let data = Bytes::from(msg.body);
        let ex = self.exchange_or_passthrough();
        let verdict = match side {
            Side::Request => ex.request_body(data, whole, truncated).await,
            Side::Response => ex.response_body(data, whole, truncated).await,
        };
        let output = match verdict {
            Verdict::Respond(reply) => return Ok(self.respond(reply)),
            Verdict::Continue(output) => output,
        };
        if msg.end_of_stream {
            self.side(side).stage = Stage::Done;
        }
        let mut out = Vec::new();
        if mode == BodySendMode::FullDuplexStreamed {
            // The held header reply goes with the whole, possibly rewritten body: it
            // carries that body's length.
            if output.changed && output.end_of_stream && self.side(side).deferred.is_some() {
                let len = HeaderValue::from(output.data.len());
                let cx = &mut self.exchange.as_mut().expect("created above").cx;
                let late = match side {
                    Side::Request => &mut cx.late_request_headers,
                    Side::Response => &mut cx.late_response_headers,
                };
                late.push((HeaderName::from_static("content-length"), len));
            }
            if !output.data.is_empty() || output.end_of_stream {
                out.extend(self.flush_deferred(side));
                out.extend(streamed_chunks(side, output.data, output.end_of_stream));
            }
        } else {
            let buffered = matches!(mode, BodySendMode::Buffered | BodySendMode::BufferedPartial);
            let cx = &mut self.exchange.as_mut().expect("created above").cx;
            let late = match (side, buffered) {
                (Side::Response, true) => std::mem::take(&mut cx.late_response_headers),
                (Side::Request, true) => std::mem::take(&mut cx.late_request_headers),
                _ => Vec::new(),
            };
            let clear = side == Side::Request && buffered && cx.clear_route_cache;
            cx.clear_route_cache = false;
            let mut reply = body_reply(side, &output, mode, late);
            if clear {
                if let Some(Out::RequestBody(BodyResponse {
                    response: Some(common),
                })) = reply.response.as_mut()
                {
                    common.clear_route_cache = true;
                }
            }
            out.push(reply);
        }
        // Metadata waits for a reply to carry it (a held FULL_DUPLEX chunk has none).
        if !out.is_empty() {
            let metadata = take_metadata(self.exchange.as_mut().expect("created above"));
            attach_metadata(&mut out, metadata);
        }
        if side == Side::Response && msg.end_of_stream {
            self.finish_completed();
        }
        Ok(out)
    }

    async fn trailers(
        &mut self,
        side: Side,
        msg: HttpTrailers,
    ) -> Result<Vec<ProcessingResponse>, StreamError> {
        let name = match side {
            Side::Request => "request_trailers",
            Side::Response => "response_trailers",
        };
        let before = self.side(side).stage;
        advance(self.side(side), Stage::Trailers, name)?;
        let mode = self.side(side).mode;
        let mut out = Vec::new();
        // FULL_DUPLEX_STREAMED: trailers end the body; flush what tollgate held.
        if mode == BodySendMode::FullDuplexStreamed && before < Stage::Done {
            let ex = self.exchange_or_passthrough();
            let verdict = match side {
                Side::Request => ex.request_body(Bytes::new(), true, false).await,
                Side::Response => ex.response_body(Bytes::new(), true, false).await,
            };
            match verdict {
                Verdict::Respond(reply) => return Ok(self.respond(reply)),
                Verdict::Continue(output) => {
                    out.extend(self.flush_deferred(side));
                    if !output.data.is_empty() {
                        out.extend(streamed_chunks(side, output.data, false));
                    }
                }
            }
        }
        let (_, map, _) = convert::split_headers(msg.trailers.as_ref());
        let mut trailers = Headers::new(map);
        let ex = self.exchange_or_passthrough();
        let verdict = match side {
            Side::Request => ex.request_trailers(&mut trailers).await,
            Side::Response => ex.response_trailers(&mut trailers).await,
        };
        if let Verdict::Respond(reply) = verdict {
            return Ok(self.respond(reply));
        }
        self.side(side).stage = Stage::Done;
        let reply = TrailersResponse {
            header_mutation: convert::mutation(&trailers.diff()),
        };
        out.push(ProcessingResponse {
            response: Some(match side {
                Side::Request => Out::RequestTrailers(reply),
                Side::Response => Out::ResponseTrailers(reply),
            }),
            ..Default::default()
        });
        let metadata = take_metadata(self.exchange.as_mut().expect("created above"));
        attach_metadata(&mut out, metadata);
        if side == Side::Response {
            self.finish_completed();
        }
        Ok(out)
    }

    // --- helpers ---

    /// FULL_DUPLEX_STREAMED: the held header reply, now completed with what the body
    /// phase decided for the headers — late headers (the pick, usage totals, the new
    /// length of a rewritten body), a route-cache clear and the dynamic metadata, all
    /// on this one reply (the endpoint picker's contract).
    fn flush_deferred(&mut self, side: Side) -> Option<ProcessingResponse> {
        let mut resp = self.side(side).deferred.take()?;
        let Some(ex) = self.exchange.as_mut() else {
            return Some(resp);
        };
        let (late, clear) = match side {
            Side::Request => (
                std::mem::take(&mut ex.cx.late_request_headers),
                std::mem::take(&mut ex.cx.clear_route_cache),
            ),
            Side::Response => (std::mem::take(&mut ex.cx.late_response_headers), false),
        };
        if let Some(
            Out::RequestHeaders(HeadersResponse {
                response: Some(common),
            })
            | Out::ResponseHeaders(HeadersResponse {
                response: Some(common),
            }),
        ) = resp.response.as_mut()
        {
            if !late.is_empty() {
                let mutation = common.header_mutation.get_or_insert_with(Default::default);
                let extra = convert::mutation(&HeaderDiff {
                    remove: Vec::new(),
                    set: late.into_iter().map(|(n, v)| (n, vec![v])).collect(),
                })
                .unwrap_or_default();
                let names: Vec<String> = extra
                    .set_headers
                    .iter()
                    .filter_map(|h| h.header.as_ref().map(|h| h.key.clone()))
                    .collect();
                mutation.remove_headers.retain(|r| !names.contains(r));
                mutation
                    .set_headers
                    .retain(|h| h.header.as_ref().is_none_or(|h| !names.contains(&h.key)));
                mutation.set_headers.extend(extra.set_headers);
            }
            common.clear_route_cache |= clear;
        }
        if let Some(md) = take_metadata(ex) {
            match resp.dynamic_metadata.as_mut() {
                Some(existing) => existing.fields.extend(md.fields),
                None => resp.dynamic_metadata = Some(md),
            }
        }
        Some(resp)
    }

    fn side(&mut self, side: Side) -> &mut SideState {
        match side {
            Side::Request => &mut self.request,
            Side::Response => &mut self.response,
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

    /// The mode override that gives processors the body they need, if Envoy's current
    /// mode does not; FULL_DUPLEX_STREAMED cannot be overridden.
    fn override_for(&mut self, side: Side, needed: BodyMode) -> Option<ProcessingMode> {
        let enabled = self
            .pipeline
            .config()
            .ext_proc
            .as_ref()
            .is_none_or(|e| e.mode_override);
        let current = self.side(side).mode;
        if !enabled {
            return None;
        }
        let wanted = match (needed, current) {
            (_, BodySendMode::FullDuplexStreamed) => return None,
            (BodyMode::Skip, _) => BodySendMode::None,
            (BodyMode::Stream, _) => BodySendMode::Streamed,
            (BodyMode::Buffer { .. }, BodySendMode::BufferedPartial) => current,
            (BodyMode::Buffer { .. }, _) => BodySendMode::Buffered,
        };
        if wanted == current {
            return None;
        }
        self.side(side).mode = wanted;
        Some(ProcessingMode {
            request_header_mode: HeaderSendMode::Send as i32,
            response_header_mode: HeaderSendMode::Send as i32,
            request_body_mode: self.request.mode as i32,
            response_body_mode: self.response.mode as i32,
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

impl SideState {
    fn new() -> Self {
        SideState {
            stage: Stage::None,
            mode: BodySendMode::None,
            deferred: None,
        }
    }
}

/// Moves a side to `to`, refusing messages that come out of order.
fn advance(side: &mut SideState, to: Stage, got: &'static str) -> Result<(), StreamError> {
    let ok = match to {
        Stage::Body => side.stage <= Stage::Body,
        _ => side.stage < to,
    };
    if !ok {
        let after = match side.stage {
            Stage::None => "nothing",
            Stage::Headers => "headers",
            Stage::Body => "body",
            Stage::Trailers => "trailers",
            Stage::Done => "the end of stream",
        };
        return Err(StreamError::OutOfOrder { got, after });
    }
    side.stage = to;
    Ok(())
}

fn body_mode(raw: i32) -> BodySendMode {
    BodySendMode::try_from(raw).unwrap_or(BodySendMode::None)
}

fn common(diff: &HeaderDiff, clear_route_cache: bool) -> CommonResponse {
    CommonResponse {
        header_mutation: convert::mutation(diff),
        clear_route_cache,
        ..Default::default()
    }
}

/// Removes `content-length` with a header reply.
fn drop_content_length(resp: &mut ProcessingResponse) {
    if let Some(Out::ResponseHeaders(HeadersResponse {
        response: Some(common),
    })) = resp.response.as_mut()
    {
        let m = common.header_mutation.get_or_insert_with(Default::default);
        m.set_headers.retain(|h| {
            h.header
                .as_ref()
                .is_none_or(|h| !h.key.eq_ignore_ascii_case("content-length"))
        });
        m.remove_headers.push("content-length".to_string());
    }
}

fn take_metadata(ex: &mut Exchange) -> Option<envoy_types::pb::google::protobuf::Struct> {
    let md = convert::metadata(&ex.cx.dynamic_metadata);
    ex.cx.dynamic_metadata.clear();
    md
}

fn attach_metadata(
    out: &mut [ProcessingResponse],
    md: Option<envoy_types::pb::google::protobuf::Struct>,
) {
    if let (Some(md), Some(last)) = (md, out.last_mut()) {
        last.dynamic_metadata = Some(md);
    }
}

/// The reply to one body message in BUFFERED, BUFFERED_PARTIAL or STREAMED mode.
/// `late`: headers to set with this reply (Envoy still holds a BUFFERED body's headers).
fn body_reply(
    side: Side,
    output: &BodyOutput,
    mode: BodySendMode,
    late: Vec<(HeaderName, HeaderValue)>,
) -> ProcessingResponse {
    let mut common = CommonResponse::default();
    let mut set: Vec<(HeaderName, Vec<HeaderValue>)> =
        late.into_iter().map(|(n, v)| (n, vec![v])).collect();
    if output.changed {
        common.body_mutation = Some(BodyMutation {
            mutation: Some(if output.data.is_empty() {
                Mutation::ClearBody(true)
            } else {
                Mutation::Body(output.data.to_vec())
            }),
        });
        // BUFFERED keeps content-length; a body of another length needs a new one.
        if mode == BodySendMode::Buffered && output.end_of_stream {
            let len = HeaderValue::from(output.data.len());
            set.push((HeaderName::from_static("content-length"), vec![len]));
        }
    }
    common.header_mutation = convert::mutation(&HeaderDiff {
        remove: Vec::new(),
        set,
    });
    let reply = BodyResponse {
        response: Some(common),
    };
    ProcessingResponse {
        response: Some(match side {
            Side::Request => Out::RequestBody(reply),
            Side::Response => Out::ResponseBody(reply),
        }),
        ..Default::default()
    }
}

/// FULL_DUPLEX_STREAMED: the body sent back as `streamed_response` chunks.
fn streamed_chunks(side: Side, data: Bytes, end_of_stream: bool) -> Vec<ProcessingResponse> {
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut rest = data;
    while rest.len() > MAX_STREAMED_CHUNK {
        chunks.push(rest.split_to(MAX_STREAMED_CHUNK));
    }
    chunks.push(rest);
    let last = chunks.len() - 1;
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, body)| {
            let reply = BodyResponse {
                response: Some(CommonResponse {
                    body_mutation: Some(BodyMutation {
                        mutation: Some(Mutation::StreamedResponse(StreamedBodyResponse {
                            body: body.to_vec(),
                            end_of_stream: end_of_stream && i == last,
                            ..Default::default()
                        })),
                    }),
                    ..Default::default()
                }),
            };
            ProcessingResponse {
                response: Some(match side {
                    Side::Request => Out::RequestBody(reply),
                    Side::Response => Out::ResponseBody(reply),
                }),
                ..Default::default()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
