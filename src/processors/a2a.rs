//! `a2a` (agentgateway's policy name): a route in front of an A2A agent.
//!
//! - Agent cards (`GET …/.well-known/agent-card.json`, or the older `agent.json`)
//!   are rewritten so clients call the agent through the gateway: the card's `url`,
//!   and every `additionalInterfaces[].url` equal to it, become the gateway's URL of the
//!   agent (`publicUrl`, else the request's scheme and host with the path before
//!   `/.well-known`). Every other field of the card is kept.
//! - A2A JSON-RPC requests are observed: method (`message/send`, `tasks/get`, …; a
//!   fixed set, else `other`) and task id go to the log; count and latency to
//!   `tollgate_a2a_requests_total` and `tollgate_a2a_request_duration_seconds`.
//!
//! Bodies are read whole up to `limits.buffers.jsonBodyBytes`; a larger card passes
//! unchanged (logged).

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::Value;

use crate::config::{A2aPolicy, ConfigError, FailureMode};
use crate::metrics::{A2aLabels, Metrics};
use crate::pipeline::{
    Body, BodyMode, BuildCx, Ctx, Flow, Headers, Outcome, Processor, ProcessorError,
    ProcessorFactory,
};

/// A2A methods counted by name; any other is `other`.
const METHODS: [&str; 9] = [
    "message/send",
    "message/stream",
    "tasks/get",
    "tasks/cancel",
    "tasks/resubscribe",
    "tasks/pushNotificationConfig/set",
    "tasks/pushNotificationConfig/get",
    "agent/getAuthenticatedExtendedCard",
    "agent/getExtendedCard",
];
const CARD_PATHS: [&str; 2] = ["/.well-known/agent-card.json", "/.well-known/agent.json"];

/// Factory of one `a2a` policy.
pub struct A2aFactory {
    public_url: Option<String>,
    limit: usize,
    metrics: Arc<Metrics>,
}

impl A2aFactory {
    pub fn new(p: &A2aPolicy, bcx: &BuildCx<'_>, path: &str) -> Result<Self, ConfigError> {
        if let Some(url) = &p.public_url {
            let ok = url.parse::<http::Uri>().is_ok_and(|u| {
                matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some()
            });
            if !ok {
                return Err(ConfigError::field(
                    format!("{path}.publicUrl"),
                    format!("{url:?} must be an absolute http:// or https:// URL"),
                ));
            }
        }
        Ok(A2aFactory {
            public_url: p.public_url.clone(),
            limit: bcx.config.limits.buffers.json_body_bytes,
            metrics: bcx.services.metrics.clone(),
        })
    }
}

impl ProcessorFactory for A2aFactory {
    fn name(&self) -> &'static str {
        "a2a"
    }

    fn failure_mode(&self) -> FailureMode {
        FailureMode::FailOpen
    }

    fn new_processor(&self, cx: &Ctx) -> Option<Box<dyn Processor>> {
        let path = cx.request.path_only();
        let card = CARD_PATHS
            .iter()
            .find_map(|suffix| path.strip_suffix(suffix))
            .map(|prefix| match &self.public_url {
                Some(url) => url.clone(),
                None => format!("{}://{}{prefix}", cx.request.scheme, cx.request.authority),
            });
        Some(Box::new(A2a {
            card,
            rpc: cx.request.method.eq_ignore_ascii_case("POST"),
            method: None,
            limit: self.limit,
            metrics: self.metrics.clone(),
        }))
    }
}

struct A2a {
    /// For an agent-card request: the URL the card must name.
    card: Option<String>,
    /// A POST: a JSON-RPC request to observe.
    rpc: bool,
    /// The request's method label, once read.
    method: Option<&'static str>,
    limit: usize,
    metrics: Arc<Metrics>,
}

#[async_trait]
impl Processor for A2a {
    fn request_body_mode(&self) -> BodyMode {
        if self.rpc {
            BodyMode::Buffer { limit: self.limit }
        } else {
            BodyMode::Skip
        }
    }

    async fn on_request_body(
        &mut self,
        cx: &mut Ctx,
        body: &mut Body,
    ) -> Result<Flow, ProcessorError> {
        if !body.end_of_stream() {
            return Ok(Flow::Continue);
        }
        let Ok(message) = serde_json::from_slice::<Value>(body.data()) else {
            return Ok(Flow::Continue);
        };
        let Some(method) = message.get("method").and_then(Value::as_str) else {
            return Ok(Flow::Continue);
        };
        let label = METHODS
            .iter()
            .find(|m| **m == method)
            .copied()
            .unwrap_or("other");
        self.method = Some(label);
        let params = &message["params"];
        let task = params["id"]
            .as_str()
            .or_else(|| params.pointer("/message/taskId").and_then(Value::as_str));
        tracing::info!(target: "tollgate::a2a", request_id = %cx.request_id,
            route = cx.route.as_deref().unwrap_or(""), method = label, task = task.unwrap_or(""),
            "A2A request");
        Ok(Flow::Continue)
    }

    async fn on_response_headers(
        &mut self,
        _cx: &mut Ctx,
        headers: &mut Headers,
    ) -> Result<Flow, ProcessorError> {
        if self.card.is_some() {
            let json = headers
                .get_str("content-type")
                .is_some_and(|v| v.to_ascii_lowercase().contains("json"));
            if json {
                headers.remove(&http::header::CONTENT_LENGTH);
            } else {
                self.card = None;
            }
        }
        Ok(Flow::Continue)
    }

    fn response_body_mode(&self) -> BodyMode {
        match self.card {
            Some(_) => BodyMode::Buffer { limit: self.limit },
            None => BodyMode::Skip,
        }
    }

    async fn on_response_body(
        &mut self,
        _cx: &mut Ctx,
        body: &mut Body,
    ) -> Result<Flow, ProcessorError> {
        let Some(url) = &self.card else {
            return Ok(Flow::Continue);
        };
        if body.is_truncated() {
            tracing::warn!(target: "tollgate::a2a", "agent card larger than the JSON body limit; passed unchanged");
            return Ok(Flow::Continue);
        }
        if !body.end_of_stream() {
            return Ok(Flow::Continue);
        }
        if let Some(card) = rewrite_card(body.data(), url) {
            body.replace(Bytes::from(card));
        }
        Ok(Flow::Continue)
    }

    fn on_complete(&mut self, cx: &mut Ctx, outcome: &Outcome) {
        let Some(method) = self.method else { return };
        let labels = A2aLabels {
            route: cx.route.clone().unwrap_or_default(),
            method,
        };
        let m = &self.metrics.a2a;
        m.requests.get_or_create(&labels).inc();
        if matches!(outcome, Outcome::Completed { .. }) {
            m.duration
                .get_or_create(&labels)
                .observe(cx.started.elapsed().as_secs_f64());
        }
    }
}

/// The card with `url` (and the additional interfaces at the same URL) set to `to`;
/// `None` when it is not a JSON object or names no URL.
pub fn rewrite_card(card: &[u8], to: &str) -> Option<Vec<u8>> {
    let mut card: Value = serde_json::from_slice(card).ok()?;
    let old = card.get("url")?.as_str()?.to_string();
    card["url"] = Value::String(to.to_string());
    if let Some(Value::Array(interfaces)) = card.get_mut("additionalInterfaces") {
        for i in interfaces {
            if i.get("url").and_then(Value::as_str) == Some(old.as_str()) {
                i["url"] = Value::String(to.to_string());
            }
        }
    }
    serde_json::to_vec(&card).ok()
}

#[cfg(test)]
mod tests;
