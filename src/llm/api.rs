//! Which LLM API a request is for, told from its path; the provider behind it; its
//! OpenTelemetry GenAI operation name; and error bodies in that provider's own format.

use std::fmt;

use serde::Serialize;

/// An LLM API endpoint tollgate understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Api {
    /// OpenAI `POST /v1/chat/completions`.
    ChatCompletions,
    /// OpenAI `POST /v1/completions` (legacy text completions).
    Completions,
    /// OpenAI `POST /v1/embeddings`.
    Embeddings,
    /// OpenAI `POST /v1/responses`.
    Responses,
    /// Anthropic `POST /v1/messages`.
    Messages,
    /// Anthropic `POST /v1/messages/count_tokens`.
    CountTokens,
}

/// Who defines an API's wire format (`gen_ai.provider.name`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Provider {
    OpenAi,
    Anthropic,
}

// === impl Api ===

/// Path suffixes, most specific first (`/messages/count_tokens` before `/messages`,
/// `/chat/completions` before `/completions`).
const SUFFIXES: [(&str, Api); 6] = [
    ("/chat/completions", Api::ChatCompletions),
    ("/completions", Api::Completions),
    ("/embeddings", Api::Embeddings),
    ("/responses", Api::Responses),
    ("/messages/count_tokens", Api::CountTokens),
    ("/messages", Api::Messages),
];

impl Api {
    /// The API a request path is for: `/v1/chat/completions` and any other prefix before
    /// the API's own segments (`/openai/v1/chat/completions`,
    /// `/openai/deployments/gpt-4o/chat/completions?api-version=…`). The query string and
    /// one trailing `/` are ignored. `None` for anything else.
    pub fn from_path(path: &str) -> Option<Api> {
        let path = path.split(['?', '#']).next().unwrap_or("");
        let path = path.strip_suffix('/').unwrap_or(path);
        SUFFIXES
            .iter()
            .find(|(suffix, _)| path.ends_with(suffix))
            .map(|&(_, api)| api)
    }

    pub fn provider(self) -> Provider {
        match self {
            Api::ChatCompletions | Api::Completions | Api::Embeddings | Api::Responses => {
                Provider::OpenAi
            }
            Api::Messages | Api::CountTokens => Provider::Anthropic,
        }
    }

    /// The OpenTelemetry GenAI `gen_ai.operation.name`. The spec's well-known values are
    /// `chat`, `text_completion`, `embeddings`, `generate_content`, `create_agent`,
    /// `invoke_agent` and `execute_tool`; a listed value must be used when one applies:
    ///
    /// - Chat Completions, Responses and Messages → `chat` (a conversation turn; the
    ///   OpenAI and Anthropic instrumentations report Responses and Messages as chat);
    /// - Completions → `text_completion`; Embeddings → `embeddings`;
    /// - count_tokens → `count_tokens`, a custom value: none of the listed ones applies
    ///   (nothing is generated).
    pub fn operation(self) -> &'static str {
        match self {
            Api::ChatCompletions | Api::Responses | Api::Messages => "chat",
            Api::Completions => "text_completion",
            Api::Embeddings => "embeddings",
            Api::CountTokens => "count_tokens",
        }
    }

    /// Whether a request to this API can ask for a streamed (SSE) response.
    pub fn can_stream(self) -> bool {
        matches!(
            self,
            Api::ChatCompletions | Api::Completions | Api::Responses | Api::Messages
        )
    }

    /// An error body in the provider's format, for a local reply with `status`.
    ///
    /// `kind` is tollgate's machine-readable reason (`rate_limit_exceeded`,
    /// `prompt_rejected`, …). OpenAI: `{"error":{"message","type","param":null,"code"}}`
    /// with `type` the OpenAI category for `status` and `code` = `kind`. Anthropic:
    /// `{"type":"error","error":{"type","message"}}` with `type` the Anthropic error type
    /// for `status` (its SDKs and clients branch on that); `kind` has no field there.
    pub fn error_body(self, status: u16, kind: &str, message: &str) -> Vec<u8> {
        let body = match self.provider() {
            Provider::OpenAi => serde_json::to_vec(&OpenAiError {
                error: OpenAiErrorInner {
                    message,
                    r#type: openai_error_type(status),
                    param: None,
                    code: kind,
                },
            }),
            Provider::Anthropic => serde_json::to_vec(&AnthropicError {
                r#type: "error",
                error: AnthropicErrorInner {
                    r#type: anthropic_error_type(status),
                    message,
                },
            }),
        };
        body.expect("serializing strings to JSON cannot fail")
    }

    /// The API's name as people write it (for messages and logs).
    pub fn as_str(self) -> &'static str {
        match self {
            Api::ChatCompletions => "chat completions",
            Api::Completions => "completions",
            Api::Embeddings => "embeddings",
            Api::Responses => "responses",
            Api::Messages => "messages",
            Api::CountTokens => "count_tokens",
        }
    }
}

impl fmt::Display for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl Provider ===

impl Provider {
    /// The OpenTelemetry GenAI `gen_ai.provider.name` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::OpenAi => "openai",
            Provider::Anthropic => "anthropic",
        }
    }
}

// === error bodies ===

#[derive(Serialize)]
struct OpenAiError<'a> {
    error: OpenAiErrorInner<'a>,
}

#[derive(Serialize)]
struct OpenAiErrorInner<'a> {
    message: &'a str,
    r#type: &'static str,
    param: Option<&'a str>,
    code: &'a str,
}

#[derive(Serialize)]
struct AnthropicError<'a> {
    r#type: &'static str,
    error: AnthropicErrorInner<'a>,
}

#[derive(Serialize)]
struct AnthropicErrorInner<'a> {
    r#type: &'static str,
    message: &'a str,
}

/// OpenAI's error categories, by status.
fn openai_error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        400..=499 => "invalid_request_error",
        _ => "server_error",
    }
}

/// Anthropic's documented error types, by status.
fn anthropic_error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 => "overloaded_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_path_knows_every_api_and_any_prefix() {
        let cases = [
            ("/v1/chat/completions", Some(Api::ChatCompletions)),
            ("/openai/v1/chat/completions", Some(Api::ChatCompletions)),
            (
                "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21",
                Some(Api::ChatCompletions),
            ),
            ("/v1/chat/completions/", Some(Api::ChatCompletions)),
            ("/v1/completions", Some(Api::Completions)),
            ("/v1/embeddings", Some(Api::Embeddings)),
            ("/v1/responses", Some(Api::Responses)),
            ("/v1/messages", Some(Api::Messages)),
            ("/anthropic/v1/messages?beta=true", Some(Api::Messages)),
            ("/v1/messages/count_tokens", Some(Api::CountTokens)),
            ("/v1/models", None),
            ("/v1/chat/completionsx", None),
            ("/v1/xcompletions", None),
            ("/v1/responses/resp_123", None),
            ("", None),
        ];
        for (path, want) in cases {
            assert_eq!(Api::from_path(path), want, "{path}");
        }
    }

    #[test]
    fn provider_and_operation() {
        assert_eq!(Api::ChatCompletions.provider(), Provider::OpenAi);
        assert_eq!(Api::Responses.provider(), Provider::OpenAi);
        assert_eq!(Api::CountTokens.provider(), Provider::Anthropic);
        assert_eq!(Provider::Anthropic.as_str(), "anthropic");
        assert_eq!(Api::ChatCompletions.operation(), "chat");
        assert_eq!(Api::Responses.operation(), "chat");
        assert_eq!(Api::Messages.operation(), "chat");
        assert_eq!(Api::Completions.operation(), "text_completion");
        assert_eq!(Api::Embeddings.operation(), "embeddings");
    }

    #[test]
    fn error_bodies_in_each_providers_format() {
        let body = Api::ChatCompletions.error_body(429, "rate_limit_exceeded", "slow \"down\"");
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            r#"{"error":{"message":"slow \"down\"","type":"rate_limit_error","param":null,"code":"rate_limit_exceeded"}}"#
        );
        let body = Api::Messages.error_body(403, "prompt_rejected", "no");
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            r#"{"type":"error","error":{"type":"permission_error","message":"no"}}"#
        );
        let body = Api::CountTokens.error_body(500, "internal", "x");
        assert!(std::str::from_utf8(&body)
            .unwrap()
            .contains(r#""type":"api_error""#));
    }
}
