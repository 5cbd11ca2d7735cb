//! OpenAI Chat Completions and Completions stream chunks: content deltas, the model, and
//! usage on whichever chunk carries it.

use std::borrow::Cow;

use serde::de::IgnoredAny;
use serde::Deserialize;

use super::wire::{Object, Text, WireUsage};
use super::{EventInfo, ResponseTracker};

#[derive(Deserialize)]
struct Chunk<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    choices: Option<Vec<Choice<'a>>>,
    #[serde(default)]
    usage: Option<Object<WireUsage>>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    /// Chat Completions.
    #[serde(borrow, default)]
    delta: Option<Delta<'a>>,
    /// Completions.
    #[serde(borrow, default)]
    text: Text<'a>,
}

#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(borrow, default)]
    content: Text<'a>,
    #[serde(borrow, default)]
    refusal: Text<'a>,
    /// Reasoning text as DeepSeek, vLLM and others stream it.
    #[serde(borrow, default)]
    reasoning_content: Text<'a>,
    #[serde(borrow, default)]
    reasoning: Text<'a>,
    #[serde(default)]
    tool_calls: Option<Vec<IgnoredAny>>,
    #[serde(default)]
    function_call: Option<IgnoredAny>,
}

pub(super) fn observe(t: &mut ResponseTracker, data: &str) -> serde_json::Result<EventInfo> {
    let chunk: Chunk = serde_json::from_str(data)?;
    if let Some(model) = &chunk.model {
        t.set_model(model);
    }
    let mut info = EventInfo::default();
    let choices = chunk.choices.unwrap_or_default();
    for choice in &choices {
        let mut text = choice.text.non_empty();
        if let Some(d) = &choice.delta {
            text = text.or(d.content.non_empty());
            info.has_content |= d.refusal.non_empty().is_some()
                || d.reasoning_content.non_empty().is_some()
                || d.reasoning.non_empty().is_some()
                || d.tool_calls.as_ref().is_some_and(|c| !c.is_empty())
                || d.function_call.is_some();
        }
        if let Some(text) = text {
            info.has_content = true;
            info.output_text
                .get_or_insert_with(String::new)
                .push_str(text);
        }
    }
    if let Some(usage) = chunk.usage {
        info.has_usage = true;
        info.usage_only = choices.is_empty();
        t.record(usage);
    }
    Ok(info)
}
