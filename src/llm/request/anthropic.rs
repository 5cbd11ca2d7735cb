//! Anthropic Messages (and count_tokens) request bodies: top-level `system` (a string or
//! text blocks) and `messages` whose content is a string or blocks — text, `tool_use`
//! (its `input` kept as JSON text), `tool_result` (nested string or blocks) — reduced to
//! what [`LlmRequest`] holds.
//!
//! `thinking` blocks of earlier turns are left out: Anthropic strips them from the
//! context, so they cost no input tokens. Images and documents carry no text here.

use std::borrow::Cow;

use serde::Deserialize;

use super::de::{Content, JsonText};
use super::{Api, Head, LlmRequest, PartKind, Prompt, Role};

#[derive(Deserialize)]
#[serde(expecting = "a messages request object")]
pub(super) struct MessagesBody<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(borrow, default)]
    system: Content<'a, Block<'a>>,
    #[serde(borrow, default)]
    messages: Option<Vec<Message<'a>>>,
}

#[derive(Deserialize)]
#[serde(expecting = "a message object")]
struct Message<'a> {
    #[serde(borrow, default)]
    role: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    content: Content<'a, Block<'a>>,
}

#[derive(Deserialize)]
#[serde(expecting = "a content block object")]
struct Block<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    /// `tool_use` input.
    #[serde(default)]
    input: Option<JsonText>,
    /// `tool_result` content.
    #[serde(borrow, default)]
    content: Content<'a, Block<'a>>,
}

impl MessagesBody<'_> {
    pub(super) fn into_request(self, api: Api) -> LlmRequest {
        let mut prompt = Prompt::default();
        if !matches!(self.system, Content::None) {
            prompt.message();
            push_content(&mut prompt, Role::System, PartKind::Text, self.system);
        }
        for m in self.messages.into_iter().flatten() {
            prompt.message();
            let role = Role::from_wire(m.role.as_deref(), Role::User);
            push_content(&mut prompt, role, PartKind::Text, m.content);
        }
        prompt.finish(
            api,
            Head {
                model: self.model,
                stream: self.stream,
                stream_options: None,
                max_output_tokens: self.max_tokens,
            },
        )
    }
}

fn push_content(prompt: &mut Prompt, role: Role, kind: PartKind, content: Content<'_, Block<'_>>) {
    match content {
        Content::None => {}
        Content::Text(t) => prompt.push(role, kind, Some(t)),
        Content::Parts(blocks) => {
            for b in blocks {
                push_block(prompt, role, kind, b);
            }
        }
    }
}

fn push_block(prompt: &mut Prompt, role: Role, kind: PartKind, block: Block<'_>) {
    match block.kind.as_deref() {
        Some("tool_use" | "server_tool_use") => {
            let input = block.input.map(|JsonText(s)| Cow::Owned(s));
            prompt.push(role, PartKind::ToolCall, input);
        }
        Some("tool_result") => push_content(prompt, role, PartKind::ToolResult, block.content),
        Some("thinking" | "redacted_thinking") => {}
        // `text` blocks, and blocks nested in a tool result, keep the kind they are in.
        _ => prompt.push(role, kind, block.text),
    }
}
