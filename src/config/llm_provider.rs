//! `llmProvider` on a route: the LLM provider behind its backend, which decides the
//! upstream path, the model the upstream is asked for, and the header a `backendAuth`
//! key goes in. agentgateway's `ai` backends are read into this (see `compat`).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ConfigError;
use crate::llm::{Api, Translation};

/// The provider a route's backend is.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LlmProvider {
    pub provider: ProviderKind,
    /// Every LLM request goes upstream for this model, whatever the client asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The upstream path of LLM requests (`completions`, `messages`). Default: the
    /// client's path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// What a request path is (agentgateway's `ai.routes`): a path's suffix, or `*`
    /// for the rest, to `completions`, `messages`, `models`, `embeddings` or
    /// `passthrough` (forwarded as it is). Default: every path is the provider's own
    /// API (`completions`, or `messages` for Anthropic).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub routes: BTreeMap<String, RouteKind>,
}

/// The providers tollgate knows the defaults of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ProviderKind {
    /// OpenAI, and OpenAI-compatible servers (vLLM, Ollama's /v1, DashScope, …).
    #[serde(rename = "openAI")]
    OpenAi,
    Anthropic,
    /// Gemini through its OpenAI-compatible endpoint.
    Gemini,
}

/// What a request on an LLM route is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum RouteKind {
    Completions,
    Messages,
    Models,
    Embeddings,
    Passthrough,
}

impl ProviderKind {
    /// The provider's own API host.
    pub fn default_host(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "api.openai.com:443",
            ProviderKind::Anthropic => "api.anthropic.com:443",
            ProviderKind::Gemini => "generativelanguage.googleapis.com:443",
        }
    }

    /// The path of the provider's own chat API on its default host.
    pub fn default_path(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "/v1/chat/completions",
            ProviderKind::Anthropic => "/v1/messages",
            ProviderKind::Gemini => "/v1beta/openai/chat/completions",
        }
    }

    /// The API of requests on the provider's own path.
    pub fn native_kind(self) -> RouteKind {
        match self {
            ProviderKind::Anthropic => RouteKind::Messages,
            _ => RouteKind::Completions,
        }
    }
}

impl RouteKind {
    /// Whether requests of this kind are LLM calls whose body names a model.
    pub fn has_model(self) -> bool {
        matches!(
            self,
            RouteKind::Completions | RouteKind::Messages | RouteKind::Embeddings
        )
    }
}

impl LlmProvider {
    /// Checks the values at `path` (`….policies.llmProvider`).
    pub fn check(&self, path: &str) -> Result<(), ConfigError> {
        if let Some(p) = &self.path {
            if !p.starts_with('/') || p.contains(['?', '#', ' ']) {
                return Err(ConfigError::field(
                    format!("{path}.path"),
                    format!("{p:?} must be a path starting with / (no query)"),
                ));
            }
        }
        if self.model.as_deref().is_some_and(str::is_empty) {
            return Err(ConfigError::field(
                format!("{path}.model"),
                "must not be empty",
            ));
        }
        Ok(())
    }

    /// The API the client speaks on `path` (without the query), for the LLM calls a
    /// route can translate: with `routes`, what the path's kind says (`completions` is
    /// Chat Completions, `messages` is Messages); without, the API the path itself
    /// names. `None` for every other request.
    pub fn client_api(&self, path: &str) -> Option<Api> {
        if self.routes.is_empty() {
            return Api::from_path(path)
                .filter(|api| matches!(api, Api::ChatCompletions | Api::Messages));
        }
        match self.kind_of(path) {
            RouteKind::Completions => Some(Api::ChatCompletions),
            RouteKind::Messages => Some(Api::Messages),
            _ => None,
        }
    }

    /// The API the provider is called with for chat.
    pub fn upstream_api(&self) -> Api {
        match self.provider {
            ProviderKind::Anthropic => Api::Messages,
            ProviderKind::OpenAi | ProviderKind::Gemini => Api::ChatCompletions,
        }
    }

    /// How a request to `path` is translated for the provider, if it is.
    pub fn translation(&self, path: &str) -> Option<Translation> {
        Translation::between(self.client_api(path)?, self.upstream_api())
    }

    /// The kind of a request to `path` (without the query): the longest `routes` key it
    /// ends with, else `*`, else the provider's own API.
    pub fn kind_of(&self, path: &str) -> RouteKind {
        self.routes
            .iter()
            .filter(|(suffix, _)| *suffix != "*" && path.ends_with(suffix.as_str()))
            .max_by_key(|(suffix, _)| suffix.len())
            .or_else(|| self.routes.get_key_value("*"))
            .map_or(self.provider.native_kind(), |(_, k)| *k)
    }
}
