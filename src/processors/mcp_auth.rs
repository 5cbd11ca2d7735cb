//! `mcpAuthentication`: the route takes requests with a valid JWT bearer token only, and
//! serves its RFC 9728 protected-resource metadata. Runs first on the request (see
//! `processors.rs`), in both transports:
//!
//! | request | answer |
//! |---|---|
//! | GET/HEAD the metadata path (`/.well-known/oauth-protected-resource/<resource path>`) | 200, the document, CORS `*` |
//! | OPTIONS the metadata path | 204 CORS preflight |
//! | OPTIONS anything else | passes (a browser preflight carries no token) |
//! | no `Authorization: Bearer` | 401 `WWW-Authenticate: Bearer resource_metadata="…"` |
//! | a token that does not verify | 401 `… error="invalid_token", error_description="…"` |
//! | a token without a required scope | 403 `… error="insufficient_scope", scope="…"` |
//! | the JWKS never read (its source down) | 503 |
//! | a good token | passes; claims in `cx.jwt`; `Authorization` removed (never forwarded) |
//!
//! Error bodies are JSON-RPC errors with a null id, which MCP clients read.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, StatusCode};

use crate::auth::{bearer_token, AuthError, JwtAuth, KeyStore};
use crate::config::{ConfigError, FailureMode, McpAuthentication, WELL_KNOWN};
use crate::mcp::jsonrpc;
use crate::pipeline::ProcessorFactory;
use crate::pipeline::{BuildCx, Ctx, Flow, Headers, LocalReply, Processor, ProcessorError};

/// Factory of one `mcpAuthentication` policy.
pub struct McpAuthFactory {
    shared: Arc<Shared>,
}

struct Shared {
    auth: JwtAuth,
    metadata_path: String,
    metadata: Bytes,
    /// `resource_metadata="…"`, and `, scope="…"` when scopes are advertised.
    challenge: String,
    /// Leave `Authorization` on the request: on an MCP route with `mcp.direct` the
    /// messages Envoy sends on to tollgate's own MCP listener are checked there again,
    /// and `mcp_router` removes the token from every call it sends to a target.
    keep_token: bool,
}

impl McpAuthFactory {
    /// Compiles the policy at `path`. The key store is shared by every policy with the
    /// same source, and survives reloads.
    pub fn new(
        p: &McpAuthentication,
        bcx: &BuildCx<'_>,
        path: &str,
        keep_token: bool,
    ) -> Result<Self, ConfigError> {
        crate::auth::crypto::install();
        let checked = p.check(path)?;
        let source = checked.source.clone();
        let refresh = p.jwks.refresh.get();
        let keys = bcx.services.shared(format!("jwks/{source}"), || {
            let client = crate::outbound::client(&Default::default())
                .map_err(|e| ConfigError::field(format!("{path}.jwks"), e.to_string()))?;
            KeyStore::new(source.clone(), refresh, Arc::new(client))
                .map_err(|e| ConfigError::field(jwks_field(path, &source), e.to_string()))
        })?;
        let mut challenge = format!("resource_metadata=\"{}\"", checked.metadata_url);
        if let Some(scopes) = checked.metadata["scopes_supported"].as_array() {
            let scopes: Vec<&str> = scopes.iter().filter_map(|s| s.as_str()).collect();
            challenge.push_str(&format!(", scope=\"{}\"", scopes.join(" ")));
        }
        let auth = JwtAuth {
            issuer: p.issuer.clone(),
            audiences: p.audiences.clone(),
            clock_skew: p.clock_skew.get(),
            required_scopes: p.required_scopes.clone(),
            keys,
        };
        Ok(McpAuthFactory {
            shared: Arc::new(Shared {
                auth,
                metadata_path: checked.metadata_path,
                metadata: Bytes::from(checked.metadata.to_string()),
                challenge,
                keep_token,
            }),
        })
    }

    /// The path where the route serves its metadata document.
    pub fn metadata_path(&self) -> &str {
        &self.shared.metadata_path
    }
}

fn jwks_field(path: &str, source: &crate::auth::JwksSource) -> String {
    match source {
        crate::auth::JwksSource::File(_) => format!("{path}.jwks.file"),
        crate::auth::JwksSource::Url(_) => format!("{path}.jwks.url"),
    }
}

impl ProcessorFactory for McpAuthFactory {
    fn name(&self) -> &'static str {
        "mcp_authentication"
    }

    fn failure_mode(&self) -> FailureMode {
        FailureMode::FailClosed
    }

    fn new_processor(&self, _cx: &Ctx) -> Option<Box<dyn Processor>> {
        Some(Box::new(McpAuth {
            shared: self.shared.clone(),
        }))
    }
}

struct McpAuth {
    shared: Arc<Shared>,
}

#[async_trait]
impl Processor for McpAuth {
    async fn on_request_headers(
        &mut self,
        cx: &mut Ctx,
        headers: &mut Headers,
    ) -> Result<Flow, ProcessorError> {
        let s = &self.shared;
        let path = cx.request.path_only();
        if path == s.metadata_path || path == WELL_KNOWN {
            return Ok(Flow::Respond(s.metadata_reply(&cx.request.method)));
        }
        if cx.request.method.eq_ignore_ascii_case("OPTIONS") {
            return Ok(Flow::Continue);
        }
        let token = headers
            .get_str(AUTHORIZATION.as_str())
            .and_then(bearer_token);
        let verified = match token {
            Some(token) => s.auth.verify(token).await,
            None => Err(AuthError::Missing),
        };
        match verified {
            Ok(claims) => {
                cx.jwt = Some(claims);
                if !s.keep_token {
                    headers.remove(&AUTHORIZATION);
                }
                Ok(Flow::Continue)
            }
            Err(e) => {
                tracing::debug!(route = ?cx.route, error = %e, "MCP request not authenticated");
                Ok(Flow::Respond(s.refusal(&e)))
            }
        }
    }
}

impl Shared {
    fn metadata_reply(&self, method: &str) -> LocalReply {
        let mut headers = HeaderMap::new();
        let cors = [
            ("access-control-allow-origin", "*"),
            ("access-control-allow-methods", "GET, HEAD, OPTIONS"),
            ("access-control-allow-headers", "*"),
            ("access-control-max-age", "86400"),
        ];
        for (name, value) in cors {
            headers.insert(name, HeaderValue::from_static(value));
        }
        let (status, body) = match method.to_ascii_uppercase().as_str() {
            "GET" | "HEAD" => {
                headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                (StatusCode::OK, self.metadata.clone())
            }
            "OPTIONS" => (StatusCode::NO_CONTENT, Bytes::new()),
            _ => {
                headers.insert(
                    http::header::ALLOW,
                    HeaderValue::from_static("GET, HEAD, OPTIONS"),
                );
                (StatusCode::METHOD_NOT_ALLOWED, Bytes::new())
            }
        };
        LocalReply {
            status,
            headers,
            body,
            details: "mcp_resource_metadata".into(),
        }
    }

    fn refusal(&self, e: &AuthError) -> LocalReply {
        let (status, challenge, details) = match e {
            AuthError::Missing => (
                StatusCode::UNAUTHORIZED,
                format!("Bearer {}", self.challenge),
                "mcp_unauthenticated",
            ),
            AuthError::Invalid(why) => (
                StatusCode::UNAUTHORIZED,
                format!(
                    "Bearer error=\"invalid_token\", error_description=\"{}\", {}",
                    quoted(why),
                    self.challenge
                ),
                "mcp_invalid_token",
            ),
            AuthError::Scope { missing } => (
                StatusCode::FORBIDDEN,
                format!(
                    "Bearer error=\"insufficient_scope\", scope=\"{}\", {}",
                    quoted(missing),
                    self.challenge_without_scope()
                ),
                "mcp_insufficient_scope",
            ),
            AuthError::KeysUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                String::new(),
                "mcp_jwks_unavailable",
            ),
        };
        let body = jsonrpc::error_body(None, jsonrpc::UNAUTHORIZED, &e.to_string());
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            if !challenge.is_empty() {
                headers.insert(WWW_AUTHENTICATE, v);
            }
        }
        LocalReply {
            status,
            headers,
            body: Bytes::from(body),
            details: details.into(),
        }
    }

    fn challenge_without_scope(&self) -> &str {
        self.challenge
            .split_once(", scope=")
            .map_or(self.challenge.as_str(), |(head, _)| head)
    }
}

/// Text safe inside a quoted-string (RFC 9110): no quotes, backslashes or controls.
fn quoted(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control() && *c != '"' && *c != '\\')
        .collect()
}

#[cfg(test)]
mod tests;
