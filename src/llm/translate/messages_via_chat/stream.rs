//! A streamed Chat completion as Messages events, chunk by chunk.

use serde_json::{json, Value};

use super::{stop_reason, usage_counts};
use crate::llm::translate::{write_event, EventTranslator};
use crate::llm::SseEvent;

/// The content block being streamed.
#[derive(Debug)]
enum Block {
    Text {
        index: u64,
    },
    /// A tool call: its Messages block index and its Chat `tool_calls[].index`.
    Tool {
        index: u64,
        key: u64,
    },
}

/// Translates a Chat completion chunk stream into Messages events.
#[derive(Debug, Default)]
pub(in crate::llm::translate) struct Events {
    /// `message_start` was sent.
    started: bool,
    /// `message_stop` (or an `error` event) was sent: nothing more.
    finished: bool,
    /// The index of the next content block.
    next_index: u64,
    open: Option<Block>,
    /// The Chat tool-call indices seen (a fragment for a closed one is dropped).
    tools_seen: Vec<u64>,
    finish_reason: Option<String>,
    /// (prompt, completion, cached) from the latest usage chunk.
    usage: (u64, u64, u64),
}

impl Events {
    pub(in crate::llm::translate) fn new() -> Self {
        Self::default()
    }

    /// One parsed chunk.
    fn chunk(&mut self, chunk: &Value, out: &mut Vec<u8>) {
        if let Some(err) = chunk.get("error").filter(|e| !e.is_null()) {
            let message = err
                .get("message")
                .and_then(Value::as_str)
                .or_else(|| err.as_str())
                .unwrap_or("the upstream stream failed");
            let event =
                json!({"type": "error", "error": {"type": "api_error", "message": message}});
            write_event(out, Some("error"), &event);
            self.finished = true;
            return;
        }
        if !self.started {
            self.start(chunk, out);
        }
        let choice = chunk
            .get("choices")
            .and_then(Value::as_array)
            .and_then(|c| c.first())
            .unwrap_or(&Value::Null);
        let delta = choice.get("delta").unwrap_or(&Value::Null);
        if let Some(text) = delta
            .get("content")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        {
            self.text(text, out);
        }
        for call in delta
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            self.tool_call(call, out);
        }
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish_reason = Some(reason.to_owned());
            self.close_block(out);
        }
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            self.usage = usage_counts(usage);
        }
    }

    fn start(&mut self, chunk: &Value, out: &mut Vec<u8>) {
        self.started = true;
        let event = json!({
            "type": "message_start",
            "message": {
                "id": chunk.get("id").and_then(Value::as_str).unwrap_or(""),
                "type": "message",
                "role": "assistant",
                "model": chunk.get("model").and_then(Value::as_str).unwrap_or(""),
                "content": [],
                "stop_reason": null,
                "stop_sequence": null,
                "usage": {"input_tokens": 0, "output_tokens": 0},
            },
        });
        write_event(out, Some("message_start"), &event);
    }

    fn text(&mut self, text: &str, out: &mut Vec<u8>) {
        let index = match self.open {
            Some(Block::Text { index }) => index,
            _ => self.open_block(json!({"type": "text", "text": ""}), out),
        };
        self.open = Some(Block::Text { index });
        let delta = json!({"type": "text_delta", "text": text});
        self.block_delta(index, delta, out);
    }

    /// One `delta.tool_calls[]` entry: a new tool opens a block; argument fragments go
    /// to the open tool's block.
    fn tool_call(&mut self, call: &Value, out: &mut Vec<u8>) {
        let id = call
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty());
        let open_key = match self.open {
            Some(Block::Tool { key, .. }) => Some(key),
            _ => None,
        };
        // Servers that leave out `index` send `id` only on a call's first fragment.
        let key = match call.get("index").and_then(Value::as_u64) {
            Some(key) => key,
            None => match (id, open_key) {
                (None, Some(key)) => key,
                (None, None) => return, // a fragment of no call
                (Some(_), _) => self.tools_seen.iter().max().map_or(0, |k| k + 1),
            },
        };
        let index = match (open_key, self.open.as_ref()) {
            (Some(open), Some(Block::Tool { index, .. })) if open == key => *index,
            _ if self.tools_seen.contains(&key) => return,
            _ => {
                self.tools_seen.push(key);
                let function = call.get("function").unwrap_or(&Value::Null);
                let block = json!({
                    "type": "tool_use",
                    "id": id.map_or_else(|| format!("toolu_{key}"), str::to_owned),
                    "name": function.get("name").and_then(Value::as_str).unwrap_or(""),
                    "input": {},
                });
                let index = self.open_block(block, out);
                self.open = Some(Block::Tool { index, key });
                index
            }
        };
        let fragment = call.pointer("/function/arguments").and_then(Value::as_str);
        if let Some(fragment) = fragment.filter(|f| !f.is_empty()) {
            let delta = json!({"type": "input_json_delta", "partial_json": fragment});
            self.block_delta(index, delta, out);
        }
    }

    /// Closes the open block and opens `block`: its index.
    fn open_block(&mut self, block: Value, out: &mut Vec<u8>) -> u64 {
        self.close_block(out);
        let index = self.next_index;
        self.next_index += 1;
        let event = json!({"type": "content_block_start", "index": index, "content_block": block});
        write_event(out, Some("content_block_start"), &event);
        index
    }

    fn block_delta(&self, index: u64, delta: Value, out: &mut Vec<u8>) {
        let event = json!({"type": "content_block_delta", "index": index, "delta": delta});
        write_event(out, Some("content_block_delta"), &event);
    }

    fn close_block(&mut self, out: &mut Vec<u8>) {
        let index = match self.open.take() {
            Some(Block::Text { index } | Block::Tool { index, .. }) => index,
            None => return,
        };
        let event = json!({"type": "content_block_stop", "index": index});
        write_event(out, Some("content_block_stop"), &event);
    }

    /// The end of the stream: the open block closed, `message_delta`, `message_stop`;
    /// an `error` event when no chunk ever came.
    fn end(&mut self, out: &mut Vec<u8>) {
        if self.finished {
            return;
        }
        self.finished = true;
        if !self.started {
            let message = "the upstream stream ended before any event";
            let event =
                json!({"type": "error", "error": {"type": "api_error", "message": message}});
            write_event(out, Some("error"), &event);
            return;
        }
        self.close_block(out);
        let (prompt, completion, cached) = self.usage;
        let event = json!({
            "type": "message_delta",
            "delta": {
                "stop_reason": stop_reason(self.finish_reason.as_deref()),
                "stop_sequence": null,
            },
            "usage": {
                "input_tokens": prompt.saturating_sub(cached),
                "output_tokens": completion,
                "cache_read_input_tokens": cached,
            },
        });
        write_event(out, Some("message_delta"), &event);
        write_event(out, Some("message_stop"), &json!({"type": "message_stop"}));
    }
}

impl EventTranslator for Events {
    fn event(&mut self, event: &SseEvent, out: &mut Vec<u8>) {
        if self.finished {
            return;
        }
        let data = event.data.trim();
        if data == "[DONE]" {
            self.end(out);
            return;
        }
        if let Ok(chunk @ Value::Object(_)) = serde_json::from_str::<Value>(data) {
            self.chunk(&chunk, out);
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        self.end(out);
    }
}
