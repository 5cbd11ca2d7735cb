//! OpenAI Responses API request bodies: `instructions` plus `input`, a string or a list
//! of items (messages with input_text / output_text parts, function calls and their
//! outputs), reduced to what [`LlmRequest`] holds.

use std::borrow::Cow;

use serde::Deserialize;

use super::de::Content;
use super::{Api, Head, LlmRequest, PartKind, Prompt, Role};

#[derive(Deserialize)]
#[serde(expecting = "a responses request object")]
pub(super) struct ResponsesBody<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    max_output_tokens: Option<u64>,
    #[serde(borrow, default)]
    instructions: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    input: Content<'a, Item<'a>>,
}

/// An input item. Messages have `role` + `content` (with or without
/// `"type":"message"`); `function_call` has `arguments`; `function_call_output` and
/// `custom_tool_call_output` have `output`; `custom_tool_call` has `input`. Reasoning
/// items and item references carry no prompt text here.
#[derive(Deserialize)]
#[serde(expecting = "an input item object")]
struct Item<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    role: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    content: Content<'a, Part<'a>>,
    #[serde(borrow, default)]
    arguments: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    input: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    output: Content<'a, Part<'a>>,
}

/// `input_text`, `output_text` (`text`) and `refusal` parts; images and files are
/// skipped.
#[derive(Deserialize)]
#[serde(expecting = "a content part object")]
struct Part<'a> {
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    refusal: Option<Cow<'a, str>>,
}

impl ResponsesBody<'_> {
    pub(super) fn into_request(self, api: Api) -> LlmRequest {
        let mut prompt = Prompt::default();
        if self.instructions.is_some() {
            prompt.message();
            prompt.push(Role::System, PartKind::Text, self.instructions);
        }
        match self.input {
            Content::None => {}
            Content::Text(t) => {
                prompt.message();
                prompt.push(Role::User, PartKind::Text, Some(t));
            }
            Content::Parts(items) => {
                for item in items {
                    push_item(&mut prompt, item);
                }
            }
        }
        prompt.finish(
            api,
            Head {
                model: self.model,
                stream: self.stream,
                stream_options: None,
                max_output_tokens: self.max_output_tokens,
            },
        )
    }
}

fn push_item(prompt: &mut Prompt, item: Item<'_>) {
    prompt.message();
    match item.kind.as_deref() {
        None | Some("message") => {
            let role = Role::from_wire(item.role.as_deref(), Role::User);
            push_content(prompt, role, PartKind::Text, item.content);
        }
        Some("function_call") => prompt.push(Role::Assistant, PartKind::ToolCall, item.arguments),
        Some("custom_tool_call") => prompt.push(Role::Assistant, PartKind::ToolCall, item.input),
        Some("function_call_output" | "custom_tool_call_output") => {
            push_content(prompt, Role::Tool, PartKind::ToolResult, item.output);
        }
        Some(_) => {}
    }
}

fn push_content(prompt: &mut Prompt, role: Role, kind: PartKind, content: Content<'_, Part<'_>>) {
    match content {
        Content::None => {}
        Content::Text(t) => prompt.push(role, kind, Some(t)),
        Content::Parts(parts) => {
            for p in parts {
                prompt.push(role, kind, p.text);
                prompt.push(role, kind, p.refusal);
            }
        }
    }
}
