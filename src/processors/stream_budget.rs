//! `streamBudget`: limits enforced mid-stream (`tokenLimit` rules with `enforce:
//! midStream`). While a streamed completion (Chat Completions or Messages) passes, each
//! event's output tokens are counted (the model's tokenizer over the text; one per
//! event of tool-call arguments or reasoning) and drawn from the limits
//! (`limits::StreamBudget`). When a limit has nothing left for an event, the stream
//! ends there, cleanly, in the client's API:
//!
//! - Chat Completions: a chunk with `finish_reason: "length"`, a usage chunk (the
//!   prompt as estimated — the upstream reports it only at the end — and the output
//!   tokens delivered), `[DONE]`;
//! - Messages: the open content block closed, `message_delta` with `stop_reason:
//!   "max_tokens"` and the output tokens delivered, `message_stop`.
//!
//! The rest of the upstream's stream is dropped: the proxy closes the upstream; behind
//! Envoy the client's stream ends and Envoy reads the upstream to its end. Accounting
//! (which runs after this on the response) counts what the client got, so the limits
//! are charged exactly the delivered output.
//!
//! It runs early on the response, with `llm_translate_response`, so every later
//! processor sees the stream as the client does.

use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::{json, Value};

use crate::config::{BufferLimits, FailureMode};
use crate::limits::StreamBudget;
use crate::llm::{Api, Encoding, ResponseTracker, SseEvent, SseParser};
use crate::pipeline::{
    Body, BodyMode, Ctx, Flow, Headers, Processor, ProcessorError, ProcessorFactory,
};

/// Factory of the mid-stream half of a route's `tokenLimit`.
pub struct StreamBudgetFactory {
    limits: BufferLimits,
    failure_mode: FailureMode,
}

impl StreamBudgetFactory {
    /// `failure_mode`: what a limit store failure does (the `tokenLimit` store's).
    pub fn new(limits: &BufferLimits, failure_mode: FailureMode) -> Self {
        StreamBudgetFactory {
            limits: limits.clone(),
            failure_mode,
        }
    }
}

impl ProcessorFactory for StreamBudgetFactory {
    fn name(&self) -> &'static str {
        "stream_budget"
    }

    fn failure_mode(&self) -> FailureMode {
        self.failure_mode
    }

    fn new_processor(&self, _cx: &Ctx) -> Option<Box<dyn Processor>> {
        Some(Box::new(Spend {
            limits: self.limits.clone(),
            active: None,
        }))
    }
}

struct Spend {
    limits: BufferLimits,
    active: Option<Box<Streaming>>,
}

/// One stream being spent.
struct Streaming {
    budget: Box<StreamBudget>,
    api: Api,
    encoding: Encoding,
    parser: SseParser,
    tracker: ResponseTracker,
    /// The stream's `id`, `model` and `created` (Chat chunks), from its first event.
    head: Option<Value>,
    /// The Messages content block open now.
    open_block: Option<u64>,
    /// The prompt estimate the request reserved, until the upstream reports the
    /// prompt's real size (Messages' `message_start`); then the difference is drawn.
    prompt_estimate: Option<u64>,
    ended: bool,
}

#[async_trait]
impl Processor for Spend {
    async fn on_response_headers(
        &mut self,
        cx: &mut Ctx,
        headers: &mut Headers,
    ) -> Result<Flow, ProcessorError> {
        let Some(budget) = cx.stream_budget.take() else {
            return Ok(Flow::Continue);
        };
        let Some(facts) = cx.llm.as_mut() else {
            return Ok(Flow::Continue);
        };
        let estimate = facts.estimated_input_tokens();
        let ok = cx.response_status.is_some_and(|s| (200..300).contains(&s));
        let event_stream = headers
            .get_str("content-type")
            .is_some_and(|c| c.to_ascii_lowercase().contains("text/event-stream"));
        let encoded = headers
            .get_str("content-encoding")
            .is_some_and(|e| !e.trim().is_empty() && !e.trim().eq_ignore_ascii_case("identity"));
        let api = facts.api;
        if !ok || !event_stream || encoded || !matches!(api, Api::ChatCompletions | Api::Messages) {
            return Ok(Flow::Continue);
        }
        headers.remove(&http::header::CONTENT_LENGTH);
        let model = facts.request.model.as_deref().unwrap_or("");
        self.active = Some(Box::new(Streaming {
            budget,
            api,
            encoding: Encoding::for_model(model),
            parser: SseParser::with_limits(self.limits.sse()),
            tracker: ResponseTracker::new(api),
            head: None,
            open_block: None,
            prompt_estimate: Some(estimate),
            ended: false,
        }));
        Ok(Flow::Continue)
    }

    fn response_body_mode(&self) -> BodyMode {
        match self.active {
            Some(_) => BodyMode::Stream,
            None => BodyMode::Skip,
        }
    }

    async fn on_response_body(
        &mut self,
        cx: &mut Ctx,
        body: &mut Body,
    ) -> Result<Flow, ProcessorError> {
        let Some(s) = self.active.as_mut() else {
            return Ok(Flow::Continue);
        };
        if s.ended {
            return Ok(Flow::Continue);
        }
        let mut out = Vec::with_capacity(body.data().len());
        let mut events: Vec<SseEvent> = s.parser.push(body.data()).collect();
        let exceeded = s.parser.exceeded().is_some();
        if body.end_of_stream() && !exceeded {
            events.extend(s.parser.finish());
        }
        for event in events {
            if !s.pass(&event, &mut out).await.map_err(store_error)? {
                let prompt = cx.llm.as_mut().map_or(0, |f| f.estimated_input_tokens());
                s.close(prompt, &mut out);
                s.ended = true;
                body.end_stream(Bytes::from(out));
                return Ok(Flow::Continue);
            }
        }
        if exceeded {
            // Past the SSE bounds: the rest passes unspent (accounting still counts it).
            out.extend(s.parser.take_unparsed());
            s.ended = true;
        }
        body.replace(Bytes::from(out));
        Ok(Flow::Continue)
    }
}

fn store_error(e: crate::limits::LimitError) -> ProcessorError {
    ProcessorError::unavailable(format!("token limit store: {e}"))
}

impl Streaming {
    /// Passes `event` on if the limits admit its output; `false` when they do not.
    async fn pass(
        &mut self,
        event: &SseEvent,
        out: &mut Vec<u8>,
    ) -> Result<bool, crate::limits::LimitError> {
        let info = self.tracker.observe_event(event);
        self.note(event);
        if let (Some(estimate), Some(usage)) = (self.prompt_estimate, self.tracker.usage()) {
            self.prompt_estimate = None;
            let missed = usage.input_tokens.saturating_sub(estimate);
            if missed > 0 && !self.budget.draw_other(missed, SystemTime::now()).await? {
                return Ok(false);
            }
        }
        let tokens = match &info.output_text {
            Some(text) => self.encoding.count(text).max(1),
            None if info.has_content => 1,
            None => 0,
        };
        if tokens > 0 && !self.budget.admit(tokens, SystemTime::now()).await? {
            return Ok(false);
        }
        event.write_to(out);
        Ok(true)
    }

    /// Keeps what the closing events need: the Chat chunk's head, the open block.
    fn note(&mut self, event: &SseEvent) {
        match self.api {
            Api::ChatCompletions if self.head.is_none() => {
                if let Ok(v) = serde_json::from_str::<Value>(&event.data) {
                    self.head = Some(json!({
                        "id": v.get("id").cloned().unwrap_or(Value::Null),
                        "created": v.get("created").cloned().unwrap_or(Value::Null),
                        "model": v.get("model").cloned().unwrap_or(Value::Null),
                    }));
                }
            }
            Api::Messages => match event.event.as_deref() {
                Some("content_block_start") => {
                    self.open_block = serde_json::from_str::<Value>(&event.data)
                        .ok()
                        .and_then(|v| v.get("index")?.as_u64());
                }
                Some("content_block_stop") => self.open_block = None,
                _ => {}
            },
            _ => {}
        }
    }

    /// The client's stream, ended for length with the usage delivered.
    fn close(&mut self, prompt: u64, out: &mut Vec<u8>) {
        let delivered = self.budget.delivered();
        match self.api {
            Api::Messages => {
                if let Some(index) = self.open_block.take() {
                    write(
                        out,
                        Some("content_block_stop"),
                        &json!({"type": "content_block_stop", "index": index}),
                    );
                }
                let delta = json!({
                    "type": "message_delta",
                    "delta": {"stop_reason": "max_tokens", "stop_sequence": null},
                    "usage": {"output_tokens": delivered},
                });
                write(out, Some("message_delta"), &delta);
                write(out, Some("message_stop"), &json!({"type": "message_stop"}));
            }
            _ => {
                let head = self.head.clone().unwrap_or_else(|| json!({}));
                let chunk = |extra: Value| {
                    let mut c = json!({"object": "chat.completion.chunk"});
                    for (k, v) in head
                        .as_object()
                        .into_iter()
                        .flatten()
                        .chain(extra.as_object().into_iter().flatten())
                    {
                        c[k] = v.clone();
                    }
                    c
                };
                let finish = chunk(
                    json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]}),
                );
                write(out, None, &finish);
                let usage = chunk(json!({"choices": [], "usage": {
                    "prompt_tokens": prompt,
                    "completion_tokens": delivered,
                    "total_tokens": prompt + delivered,
                }}));
                write(out, None, &usage);
                out.extend_from_slice(b"data: [DONE]\n\n");
            }
        }
    }
}

fn write(out: &mut Vec<u8>, event: Option<&str>, value: &Value) {
    crate::llm::translate::write_event(out, event, value);
}
