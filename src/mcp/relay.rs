//! Server→client requests (sampling, elicitation, roots, pings) across the gateway,
//! with no state: a request a target sends on its SSE stream reaches the client with
//! its id tagged with the target (`"tg.<target index>.<original id as JSON>"`), so the
//! client's answer, which carries that id back, names the target it goes to; the
//! target's session comes from the client's sealed session. Any replica routes it.
//!
//! With one target nothing is tagged and every answer goes to that target.
//!
//! A relabelled stream is re-encoded event by event (`event`, `id`, `data` kept;
//! `retry:` fields and comments dropped). Each event is bounded by the route's JSON
//! body limit; a stream past it ends with an error.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::Frame;
use http_body_util::BodyExt;
use serde_json::Value;

use super::McpBody;
use crate::llm::{SseEvent, SseLimits, SseParser};

const TAG: &str = "tg.";

/// `id` of a request target `index` sent, as the client sees it.
pub fn tag_id(index: usize, id: &Value) -> Value {
    Value::String(format!("{TAG}{index}.{id}"))
}

/// The target index and original id of a tagged id; `None` for any other id.
pub fn untag_id(id: &Value) -> Option<(usize, Value)> {
    let rest = id.as_str()?.strip_prefix(TAG)?;
    let (index, original) = rest.split_once('.')?;
    let index = index.parse().ok()?;
    let original: Value = serde_json::from_str(original).ok()?;
    matches!(original, Value::String(_) | Value::Number(_)).then_some((index, original))
}

/// Tags the id of `message` when it is a request of target `index` (a `method` and a
/// string or number `id`); whether it did. Anything else is left as it is.
pub fn tag_request(message: &mut Value, index: usize) -> bool {
    let Some(object) = message.as_object_mut() else {
        return false;
    };
    if !object.contains_key("method") {
        return false;
    }
    match object.get_mut("id") {
        Some(id) if id.is_string() || id.is_number() => {
            *id = tag_id(index, id);
            true
        }
        _ => false,
    }
}

/// The message of `event` with its request id tagged, when it is a request.
fn tagged(event: &SseEvent, index: usize) -> Option<SseEvent> {
    // Cheap test first: most events are results and notifications.
    if !event.data.contains("\"method\"") || !event.data.contains("\"id\"") {
        return None;
    }
    let mut message: Value = serde_json::from_str(&event.data).ok()?;
    if !tag_request(&mut message, index) {
        return None;
    }
    Some(SseEvent {
        event: event.event.clone(),
        data: message.to_string(),
        id: event.id.clone(),
        retry: event.retry,
    })
}

/// `body`, an SSE stream of target `index`, with every server→client request's id
/// tagged; each event at most `limit` bytes.
pub fn tag_requests<B>(body: B, index: usize, limit: usize) -> McpBody
where
    B: http_body::Body<Data = Bytes> + Send + Sync + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let limits = SseLimits {
        line_bytes: limit,
        event_bytes: limit,
    };
    Relabel {
        body,
        parser: SseParser::with_limits(limits),
        out: VecDeque::new(),
        index,
        done: false,
    }
    .boxed()
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The relabelling body: frames of the target's stream in, re-encoded events out.
struct Relabel<B> {
    body: B,
    parser: SseParser,
    out: VecDeque<Result<Bytes, BoxError>>,
    index: usize,
    done: bool,
}

impl<B> http_body::Body for Relabel<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            if let Some(item) = this.out.pop_front() {
                return Poll::Ready(Some(item.map(Frame::data)));
            }
            if this.done {
                return Poll::Ready(None);
            }
            match ready!(Pin::new(&mut this.body).poll_frame(cx)) {
                None => {
                    this.done = true;
                    if let Some(event) = this.parser.finish() {
                        this.emit(&event);
                    }
                    if let Some(limit) = this.parser.exceeded() {
                        let reason = format!(
                            "an MCP target's SSE event is over the {} bound",
                            limit.as_str()
                        );
                        this.out.push_back(Err(reason.into()));
                    }
                }
                Some(Err(e)) => {
                    this.done = true;
                    this.out.push_back(Err(e.into()));
                }
                Some(Ok(frame)) => {
                    // Trailers: an SSE stream has none worth passing.
                    if let Ok(data) = frame.into_data() {
                        this.take(&data);
                    }
                }
            }
        }
    }
}

impl<B> Relabel<B> {
    /// Parses `data` and queues the events it completes.
    fn take(&mut self, data: &[u8]) {
        let events: Vec<SseEvent> = self.parser.push(data).collect();
        for event in &events {
            self.emit(event);
        }
        if let Some(limit) = self.parser.exceeded() {
            self.done = true;
            let reason = format!(
                "an MCP target's SSE event is over the {} bound",
                limit.as_str()
            );
            self.out.push_back(Err(reason.into()));
        }
    }

    fn emit(&mut self, event: &SseEvent) {
        let bytes = match tagged(event, self.index) {
            Some(e) => e.to_bytes(),
            None => event.to_bytes(),
        };
        self.out.push_back(Ok(Bytes::from(bytes)));
    }
}

#[cfg(test)]
mod tests;
