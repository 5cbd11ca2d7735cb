//! Prompt → token ids, for looking a prompt up in the exact index: a model server's
//! vLLM `/tokenize` endpoint (`{"model", "prompt"}` — or for a chat completion
//! `{"model", "messages"}`, so the server applies its chat template as it will for the
//! request — → `{"tokens": [...]}`, within a timeout, the answer bounded to
//! [`MAX_RESPONSE`] bytes), or a BPE encoding in process (tiktoken, the prompt text
//! only). Nothing is cached: prompts may be secret. Every failure is a
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

/// What is tokenized.
#[derive(Clone, Copy, Debug)]
pub enum Prompt<'a> {
    /// The prompt text (completions, or anything tiktoken encodes).
    Text(&'a str),
    /// A chat completion: its `messages` (for `/tokenize` to apply the chat template),
    /// and its text for tiktoken.
    Chat {
        messages: &'a serde_json::Value,
        text: &'a str,
    },
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
        prompt: Prompt<'_>,
        server: SocketAddr,
    ) -> Result<Vec<u32>, TokenizeError> {
        match self {
            Tokenizer::Tiktoken(bpe) => Ok(bpe.encode_ordinary(match prompt {
                Prompt::Text(t) | Prompt::Chat { text: t, .. } => t,
            })),
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
                let body = match prompt {
                    Prompt::Text(t) => serde_json::json!({"model": model, "prompt": t}),
                    Prompt::Chat { messages, .. } => {
                        serde_json::json!({"model": model, "messages": messages})
                    }
                }
                .to_string();
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
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Answers one HTTP request with `answer` (JSON); the request's body.
    async fn answer_once(l: tokio::net::TcpListener, answer: &'static str) -> String {
        let (mut s, _) = l.accept().await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let body = loop {
            let n = s.read(&mut chunk).await.unwrap();
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).to_string();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap();
                if body.len() >= len {
                    break body.to_string();
                }
            }
        };
        let reply = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
            answer.len()
        );
        s.write_all(reply.as_bytes()).await.unwrap();
        body
    }

    #[tokio::test]
    async fn the_endpoint_gets_vllm_tokenize_requests() {
        let t = Tokenizer::from_config(&TokenizerConfig::default());
        for (prompt, want) in [
            (None, serde_json::json!({"model": "m", "prompt": "text"})),
            (
                Some(serde_json::json!([{"role": "user", "content": "hi"}])),
                serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
            ),
        ] {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            let server = tokio::spawn(answer_once(
                l,
                r#"{"tokens": [5, 6, 7], "count": 3, "max_model_len": 8192}"#,
            ));
            let input = match &prompt {
                None => Prompt::Text("text"),
                Some(m) => Prompt::Chat {
                    messages: m,
                    text: "text",
                },
            };
            assert_eq!(t.tokens("m", input, addr).await.unwrap(), [5, 6, 7]);
            let sent: serde_json::Value = serde_json::from_str(&server.await.unwrap()).unwrap();
            assert_eq!(sent, want);
        }
        // Not vLLM's answer: an error, not a panic.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(answer_once(l, r#"{"tokens": [-1]}"#));
        let e = t.tokens("m", Prompt::Text("x"), addr).await.unwrap_err();
        assert!(matches!(e, TokenizeError::Answer { .. }), "{e}");
    }

    #[tokio::test]
    async fn tiktoken_tokenizes_in_process() {
        let t = Tokenizer::from_config(&TokenizerConfig {
            tiktoken: Some("cl100k_base".into()),
            ..Default::default()
        });
        let unused: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let ids = t
            .tokens("m", Prompt::Text("hello world"), unused)
            .await
            .unwrap();
        assert_eq!(ids.len(), 2);
        let messages = serde_json::json!([{"role": "user", "content": "ignored"}]);
        let chat = Prompt::Chat {
            messages: &messages,
            text: "hello world",
        };
        assert_eq!(
            ids,
            t.tokens("m", chat, unused).await.unwrap(),
            "tiktoken reads the text"
        );
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
        let e = t.tokens("m", Prompt::Text("p"), addr).await.unwrap_err();
        assert!(matches!(e, TokenizeError::Timeout { .. }), "{e}");
        assert!(started.elapsed() < Duration::from_secs(2));
        drop(l);
        let e = t.tokens("m", Prompt::Text("p"), addr).await.unwrap_err();
        assert!(matches!(e, TokenizeError::Request { .. }), "{e}");
    }
}
