//! Token usage and stream facts read from LLM responses: a whole JSON body, or a stream
//! of SSE events one at a time.
//!
//! [`Usage`] is normalized across providers so that limits and metrics mean one thing:
//!
//! - `input_tokens` is *every* input token the model read. OpenAI's `prompt_tokens` /
//!   `input_tokens` already include cached tokens; Anthropic's `input_tokens` counts
//!   only tokens after the last cache breakpoint, so Anthropic's cache reads and cache
//!   writes are added to it (as Anthropic documents for totals, and as Envoy AI Gateway
//!   does).
//! - `cached_input_tokens` (cache reads) and `cache_creation_input_tokens` (cache writes)
//!   are subsets of `input_tokens`; `reasoning_tokens` is a subset of `output_tokens`.
//! - `total_tokens` is the provider's when it sends one, else input + output.
//!
//! Where usage comes from, per API:
//!
//! | API | JSON | stream |
//! |---|---|---|
//! | Chat Completions, Completions | `usage` | `usage` on any chunk (normally a last chunk with empty `choices`, only with `include_usage`); the latest wins |
//! | Embeddings | `usage.prompt_tokens` | — |
//! | Responses | `usage` | `response.completed` (or `.incomplete`, `.failed`) → `response.usage` |
//! | Messages | `usage` | `message_start` → `message.usage`, then `message_delta` → `usage`, merged field by field when non-zero |
//! | count_tokens | — (its `input_tokens` is a count, not a spend) | — |
//!
//! Unknown events and fields are ignored; an event whose data is not JSON counts as
//! [`ResponseTracker::malformed_events`] and changes nothing.
//!
//! Usage is checked before it is believed ([`UsageInvalid`]): `usage` must be an object,
//! each count a non-negative integer up to [`MAX_TOKENS`], cached tokens within the
//! input. A response with one usage object that fails is usage-invalid: its usage is
//! absent ([`ResponseTracker::usage`] is `None`, so callers estimate, as for a response
//! without usage) and [`ResponseTracker::usage_invalid`] says why. Sums saturate.

mod anthropic;
mod openai;
mod responses;
mod wire;

use super::sse::SseEvent;
use super::{Api, LlmError, Provider};

use wire::{AnthropicCounts, Object, WireUsage};

pub use wire::{UsageInvalid, MAX_TOKENS};

/// Token counts of one exchange (see the module doc for what each means).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_input_tokens: u64,
    pub cache_creation_input_tokens: u64,
    pub reasoning_tokens: u64,
    pub total_tokens: u64,
}

/// What one streamed event carried.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventInfo {
    /// The event carries output: text, a refusal, reasoning, or tool-call arguments.
    pub has_content: bool,
    /// This is the stream's first event with content (time to first token).
    pub first_content: bool,
    /// The output text it adds (Chat `delta.content`, Completions `text`, Responses
    /// `response.output_text.delta`, Anthropic `text_delta`), for guards. Refusals,
    /// reasoning and tool arguments are not in it.
    pub output_text: Option<String>,
    /// The event carried usage.
    pub has_usage: bool,
    /// An OpenAI chunk with empty `choices` and only usage: the one to drop for a client
    /// that did not ask for usage.
    pub usage_only: bool,
    /// The stream's end: `[DONE]`, `message_stop`, `response.completed` (or
    /// `response.incomplete` / `response.failed`).
    pub done: bool,
}

/// Follows one response, JSON or streamed.
#[derive(Clone, Debug)]
pub struct ResponseTracker {
    api: Api,
    tally: Tally,
    model: Option<String>,
    content_seen: bool,
    done: bool,
    malformed: u64,
    invalid: Option<UsageInvalid>,
}

/// Usage as the provider reports it, normalized on read.
#[derive(Clone, Copy, Debug)]
enum Tally {
    None,
    /// OpenAI usage objects are cumulative: the latest replaces the last.
    OpenAi(Usage),
    /// Anthropic's are merged field by field.
    Anthropic(AnthropicCounts),
}

// === impl ResponseTracker ===

impl ResponseTracker {
    pub fn new(api: Api) -> Self {
        ResponseTracker {
            api,
            tally: Tally::None,
            model: None,
            content_seen: false,
            done: false,
            malformed: 0,
            invalid: None,
        }
    }

    /// Reads a whole (non-streamed) JSON response: its `model` and `usage`.
    pub fn observe_json(&mut self, body: &[u8]) -> Result<(), LlmError> {
        let whole: wire::Whole =
            serde_json::from_slice(body).map_err(|error| LlmError::InvalidResponse {
                api: self.api,
                error,
            })?;
        if let Some(model) = &whole.model {
            self.set_model(model);
        }
        if let Some(usage) = whole.usage {
            self.record(usage);
        }
        self.done = true;
        Ok(())
    }

    /// Reads one streamed event.
    pub fn observe_event(&mut self, event: &SseEvent) -> EventInfo {
        let data = event.data.trim_ascii();
        if data == "[DONE]" {
            self.done = true;
            return EventInfo {
                done: true,
                ..EventInfo::default()
            };
        }
        let parsed = match self.api {
            Api::ChatCompletions | Api::Completions | Api::Embeddings => {
                openai::observe(self, data)
            }
            Api::Responses => responses::observe(self, data),
            Api::Messages | Api::CountTokens => anthropic::observe(self, data),
        };
        let mut info = match parsed {
            Ok(info) => info,
            Err(_) => {
                self.malformed += 1;
                return EventInfo::default();
            }
        };
        if info.has_content && !self.content_seen {
            self.content_seen = true;
            info.first_content = true;
        }
        self.done |= info.done;
        info
    }

    /// The usage seen so far, normalized; `None` when the response carried none, or
    /// carried a usage object that failed validation.
    pub fn usage(&self) -> Option<Usage> {
        if self.invalid.is_some() {
            return None;
        }
        match self.tally {
            Tally::None => None,
            Tally::OpenAi(usage) => Some(usage),
            Tally::Anthropic(counts) => Some(counts.usage()),
        }
    }

    /// The model the response names.
    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    /// The response ended: a whole JSON body was read, or the stream's end event seen.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// An event with content has been seen.
    pub fn saw_content(&self) -> bool {
        self.content_seen
    }

    /// Why the response's usage was not believed, if it was not (the first reason).
    pub fn usage_invalid(&self) -> Option<UsageInvalid> {
        self.invalid
    }

    /// Events whose data could not be read as this API's JSON.
    pub fn malformed_events(&self) -> u64 {
        self.malformed
    }

    pub fn api(&self) -> Api {
        self.api
    }

    fn set_model(&mut self, model: &str) {
        if !model.is_empty() && self.model.as_deref() != Some(model) {
            self.model = Some(model.to_owned());
        }
    }

    fn record(&mut self, usage: Object<WireUsage>) {
        let checked = match usage {
            Object::Is(usage) => usage.validate().map(|()| usage),
            Object::Other => Err(UsageInvalid::NotAnObject),
        };
        let usage = match checked {
            Ok(usage) => usage,
            Err(why) => {
                self.invalid.get_or_insert(why);
                return;
            }
        };
        self.tally = match (self.api.provider(), self.tally) {
            (Provider::OpenAi, _) => Tally::OpenAi(usage.openai()),
            (Provider::Anthropic, Tally::Anthropic(mut counts)) => {
                counts.merge(&usage);
                Tally::Anthropic(counts)
            }
            (Provider::Anthropic, _) => {
                let mut counts = AnthropicCounts::default();
                counts.merge(&usage);
                Tally::Anthropic(counts)
            }
        };
    }
}

#[cfg(test)]
mod tests;
