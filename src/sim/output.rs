//! The shapes of a simulated completion's output, per API: OpenAI Chat Completions and
//! Completions (one JSON body, or `data:` chunks ending in `[DONE]`, the usage chunk
//! when `stream_options.include_usage`), and Anthropic Messages as vLLM's
//! `/v1/messages` answers it (one `message`, or the named events `message_start`,
//! `content_block_start`, `content_block_delta`, `content_block_stop`, `message_delta`,
//! `message_stop`).

use bytes::Bytes;
use serde_json::{json, Value};

use super::engine::Running;
use crate::llm::Api;

/// One server-sent event: its `event:` name (Anthropic's) and its `data:`.
pub struct SseEvent {
    name: Option<&'static str>,
    data: String,
}

impl SseEvent {
    fn data(data: Value) -> Self {
        SseEvent {
            name: None,
            data: data.to_string(),
        }
    }

    fn named(name: &'static str, data: Value) -> Self {
        SseEvent {
            name: Some(name),
            data: data.to_string(),
        }
    }

    /// OpenAI's end of stream.
    fn done() -> Self {
        SseEvent {
            name: None,
            data: "[DONE]".to_owned(),
        }
    }

    /// The event on the wire.
    pub fn encode(&self) -> Bytes {
        let data = &self.data;
        Bytes::from(match self.name {
            Some(name) => format!("event: {name}\ndata: {data}\n\n"),
            None => format!("data: {data}\n\n"),
        })
    }
}

/// The shape of one completion's output.
pub struct Output {
    pub api: Api,
    pub id: String,
    pub created: u64,
    /// Whether the output stops at the request's token cap (else it ends by itself).
    pub capped: bool,
    pub include_usage: bool,
}

impl Output {
    fn object(&self, chunk: bool) -> &'static str {
        match (self.api, chunk) {
            (Api::ChatCompletions, false) => "chat.completion",
            (Api::ChatCompletions, true) => "chat.completion.chunk",
            _ => "text_completion",
        }
    }

    fn finish(&self) -> &'static str {
        match (self.api, self.capped) {
            (Api::Messages, true) => "max_tokens",
            (Api::Messages, false) => "end_turn",
            (_, true) => "length",
            (_, false) => "stop",
        }
    }

    fn usage(running: &Running) -> Value {
        let prompt = running.job().prompt_tokens;
        let completion = running.generated();
        json!({
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": running.cached_tokens()},
        })
    }

    /// Anthropic's usage: the input tokens not read from the cache, those read, and
    /// the output tokens so far.
    fn anthropic_usage(running: &Running) -> Value {
        let cached = running.cached_tokens();
        json!({
            "input_tokens": running.job().prompt_tokens.saturating_sub(cached),
            "cache_read_input_tokens": cached,
            "cache_creation_input_tokens": 0,
            "output_tokens": running.generated(),
        })
    }

    /// The whole answer, `text` being all its output.
    pub fn whole(&self, running: &Running, text: &str) -> Value {
        if self.api == Api::Messages {
            return json!({
                "id": self.id,
                "type": "message",
                "role": "assistant",
                "model": running.job().model,
                "content": [{"type": "text", "text": text}],
                "stop_reason": self.finish(),
                "stop_sequence": null,
                "usage": Self::anthropic_usage(running),
            });
        }
        let choice = match self.api {
            Api::ChatCompletions => json!({
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": null,
                "finish_reason": self.finish(),
            }),
            _ => {
                json!({"index": 0, "text": text, "logprobs": null, "finish_reason": self.finish()})
            }
        };
        json!({
            "id": self.id,
            "object": self.object(false),
            "created": self.created,
            "model": running.job().model,
            "choices": [choice],
            "usage": Self::usage(running),
        })
    }

    /// The events carrying one output token (`first`, `last`: its place).
    pub fn token_events(
        &self,
        running: &Running,
        text: &str,
        first: bool,
        last: bool,
    ) -> Vec<SseEvent> {
        if self.api != Api::Messages {
            return vec![SseEvent::data(self.chunk(running, text, first, last))];
        }
        let mut events = Vec::new();
        if first {
            let mut usage = Self::anthropic_usage(running);
            usage["output_tokens"] = json!(1);
            events.push(SseEvent::named(
                "message_start",
                json!({"type": "message_start", "message": {
                    "id": self.id, "type": "message", "role": "assistant",
                    "model": running.job().model, "content": [],
                    "stop_reason": null, "stop_sequence": null, "usage": usage,
                }}),
            ));
            events.push(SseEvent::named(
                "content_block_start",
                json!({"type": "content_block_start", "index": 0,
                       "content_block": {"type": "text", "text": ""}}),
            ));
        }
        events.push(SseEvent::named(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
                   "delta": {"type": "text_delta", "text": text}}),
        ));
        if last {
            events.push(SseEvent::named(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": 0}),
            ));
            events.push(SseEvent::named(
                "message_delta",
                json!({"type": "message_delta",
                       "delta": {"stop_reason": self.finish(), "stop_sequence": null},
                       "usage": {"output_tokens": running.generated()}}),
            ));
            events.push(SseEvent::named(
                "message_stop",
                json!({"type": "message_stop"}),
            ));
        }
        events
    }

    /// The events after the last token's: OpenAI's usage chunk (when asked for) and
    /// `[DONE]`; none for Messages.
    pub fn end_events(&self, running: &Running) -> Vec<SseEvent> {
        if self.api == Api::Messages {
            return Vec::new();
        }
        let mut events = Vec::new();
        if self.include_usage {
            events.push(SseEvent::data(self.usage_chunk(running)));
        }
        events.push(SseEvent::done());
        events
    }

    /// A content chunk; `finish` on the last one.
    fn chunk(&self, running: &Running, text: &str, first: bool, finish: bool) -> Value {
        let finish_reason = if finish {
            Value::from(self.finish())
        } else {
            Value::Null
        };
        let choice = match self.api {
            Api::ChatCompletions => {
                let delta = if first {
                    json!({"role": "assistant", "content": text})
                } else {
                    json!({"content": text})
                };
                json!({"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason})
            }
            _ => {
                json!({"index": 0, "text": text, "logprobs": null, "finish_reason": finish_reason})
            }
        };
        let mut v = json!({
            "id": self.id,
            "object": self.object(true),
            "created": self.created,
            "model": running.job().model,
            "choices": [choice],
        });
        if self.include_usage {
            v["usage"] = Value::Null;
        }
        v
    }

    fn usage_chunk(&self, running: &Running) -> Value {
        json!({
            "id": self.id,
            "object": self.object(true),
            "created": self.created,
            "model": running.job().model,
            "choices": [],
            "usage": Self::usage(running),
        })
    }
}
