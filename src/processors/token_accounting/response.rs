//! The response side of token accounting: decode (gzip, deflate, brotli) incrementally,
//! split an event stream into events, follow usage and the first content token, and —
//! when tollgate asked for usage the client did not want — re-emit the stream without
//! the usage-only chunk. A JSON response is collected (bounded) and read at its end.
//!
//! Every buffer is bounded by `limits.buffers`: the decoded bytes and ratio, the SSE line
//! and event, the collected JSON. Accounting never blocks a response: at a bound it stops
//! following this one ([`Stopped`]) and passes the rest on untouched — the exchange is
//! then exported with estimated usage, as one without usage is.

use std::time::Instant;

use crate::config::BufferLimits;
use crate::llm::{Api, Decoder, LlmError, ResponseTracker, SseParser};
use crate::pipeline::{Body, Ctx, Headers};

/// Why a response stopped being followed at a bound: the limit's metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stopped(pub &'static str);

/// What the response has shown so far.
pub struct ResponseState {
    pub tracker: ResponseTracker,
    decoder: Option<Decoder>,
    sse: Option<SseParser>,
    json: Vec<u8>,
    json_limit: usize,
    strip_usage_chunk: bool,
    /// When the first content token arrived.
    pub first_token: Option<Instant>,
    /// When the last content event arrived.
    pub last_token: Option<Instant>,
    /// Content events delivered: the output-token estimate for a stream that ended
    /// before reporting usage (servers send about one token per event).
    pub content_events: u64,
    /// Decoding or parsing failed; accounting stopped for this response.
    pub broken: bool,
    /// The completion's text, when the access line reads it.
    pub completion: Option<super::capture::Completion>,
}

impl ResponseState {
    pub fn new(
        api: Api,
        headers: &Headers,
        strip_usage_chunk: bool,
        limits: &BufferLimits,
        cx: &Ctx,
    ) -> Self {
        let event_stream = headers
            .get_str("content-type")
            .is_some_and(|t| t.trim_start().starts_with("text/event-stream"));
        let encoding = headers
            .get_str("content-encoding")
            .map(str::trim)
            .filter(|e| !e.is_empty() && !e.eq_ignore_ascii_case("identity"));
        let mut broken = false;
        let decoder = match encoding {
            None => None,
            Some(e) => match Decoder::with_limits(Some(e), limits.decode()) {
                Ok(d) => Some(d),
                Err(err) => {
                    tracing::warn!(request_id = %cx.request_id, error = %err, "response encoding not understood; not counted");
                    broken = true;
                    None
                }
            },
        };
        // Re-emitting a compressed stream would mean re-compressing it: leave it whole.
        let strip_usage_chunk = strip_usage_chunk && event_stream && encoding.is_none();
        ResponseState {
            tracker: ResponseTracker::new(api),
            decoder,
            sse: event_stream.then(|| SseParser::with_limits(limits.sse())),
            json: Vec::new(),
            json_limit: limits.json_body_bytes,
            strip_usage_chunk,
            first_token: None,
            last_token: None,
            content_events: 0,
            broken,
            completion: None,
        }
    }

    pub fn is_event_stream(&self) -> bool {
        self.sse.is_some()
    }

    /// Follows one body chunk; rewrites it when the usage chunk must be dropped.
    /// `Some` when this chunk hit a bound: the response is not followed further.
    pub fn push(&mut self, body: &mut Body, cx: &Ctx) -> Option<Stopped> {
        if self.broken {
            return None;
        }
        let eos = body.end_of_stream();
        let data = body.data().clone();
        let decoded = match self.decode(&data, eos) {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::warn!(request_id = %cx.request_id, error = %e, "response body could not be decoded; not counted");
                self.broken = true;
                return match e {
                    LlmError::DecodeLimit { limit, .. } => Some(Stopped(limit.as_str())),
                    _ => None,
                };
            }
        };
        let stopped = if self.sse.is_some() {
            self.push_events(&decoded, eos, body)
        } else {
            self.push_json(&decoded, eos)
        };
        if let Some(Stopped(limit)) = stopped {
            tracing::warn!(request_id = %cx.request_id, limit, "response over a buffer limit; not counted further");
            self.broken = true;
        }
        stopped
    }

    fn decode<'a>(
        &mut self,
        data: &'a [u8],
        eos: bool,
    ) -> Result<std::borrow::Cow<'a, [u8]>, crate::llm::LlmError> {
        match self.decoder.as_mut() {
            None => Ok(std::borrow::Cow::Borrowed(data)),
            Some(d) => {
                let out = d.push(data)?;
                if !eos {
                    return Ok(out);
                }
                let mut out = out.into_owned();
                out.extend(d.finish()?);
                Ok(std::borrow::Cow::Owned(out))
            }
        }
    }

    fn push_events(&mut self, data: &[u8], eos: bool, body: &mut Body) -> Option<Stopped> {
        let parser = self.sse.as_mut().expect("checked by the caller");
        let mut events: Vec<_> = parser.push(data).collect();
        let exceeded = parser.exceeded();
        if eos && exceeded.is_none() {
            events.extend(parser.finish());
        }
        let mut rewritten = self.strip_usage_chunk.then(Vec::new);
        for event in &events {
            let info = self.tracker.observe_event(event);
            if let (Some(c), Some(text)) = (self.completion.as_mut(), &info.output_text) {
                c.push_delta(text);
            }
            if info.has_content {
                let now = Instant::now();
                self.first_token.get_or_insert(now);
                self.last_token = Some(now);
                self.content_events += 1;
            }
            if let Some(out) = rewritten.as_mut() {
                if !info.usage_only {
                    event.write_to(out);
                }
            }
        }
        if let Some(mut out) = rewritten {
            if exceeded.is_some() {
                // Past a bound, what the parser held goes on as it came.
                out.extend(
                    self.sse
                        .as_mut()
                        .map(SseParser::take_unparsed)
                        .unwrap_or_default(),
                );
            }
            body.replace(out.into());
        }
        exceeded.map(|l| Stopped(l.as_str()))
    }

    fn push_json(&mut self, data: &[u8], eos: bool) -> Option<Stopped> {
        if self.json.len() + data.len() > self.json_limit {
            self.json = Vec::new();
            return Some(Stopped("json_body"));
        }
        self.json.extend_from_slice(data);
        if eos && !self.json.is_empty() {
            if let Err(e) = self.tracker.observe_json(&self.json) {
                tracing::debug!(error = %e, "response JSON carried no readable usage");
            }
            if let Some(c) = self.completion.as_mut() {
                c.read_json(self.tracker.api(), &self.json);
            }
            self.json = Vec::new();
        }
        None
    }
}
