//! Anthropic Messages stream events: `message_start` (model, input and cache counts),
//! `content_block_start` / `content_block_delta` (output), `message_delta` (final output
//! count, sometimes input and cache counts), `message_stop` (the end).

use std::borrow::Cow;

use serde::Deserialize;

use super::wire::{Object, Text, WireUsage};
use super::{EventInfo, ResponseTracker};

#[derive(Deserialize)]
struct Event<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    message: Option<Message<'a>>,
    #[serde(borrow, default)]
    content_block: Option<Block<'a>>,
    #[serde(borrow, default)]
    delta: Option<Delta<'a>>,
    #[serde(default)]
    usage: Option<Object<WireUsage>>,
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    usage: Option<Object<WireUsage>>,
}

#[derive(Deserialize)]
struct Block<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    text: Text<'a>,
}

/// `text_delta` (`text`), `input_json_delta` (`partial_json`), `thinking_delta`
/// (`thinking`); `message_delta`'s delta has none of them.
#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(borrow, default)]
    text: Text<'a>,
    #[serde(borrow, default)]
    partial_json: Text<'a>,
    #[serde(borrow, default)]
    thinking: Text<'a>,
}

pub(super) fn observe(t: &mut ResponseTracker, data: &str) -> serde_json::Result<EventInfo> {
    let event: Event = serde_json::from_str(data)?;
    let mut info = EventInfo::default();
    let mut usage = event.usage;
    if let Some(message) = event.message {
        if let Some(model) = &message.model {
            t.set_model(model);
        }
        usage = usage.or(message.usage);
    }
    if let Some(block) = &event.content_block {
        let tool = matches!(block.kind.as_deref(), Some("tool_use" | "server_tool_use"));
        if let Some(text) = block.text.non_empty() {
            info.output_text = Some(text.to_owned());
        }
        info.has_content = tool || info.output_text.is_some();
    }
    if let Some(delta) = &event.delta {
        if let Some(text) = delta.text.non_empty() {
            info.output_text = Some(text.to_owned());
        }
        info.has_content |= info.output_text.is_some()
            || delta.partial_json.non_empty().is_some()
            || delta.thinking.non_empty().is_some();
    }
    if let Some(usage) = usage {
        info.has_usage = true;
        t.record(usage);
    }
    info.done = event.kind.as_deref() == Some("message_stop");
    Ok(info)
}
