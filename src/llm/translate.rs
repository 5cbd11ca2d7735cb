//! OpenAI Chat Completions ⇄ Anthropic Messages: a client speaking one API served by a
//! provider speaking the other.
//!
//! - [`Translation::ChatViaMessages`]: an OpenAI client (`/v1/chat/completions`) and an
//!   Anthropic upstream (`/v1/messages`) — `chat_via_messages`.
//! - [`Translation::MessagesViaChat`]: an Anthropic client and an OpenAI-compatible
//!   upstream (OpenAI, vLLM, Gemini's OpenAI endpoint, …) — `messages_via_chat`.
//!
//! Each direction has three parts: the request body (client → upstream shape), the
//! whole response body (upstream → client shape; error bodies too), and a streamed
//! response translated event by event ([`EventTranslator`]): each upstream SSE event
//! becomes zero or more client events as it arrives, so streaming keeps its timing.
//!
//! Usage is carried over exactly: cached prompt tokens move between OpenAI's
//! `prompt_tokens_details.cached_tokens` (a subset of `prompt_tokens`) and Anthropic's
//! `cache_read_input_tokens` (not part of `input_tokens`); cache writes go into
//! OpenAI's `prompt_tokens`. Fields of one API that the other has no place for are
//! dropped (documented per direction); a request the other API cannot express at all
//! (`n` > 1) is refused with a [`TranslateError`] the caller turns into a 400.
//!
//! Pure and synchronous, like the rest of `llm`: bytes in, bytes out.

mod chat_via_messages;
mod messages_via_chat;
#[cfg(test)]
mod tests;

use std::fmt;

use super::{Api, SseEvent};

/// Which way a route translates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Translation {
    /// OpenAI Chat Completions client, Anthropic Messages upstream.
    ChatViaMessages,
    /// Anthropic Messages client, OpenAI Chat Completions upstream.
    MessagesViaChat,
}

/// A request body made into the upstream's API, with what its response needs.
#[derive(Clone, Debug, PartialEq)]
pub struct TranslatedRequest {
    /// The body for the upstream.
    pub body: Vec<u8>,
    /// The client asked for a streamed response.
    pub stream: bool,
    /// An OpenAI client asked for the final usage chunk (`stream_options.include_usage`).
    pub include_usage: bool,
}

/// A request the upstream's API cannot express, or a body that is not the client's API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TranslateError(pub String);

impl fmt::Display for TranslateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TranslateError {}

/// Translates one streamed response, event by event.
pub trait EventTranslator: Send {
    /// One upstream event: appends the client's events (SSE-encoded) to `out`.
    fn event(&mut self, event: &SseEvent, out: &mut Vec<u8>);
    /// The upstream stream ended (cleanly or not): appends whatever closes the client's
    /// stream properly and was not sent yet (Anthropic's `message_delta` and
    /// `message_stop`, OpenAI's `[DONE]`). Called once; nothing after it.
    fn finish(&mut self, out: &mut Vec<u8>);
}

impl Translation {
    /// The translation a route needs: its client's API and its provider's API, or `None`
    /// when they are the same (or not a pair tollgate translates).
    pub fn between(client: Api, upstream: Api) -> Option<Translation> {
        match (client, upstream) {
            (Api::ChatCompletions, Api::Messages) => Some(Translation::ChatViaMessages),
            (Api::Messages, Api::ChatCompletions) => Some(Translation::MessagesViaChat),
            _ => None,
        }
    }

    /// The API the client speaks.
    pub fn client_api(self) -> Api {
        match self {
            Translation::ChatViaMessages => Api::ChatCompletions,
            Translation::MessagesViaChat => Api::Messages,
        }
    }

    /// The API the upstream speaks.
    pub fn upstream_api(self) -> Api {
        match self {
            Translation::ChatViaMessages => Api::Messages,
            Translation::MessagesViaChat => Api::ChatCompletions,
        }
    }

    /// The client's request body in the upstream's API.
    pub fn request(self, body: &[u8]) -> Result<TranslatedRequest, TranslateError> {
        match self {
            Translation::ChatViaMessages => chat_via_messages::request(body),
            Translation::MessagesViaChat => messages_via_chat::request(body),
        }
    }

    /// A whole successful (2xx) upstream response body in the client's API.
    pub fn response(self, body: &[u8]) -> Result<Vec<u8>, TranslateError> {
        match self {
            Translation::ChatViaMessages => chat_via_messages::response(body),
            Translation::MessagesViaChat => messages_via_chat::response(body),
        }
    }

    /// An upstream error body (any non-2xx status) in the client's API's error shape,
    /// keeping the upstream's message; a body that is not the upstream's error shape
    /// becomes a message of its own (its first 512 bytes, lossily decoded).
    pub fn error(self, status: u16, body: &[u8]) -> Vec<u8> {
        let message = upstream_error_message(body);
        self.client_api()
            .error_body(status, "upstream_error", &message)
    }

    /// A translator for a streamed response to `request`.
    pub fn events(self, request: &TranslatedRequest) -> Box<dyn EventTranslator> {
        match self {
            Translation::ChatViaMessages => {
                Box::new(chat_via_messages::Events::new(request.include_usage))
            }
            Translation::MessagesViaChat => Box::new(messages_via_chat::Events::new()),
        }
    }
}

/// The message of an upstream error body: `error.message` in both providers' shapes;
/// else the body itself, cut to 512 bytes.
fn upstream_error_message(body: &[u8]) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let message = parsed
        .as_ref()
        .and_then(|v| v.get("error")?.get("message")?.as_str().map(str::to_owned));
    message.unwrap_or_else(|| {
        let cut = &body[..body.len().min(512)];
        let text = String::from_utf8_lossy(cut).trim().to_owned();
        if text.is_empty() {
            "the upstream answered with an error and no body".to_owned()
        } else {
            text
        }
    })
}

/// Appends one `data:` event holding `value` (JSON) to `out`, with its `event:` name
/// when given (Anthropic names every event; OpenAI names none).
pub(crate) fn write_event(out: &mut Vec<u8>, event: Option<&str>, value: &serde_json::Value) {
    if let Some(name) = event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"data: ");
    serde_json::to_writer(&mut *out, value).expect("writing JSON to a Vec cannot fail");
    out.extend_from_slice(b"\n\n");
}
