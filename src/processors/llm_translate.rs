//! `llmProvider` translation: an OpenAI Chat Completions client served by an Anthropic
//! provider, or an Anthropic Messages client served by an OpenAI-compatible one
//! (`llm::translate`). It runs in two halves, because responses pass the processors in
//! the same order as requests:
//!
//! - [`Half::Request`] sits late on the request path (just before `backendAuth`): every
//!   processor before it — accounting, guards, limits, the endpoint picker — reads the
//!   client's own API; it then rewrites the body and path into the provider's API and
//!   asks for an unencoded response.
//! - [`Half::Response`] sits early (right after `llmProvider`): it turns the provider's
//!   answer back into the client's API before anything else reads it — a whole JSON
//!   body, an error body (any non-2xx status, into the client's error shape), or a
//!   stream event by event as it arrives. So accounting, guards and limits see one API,
//!   the client's, on both sides, and count each token once.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};

use crate::config::{BufferLimits, FailureMode, LlmProvider};
use crate::llm::{Decoder, EventTranslator, SseParser, TranslatedRequest, Translation};
use crate::pipeline::{
    Body, BodyMode, Ctx, Flow, Headers, LocalReply, Processor, ProcessorError, ProcessorFactory,
};

/// Which half of the translation a factory makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Half {
    Request,
    Response,
}

/// Factory of one half of one route's translation.
pub struct LlmTranslateFactory {
    half: Half,
    policy: Arc<LlmProvider>,
    limits: Arc<BufferLimits>,
}

impl LlmTranslateFactory {
    /// The `half` of the translation for an `llmProvider` policy (checked by
    /// `LlmProviderFactory`).
    pub fn new(half: Half, p: &LlmProvider, limits: &BufferLimits) -> Self {
        LlmTranslateFactory {
            half,
            policy: Arc::new(p.clone()),
            limits: Arc::new(limits.clone()),
        }
    }
}

impl ProcessorFactory for LlmTranslateFactory {
    fn name(&self) -> &'static str {
        match self.half {
            Half::Request => "llm_translate_request",
            Half::Response => "llm_translate_response",
        }
    }

    /// An untranslated body would reach a provider or a client that cannot read it.
    fn failure_mode(&self) -> FailureMode {
        FailureMode::FailClosed
    }

    fn new_processor(&self, cx: &Ctx) -> Option<Box<dyn Processor>> {
        let translation = self.policy.translation(cx.request.path_only())?;
        Some(match self.half {
            Half::Request => Box::new(TranslateRequest {
                translation,
                policy: self.policy.clone(),
                limit: self.limits.json_body_bytes,
            }),
            Half::Response => Box::new(TranslateResponse {
                limits: self.limits.clone(),
                mode: ResponseMode::Off,
                decoder: None,
            }),
        })
    }
}

// === the request half ===

struct TranslateRequest {
    translation: Translation,
    policy: Arc<LlmProvider>,
    limit: usize,
}

#[async_trait]
impl Processor for TranslateRequest {
    async fn on_request_headers(
        &mut self,
        cx: &mut Ctx,
        headers: &mut Headers,
    ) -> Result<Flow, ProcessorError> {
        if cx.upstream_path.is_none() {
            let path = self.policy.provider.default_path();
            cx.upstream_path = Some(match cx.request.path.split_once('?') {
                Some((_, q)) => format!("{path}?{q}"),
                None => path.to_owned(),
            });
            cx.keep_route = true;
        }
        // The response is rewritten as it streams: ask for it unencoded.
        headers.remove(&http::header::ACCEPT_ENCODING);
        headers.set(
            http::header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
        Ok(Flow::Continue)
    }

    fn request_body_mode(&self) -> BodyMode {
        BodyMode::Buffer { limit: self.limit }
    }

    async fn on_request_body(
        &mut self,
        cx: &mut Ctx,
        body: &mut Body,
    ) -> Result<Flow, ProcessorError> {
        match self.translation.request(body.data()) {
            Ok(mut translated) => {
                body.replace(Bytes::from(std::mem::take(&mut translated.body)));
                cx.translation = Some((self.translation, translated));
                Ok(Flow::Continue)
            }
            Err(e) => {
                let api = self.translation.client_api();
                let mut reply =
                    LocalReply::error(StatusCode::BAD_REQUEST, "invalid_request_error", &e.0);
                reply.body = api.error_body(400, "invalid_request_error", &e.0).into();
                Ok(Flow::Respond(reply))
            }
        }
    }
}

// === the response half ===

/// What the response half does with the body the upstream sends.
enum ResponseMode {
    /// Not a translated exchange.
    Off,
    /// A whole successful JSON body.
    Json(Translation),
    /// A non-2xx body, into the client's error shape.
    Error(Translation, u16),
    /// An event stream, translated event by event.
    Stream(Box<Streaming>),
}

struct Streaming {
    parser: SseParser,
    events: Box<dyn EventTranslator>,
    /// The client's stream was closed (`EventTranslator::finish` ran).
    finished: bool,
}

struct TranslateResponse {
    limits: Arc<BufferLimits>,
    mode: ResponseMode,
    decoder: Option<Decoder>,
}

impl TranslateResponse {
    fn start(&mut self, cx: &Ctx, headers: &Headers, t: Translation, req: &TranslatedRequest) {
        let status = cx.response_status.unwrap_or(200);
        let event_stream = headers
            .get_str("content-type")
            .is_some_and(|c| c.to_ascii_lowercase().contains("text/event-stream"));
        self.mode = if !(200..300).contains(&status) {
            ResponseMode::Error(t, status)
        } else if event_stream {
            ResponseMode::Stream(Box::new(Streaming {
                parser: SseParser::with_limits(self.limits.sse()),
                events: t.events(req),
                finished: false,
            }))
        } else {
            ResponseMode::Json(t)
        };
    }

    /// The decoded bytes of a chunk (the upstream may encode despite `identity`).
    fn decode(&mut self, data: &[u8], end: bool) -> Result<Vec<u8>, ProcessorError> {
        let Some(decoder) = self.decoder.as_mut() else {
            return Ok(data.to_vec());
        };
        let bad = |e: crate::llm::LlmError| ProcessorError {
            status: StatusCode::BAD_GATEWAY,
            message: format!("the provider's response could not be decoded: {e}"),
        };
        let mut out = decoder.push(data).map_err(bad)?.into_owned();
        if end {
            out.extend(decoder.finish().map_err(bad)?);
        }
        Ok(out)
    }
}

#[async_trait]
impl Processor for TranslateResponse {
    async fn on_response_headers(
        &mut self,
        cx: &mut Ctx,
        headers: &mut Headers,
    ) -> Result<Flow, ProcessorError> {
        // The request half left the translated request's body out: this clone is small.
        let Some((t, req)) = cx.translation.clone() else {
            return Ok(Flow::Continue);
        };
        self.start(cx, headers, t, &req);
        let encoding = headers
            .get_str("content-encoding")
            .map(str::trim)
            .filter(|e| !e.is_empty() && !e.eq_ignore_ascii_case("identity"))
            .map(str::to_owned);
        if let Some(encoding) = encoding {
            let decoder =
                Decoder::with_limits(Some(&encoding), self.limits.decode()).map_err(|e| {
                    ProcessorError {
                        status: StatusCode::BAD_GATEWAY,
                        message: format!("the provider's response encoding {encoding:?}: {e}"),
                    }
                })?;
            self.decoder = Some(decoder);
            headers.remove(&HeaderName::from_static("content-encoding"));
        }
        headers.remove(&http::header::CONTENT_LENGTH);
        if matches!(self.mode, ResponseMode::Error(..)) {
            headers.set(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        Ok(Flow::Continue)
    }

    fn response_body_mode(&self) -> BodyMode {
        match self.mode {
            ResponseMode::Off => BodyMode::Skip,
            ResponseMode::Stream(_) => BodyMode::Stream,
            ResponseMode::Json(_) | ResponseMode::Error(..) => BodyMode::Buffer {
                limit: self.limits.json_body_bytes,
            },
        }
    }

    async fn on_response_body(
        &mut self,
        cx: &mut Ctx,
        body: &mut Body,
    ) -> Result<Flow, ProcessorError> {
        let data = self.decode(body.data(), body.end_of_stream())?;
        let out = match &mut self.mode {
            ResponseMode::Off => return Ok(Flow::Continue),
            ResponseMode::Error(t, status) => t.error(*status, &data),
            ResponseMode::Json(t) => t.response(&data).unwrap_or_else(|e| {
                tracing::warn!(target: "tollgate::translate", request_id = %cx.request_id, error = %e, "untranslatable provider response");
                t.error(502, &data)
            }),
            ResponseMode::Stream(s) => {
                let out = s.push(&data, body.end_of_stream());
                if s.finished && !body.end_of_stream() {
                    // Cut short (an event over the SSE bounds): the client's stream
                    // ends here, properly closed.
                    body.end_stream(Bytes::from(out));
                    return Ok(Flow::Continue);
                }
                out
            }
        };
        body.replace(Bytes::from(out));
        Ok(Flow::Continue)
    }
}

impl Streaming {
    /// The client's events for one chunk of the provider's stream.
    fn push(&mut self, data: &[u8], end: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len() + data.len() / 2);
        if self.finished {
            return out;
        }
        for event in self.parser.push(data) {
            self.events.event(&event, &mut out);
        }
        // Past the SSE bounds the stream cannot be followed further: it ends here.
        let cut = self.parser.exceeded().is_some();
        if end && !cut {
            if let Some(event) = self.parser.finish() {
                self.events.event(&event, &mut out);
            }
        }
        if end || cut {
            self.events.finish(&mut out);
            self.finished = true;
        }
        out
    }
}
