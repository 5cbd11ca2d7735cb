//! The guardrail webhook client: the wire format agentgateway and kgateway share, so
//! existing guard services plug in unchanged.
//!
//! - `POST <url>/request` with `{"body":{"messages":[{"role":…,"content":…}]}}`, one
//!   message per prompt text part.
//! - `POST <url>/response` with `{"body":{"choices":[{"message":{"role":"assistant",
//!   "content":…}}]}}`, one choice per completion text.
//! - The answer is `{"action":A}` where `A` is told apart by its shape (untagged, as
//!   agentgateway reads it): `{"body":{"messages"|"choices":[…]}}` masks (same number of
//!   entries, texts replaced), `{"body":"…","status_code":N}` rejects, anything else
//!   (`{}`, `{"reason":…}`) passes.
//!
//! Every failure — unreachable, timeout, a status other than 2xx, an answer that is not
//! the protocol, a mask with a different number of entries — is a [`WebhookError`]; the
//! caller applies the webhook's failure mode.

use std::borrow::Cow;
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, FailureMode, GuardWebhook};
use crate::outbound::{self, error_chain, OutboundError, RedactedUrl};

pub(super) type HttpClient = outbound::HttpClient<Full<Bytes>>;

/// The one HTTP exchange both external guards make: send `req`, read at most `limit`
/// bytes of a 2xx answer, all within `timeout`; every failure described through `fail`.
pub(super) async fn post(
    client: &HttpClient,
    req: Request<Full<Bytes>>,
    timeout: Duration,
    limit: usize,
    fail: &impl Fn(String) -> WebhookError,
) -> Result<Bytes, WebhookError> {
    let exchange = async {
        let resp = client
            .request(req)
            .await
            .map_err(|e| fail(format!("request failed: {}", error_chain(&e))))?;
        let status = resp.status();
        let body = http_body_util::Limited::new(resp.into_body(), limit)
            .collect()
            .await
            .map_err(|e| fail(format!("reading the answer failed: {}", error_chain(&*e))))?
            .to_bytes();
        Ok::<_, WebhookError>((status, body))
    };
    let (status, body) = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| fail(format!("no answer within {timeout:?}")))??;
    if !status.is_success() {
        return Err(fail(format!("answered {status}")));
    }
    Ok(body)
}

/// Largest answer read from a guard service.
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

/// A configured guard service.
pub struct Webhook {
    base: String,
    timeout: Duration,
    pub failure_mode: FailureMode,
    /// Made on first use: building it needs no runtime, but `tollgate validate` should
    /// not pay for TLS roots it never uses.
    client: OnceLock<Result<HttpClient, OutboundError>>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("base", &self.base)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// What the service decided.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    Pass,
    /// The texts, in the order sent, as the service masked them.
    Mask(Vec<String>),
    Reject {
        status: StatusCode,
        message: String,
    },
}

/// Why a call gave no verdict.
#[derive(Debug, thiserror::Error)]
#[error("guard webhook {url}: {reason}")]
pub struct WebhookError {
    pub url: RedactedUrl,
    pub reason: String,
}

#[derive(Serialize, Deserialize)]
struct Message<'a> {
    role: Cow<'a, str>,
    content: Cow<'a, str>,
}

#[derive(Serialize, Deserialize)]
struct Choice<'a> {
    #[serde(borrow)]
    message: Message<'a>,
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Texts<'a> {
    Messages {
        #[serde(borrow)]
        messages: Vec<Message<'a>>,
    },
    Choices {
        #[serde(borrow)]
        choices: Vec<Choice<'a>>,
    },
}

#[derive(Serialize)]
struct Call<'a> {
    body: Texts<'a>,
}

#[derive(Deserialize)]
struct Answer<'a> {
    #[serde(borrow)]
    action: Action<'a>,
}

/// Untagged, in agentgateway's order: a mask has an object body, a reject a string body
/// and a status; whatever else is a pass.
#[derive(Deserialize)]
#[serde(untagged)]
enum Action<'a> {
    Mask {
        #[serde(borrow)]
        body: Texts<'a>,
    },
    Reject {
        body: String,
        status_code: u16,
    },
    /// Matches any object; one with a `body` that is neither of the above is an error,
    /// not a pass.
    Pass {
        #[serde(default)]
        body: Option<serde::de::IgnoredAny>,
    },
}

// === impl Webhook ===

impl Webhook {
    pub fn new(config: &GuardWebhook, path: &str) -> Result<Self, ConfigError> {
        let url: http::Uri = config
            .url
            .parse()
            .map_err(|e| ConfigError::field(format!("{path}.url"), format!("invalid URL: {e}")))?;
        if !matches!(url.scheme_str(), Some("http" | "https")) || url.host().is_none() {
            return Err(ConfigError::field(
                format!("{path}.url"),
                "give an http:// or https:// URL with a host",
            ));
        }
        Ok(Webhook {
            base: config.url.trim_end_matches('/').to_string(),
            timeout: config.timeout.get(),
            failure_mode: config.failure_mode,
            client: OnceLock::new(),
        })
    }

    /// Asks about a prompt: `(role, text)` per part.
    pub async fn check_prompt(
        &self,
        parts: &[(&str, &str)],
        request_id: &str,
    ) -> Result<Verdict, WebhookError> {
        let messages = parts
            .iter()
            .map(|(role, text)| Message {
                role: Cow::Borrowed(role),
                content: Cow::Borrowed(text),
            })
            .collect();
        self.call(
            "request",
            Texts::Messages { messages },
            parts.len(),
            request_id,
        )
        .await
    }

    /// Asks about the texts of a completion.
    pub async fn check_response(
        &self,
        texts: &[String],
        request_id: &str,
    ) -> Result<Verdict, WebhookError> {
        let choices = texts
            .iter()
            .map(|t| Choice {
                message: Message {
                    role: Cow::Borrowed("assistant"),
                    content: Cow::Borrowed(t),
                },
            })
            .collect();
        self.call(
            "response",
            Texts::Choices { choices },
            texts.len(),
            request_id,
        )
        .await
    }

    async fn call(
        &self,
        endpoint: &str,
        body: Texts<'_>,
        sent: usize,
        request_id: &str,
    ) -> Result<Verdict, WebhookError> {
        let url = format!("{}/{endpoint}", self.base);
        let fail = |reason: String| WebhookError {
            url: url.as_str().into(),
            reason,
        };
        let client = self.client().map_err(|e| fail(e.to_string()))?;
        let payload = serde_json::to_vec(&Call { body }).expect("strings serialize");
        let req = Request::post(&url)
            .header("content-type", "application/json")
            .header("x-request-id", request_id)
            .body(Full::new(Bytes::from(payload)))
            .map_err(|e| fail(e.to_string()))?;
        let body = post(client, req, self.timeout, MAX_ANSWER_BYTES, &fail).await?;
        let answer: Answer = serde_json::from_slice(&body)
            .map_err(|e| fail(format!("answer is not the guardrail protocol: {e}")))?;
        match answer.action {
            Action::Pass { body: None } => Ok(Verdict::Pass),
            Action::Pass { body: Some(_) } => Err(fail(
                "the answer's body is neither a mask (messages / choices) nor a reject \
                 (a string with status_code)"
                    .into(),
            )),
            Action::Reject { body, status_code } => {
                let status = StatusCode::from_u16(status_code)
                    .ok()
                    .filter(|s| s.is_client_error() || s.is_server_error())
                    .unwrap_or(StatusCode::FORBIDDEN);
                Ok(Verdict::Reject {
                    status,
                    message: body,
                })
            }
            Action::Mask { body } => {
                let texts: Vec<String> = match body {
                    Texts::Messages { messages } => messages
                        .into_iter()
                        .map(|m| m.content.into_owned())
                        .collect(),
                    Texts::Choices { choices } => choices
                        .into_iter()
                        .map(|c| c.message.content.into_owned())
                        .collect(),
                };
                if texts.len() != sent {
                    return Err(fail(format!(
                        "mask answered {} entries for {sent} sent",
                        texts.len()
                    )));
                }
                Ok(Verdict::Mask(texts))
            }
        }
    }

    fn client(&self) -> Result<&HttpClient, &OutboundError> {
        self.client.get_or_init(build_client).as_ref()
    }
}

/// The client of both external guards: HTTP/1.1, the built-in web roots.
pub(super) fn build_client() -> Result<HttpClient, OutboundError> {
    outbound::client(&Default::default())
}
