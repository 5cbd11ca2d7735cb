//! OpenAI Chat Completions, Completions and Embeddings request bodies, reduced to what
//! [`LlmRequest`] holds.

use std::borrow::Cow;

use serde::Deserialize;

use super::de::{Content, PromptInput};
use super::{Api, Head, LlmRequest, PartKind, Prompt, Role, StreamOptions};

// === Chat Completions ===

#[derive(Deserialize)]
#[serde(expecting = "a chat completions request object")]
pub(super) struct ChatBody<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    max_completion_tokens: Option<u64>,
    #[serde(borrow, default)]
    messages: Option<Vec<ChatMessage<'a>>>,
}

#[derive(Deserialize)]
#[serde(expecting = "a chat message object")]
struct ChatMessage<'a> {
    #[serde(borrow, default)]
    role: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    content: Content<'a, ChatPart<'a>>,
    /// An assistant message's refusal text.
    #[serde(borrow, default)]
    refusal: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    tool_calls: Option<Vec<ToolCall<'a>>>,
    /// The legacy single function call.
    #[serde(borrow, default)]
    function_call: Option<FunctionCall<'a>>,
}

/// A content part: `text` and `refusal` parts carry text; image, audio and file parts
/// carry none and are skipped without being built.
#[derive(Deserialize)]
#[serde(expecting = "a content part object")]
struct ChatPart<'a> {
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    refusal: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(expecting = "a tool call object")]
struct ToolCall<'a> {
    #[serde(borrow, default)]
    function: Option<FunctionCall<'a>>,
}

#[derive(Deserialize)]
#[serde(expecting = "a function call object")]
struct FunctionCall<'a> {
    #[serde(borrow, default)]
    arguments: Option<Cow<'a, str>>,
}

impl ChatBody<'_> {
    pub(super) fn into_request(self, api: Api) -> LlmRequest {
        let mut prompt = Prompt::default();
        for m in self.messages.into_iter().flatten() {
            prompt.message();
            let role = Role::from_wire(m.role.as_deref(), Role::User);
            let text_kind = match role {
                Role::Tool => PartKind::ToolResult,
                _ => PartKind::Text,
            };
            prompt.push(role, PartKind::Name, m.name);
            match m.content {
                Content::None => {}
                Content::Text(t) => prompt.push(role, text_kind, Some(t)),
                Content::Parts(parts) => {
                    for p in parts {
                        prompt.push(role, text_kind, p.text);
                        prompt.push(role, text_kind, p.refusal);
                    }
                }
            }
            prompt.push(role, PartKind::Text, m.refusal);
            let calls = m
                .tool_calls
                .into_iter()
                .flatten()
                .filter_map(|c| c.function);
            for call in calls.chain(m.function_call) {
                prompt.push(role, PartKind::ToolCall, call.arguments);
            }
        }
        prompt.finish(
            api,
            Head {
                model: self.model,
                stream: self.stream,
                stream_options: self.stream_options,
                max_output_tokens: self.max_completion_tokens.or(self.max_tokens),
            },
        )
    }
}

// === Completions ===

#[derive(Deserialize)]
#[serde(expecting = "a completions request object")]
pub(super) struct CompletionsBody<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(borrow, default)]
    prompt: PromptInput<'a>,
}

impl CompletionsBody<'_> {
    pub(super) fn into_request(self, api: Api) -> LlmRequest {
        let prompt = inputs(self.prompt);
        prompt.finish(
            api,
            Head {
                model: self.model,
                stream: self.stream,
                stream_options: self.stream_options,
                max_output_tokens: self.max_tokens,
            },
        )
    }
}

// === Embeddings ===

#[derive(Deserialize)]
#[serde(expecting = "an embeddings request object")]
pub(super) struct EmbeddingsBody<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    input: PromptInput<'a>,
}

impl EmbeddingsBody<'_> {
    pub(super) fn into_request(self, api: Api) -> LlmRequest {
        inputs(self.input).finish(
            api,
            Head {
                model: self.model,
                stream: None,
                stream_options: None,
                max_output_tokens: None,
            },
        )
    }
}

/// Each string of a prompt / input array is its own user "message".
fn inputs(input: PromptInput<'_>) -> Prompt {
    let mut prompt = Prompt::default();
    for text in input.texts {
        prompt.message();
        prompt.push(Role::User, PartKind::Text, Some(text));
    }
    prompt.token_ids = input.token_ids;
    prompt
}
