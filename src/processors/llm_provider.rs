//! `llmProvider`: a route's requests made into what its provider expects. By the
//! request's path (`routes`, agentgateway's `ai.routes`), an LLM call (`completions`,
//! `messages`, `embeddings`) goes to the provider's path (`path`, when set) and, with
//! `model`, asks the upstream for that model whatever the client named: the JSON
//! body's `model` is rewritten before any other policy reads it, so accounting, limits
//! and guards see the model that is billed. `passthrough`, `models` and other paths
//! go as they came. An Anthropic backend gets `anthropic-version` when the client sent
//! none.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};

use crate::config::{ConfigError, FailureMode, LlmProvider, ProviderKind, RouteKind};
use crate::pipeline::{
    Body, BodyMode, Ctx, Flow, Headers, LocalReply, Processor, ProcessorError, ProcessorFactory,
};

const ANTHROPIC_VERSION: HeaderName = HeaderName::from_static("anthropic-version");

/// Factory of one `llmProvider` policy.
pub struct LlmProviderFactory {
    policy: Arc<LlmProvider>,
    /// `limits.buffers.jsonBodyBytes`: the largest body whose model is rewritten.
    limit: usize,
}

impl LlmProviderFactory {
    /// Compiles the policy at `path`.
    pub fn new(p: &LlmProvider, limit: usize, path: &str) -> Result<Self, ConfigError> {
        p.check(path)?;
        Ok(LlmProviderFactory {
            policy: Arc::new(p.clone()),
            limit,
        })
    }
}

impl ProcessorFactory for LlmProviderFactory {
    fn name(&self) -> &'static str {
        "llm_provider"
    }

    fn failure_mode(&self) -> FailureMode {
        FailureMode::FailClosed
    }

    fn new_processor(&self, cx: &Ctx) -> Option<Box<dyn Processor>> {
        let kind = self.policy.kind_of(cx.request.path_only());
        Some(Box::new(Provide {
            policy: self.policy.clone(),
            kind,
            limit: self.limit,
        }))
    }
}

struct Provide {
    policy: Arc<LlmProvider>,
    kind: RouteKind,
    limit: usize,
}

impl Provide {
    fn rewrites_model(&self) -> bool {
        self.kind.has_model() && self.policy.model.is_some()
    }
}

#[async_trait]
impl Processor for Provide {
    async fn on_request_headers(
        &mut self,
        cx: &mut Ctx,
        headers: &mut Headers,
    ) -> Result<Flow, ProcessorError> {
        if !self.kind.has_model() {
            return Ok(Flow::Continue);
        }
        if let Some(path) = &self.policy.path {
            let query = cx.request.path.split_once('?').map(|(_, q)| q);
            cx.upstream_path = Some(match query {
                Some(q) => format!("{path}?{q}"),
                None => path.clone(),
            });
            cx.keep_route = true;
        }
        if self.policy.provider == ProviderKind::Anthropic
            && headers.get_str("anthropic-version").is_none()
        {
            headers.set(ANTHROPIC_VERSION, HeaderValue::from_static("2023-06-01"));
        }
        Ok(Flow::Continue)
    }

    fn request_body_mode(&self) -> BodyMode {
        if self.rewrites_model() {
            BodyMode::Buffer { limit: self.limit }
        } else {
            BodyMode::Skip
        }
    }

    async fn on_request_body(
        &mut self,
        _cx: &mut Ctx,
        body: &mut Body,
    ) -> Result<Flow, ProcessorError> {
        let Some(model) = self
            .policy
            .model
            .as_deref()
            .filter(|_| self.rewrites_model())
        else {
            return Ok(Flow::Continue);
        };
        if body.data().is_empty() {
            return Ok(Flow::Continue);
        }
        match with_model(body.data(), model) {
            Some(rewritten) => {
                body.replace(rewritten);
                Ok(Flow::Continue)
            }
            None => Ok(Flow::Respond(LocalReply::error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "the request body is not a JSON object",
            ))),
        }
    }
}

/// `body` (a JSON object) with its `model` set to `model`; `None` when it is not one.
fn with_model(body: &Bytes, model: &str) -> Option<Bytes> {
    let mut value: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(body).ok()?;
    value.insert("model".into(), serde_json::Value::String(model.into()));
    serde_json::to_vec(&value).ok().map(Bytes::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn policy(routes: &[(&str, RouteKind)]) -> LlmProvider {
        LlmProvider {
            provider: ProviderKind::OpenAi,
            model: Some("qwen-plus".into()),
            path: None,
            routes: routes
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    #[test]
    fn paths_are_classified_by_their_longest_suffix_then_star() {
        let p = policy(&[
            (
                "/compatible-mode/v1/chat/completions",
                RouteKind::Completions,
            ),
            ("/compatible-mode/v1/models", RouteKind::Passthrough),
            ("*", RouteKind::Passthrough),
        ]);
        assert_eq!(
            p.kind_of("/compatible-mode/v1/chat/completions"),
            RouteKind::Completions
        );
        assert_eq!(
            p.kind_of("/compatible-mode/v1/models"),
            RouteKind::Passthrough
        );
        assert_eq!(p.kind_of("/elsewhere"), RouteKind::Passthrough);
        assert_eq!(policy(&[]).kind_of("/anything"), RouteKind::Completions);
        let anthropic = LlmProvider {
            provider: ProviderKind::Anthropic,
            ..policy(&[])
        };
        assert_eq!(anthropic.kind_of("/v1/messages"), RouteKind::Messages);
    }

    #[test]
    fn the_model_is_replaced_and_everything_else_kept() {
        let body = Bytes::from_static(
            br#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"x":1}"#,
        );
        let out: serde_json::Value =
            serde_json::from_slice(&with_model(&body, "qwen-plus").unwrap()).unwrap();
        assert_eq!(out["model"], "qwen-plus");
        assert_eq!(out["messages"][0]["content"], "hi");
        assert_eq!(out["x"], 1);
        let without: serde_json::Value =
            serde_json::from_slice(&with_model(&Bytes::from_static(b"{}"), "m").unwrap()).unwrap();
        assert_eq!(
            without["model"], "m",
            "a model is injected when the client gave none"
        );
        assert!(with_model(&Bytes::from_static(b"[1]"), "m").is_none());
    }
}
