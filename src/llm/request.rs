//! What an LLM request body asks: the model, whether it streams (and wants usage on the
//! stream), the output cap, and the prompt as text parts with their roles — the input of
//! token estimates and prompt guards.
//!
//! Bodies are read once, by typed serde structs that borrow strings from the body where
//! they can (`Cow`) and skip every field they do not name (images, tool schemas, …)
//! without building values for them. On failure the body is read a second time, only to
//! name the JSON path of the bad value (`messages[2].content`).

mod anthropic;
mod de;
mod include_usage;
mod openai;
mod responses;

use std::borrow::Cow;

use serde::Deserialize;

use super::{Api, LlmError};

pub use include_usage::set_include_usage;

/// The parts of a request that accounting and guards need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LlmRequest {
    /// The API the body was read as.
    pub api: Api,
    /// `model`, when the body names one.
    pub model: Option<String>,
    /// `stream: true`.
    pub stream: bool,
    /// `stream_options.include_usage` as the client sent it (`None` when absent). Only
    /// Chat Completions and Completions have it; Responses and Anthropic streams always
    /// carry usage.
    pub include_usage: Option<bool>,
    /// The output cap: `max_completion_tokens`, else `max_tokens` (Chat Completions),
    /// `max_tokens` (Completions, Messages), `max_output_tokens` (Responses).
    pub max_output_tokens: Option<u64>,
    /// The prompt's text, in body order. Empty texts are left out.
    pub prompt: Vec<PromptPart>,
    /// How many messages (or input items, system blocks) the prompt has, counting those
    /// with no text part (an image-only message): the per-message token overhead.
    pub messages: u32,
    /// Tokens the body gives as token ids (Completions `prompt` / Embeddings `input` as
    /// arrays of integers), which need no tokenizer.
    pub prompt_token_ids: u64,
}

/// One piece of prompt text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PromptPart {
    pub role: Role,
    pub kind: PartKind,
    pub text: String,
    /// Index of the message this part belongs to (see [`LlmRequest::messages`]).
    pub message: u32,
}

/// Who a prompt part speaks for, as the body says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// `system`, Anthropic's top-level `system`, Responses `instructions`.
    System,
    /// OpenAI `developer`.
    Developer,
    /// `user`; also Completions prompts and Embeddings inputs.
    User,
    Assistant,
    /// OpenAI `tool` / `function` results, Responses `function_call_output`.
    Tool,
    /// A role this module does not know.
    Other,
}

/// What a prompt part is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PartKind {
    /// Message text (a string content, a text / input_text / output_text / refusal part).
    Text,
    /// A message's `name` field.
    Name,
    /// Tool-call arguments the assistant sent (JSON text).
    ToolCall,
    /// A tool's result sent back to the model.
    ToolResult,
}

// === impl LlmRequest ===

impl LlmRequest {
    /// Reads a request body of `api`. Unknown fields are ignored; a value of the wrong
    /// type is an [`LlmError::InvalidRequest`] naming its path and what was expected.
    pub fn parse(api: Api, body: &[u8]) -> Result<LlmRequest, LlmError> {
        match api {
            Api::ChatCompletions => Ok(read::<openai::ChatBody>(api, body)?.into_request(api)),
            Api::Completions => Ok(read::<openai::CompletionsBody>(api, body)?.into_request(api)),
            Api::Embeddings => Ok(read::<openai::EmbeddingsBody>(api, body)?.into_request(api)),
            Api::Responses => Ok(read::<responses::ResponsesBody>(api, body)?.into_request(api)),
            Api::Messages | Api::CountTokens => {
                Ok(read::<anthropic::MessagesBody>(api, body)?.into_request(api))
            }
        }
    }

    /// All prompt text joined with `\n` (for guards that match across parts).
    pub fn prompt_text(&self) -> String {
        let mut out = String::with_capacity(self.prompt.iter().map(|p| p.text.len() + 1).sum());
        for (i, part) in self.prompt.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            out.push_str(&part.text);
        }
        out
    }
}

/// Parses once; on failure parses again with path tracking to say where.
fn read<'a, T: Deserialize<'a>>(api: Api, body: &'a [u8]) -> Result<T, LlmError> {
    // Derived structs also accept arrays (fields by position); a body must be an object.
    if body.trim_ascii_start().first() == Some(&b'[') {
        let expected = format!("a {api} request object");
        return Err(LlmError::InvalidRequest {
            api,
            path: ".".to_owned(),
            error: serde::de::Error::invalid_type(serde::de::Unexpected::Seq, &expected.as_str()),
        });
    }
    serde_json::from_slice(body).map_err(|error| {
        let mut de = serde_json::Deserializer::from_slice(body);
        match serde_path_to_error::deserialize::<_, T>(&mut de) {
            Err(e) => LlmError::InvalidRequest {
                api,
                // An empty key renders as an empty path: say where from the root.
                path: match e.path().to_string() {
                    p if p.is_empty() => ".".to_owned(),
                    p => p,
                },
                error: e.into_inner(),
            },
            // Only trailing characters fail `from_slice` but not a bare `deserialize`.
            Ok(_) => LlmError::InvalidRequest {
                api,
                path: ".".to_owned(),
                error,
            },
        }
    })
}

// === impl Role ===

impl Role {
    fn from_wire(role: Option<&str>, default: Role) -> Role {
        match role {
            None => default,
            Some("system") => Role::System,
            Some("developer") => Role::Developer,
            Some("user") => Role::User,
            Some("assistant") => Role::Assistant,
            Some("tool" | "function") => Role::Tool,
            Some(_) => Role::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::Developer => "developer",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
            Role::Other => "other",
        }
    }
}

// === Prompt builder ===

/// Collects prompt parts message by message; the body types feed it.
#[derive(Default)]
struct Prompt {
    parts: Vec<PromptPart>,
    messages: u32,
    token_ids: u64,
}

impl Prompt {
    /// Starts a message; parts pushed until the next call belong to it.
    fn message(&mut self) {
        self.messages += 1;
    }

    fn push(&mut self, role: Role, kind: PartKind, text: Option<Cow<'_, str>>) {
        match text {
            Some(text) if !text.is_empty() => self.parts.push(PromptPart {
                role,
                kind,
                text: text.into_owned(),
                message: self.messages.saturating_sub(1),
            }),
            _ => {}
        }
    }

    fn finish(self, api: Api, head: Head<'_>) -> LlmRequest {
        LlmRequest {
            api,
            model: head.model.map(Cow::into_owned),
            stream: head.stream.unwrap_or(false),
            include_usage: head.stream_options.and_then(|o| o.include_usage),
            max_output_tokens: head.max_output_tokens,
            prompt: self.parts,
            messages: self.messages,
            prompt_token_ids: self.token_ids,
        }
    }
}

/// The fields every API shares, gathered by each body type.
struct Head<'a> {
    model: Option<Cow<'a, str>>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    max_output_tokens: Option<u64>,
}

/// OpenAI's `stream_options`.
#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

#[cfg(test)]
mod tests;
