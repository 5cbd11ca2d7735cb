//! An Anthropic Messages client served by an OpenAI Chat Completions upstream (OpenAI,
//! vLLM, Gemini's OpenAI endpoint, …).
//!
//! Request (Messages → Chat):
//! - `system` (a string or text blocks, joined with a blank line) → a first `system`
//!   message;
//! - `user` text and images (base64 sources → `data:` URLs, url sources → URLs) →
//!   content parts (a plain string when all are text, joined with a newline);
//!   `tool_result` blocks → `tool` messages ahead of the user message holding the rest
//!   (their text);
//! - `assistant` text → `content`, `tool_use` → `tool_calls` (`input` serialized into
//!   `arguments`);
//! - `max_tokens`, `temperature`, `top_p`; `stop_sequences` → `stop`;
//!   `metadata.user_id` → `user`; `stream` → `stream` with
//!   `stream_options.include_usage` (usage for `message_delta`);
//! - `tools` → function tools (`input_schema` → `parameters`); `tool_choice` `auto` /
//!   `any` (→ `required`) / `none` / `tool` (→ a named function);
//!   `disable_parallel_tool_use` → `parallel_tool_calls: false`.
//! - Dropped, having no Chat equivalent: `top_k`, `thinking`, `service_tier`,
//!   `cache_control`, the `thinking` / `redacted_thinking` blocks (the model's own) and
//!   other non-text, non-`tool_use` blocks of assistant turns, `is_error` of tool
//!   results, Anthropic server tools (a `type` other than `custom` and no
//!   `input_schema`).
//! - Refused with a [`TranslateError`] naming the field, rather than dropped from what
//!   the client sent: a user block of another type (a `document`, …), a block other
//!   than text in a tool result's content (an image, …), an image with another source
//!   kind (a Files API `file`).
//!
//! Response (Chat → Messages): `content` (or a `refusal`) → a text block, `tool_calls`
//! → `tool_use` blocks (`arguments` parsed; `{}` when they are not JSON),
//! `finish_reason` → `stop_reason` (`stop` → `end_turn`, `length` → `max_tokens`,
//! `tool_calls` / `function_call` → `tool_use`, `content_filter` → `refusal`, else
//! `end_turn`); usage with `cached_tokens` moved out of `input_tokens` into
//! `cache_read_input_tokens`. Reasoning text (`reasoning_content`) is not passed on.
//!
//! Stream: the first chunk → `message_start`; content and tool-call deltas → text and
//! `tool_use` blocks (`text_delta`, `input_json_delta`), opened and closed in order;
//! the finish reason and the usage chunk are kept for the `message_delta` and
//! `message_stop` sent at `[DONE]` (or at the end of the stream without it); an error
//! chunk → an `error` event, and nothing after it.

mod stream;

use serde_json::{json, Map, Value};

use super::{TranslateError, TranslatedRequest};

pub(super) use stream::Events;

/// How refusals name the upstream.
const PROVIDER: &str = "this route's provider (OpenAI Chat Completions)";

fn error(message: impl Into<String>) -> TranslateError {
    TranslateError(message.into())
}

/// The client's Messages request as a Chat Completions request.
pub(super) fn request(body: &[u8]) -> Result<TranslatedRequest, TranslateError> {
    let req: Map<String, Value> =
        serde_json::from_slice(body).map_err(|_| error("the request body is not a JSON object"))?;
    let model = req
        .get("model")
        .and_then(Value::as_str)
        .ok_or_else(|| error("`model` must be a string"))?;
    let messages = req
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| error("`messages` must be an array"))?;
    let mut turns = Vec::new();
    if let Some(system) = req.get("system") {
        let text = system_text(system)?;
        if !text.is_empty() {
            turns.push(json!({"role": "system", "content": text}));
        }
    }
    for (i, message) in messages.iter().enumerate() {
        convert_message(i, message, &mut turns)?;
    }
    let stream = req.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let mut out = Map::new();
    out.insert("model".into(), model.into());
    out.insert("messages".into(), Value::Array(turns));
    copy_sampling(&req, &mut out);
    convert_tools(&req, &mut out)?;
    if stream {
        out.insert("stream".into(), true.into());
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    let body = serde_json::to_vec(&out).expect("serializing a JSON value cannot fail");
    Ok(TranslatedRequest {
        body,
        stream,
        include_usage: false,
    })
}

/// `system`: a string, or text blocks joined with a blank line.
fn system_text(system: &Value) -> Result<String, TranslateError> {
    match system {
        Value::String(text) => Ok(text.clone()),
        Value::Array(blocks) => Ok(block_texts(blocks).join("\n\n")),
        Value::Null => Ok(String::new()),
        _ => Err(error(
            "`system` must be a string or an array of text blocks",
        )),
    }
}

/// The texts of the `text` blocks among `blocks`.
fn block_texts(blocks: &[Value]) -> Vec<&str> {
    blocks
        .iter()
        .filter(|b| block_type(b) == "text")
        .filter_map(|b| b.get("text").and_then(Value::as_str))
        .collect()
}

fn block_type(block: &Value) -> &str {
    block.get("type").and_then(Value::as_str).unwrap_or("")
}

/// One Messages turn as one or more Chat messages, appended to `turns`.
fn convert_message(
    i: usize,
    message: &Value,
    turns: &mut Vec<Value>,
) -> Result<(), TranslateError> {
    let role = message
        .get("role")
        .and_then(Value::as_str)
        .ok_or_else(|| error(format!("`messages[{i}].role` must be a string")))?;
    let blocks = match message.get("content") {
        Some(Value::String(text)) => {
            turns.push(json!({"role": role_checked(i, role)?, "content": text}));
            return Ok(());
        }
        Some(Value::Array(blocks)) => blocks,
        _ => {
            return Err(error(format!(
                "`messages[{i}].content` must be a string or an array of blocks"
            )))
        }
    };
    match role_checked(i, role)? {
        "user" => convert_user(i, blocks, turns),
        _ => {
            turns.push(convert_assistant(blocks));
            Ok(())
        }
    }
}

fn role_checked(i: usize, role: &str) -> Result<&'static str, TranslateError> {
    match role {
        "user" => Ok("user"),
        "assistant" => Ok("assistant"),
        _ => Err(error(format!(
            "`messages[{i}].role` must be `user` or `assistant`, not `{role}`"
        ))),
    }
}

/// A user turn: `tool` messages for its tool results, then a user message with the
/// rest (left out when only tool results were there). A block of another kind is
/// refused.
fn convert_user(i: usize, blocks: &[Value], turns: &mut Vec<Value>) -> Result<(), TranslateError> {
    let mut parts = Vec::new();
    let mut tool_results = 0;
    for (j, block) in blocks.iter().enumerate() {
        match block_type(block) {
            "text" => {
                if let Some(text) = block.get("text").and_then(Value::as_str) {
                    parts.push(json!({"type": "text", "text": text}));
                }
            }
            "image" => parts.push(image_part(i, block)?),
            "tool_result" => {
                tool_results += 1;
                turns.push(tool_message(i, j, block)?);
            }
            kind => return Err(refused(&format!("messages[{i}].content[{j}]"), kind)),
        }
    }
    if parts.is_empty() && tool_results > 0 {
        return Ok(());
    }
    let content = if parts.iter().all(|p| p["type"] == "text") {
        let texts: Vec<&str> = parts.iter().filter_map(|p| p["text"].as_str()).collect();
        Value::String(texts.join("\n"))
    } else {
        Value::Array(parts)
    };
    turns.push(json!({"role": "user", "content": content}));
    Ok(())
}

/// The refusal of the block at `field`, of type `kind`, which Chat cannot carry.
fn refused(field: &str, kind: &str) -> TranslateError {
    if kind.is_empty() {
        return error(format!("`{field}.type` must be a string"));
    }
    let article = if kind.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    error(format!(
        "`{field}`: {article} \"{kind}\" block cannot be sent to {PROVIDER}"
    ))
}

/// An `image` block as an `image_url` part.
fn image_part(i: usize, block: &Value) -> Result<Value, TranslateError> {
    let source = block.get("source").unwrap_or(&Value::Null);
    let str_field = |name: &str| source.get(name).and_then(Value::as_str);
    let url = match (str_field("type"), str_field("url")) {
        (Some("base64"), _) => match (str_field("media_type"), str_field("data")) {
            (Some(media_type), Some(data)) => format!("data:{media_type};base64,{data}"),
            _ => {
                return Err(error(format!(
                "an image in `messages[{i}]` has a base64 source without `media_type` and `data`"
            )))
            }
        },
        (Some("url"), Some(url)) => url.to_owned(),
        (kind, _) => {
            return Err(error(format!(
                "an image in `messages[{i}]` has a source of type `{}`, which {PROVIDER} \
                 cannot take: only base64 and url sources",
                kind.unwrap_or("none")
            )))
        }
    };
    Ok(json!({"type": "image_url", "image_url": {"url": url}}))
}

/// The `tool_result` block `messages[i].content[j]` as a `tool` message: its text
/// (`is_error` is dropped); a block other than text in its content is refused.
fn tool_message(i: usize, j: usize, block: &Value) -> Result<Value, TranslateError> {
    let id = block
        .get("tool_use_id")
        .and_then(Value::as_str)
        .unwrap_or("");
    let content = match block.get("content") {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(blocks)) => {
            let mut texts = Vec::new();
            for (k, inner) in blocks.iter().enumerate() {
                match block_type(inner) {
                    "text" => texts.extend(inner.get("text").and_then(Value::as_str)),
                    kind => {
                        let field = format!("messages[{i}].content[{j}].content[{k}]");
                        return Err(refused(&field, kind));
                    }
                }
            }
            texts.join("\n")
        }
        _ => String::new(),
    };
    Ok(json!({"role": "tool", "tool_call_id": id, "content": content}))
}

/// An assistant turn: text → `content`, `tool_use` → `tool_calls`; thinking and other
/// blocks dropped.
fn convert_assistant(blocks: &[Value]) -> Value {
    let mut texts = Vec::new();
    let mut calls = Vec::new();
    for block in blocks {
        match block_type(block) {
            "text" => texts.extend(block.get("text").and_then(Value::as_str)),
            "tool_use" => {
                let input = block.get("input").cloned().unwrap_or_else(|| json!({}));
                let arguments = serde_json::to_string(&input).unwrap_or_else(|_| "{}".into());
                calls.push(json!({
                    "id": block.get("id").and_then(Value::as_str).unwrap_or(""),
                    "type": "function",
                    "function": {
                        "name": block.get("name").and_then(Value::as_str).unwrap_or(""),
                        "arguments": arguments,
                    },
                }));
            }
            _ => {}
        }
    }
    let content = if texts.is_empty() && !calls.is_empty() {
        Value::Null
    } else {
        Value::String(texts.join("\n"))
    };
    let mut message = json!({"role": "assistant", "content": content});
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    message
}

/// `max_tokens`, `temperature`, `top_p`, `stop_sequences` → `stop`,
/// `metadata.user_id` → `user`. `top_k` has no Chat equivalent.
fn copy_sampling(req: &Map<String, Value>, out: &mut Map<String, Value>) {
    for key in ["max_tokens", "temperature", "top_p"] {
        if let Some(value) = req.get(key).filter(|v| !v.is_null()) {
            out.insert(key.into(), value.clone());
        }
    }
    if let Some(stop) = req.get("stop_sequences").filter(|v| v.is_array()) {
        out.insert("stop".into(), stop.clone());
    }
    if let Some(user) = req
        .get("metadata")
        .and_then(|m| m.get("user_id"))
        .filter(|v| v.is_string())
    {
        out.insert("user".into(), user.clone());
    }
}

/// `tools`, `tool_choice` and `disable_parallel_tool_use`. Nothing of these is sent
/// when no function tool remains (Chat refuses a `tool_choice` without tools).
fn convert_tools(
    req: &Map<String, Value>,
    out: &mut Map<String, Value>,
) -> Result<(), TranslateError> {
    let mut tools = Vec::new();
    for (i, tool) in req
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let schema = tool.get("input_schema");
        let kind = tool.get("type").and_then(Value::as_str).unwrap_or("custom");
        if kind != "custom" && schema.is_none() {
            continue; // an Anthropic server tool (web search, bash, …)
        }
        let name = tool
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| error(format!("`tools[{i}].name` must be a string")))?;
        let mut function = json!({"name": name});
        if let Some(description) = tool.get("description").filter(|v| v.is_string()) {
            function["description"] = description.clone();
        }
        function["parameters"] = schema
            .cloned()
            .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
        tools.push(json!({"type": "function", "function": function}));
    }
    if tools.is_empty() {
        return Ok(());
    }
    out.insert("tools".into(), Value::Array(tools));
    let Some(choice) = req.get("tool_choice").filter(|v| !v.is_null()) else {
        return Ok(());
    };
    let converted = match choice.get("type").and_then(Value::as_str) {
        Some("auto") => json!("auto"),
        Some("any") => json!("required"),
        Some("none") => json!("none"),
        Some("tool") => {
            let name = choice
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| error("`tool_choice.name` must be a string"))?;
            json!({"type": "function", "function": {"name": name}})
        }
        _ => {
            return Err(error(
                "`tool_choice.type` must be `auto`, `any`, `tool` or `none`",
            ))
        }
    };
    out.insert("tool_choice".into(), converted);
    if choice
        .get("disable_parallel_tool_use")
        .and_then(Value::as_bool)
        == Some(true)
    {
        out.insert("parallel_tool_calls".into(), false.into());
    }
    Ok(())
}

/// A Chat `finish_reason` as a Messages `stop_reason`.
fn stop_reason(finish_reason: Option<&str>) -> &'static str {
    match finish_reason {
        Some("length") => "max_tokens",
        Some("tool_calls" | "function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ => "end_turn",
    }
}

/// Token counts of a Chat `usage`: (prompt, completion, cached).
fn usage_counts(usage: &Value) -> (u64, u64, u64) {
    let count = |pointer: &str| usage.pointer(pointer).and_then(Value::as_u64).unwrap_or(0);
    (
        count("/prompt_tokens"),
        count("/completion_tokens"),
        count("/prompt_tokens_details/cached_tokens"),
    )
}

/// A whole Chat completion as a Messages message.
pub(super) fn response(body: &[u8]) -> Result<Vec<u8>, TranslateError> {
    let completion: Map<String, Value> = serde_json::from_slice(body)
        .map_err(|_| error("the upstream response body is not a JSON object"))?;
    let choice = completion
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .unwrap_or(&Value::Null);
    let message = choice.get("message").unwrap_or(&Value::Null);
    let mut content = Vec::new();
    let text = message
        .get("content")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .or_else(|| message.get("refusal").and_then(Value::as_str))
        .filter(|t| !t.is_empty());
    if let Some(text) = text {
        content.push(json!({"type": "text", "text": text}));
    }
    for call in message
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let function = call.get("function").unwrap_or(&Value::Null);
        let input = function
            .get("arguments")
            .and_then(Value::as_str)
            .and_then(|a| serde_json::from_str::<Value>(a).ok())
            .filter(Value::is_object)
            .unwrap_or_else(|| json!({}));
        content.push(json!({
            "type": "tool_use",
            "id": call.get("id").and_then(Value::as_str).unwrap_or(""),
            "name": function.get("name").and_then(Value::as_str).unwrap_or(""),
            "input": input,
        }));
    }
    let finish = choice.get("finish_reason").and_then(Value::as_str);
    let (prompt, completion_tokens, cached) =
        usage_counts(completion.get("usage").unwrap_or(&Value::Null));
    let out = json!({
        "id": completion.get("id").and_then(Value::as_str).unwrap_or(""),
        "type": "message",
        "role": "assistant",
        "model": completion.get("model").and_then(Value::as_str).unwrap_or(""),
        "content": content,
        "stop_reason": stop_reason(finish),
        "stop_sequence": null,
        "usage": {
            "input_tokens": prompt.saturating_sub(cached),
            "output_tokens": completion_tokens,
            "cache_read_input_tokens": cached,
            "cache_creation_input_tokens": 0,
        },
    });
    Ok(serde_json::to_vec(&out).expect("serializing a JSON value cannot fail"))
}

#[cfg(test)]
mod tests;
