//! A streamed Messages response as Chat Completions chunks, event by event.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::{finish_reason, now_unix, Counts};
use crate::llm::translate::{write_event, EventTranslator};
use crate::llm::SseEvent;

/// Anthropic content blocks past this many are not given a tool index (bounds the map).
const MAX_BLOCKS: usize = 1024;

/// The state of one translated stream.
pub(in crate::llm::translate) struct Events {
    include_usage: bool,
    id: String,
    model: String,
    created: u64,
    counts: Counts,
    /// Anthropic block index → OpenAI tool-call index.
    tools: HashMap<u64, u64>,
    /// `[DONE]` was sent: nothing more goes out.
    done: bool,
}

impl Events {
    pub(in crate::llm::translate) fn new(include_usage: bool) -> Self {
        Events {
            include_usage,
            id: "chatcmpl-tollgate".into(),
            model: String::new(),
            created: now_unix(),
            counts: Counts::default(),
            tools: HashMap::new(),
            done: false,
        }
    }

    /// One `chat.completion.chunk` with a single choice.
    fn chunk(&self, out: &mut Vec<u8>, delta: Value, finish: Option<&str>) {
        let chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish }],
        });
        write_event(out, None, &chunk);
    }

    fn message_start(&mut self, data: &Value, out: &mut Vec<u8>) {
        let message = &data["message"];
        if let Some(id) = message.get("id").and_then(Value::as_str) {
            self.id = id.to_owned();
        }
        if let Some(model) = message.get("model").and_then(Value::as_str) {
            self.model = model.to_owned();
        }
        self.counts.merge(message.get("usage"));
        self.chunk(out, json!({ "role": "assistant", "content": "" }), None);
    }

    fn block_start(&mut self, data: &Value, out: &mut Vec<u8>) {
        let block = &data["content_block"];
        match block.get("type").and_then(Value::as_str) {
            Some("tool_use") => {
                let Some(index) = data.get("index").and_then(Value::as_u64) else {
                    return;
                };
                if self.tools.len() >= MAX_BLOCKS {
                    return;
                }
                let tool = self.tools.len() as u64;
                self.tools.insert(index, tool);
                let call = json!({
                    "index": tool,
                    "id": block.get("id").cloned().unwrap_or(Value::Null),
                    "type": "function",
                    "function": { "name": block.get("name").cloned().unwrap_or(Value::Null), "arguments": "" },
                });
                self.chunk(out, json!({ "tool_calls": [call] }), None);
            }
            Some("text") => {
                if let Some(text) = block
                    .get("text")
                    .and_then(Value::as_str)
                    .filter(|t| !t.is_empty())
                {
                    self.chunk(out, json!({ "content": text }), None);
                }
            }
            _ => {}
        }
    }

    fn block_delta(&mut self, data: &Value, out: &mut Vec<u8>) {
        let delta = &data["delta"];
        match delta.get("type").and_then(Value::as_str) {
            Some("text_delta") => {
                if let Some(text) = delta.get("text").and_then(Value::as_str) {
                    self.chunk(out, json!({ "content": text }), None);
                }
            }
            Some("input_json_delta") => {
                let tool = data
                    .get("index")
                    .and_then(Value::as_u64)
                    .and_then(|i| self.tools.get(&i).copied());
                let partial = delta.get("partial_json").and_then(Value::as_str);
                if let (Some(tool), Some(partial)) = (tool, partial) {
                    let call = json!({ "index": tool, "function": { "arguments": partial } });
                    self.chunk(out, json!({ "tool_calls": [call] }), None);
                }
            }
            _ => {} // thinking and signature deltas are not passed on
        }
    }

    fn message_delta(&mut self, data: &Value, out: &mut Vec<u8>) {
        self.counts.merge(data.get("usage"));
        let stop = data.pointer("/delta/stop_reason").and_then(Value::as_str);
        self.chunk(out, json!({}), Some(finish_reason(stop)));
    }

    /// The usage chunk (when asked for) and `[DONE]`.
    fn close(&mut self, out: &mut Vec<u8>) {
        if self.include_usage {
            let chunk = json!({
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [],
                "usage": self.counts.to_chat(),
            });
            write_event(out, None, &chunk);
        }
        self.done_marker(out);
    }

    fn done_marker(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"data: [DONE]\n\n");
        self.done = true;
    }

    /// An OpenAI error chunk (the SDKs raise on a chunk with `error`), then `[DONE]`.
    fn error(&mut self, kind: &str, message: &str, out: &mut Vec<u8>) {
        let error = json!({
            "error": { "message": message, "type": kind, "param": null, "code": null },
        });
        write_event(out, None, &error);
        self.done_marker(out);
    }
}

impl EventTranslator for Events {
    fn event(&mut self, event: &SseEvent, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        let Ok(data) = serde_json::from_str::<Value>(&event.data) else {
            return;
        };
        let kind = event
            .event
            .as_deref()
            .or_else(|| data.get("type").and_then(Value::as_str));
        match kind {
            Some("message_start") => self.message_start(&data, out),
            Some("content_block_start") => self.block_start(&data, out),
            Some("content_block_delta") => self.block_delta(&data, out),
            Some("message_delta") => self.message_delta(&data, out),
            Some("message_stop") => self.close(out),
            Some("error") => {
                let kind = data.pointer("/error/type").and_then(Value::as_str);
                let message = data.pointer("/error/message").and_then(Value::as_str);
                self.error(
                    kind.unwrap_or("api_error"),
                    message.unwrap_or("the upstream reported an error"),
                    out,
                );
            }
            _ => {} // ping, content_block_stop
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.done {
            self.error(
                "api_error",
                "the upstream's stream ended before message_stop",
                out,
            );
        }
    }
}
