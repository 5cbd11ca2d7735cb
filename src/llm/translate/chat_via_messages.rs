//! An OpenAI Chat Completions client served by an Anthropic Messages upstream.
//!
//! Request (Chat → Messages):
//! - `system` and `developer` messages → `system` (joined with a blank line);
//! - `user` text and images (`image_url` data URLs → base64 sources, other URLs → url
//!   sources); `assistant` text and `tool_calls` (arguments parsed into `input`);
//!   `tool` messages → `tool_result` blocks in a user turn; consecutive turns of one
//!   role are merged, as Messages requires alternation;
//! - `max_completion_tokens` / `max_tokens` → `max_tokens` (Messages requires one:
//!   [`DEFAULT_MAX_TOKENS`] when the client gave none); `temperature`, `top_p`;
//!   `stop` → `stop_sequences`; `user` → `metadata.user_id`; `stream`;
//! - `tools` → `tools` (`parameters` → `input_schema`); `tool_choice` `auto` / `none` /
//!   `required` (→ `any`) / a named function (→ `tool`); `parallel_tool_calls: false`
//!   → `disable_parallel_tool_use`.
//! - Dropped, having no Messages equivalent: `frequency_penalty`, `presence_penalty`,
//!   `logit_bias`, `logprobs`, `seed`, `response_format`, `stream_options` (Messages
//!   always reports usage), `n` = 1. `n` > 1 is refused.
//!
//! Response (Messages → Chat): text blocks → `content`, `tool_use` → `tool_calls`,
//! `stop_reason` → `finish_reason` (`end_turn` / `stop_sequence` → `stop`,
//! `max_tokens` → `length`, `tool_use` → `tool_calls`, `refusal` → `content_filter`),
//! usage with cache reads and writes folded into `prompt_tokens` and reads reported as
//! `prompt_tokens_details.cached_tokens`. Thinking blocks are not passed on.
//!
//! Stream: `message_start` → the role chunk; text and `input_json_delta` deltas →
//! content and tool-call argument chunks; `message_delta` → the `finish_reason` chunk;
//! `message_stop` → the usage chunk (when the client asked for it) and `[DONE]`; an
//! `error` event → an OpenAI error chunk, then `[DONE]`.

mod stream;

use serde_json::{json, Map, Value};

use super::{TranslateError, TranslatedRequest};

pub(super) use stream::Events;

/// `max_tokens` when an OpenAI client sets no limit (Messages requires one).
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// The client's Chat Completions request as a Messages request.
pub(super) fn request(body: &[u8]) -> Result<TranslatedRequest, TranslateError> {
    let req: Map<String, Value> = serde_json::from_slice(body)
        .map_err(|_| TranslateError("the request body is not a JSON object".into()))?;
    let model = req
        .get("model")
        .and_then(Value::as_str)
        .ok_or_else(|| TranslateError("`model` must be a string".into()))?;
    if req.get("n").and_then(Value::as_u64).is_some_and(|n| n > 1) {
        return Err(TranslateError(
            "`n` > 1 is not supported by this route's provider (Anthropic Messages)".into(),
        ));
    }
    let messages = req
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| TranslateError("`messages` must be an array".into()))?;
    let (system, turns) = convert_messages(messages)?;
    let stream = req.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let include_usage = stream
        && req
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
    let mut out = Map::new();
    out.insert("model".into(), model.into());
    out.insert("messages".into(), Value::Array(turns));
    if !system.is_empty() {
        out.insert("system".into(), system.into());
    }
    out.insert("max_tokens".into(), max_tokens(&req).into());
    copy_sampling(&req, &mut out);
    convert_tools(&req, &mut out)?;
    if stream {
        out.insert("stream".into(), true.into());
    }
    let body = serde_json::to_vec(&out).expect("serializing a JSON value cannot fail");
    Ok(TranslatedRequest {
        body,
        stream,
        include_usage,
    })
}

fn max_tokens(req: &Map<String, Value>) -> u64 {
    ["max_completion_tokens", "max_tokens"]
        .iter()
        .find_map(|k| req.get(*k).and_then(Value::as_u64))
        .unwrap_or(DEFAULT_MAX_TOKENS)
}

/// `temperature`, `top_p`, `stop`, `user`.
fn copy_sampling(req: &Map<String, Value>, out: &mut Map<String, Value>) {
    for key in ["temperature", "top_p"] {
        if let Some(v) = req.get(key).filter(|v| v.is_number()) {
            out.insert(key.into(), v.clone());
        }
    }
    let stops: Vec<Value> = match req.get("stop") {
        Some(Value::String(s)) => vec![s.clone().into()],
        Some(Value::Array(a)) => a.iter().filter(|v| v.is_string()).cloned().collect(),
        _ => Vec::new(),
    };
    if !stops.is_empty() {
        out.insert("stop_sequences".into(), stops.into());
    }
    if let Some(user) = req.get("user").and_then(Value::as_str) {
        out.insert("metadata".into(), json!({ "user_id": user }));
    }
}

/// `tools`, `tool_choice` and `parallel_tool_calls`.
fn convert_tools(
    req: &Map<String, Value>,
    out: &mut Map<String, Value>,
) -> Result<(), TranslateError> {
    if let Some(tools) = req.get("tools").and_then(Value::as_array) {
        let converted: Vec<Value> = tools
            .iter()
            .filter_map(|t| t.get("function"))
            .map(|f| {
                let mut tool = Map::new();
                tool.insert("name".into(), f.get("name").cloned().unwrap_or(Value::Null));
                if let Some(d) = f.get("description").filter(|d| d.is_string()) {
                    tool.insert("description".into(), d.clone());
                }
                let schema = f
                    .get("parameters")
                    .filter(|p| p.is_object())
                    .cloned()
                    .unwrap_or_else(|| json!({ "type": "object", "properties": {} }));
                tool.insert("input_schema".into(), schema);
                Value::Object(tool)
            })
            .collect();
        if !converted.is_empty() {
            out.insert("tools".into(), converted.into());
        }
    }
    let mut choice = match req.get("tool_choice") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match s.as_str() {
            "auto" => Some(json!({ "type": "auto" })),
            "none" => Some(json!({ "type": "none" })),
            "required" => Some(json!({ "type": "any" })),
            other => {
                return Err(TranslateError(format!(
                    "`tool_choice` {other:?} is not known"
                )))
            }
        },
        Some(v) => match v.pointer("/function/name").and_then(Value::as_str) {
            Some(name) => Some(json!({ "type": "tool", "name": name })),
            None => return Err(TranslateError("`tool_choice` names no function".into())),
        },
    };
    if req.get("parallel_tool_calls") == Some(&Value::Bool(false)) && out.contains_key("tools") {
        let c = choice.get_or_insert_with(|| json!({ "type": "auto" }));
        if c["type"] != "none" {
            c["disable_parallel_tool_use"] = true.into();
        }
    }
    if let Some(c) = choice {
        out.insert("tool_choice".into(), c);
    }
    Ok(())
}

/// Chat messages → (system text, Messages turns).
fn convert_messages(messages: &[Value]) -> Result<(String, Vec<Value>), TranslateError> {
    let mut system: Vec<String> = Vec::new();
    let mut turns: Vec<(String, Vec<Value>)> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let role = m
            .get("role")
            .and_then(Value::as_str)
            .ok_or_else(|| TranslateError(format!("`messages[{i}].role` must be a string")))?;
        let (turn_role, blocks) = match role {
            "system" | "developer" => {
                system.push(text_of(m.get("content")));
                continue;
            }
            "user" => ("user", user_blocks(m.get("content"))),
            "assistant" => ("assistant", assistant_blocks(m, i)?),
            "tool" => ("user", vec![tool_result(m, i)?]),
            other => {
                return Err(TranslateError(format!(
                    "`messages[{i}].role` {other:?} is not known"
                )))
            }
        };
        if blocks.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((r, b)) if r == turn_role => b.extend(blocks),
            _ => turns.push((turn_role.to_owned(), blocks)),
        }
    }
    let turns = turns
        .into_iter()
        .map(|(role, content)| json!({ "role": role, "content": content }))
        .collect();
    Ok((system.join("\n\n"), turns))
}

/// The text of a content that is a string or an array of text parts.
fn text_of(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

fn user_blocks(content: Option<&Value>) -> Vec<Value> {
    match content {
        Some(Value::String(s)) => vec![json!({ "type": "text", "text": s })],
        Some(Value::Array(parts)) => parts.iter().filter_map(user_part).collect(),
        _ => Vec::new(),
    }
}

/// One user content part: text, or an image (a data URL becomes a base64 source).
fn user_part(part: &Value) -> Option<Value> {
    match part.get("type").and_then(Value::as_str)? {
        "text" => Some(json!({ "type": "text", "text": part.get("text")?.as_str()? })),
        "image_url" => {
            let url = part
                .pointer("/image_url/url")
                .or_else(|| part.get("image_url"))?
                .as_str()?;
            let source = match url
                .strip_prefix("data:")
                .and_then(|rest| rest.split_once(";base64,"))
            {
                Some((media_type, data)) => {
                    json!({ "type": "base64", "media_type": media_type, "data": data })
                }
                None => json!({ "type": "url", "url": url }),
            };
            Some(json!({ "type": "image", "source": source }))
        }
        _ => None,
    }
}

fn assistant_blocks(m: &Value, i: usize) -> Result<Vec<Value>, TranslateError> {
    let mut blocks = Vec::new();
    let text = text_of(m.get("content"));
    if !text.is_empty() {
        blocks.push(json!({ "type": "text", "text": text }));
    }
    for (j, call) in m
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let field = format!("`messages[{i}].tool_calls[{j}]`");
        let id = call.get("id").and_then(Value::as_str);
        let name = call.pointer("/function/name").and_then(Value::as_str);
        let (Some(id), Some(name)) = (id, name) else {
            return Err(TranslateError(format!(
                "{field} needs an id and a function name"
            )));
        };
        let arguments = call
            .pointer("/function/arguments")
            .and_then(Value::as_str)
            .unwrap_or("{}");
        let input: Value = if arguments.trim().is_empty() {
            json!({})
        } else {
            serde_json::from_str(arguments).map_err(|e| {
                TranslateError(format!("{field}.function.arguments is not JSON: {e}"))
            })?
        };
        blocks.push(json!({ "type": "tool_use", "id": id, "name": name, "input": input }));
    }
    Ok(blocks)
}

fn tool_result(m: &Value, i: usize) -> Result<Value, TranslateError> {
    let id = m
        .get("tool_call_id")
        .and_then(Value::as_str)
        .ok_or_else(|| TranslateError(format!("`messages[{i}].tool_call_id` must be a string")))?;
    Ok(json!({
        "type": "tool_result",
        "tool_use_id": id,
        "content": text_of(m.get("content")),
    }))
}

/// A whole Messages response as a chat completion.
pub(super) fn response(body: &[u8]) -> Result<Vec<u8>, TranslateError> {
    let msg: Value = serde_json::from_slice(body).map_err(|e| {
        TranslateError(format!("the upstream's Messages response is not JSON: {e}"))
    })?;
    let content = msg.get("content").and_then(Value::as_array);
    let mut text = String::new();
    let mut calls = Vec::new();
    for block in content.into_iter().flatten() {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(block.get("text").and_then(Value::as_str).unwrap_or("")),
            Some("tool_use") => calls.push(json!({
                "id": block.get("id").cloned().unwrap_or(Value::Null),
                "type": "function",
                "function": {
                    "name": block.get("name").cloned().unwrap_or(Value::Null),
                    "arguments": block.get("input").map(Value::to_string).unwrap_or_else(|| "{}".into()),
                },
            })),
            _ => {}
        }
    }
    let mut message = json!({
        "role": "assistant",
        "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { text.into() },
    });
    if !calls.is_empty() {
        message["tool_calls"] = calls.into();
    }
    let finish = finish_reason(msg.get("stop_reason").and_then(Value::as_str));
    let out = json!({
        "id": msg.get("id").cloned().unwrap_or_else(|| "chatcmpl-tollgate".into()),
        "object": "chat.completion",
        "created": now_unix(),
        "model": msg.get("model").cloned().unwrap_or(Value::Null),
        "choices": [{ "index": 0, "message": message, "logprobs": null, "finish_reason": finish }],
        "usage": usage(msg.get("usage")),
    });
    Ok(serde_json::to_vec(&out).expect("serializing a JSON value cannot fail"))
}

/// Messages' `stop_reason` as Chat's `finish_reason`.
fn finish_reason(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens") | Some("model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        _ => "stop",
    }
}

/// Token counts read from Messages usage objects, merged as a stream reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    input: u64,
    cache_read: u64,
    cache_write: u64,
    output: u64,
}

impl Counts {
    /// Takes every count `usage` has (`message_delta` repeats some, later ones win).
    fn merge(&mut self, usage: Option<&Value>) {
        let Some(u) = usage else { return };
        let get = |k: &str| u.get(k).and_then(Value::as_u64);
        self.input = get("input_tokens").filter(|&n| n > 0).unwrap_or(self.input);
        self.cache_read = get("cache_read_input_tokens").unwrap_or(self.cache_read);
        self.cache_write = get("cache_creation_input_tokens").unwrap_or(self.cache_write);
        self.output = get("output_tokens").unwrap_or(self.output);
    }

    /// The Chat `usage` object: every prompt token (cache reads and writes included) in
    /// `prompt_tokens`, the reads again in `prompt_tokens_details.cached_tokens`.
    fn to_chat(self) -> Value {
        let prompt = self
            .input
            .saturating_add(self.cache_read)
            .saturating_add(self.cache_write);
        json!({
            "prompt_tokens": prompt,
            "completion_tokens": self.output,
            "total_tokens": prompt.saturating_add(self.output),
            "prompt_tokens_details": { "cached_tokens": self.cache_read },
        })
    }
}

fn usage(u: Option<&Value>) -> Value {
    let mut counts = Counts::default();
    counts.merge(u);
    counts.to_chat()
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests;
