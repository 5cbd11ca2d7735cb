//! `endpointPicker`: picks the model server of each inference request, speaking the
//! Gateway API Inference Extension endpoint-picker contract (see
//! `shared/reference/epp.md`).
//!
//! When it runs (last on the request path, so a request a guard or a limit rejected
//! never enters the prefix index, and the prompt hashed is the one that goes upstream):
//! - request headers: strips the `x-llm-d-*` / `x-gateway-*` control headers (a client's
//!   `x-gateway-destination-endpoint` included); a bodiless method (`GET`, `HEAD`,
//!   `DELETE`, `OPTIONS`) is picked at once, without a prompt.
//! - request body (buffered): reads the model and the prompt (from `cx.llm` when
//!   `tokenAccounting` parsed it, else itself; 400 on a bad body or no model), keeps the
//!   endpoints of the gateway's subset hint, scores them with the default profile and
//!   sets the pick as the `x-gateway-destination-endpoint` request header (a late
//!   header: the transport puts it on the header reply), as
//!   `envoy.lb/x-gateway-destination-endpoint` dynamic metadata, and asks for a route
//!   cache clear. Nothing eligible: 503 with
//!   `x-llm-d-request-dropped-reason: rejected-no-endpoints`.

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use http::{HeaderName, HeaderValue, StatusCode};

use crate::config::{ConfigError, EndpointPickerPolicy, FailureMode};
use crate::epp::{PickRequest, Pool, PoolSpec};
use crate::llm::{Api, LlmRequest};
use crate::pipeline::{
    Body, BodyMode, Ctx, Flow, Headers, LocalReply, Processor, ProcessorError, ProcessorFactory,
};

/// The header (and `envoy.lb` metadata key) carrying the pick.
pub const DESTINATION: &str = "x-gateway-destination-endpoint";
/// Why a request was dropped.
pub const DROPPED_REASON: &str = "x-llm-d-request-dropped-reason";

/// Factory of the `endpointPicker` policy of one route; owns the pool and its scraper.
pub struct EndpointPickerFactory {
    pool: Arc<Pool>,
    failure_mode: FailureMode,
    max_request_bytes: usize,
}

impl EndpointPickerFactory {
    pub fn new(policy: &EndpointPickerPolicy, path: &str) -> Result<Self, ConfigError> {
        let endpoints = policy.addresses(path)?;
        Ok(EndpointPickerFactory {
            pool: Pool::new(PoolSpec {
                endpoints,
                metrics_path: policy.metrics.path.clone(),
                interval: policy.metrics.interval.get(),
                stale_after: policy.metrics.stale_after.get(),
            }),
            failure_mode: policy.failure_mode,
            max_request_bytes: policy.max_request_bytes,
        })
    }

    /// The pool (tests feed it metrics).
    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }
}

impl ProcessorFactory for EndpointPickerFactory {
    fn name(&self) -> &'static str {
        "endpoint_picker"
    }

    fn failure_mode(&self) -> FailureMode {
        self.failure_mode
    }

    fn new_processor(&self, _cx: &Ctx) -> Option<Box<dyn Processor>> {
        Some(Box::new(EndpointPicker {
            pool: self.pool.clone(),
            limit: self.max_request_bytes,
            api: None,
            picked: false,
        }))
    }
}

struct EndpointPicker {
    pool: Arc<Pool>,
    limit: usize,
    api: Option<Api>,
    picked: bool,
}

impl EndpointPicker {
    /// Picks among the eligible endpoints for a prompt to `model`.
    fn pick(&self, cx: &Ctx, model: &str, prompt: &[u8]) -> Result<String, Box<LocalReply>> {
        let subset: Option<Vec<SocketAddr>> = cx
            .endpoint_subset
            .as_ref()
            .map(|s| s.iter().filter_map(|a| a.trim().parse().ok()).collect());
        let mut req = PickRequest::new(model, prompt);
        req.subset = subset.as_deref();
        let picked = self
            .pool
            .pick(&req)
            .map_err(|_| Box::new(no_endpoints(cx.endpoint_subset.is_some())))?;
        if tracing::enabled!(tracing::Level::DEBUG) {
            tracing::debug!(request_id = %cx.request_id, pick = %picked.endpoint(), blocks = picked.blocks, scores = %picked.scores_line(), "endpoint picked");
        }
        // The response is not followed yet: the in-flight share ends with the pick.
        Ok(picked.destination())
    }
}

/// The model and the prompt bytes to hash: from the parsed request when there is one.
fn model_and_prompt(
    cx: &Ctx,
    api: Option<Api>,
    body: &[u8],
) -> Result<(String, Vec<u8>), Box<LocalReply>> {
    let request: Arc<LlmRequest> = match (&cx.llm, api) {
        (Some(f), _) => f.request.clone(),
        (None, Some(api)) => Arc::new(
            LlmRequest::parse(api, body).map_err(|e| Box::new(bad_request(&e.to_string())))?,
        ),
        (None, None) => {
            // Not an API tollgate knows: only `model` is read; the whole body is hashed.
            let v: serde_json::Value = serde_json::from_slice(body)
                .map_err(|e| Box::new(bad_request(&format!("request body is not JSON: {e}"))))?;
            let model = v
                .get("model")
                .and_then(|m| m.as_str())
                .filter(|m| !m.is_empty())
                .ok_or_else(|| Box::new(bad_request("request body has no model")))?;
            return Ok((model.to_string(), body.to_vec()));
        }
    };
    let model = request
        .model
        .clone()
        .filter(|m| !m.is_empty())
        .ok_or_else(|| Box::new(bad_request("request body has no model")))?;
    Ok((model, request.prompt_text().into_bytes()))
}

fn bad_request(message: &str) -> LocalReply {
    LocalReply::error(StatusCode::BAD_REQUEST, "invalid_request_error", message)
}

fn no_endpoints(subset: bool) -> LocalReply {
    let message = if subset {
        "no endpoint of the pool is in the gateway's subset"
    } else {
        "no endpoint to pick"
    };
    let mut reply = LocalReply::error(StatusCode::SERVICE_UNAVAILABLE, "no_endpoints", message);
    reply.headers.insert(
        HeaderName::from_static(DROPPED_REASON),
        HeaderValue::from_static("rejected-no-endpoints"),
    );
    reply
}

/// Records the pick where the gateway reads it.
fn announce(cx: &mut Ctx, pick: &str) {
    cx.set_metadata(
        "envoy.lb",
        DESTINATION,
        serde_json::Value::String(pick.to_string()),
    );
    cx.clear_route_cache = true;
}

#[async_trait]
impl Processor for EndpointPicker {
    async fn on_request_headers(
        &mut self,
        cx: &mut Ctx,
        headers: &mut Headers,
    ) -> Result<Flow, ProcessorError> {
        self.pool.start_scraper();
        let control: Vec<HeaderName> = headers
            .map()
            .keys()
            .filter(|n| n.as_str().starts_with("x-llm-d-") || n.as_str().starts_with("x-gateway-"))
            .cloned()
            .collect();
        for name in &control {
            headers.remove(name);
        }
        self.api = Api::from_path(cx.request.path_only());
        if matches!(
            cx.request.method.as_str(),
            "GET" | "HEAD" | "DELETE" | "OPTIONS"
        ) {
            match self.pick(cx, "", b"") {
                Ok(pick) => {
                    let value = HeaderValue::from_str(&pick).map_err(|_| {
                        ProcessorError::internal("endpoint name is not a header value")
                    })?;
                    headers.set(HeaderName::from_static(DESTINATION), value);
                    announce(cx, &pick);
                    self.picked = true;
                }
                Err(reply) => return Ok(Flow::Respond(*reply)),
            }
        }
        Ok(Flow::Continue)
    }

    fn request_body_mode(&self) -> BodyMode {
        if self.picked {
            BodyMode::Skip
        } else {
            BodyMode::Buffer { limit: self.limit }
        }
    }

    async fn on_request_body(
        &mut self,
        cx: &mut Ctx,
        body: &mut Body,
    ) -> Result<Flow, ProcessorError> {
        if self.picked || !body.end_of_stream() {
            return Ok(Flow::Continue);
        }
        let (model, prompt) = match model_and_prompt(cx, self.api, body.data()) {
            Ok(v) => v,
            Err(reply) => return Ok(Flow::Respond(*reply)),
        };
        let pick = match self.pick(cx, &model, &prompt) {
            Ok(p) => p,
            Err(reply) => return Ok(Flow::Respond(*reply)),
        };
        let value = HeaderValue::from_str(&pick)
            .map_err(|_| ProcessorError::internal("endpoint name is not a header value"))?;
        cx.late_request_headers
            .push((HeaderName::from_static(DESTINATION), value));
        announce(cx, &pick);
        self.picked = true;
        Ok(Flow::Continue)
    }
}

#[cfg(test)]
mod tests;
