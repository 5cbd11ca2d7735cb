//! An OpenAI-moderation-compatible guard on the prompt: `POST <url>` with
//! `{"model":…,"input":[texts]}` (and `Authorization: Bearer <apiKey>` when given); the
//! answer's `results[].flagged` and `results[].categories` decide. Any endpoint that
//! speaks this shape works (OpenAI's `/v1/moderations`, self-hosted look-alikes).

use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use serde::Deserialize;

use super::webhook::{build_client, post, HttpClient, WebhookError};
use crate::config::{ConfigError, FailureMode, GuardModeration};
use crate::outbound::{OutboundError, RedactedUrl};

/// Largest answer read.
const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

/// A configured moderation endpoint.
pub struct Moderation {
    url: RedactedUrl,
    model: String,
    api_key: Option<String>,
    categories: Vec<String>,
    pub status: StatusCode,
    message: Option<String>,
    timeout: Duration,
    pub failure_mode: FailureMode,
    client: OnceLock<Result<HttpClient, OutboundError>>,
}

impl std::fmt::Debug for Moderation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Moderation")
            .field("url", &self.url)
            .finish()
    }
}

#[derive(Deserialize)]
struct Answer {
    results: Vec<ModerationResult>,
}

#[derive(Deserialize)]
struct ModerationResult {
    #[serde(default)]
    flagged: bool,
    #[serde(default)]
    categories: std::collections::BTreeMap<String, serde_json::Value>,
}

impl Moderation {
    pub fn new(config: &GuardModeration, path: &str) -> Result<Self, ConfigError> {
        let uri: http::Uri = config
            .url
            .parse()
            .map_err(|e| ConfigError::field(format!("{path}.url"), format!("invalid URL: {e}")))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(ConfigError::field(
                format!("{path}.url"),
                "give an http:// or https:// URL with a host",
            ));
        }
        let status = match config.status {
            None => StatusCode::FORBIDDEN,
            Some(s) => StatusCode::from_u16(s)
                .ok()
                .filter(|s| s.is_client_error() || s.is_server_error())
                .ok_or_else(|| {
                    ConfigError::field(
                        format!("{path}.status"),
                        format!("{s} is not an error status (400-599)"),
                    )
                })?,
        };
        Ok(Moderation {
            url: config.url.as_str().into(),
            model: config.model.clone(),
            api_key: config.api_key.clone(),
            categories: config.categories.clone(),
            status,
            message: config.message.clone(),
            timeout: config.timeout.get(),
            failure_mode: config.failure_mode,
            client: OnceLock::new(),
        })
    }

    /// `Ok(Some(message))` when the texts are flagged, `Ok(None)` when not.
    pub async fn check(&self, texts: &[&str]) -> Result<Option<String>, WebhookError> {
        let fail = |reason: String| WebhookError {
            url: self.url.clone(),
            reason,
        };
        let client = self
            .client
            .get_or_init(build_client)
            .as_ref()
            .map_err(|e| fail(e.to_string()))?;
        let payload = serde_json::json!({ "model": self.model, "input": texts });
        let mut req = Request::post(self.url.expose()).header("content-type", "application/json");
        if let Some(key) = &self.api_key {
            req = req.header("authorization", format!("Bearer {key}"));
        }
        let req = req
            .body(Full::new(Bytes::from(payload.to_string())))
            .map_err(|e| fail(e.to_string()))?;
        let body = post(client, req, self.timeout, MAX_ANSWER_BYTES, &fail).await?;
        let answer: Answer = serde_json::from_slice(&body)
            .map_err(|e| fail(format!("answer is not a moderation result: {e}")))?;
        let mut hit: Vec<&str> = Vec::new();
        let mut flagged = false;
        for r in &answer.results {
            let on = r
                .categories
                .iter()
                .filter(|(_, v)| v.as_bool() == Some(true))
                .map(|(k, _)| k.as_str());
            if self.categories.is_empty() {
                flagged |= r.flagged;
                hit.extend(on);
            } else {
                for c in on {
                    if self.categories.iter().any(|w| w == c) {
                        flagged = true;
                        hit.push(c);
                    }
                }
            }
        }
        if !flagged {
            return Ok(None);
        }
        hit.sort_unstable();
        hit.dedup();
        Ok(Some(self.message.clone().unwrap_or_else(|| {
            if hit.is_empty() {
                "request flagged by moderation".to_string()
            } else {
                format!("request flagged by moderation: {}", hit.join(", "))
            }
        })))
    }
}
