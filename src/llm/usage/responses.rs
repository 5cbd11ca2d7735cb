//! OpenAI Responses API stream events: `*.delta` events carry output, the terminal
//! `response.completed` / `response.incomplete` / `response.failed` carry usage.

use std::borrow::Cow;

use serde::Deserialize;

use super::wire::{Object, Text, WireUsage};
use super::{EventInfo, ResponseTracker};

#[derive(Deserialize)]
struct Event<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    delta: Text<'a>,
    #[serde(borrow, default)]
    response: Option<Response<'a>>,
}

#[derive(Deserialize)]
struct Response<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    usage: Option<Object<WireUsage>>,
}

pub(super) fn observe(t: &mut ResponseTracker, data: &str) -> serde_json::Result<EventInfo> {
    let event: Event = serde_json::from_str(data)?;
    let kind = event.kind.as_deref().unwrap_or("");
    let mut info = EventInfo::default();
    if let Some(delta) = event.delta.non_empty() {
        // Output deltas: output_text, refusal, function_call_arguments, reasoning text
        // and summaries, audio, custom tool input, code interpreter code, MCP arguments.
        info.has_content = kind.ends_with(".delta");
        if kind == "response.output_text.delta" {
            info.output_text = Some(delta.to_owned());
        }
    }
    if let Some(response) = event.response {
        if let Some(model) = &response.model {
            t.set_model(model);
        }
        if let Some(usage) = response.usage {
            info.has_usage = true;
            t.record(usage);
        }
    }
    info.done = matches!(
        kind,
        "response.completed" | "response.incomplete" | "response.failed"
    );
    Ok(info)
}
