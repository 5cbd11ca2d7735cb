//! The shared understanding of LLM API traffic: which API a request is for, what its body
//! asks (model, streaming, the prompt text), how its response is framed (SSE), encoded
//! (gzip, deflate, brotli) and accounted (token usage), and how many tokens a prompt is
//! likely to cost before the upstream says.
//!
//! Everything here is pure and synchronous: no transport, no clock, no config. Processors
//! (token accounting, prompt guards) feed it the bytes an exchange hands them:
//!
//! ```text
//! request body  ── LlmRequest::parse ──► model, stream, prompt parts ── estimate_prompt_tokens
//! response body ── Decoder ── SseParser ── ResponseTracker ──► Usage, per-event EventInfo
//!                                   (or ResponseTracker::observe_json for a whole body)
//! ```
//!
//! Provider shapes handled: OpenAI Chat Completions, Completions, Embeddings and Responses;
//! Anthropic Messages and its count_tokens endpoint.

pub mod api;
pub mod decode;
pub mod error;
pub mod partial;
pub mod request;
pub mod skim;
pub mod sse;
pub mod tokens;
pub mod translate;
pub mod usage;

#[cfg(test)]
mod tests;

pub use api::{Api, Provider};
pub use decode::{DecodeLimit, DecodeLimits, Decoder};
pub use error::LlmError;
pub use request::{set_include_usage, LlmRequest, PartKind, PromptPart, Role};
pub use sse::{SseEvent, SseLimit, SseLimits, SseParser};
pub use tokens::{estimate_prompt_tokens, prewarm, Encoding};
pub use translate::{EventTranslator, TranslateError, TranslatedRequest, Translation};
pub use usage::{EventInfo, ResponseTracker, Usage, UsageInvalid};
