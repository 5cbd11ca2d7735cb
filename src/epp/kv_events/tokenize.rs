//! Prompt text → token ids, for looking a prompt up in the exact index: a model
//! server's vLLM `/tokenize` endpoint (`{"model", "prompt"}` → `{"tokens": [...]}`,
//! within a timeout, the answer bounded to [`MAX_RESPONSE`] bytes), or a BPE encoding
//! in process (tiktoken). Nothing is cached: prompts may be secret. Every failure is a
//! [`TokenizeError`] the caller turns into "use the approximate index".

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};

use crate::config::{TokenizerConfig, TokenizerKind};
use crate::outbound::{self, error_chain};

/// Largest `/tokenize` answer read.
pub const MAX_RESPONSE: usize = 16 << 20;

type HttpClient = outbound::HttpClient<Full<Bytes>>;

/// How prompts are tokenized.
#[derive(Clone)]
pub enum Tokenizer {
    Endpoint {
        path: String,
        timeout: Duration,
        /// Made on first use, inside the runtime.
        client: std::sync::Arc<std::sync::OnceLock<HttpClient>>,
    },
    Tiktoken(&'static tiktoken_rs::CoreBPE),
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tokenizer::Endpoint { path, timeout, .. } => f
                .debug_struct("Endpoint")
                .field("path", path)
                .field("timeout", timeout)
                .finish(),
            Tokenizer::Tiktoken(_) => f.write_str("Tiktoken"),
        }
    }
}

/// Why a prompt has no token ids.
#[derive(Debug, thiserror::Error)]
pub enum TokenizeError {
    #[error("no HTTP client: {0}")]
    Client(String),
    #[error("POST {url}: {reason}")]
    Request { url: String, reason: String },
    #[error("POST {url}: timed out after {after:?}")]
    Timeout { url: String, after: Duration },
    #[error("POST {url}: status {status}")]
    Status {
        url: String,
        status: http::StatusCode,
    },
    #[error("POST {url}: the answer is not vLLM's tokenize answer: {reason}")]
    Answer { url: String, reason: String },
}

#[derive(serde::Deserialize)]
struct Answer {
    tokens: Vec<u32>,
}

impl Tokenizer {
    /// The tokenizer a validated config describes.
    pub fn from_config(config: &TokenizerConfig) -> Self {
        match config.kind() {
            TokenizerKind::Endpoint(e) => Tokenizer::Endpoint {
                path: e.path.clone(),
                timeout: e.timeout.get(),
                client: Default::default(),
            },
            TokenizerKind::Tiktoken(name) if name == "o200k_base" => {
                Tokenizer::Tiktoken(tiktoken_rs::o200k_base_singleton())
            }
            TokenizerKind::Tiktoken(_) => Tokenizer::Tiktoken(tiktoken_rs::cl100k_base_singleton()),
        }
    }

    /// The token ids of `prompt` for `model`; `server` is the model server asked in
    /// `endpoint` mode.
    pub async fn tokens(
        &self,
        model: &str,
        prompt: &str,
        server: SocketAddr,
    ) -> Result<Vec<u32>, TokenizeError> {
        match self {
            Tokenizer::Tiktoken(bpe) => Ok(bpe.encode_ordinary(prompt)),
            Tokenizer::Endpoint {
                path,
                timeout,
                client,
            } => {
                let url = format!("http://{server}{path}");
                let client = match client.get() {
                    Some(c) => c,
                    None => {
                        let c = outbound::client(&Default::default())
                            .map_err(|e| TokenizeError::Client(e.to_string()))?;
                        client.get_or_init(|| c)
                    }
                };
                let body = serde_json::json!({"model": model, "prompt": prompt}).to_string();
                match tokio::time::timeout(*timeout, post(client, &url, body)).await {
                    Ok(r) => r,
                    Err(_) => Err(TokenizeError::Timeout {
                        url,
                        after: *timeout,
                    }),
                }
            }
        }
    }
}

async fn post(client: &HttpClient, url: &str, body: String) -> Result<Vec<u32>, TokenizeError> {
    let request = http::Request::post(url)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| TokenizeError::Request {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
    let response = client
        .request(request)
        .await
        .map_err(|e| TokenizeError::Request {
            url: url.to_string(),
            reason: error_chain(&e),
        })?;
    if !response.status().is_success() {
        return Err(TokenizeError::Status {
            url: url.to_string(),
            status: response.status(),
        });
    }
    let answer_error = |reason: String| TokenizeError::Answer {
        url: url.to_string(),
        reason,
    };
    let bytes = Limited::new(response.into_body(), MAX_RESPONSE)
        .collect()
        .await
        .map_err(|e| answer_error(e.to_string()))?
        .to_bytes();
    let answer: Answer = serde_json::from_slice(&bytes).map_err(|e| answer_error(e.to_string()))?;
    Ok(answer.tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tiktoken_tokenizes_in_process() {
        let t = Tokenizer::from_config(&TokenizerConfig {
            tiktoken: Some("cl100k_base".into()),
            ..Default::default()
        });
        let unused: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let ids = t.tokens("m", "hello world", unused).await.unwrap();
        assert_eq!(ids.len(), 2);
        assert_eq!(ids, t.tokens("m", "hello world", unused).await.unwrap());
    }

    #[tokio::test]
    async fn an_unreachable_endpoint_is_an_error_within_the_timeout() {
        let t = Tokenizer::Endpoint {
            path: "/tokenize".into(),
            timeout: Duration::from_millis(300),
            client: Default::default(),
        };
        // A listener that never answers: the timeout ends the wait.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let started = std::time::Instant::now();
        let e = t.tokens("m", "p", addr).await.unwrap_err();
        assert!(matches!(e, TokenizeError::Timeout { .. }), "{e}");
        assert!(started.elapsed() < Duration::from_secs(2));
        drop(l);
        let e = t.tokens("m", "p", addr).await.unwrap_err();
        assert!(matches!(e, TokenizeError::Request { .. }), "{e}");
    }
}
