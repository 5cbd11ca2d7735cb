//! `endpointPicker`: picks the model server of each inference request, speaking the
//! Gateway API Inference Extension endpoint-picker (EPP) contract.
//!
//! When it runs (last on the request path, so a request a guard or a limit rejected
//! never enters the prefix index, and the prompt hashed is the one that goes upstream):
//! - request headers: reads and strips the `x-llm-d-*` / `x-gateway-*` control headers
//!   (objective → priority, fairness id, model rewrite; a client's
//!   `x-gateway-destination-endpoint` is dropped, so it can never steer the pick), sets
//!   `x-request-id` when the request has none. A request without a body (a bodiless
//!   method, or `end_of_stream` on its headers) is picked at once.
//! - request body: for Chat Completions and Completions, scanned as it arrives
//!   (`BodyMode::Scan`, see `scan`): the pick is made once the model and the prompt's
//!   first blocks are in, and the rest of the body streams on behind it (the header
//!   reply with the pick goes first). Otherwise — another API, a model rewrite, the
//!   KV-events prefix cache, or a short body — buffered: reads the model and the prompt
//!   (from `cx.llm` when `tokenAccounting` parsed it, else itself; 400 on a bad body or
//!   no model), applies a
//!   model rewrite (the body's `"model"` replaced in place), keeps the endpoints of the
//!   gateway's subset hint, schedules — with `flowControl`, after waiting its turn in
//!   the pool's queues while the pool is saturated (`crate::epp::flow`; 429
//!   `rejected-saturated` when its band is full, 429 `rejected-ttl-expired` past its
//!   TTL) — and announces the pick — ranked fallbacks after
//!   it — as the `x-gateway-destination-endpoint` request header (a late header: the
//!   transport puts it on the header reply), as `envoy.lb/x-gateway-destination-endpoint`
//!   dynamic metadata with the same value, with a route-cache clear. Nothing eligible:
//!   503 `rejected-no-endpoints`; a sheddable request while the pool is saturated: 429
//!   `rejected-saturated`; a bad body: 400 `rejected-invalid-request` (every reason in
//!   `x-llm-d-request-dropped-reason`).
//!   The latency objectives `x-llm-d-slo-ttft-ms` / `x-llm-d-slo-tpot-ms` must be whole
//!   milliseconds, a queue TTL `x-llm-d-inference-ttl` a Go duration (else 400).
//! - response: notes the endpoint the gateway reports as served (a session binds to
//!   it; a `token` session gets it in its header, see `session`), writes the client's
//!   model name back over a rewritten one (JSON or SSE), observes the first token, and
//!   tells a queued request's wait in `x-llm-d-flow-queue-duration-ms`.
//!   With prefill/decode roles the destination is one that decodes, and a long uncached
//!   prompt also gets a prefill endpoint, in `x-prefiller-host-port` (see `disagg`).
//! - completion: the `inference_objective_*` metrics; the request's flow is charged
//!   its real tokens and the flow dispatcher woken.

mod admission;
mod control;
mod disagg;
pub(crate) mod model_rewrite;
mod pools;
mod request_body;
mod scan;
mod session;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use http::{HeaderName, HeaderValue, StatusCode};

use self::control::Control;
use self::model_rewrite::ModelWriteBack;
use self::scan::PromptScan;
use crate::config::{ConfigError, EndpointPickerPolicy, FailureMode};
use crate::epp::flow::{Charge, PickSpec};
use crate::epp::{InFlight, Pool};
use crate::llm::Api;
use crate::metrics::{ObjectiveErrorLabels, ObjectiveLabels, PickLabels, ServedLabels};
use crate::pipeline::{
    Body, BodyMode, Ctx, Flow, Headers, LocalReply, Outcome, Processor, ProcessorError,
    ProcessorFactory,
};
use crate::services::Services;

/// The header (and `envoy.lb` metadata key) carrying the pick.
pub const DESTINATION: &str = "x-gateway-destination-endpoint";
/// Why a request was dropped.
pub const DROPPED_REASON: &str = "x-llm-d-request-dropped-reason";
/// The drop reason of a request whose body the picker cannot read (400).
pub const INVALID_REQUEST: &str = "rejected-invalid-request";
/// Milliseconds a request waited in flow control's queue (on the response).
pub const QUEUE_DURATION: &str = "x-llm-d-flow-queue-duration-ms";

/// What every request of one route's picker shares.
struct Shared {
    /// The pool, kept alive with its endpoint watch.
    handle: Arc<pools::PoolHandle>,
    policy: EndpointPickerPolicy,
    services: Arc<Services>,
    route: String,
}

/// Factory of the `endpointPicker` policy of one route; owns the pool and its scraper.
pub struct EndpointPickerFactory {
    shared: Arc<Shared>,
}

impl EndpointPickerFactory {
    pub fn new(
        policy: &EndpointPickerPolicy,
        services: &Arc<Services>,
        route: &str,
        path: &str,
    ) -> Result<Self, ConfigError> {
        let handle = pools::pool_for(policy, services, route, path)?;
        Ok(EndpointPickerFactory {
            shared: Arc::new(Shared {
                handle,
                policy: policy.clone(),
                services: services.clone(),
                route: route.to_string(),
            }),
        })
    }

    /// The pool (tests feed it metrics).
    pub fn pool(&self) -> &Arc<Pool> {
        &self.shared.handle.pool
    }
}

impl ProcessorFactory for EndpointPickerFactory {
    fn name(&self) -> &'static str {
        "endpoint_picker"
    }

    fn failure_mode(&self) -> FailureMode {
        self.shared.policy.failure_mode
    }

    fn new_processor(&self, _cx: &Ctx) -> Option<Box<dyn Processor>> {
        Some(Box::new(EndpointPicker {
            shared: self.shared.clone(),
            api: None,
            control: Control::default(),
            model: None,
            target: None,
            picked: None,
            write_back: None,
            in_flight: None,
            streaming_response: false,
            delivered: 0,
            hashes: Vec::new(),
            block_keys: None,
            labels: None,
            queued: None,
            charge: None,
            predicted_ttft: None,
            first_token_at: None,
            session: session::Session::default(),
            prefill: None,
            scan: None,
            declared_len: None,
            max_output_tokens: None,
        }))
    }
}

struct EndpointPicker {
    shared: Arc<Shared>,
    api: Option<Api>,
    control: Control,
    /// The model the client asked for.
    model: Option<String>,
    /// The model the request was rewritten to.
    target: Option<String>,
    /// The endpoint picked (first of the destination list).
    picked: Option<String>,
    write_back: Option<ModelWriteBack>,
    /// The request's share of the picked endpoint's load.
    in_flight: Option<InFlight>,
    /// The response streams (SSE): its first body bytes are the first token.
    streaming_response: bool,
    /// Output tokens seen streaming (SSE data events).
    delivered: u64,
    /// The prompt's block hashes, recorded again where the gateway really served it.
    hashes: Vec<u64>,
    /// The prompt's exact block keys, when the pool reads KV events and it was tokenized.
    block_keys: Option<Vec<u64>>,
    /// The objective metrics' labels, set with the pick.
    labels: Option<ObjectiveLabels>,
    /// Time the request waited in flow control's queue.
    queued: Option<std::time::Duration>,
    /// Its flow's charge, settled with the usage at the end.
    charge: Option<Charge>,
    /// The pick's predicted seconds to the first token, and when it was made.
    predicted_ttft: Option<(f64, Instant)>,
    /// When the first token came (streamed responses).
    first_token_at: Option<Instant>,
    /// The request's session (session affinity).
    session: session::Session,
    /// The prefill side, when the request was disaggregated.
    prefill: Option<disagg::Prefill>,
    /// The body's reading as it arrives, when the pick can start before its end.
    scan: Option<PromptScan>,
    /// The request's `content-length`.
    declared_len: Option<u64>,
    /// The output cap the body asked for (from its start, when read early).
    max_output_tokens: Option<u64>,
}

// === impl EndpointPicker ===

impl EndpointPicker {
    /// Schedules a prompt to `model` over the eligible endpoints — through flow control's
    /// queues when the pool has them, else at once (sheddable requests refused while the
    /// pool is saturated); the destination list. The request's share of the picked
    /// endpoint's load is kept until the response ends.
    async fn pick(
        &mut self,
        cx: &Ctx,
        model: String,
        prompt: Vec<u8>,
        prompt_chars: usize,
    ) -> Result<String, Box<LocalReply>> {
        let mut started = Instant::now();
        let subset: Option<Vec<SocketAddr>> = cx
            .endpoint_subset
            .as_ref()
            .map(|s| s.iter().filter_map(|a| a.trim().parse().ok()).collect());
        let subset = self.destination_subset(subset);
        let model_name = model.clone();
        let expected = cx.llm.as_ref().and_then(|l| l.request.max_output_tokens);
        let spec = PickSpec {
            model,
            prompt,
            prompt_chars,
            expected_output_tokens: expected.or(self.max_output_tokens),
            subset,
            slo: self.control.slo(),
            priority: self.control.priority,
            session: self.session.target,
            block_keys: self.block_keys.take(),
        };
        let result = self.schedule(cx, spec).await;
        if let Some(waited) = self.queued {
            started += waited;
        }
        let picked = match result {
            Ok(p) => p,
            Err(reply) => {
                self.count_attempt(false, started);
                return Err(Box::new(reply));
            }
        };
        self.count_attempt(true, started);
        self.shared
            .services
            .metrics
            .slo
            .predicted_ttft
            .observe(picked.predicted_ttft);
        self.predicted_ttft = Some((picked.predicted_ttft, Instant::now()));
        if let Some(a) = &self.shared.handle.affinity {
            a.served(&self.session, picked.endpoint(), started);
        }
        let metrics = &self.shared.services.metrics.inference;
        if picked.blocks > 0 {
            metrics
                .prefix_hit_ratio
                .observe(picked.prefix_matched as f64 / picked.blocks as f64);
        }
        if tracing::enabled!(tracing::Level::DEBUG) {
            tracing::debug!(request_id = %cx.request_id, pick = %picked.endpoint(), blocks = picked.blocks, scores = %picked.scores_line(), "endpoint picked");
        }
        self.prefill = self.pick_prefill(cx, &model_name, &picked, prompt_chars);
        let destination = picked.destination();
        self.hashes = picked.hashes;
        self.in_flight = Some(picked.in_flight);
        Ok(destination)
    }

    fn count_attempt(&self, ok: bool, started: Instant) {
        let m = &self.shared.services.metrics.inference;
        m.scheduler_duration
            .observe(started.elapsed().as_secs_f64());
        m.scheduler_attempts
            .get_or_create(&crate::metrics::StatusLabels {
                status: if ok { "success" } else { "failure" },
            })
            .inc();
    }

    /// A reply the picker gives itself, with its reason header, counted.
    fn dropped(&self, status: StatusCode, reason: &'static str, message: &str) -> LocalReply {
        self.reject(LocalReply::error(status, reason, message), reason)
    }

    /// A 400 for a body the picker cannot read: OpenAI's `invalid_request_error` type in
    /// the body, `rejected-invalid-request` in the reason header like every other drop.
    fn bad_request(&self, message: &str) -> LocalReply {
        let reply = LocalReply::error(StatusCode::BAD_REQUEST, "invalid_request_error", message);
        self.reject(reply, INVALID_REQUEST)
    }

    /// Counts `reply` as dropped for `reason` and names the reason in its header: every
    /// reply the picker makes goes through here, so none lacks the header.
    fn reject(&self, mut reply: LocalReply, reason: &'static str) -> LocalReply {
        self.shared
            .services
            .metrics
            .inference
            .dropped
            .get_or_create(&crate::metrics::DropLabels {
                pool: self.shared.route.clone(),
                reason,
            })
            .inc();
        reply.headers.insert(
            HeaderName::from_static(DROPPED_REASON),
            HeaderValue::from_static(reason),
        );
        reply
    }

    /// Records the pick where the gateway reads it: the header (`late` for the body
    /// phase), the `envoy.lb` metadata, a route-cache clear.
    fn announce(
        &mut self,
        cx: &mut Ctx,
        destination: String,
        headers: Option<&mut Headers>,
    ) -> Result<(), ProcessorError> {
        let value = HeaderValue::from_str(&destination)
            .map_err(|_| ProcessorError::internal("endpoint name is not a header value"))?;
        let name = HeaderName::from_static(DESTINATION);
        match headers {
            Some(h) => h.set(name, value),
            None => cx.late_request_headers.push((name, value)),
        }
        cx.set_metadata(
            "envoy.lb",
            DESTINATION,
            serde_json::Value::String(destination.clone()),
        );
        cx.clear_route_cache = true;
        let first = destination
            .split(',')
            .next()
            .unwrap_or_default()
            .to_string();
        let m = &self.shared.services.metrics.inference;
        m.picks
            .get_or_create(&PickLabels {
                pool: self.shared.route.clone(),
                endpoint: first.clone(),
            })
            .inc();
        let labels = self.objective_labels();
        m.running_requests
            .get_or_create(&crate::metrics::ModelLabels {
                model_name: labels.model_name.clone(),
            })
            .inc();
        self.labels = Some(labels);
        self.picked = Some(first);
        cx.destination = Some(destination);
        Ok(())
    }

    /// Binds the request's session to the endpoint that served it (the gateway's word,
    /// else the pick) and, for a `token` session, names it in the response header.
    fn note_session(&self, cx: &Ctx, headers: &mut Headers) {
        let (Some(a), Some(picked)) = (&self.shared.handle.affinity, &self.picked) else {
            return;
        };
        let served = cx
            .served_endpoint
            .as_deref()
            .and_then(|s| s.rsplit(',').next())
            .map_or(picked.as_str(), str::trim);
        a.served(&self.session, served, Instant::now());
        if let Some((name, value)) = a.response_header(served) {
            headers.set(name, value);
        }
    }

    /// The `inference_objective_*` labels, bounded (made once, at the pick).
    fn objective_labels(&self) -> ObjectiveLabels {
        let metrics = &self.shared.services.metrics.inference;
        let model_name = metrics.model_label(self.model.as_deref().unwrap_or(""));
        let target_model_name = match &self.target {
            Some(t) => metrics.model_label(t),
            None => model_name.clone(),
        };
        ObjectiveLabels {
            model_name,
            target_model_name,
        }
    }
}

#[async_trait]
impl Processor for EndpointPicker {
    async fn on_request_headers(
        &mut self,
        cx: &mut Ctx,
        headers: &mut Headers,
    ) -> Result<Flow, ProcessorError> {
        self.shared.handle.pool.start_scraper();
        self.control = match Control::take(headers, &self.shared.policy) {
            Ok(c) => c,
            Err(e) => return Ok(Flow::Respond(self.bad_request(&e.to_string()))),
        };
        disagg::strip_client_header(headers);
        if let Some(a) = &self.shared.handle.affinity {
            self.session = a.read(headers, Instant::now());
        }
        if headers.map().get("x-request-id").is_none() {
            if let Ok(v) = HeaderValue::from_str(&cx.request_id) {
                headers.set(HeaderName::from_static("x-request-id"), v);
            }
        }
        self.api = Api::from_path(cx.request.path_only());
        self.declared_len = headers
            .get_str("content-length")
            .and_then(|v| v.trim().parse().ok());
        if let Some(api) = self.api.filter(|_| self.may_pick_early()) {
            self.scan = Some(PromptScan::new(api, self.control.model.clone()));
        }
        let bodiless = matches!(
            cx.request.method.as_str(),
            "GET" | "HEAD" | "DELETE" | "OPTIONS"
        );
        if bodiless || cx.request_body_empty {
            let destination = match self.pick(cx, String::new(), Vec::new(), 0).await {
                Ok(d) => d,
                Err(reply) => return Ok(Flow::Respond(*reply)),
            };
            self.announce(cx, destination, Some(headers))?;
        }
        Ok(Flow::Continue)
    }

    fn request_body_mode(&self) -> BodyMode {
        let limit = self.shared.policy.max_request_bytes;
        match (&self.picked, &self.scan) {
            (Some(_), _) => BodyMode::Skip,
            (None, Some(_)) => BodyMode::Scan { limit },
            (None, None) => BodyMode::Buffer { limit },
        }
    }

    async fn on_request_body(
        &mut self,
        cx: &mut Ctx,
        body: &mut Body,
    ) -> Result<Flow, ProcessorError> {
        self.request_body(cx, body).await
    }

    async fn on_response_headers(
        &mut self,
        cx: &mut Ctx,
        headers: &mut Headers,
    ) -> Result<Flow, ProcessorError> {
        self.streaming_response = headers
            .get_str("content-type")
            .is_some_and(|c| c.starts_with("text/event-stream"));
        if let Some(waited) = self.queued {
            headers.set(
                HeaderName::from_static(QUEUE_DURATION),
                HeaderValue::from(waited.as_millis() as u64),
            );
        }
        if let (Some(served), Some(picked)) = (&cx.served_endpoint, &self.picked) {
            // The gateway may report `ip:port` or a list (retries): the last served.
            let served = served.rsplit(',').next().unwrap_or_default().trim();
            if served != picked {
                if let Ok(addr) = served.parse() {
                    // The served endpoint now caches the prompt, and carries its load.
                    self.shared.handle.pool.record_served(&addr, &self.hashes);
                    if let Some(f) = self.in_flight.as_mut() {
                        f.served_by(addr);
                    }
                }
            }
            self.shared
                .services
                .metrics
                .inference
                .served
                .get_or_create(&ServedLabels {
                    pool: self.shared.route.clone(),
                    endpoint: served.to_string(),
                    as_picked: if served == picked { "true" } else { "false" },
                })
                .inc();
        }
        self.note_session(cx, headers);
        self.prefill = None; // the prefill is over once the decode side answers
        Ok(Flow::Continue)
    }

    fn response_body_mode(&self) -> BodyMode {
        // The body shows when the first token came and how many followed (the load
        // scorers learn from it), and carries the model to write back.
        if self.write_back.is_some() || self.in_flight.is_some() {
            BodyMode::Stream
        } else {
            BodyMode::Skip
        }
    }

    async fn on_response_body(
        &mut self,
        cx: &mut Ctx,
        body: &mut Body,
    ) -> Result<Flow, ProcessorError> {
        if self.in_flight.is_some() && self.streaming_response && !body.data().is_empty() {
            if self.first_token_at.is_none() {
                self.first_token(cx);
            }
            // One SSE data event per generated token, near enough for load.
            let events = memchr::memmem::find_iter(body.data(), b"data:").count() as u64;
            self.delivered += events;
            if let Some(f) = self.in_flight.as_mut() {
                f.output_tokens(self.delivered);
            }
        }
        if let Some(w) = self.write_back.as_mut() {
            let out = w.push(body.data(), body.end_of_stream());
            if out.as_slice() != body.data().as_ref() {
                body.replace(out.into());
            }
        }
        Ok(Flow::Continue)
    }

    fn on_complete(&mut self, cx: &mut Ctx, outcome: &Outcome) {
        if self.picked.is_none() {
            return;
        }
        let usage = cx.llm.as_ref().and_then(|l| l.usage.as_ref());
        if let Some(f) = self.in_flight.take() {
            match outcome {
                Outcome::Completed { status } if *status < 400 => f.finish(
                    Instant::now(),
                    usage.map_or(self.delivered, |u| u.output_tokens),
                ),
                // Failed or abandoned: the share is released on drop, nothing learnt.
                _ => drop(f),
            }
        }
        if let Some(charge) = self.charge.take() {
            // What the request really cost its flow: the usage, else what streamed.
            charge.settle(
                usage.map(|u| u.input_tokens),
                usage.map_or(self.delivered, |u| u.output_tokens),
            );
        }
        if let Some(flow) = &self.shared.handle.flow {
            flow.released();
        }
        self.check_tpot();
        let m = &self.shared.services.metrics.inference;
        let Some(labels) = self.labels.take() else {
            return;
        };
        m.running_requests
            .get_or_create(&crate::metrics::ModelLabels {
                model_name: labels.model_name.clone(),
            })
            .dec();
        m.request_total.get_or_create(&labels).inc();
        m.request_duration
            .get_or_create(&labels)
            .observe(cx.started.elapsed().as_secs_f64());
        let status = outcome.status();
        if !matches!(outcome, Outcome::Completed { .. }) || status >= 400 {
            let error_code = match outcome {
                Outcome::Completed { status } | Outcome::LocalReply { status } => {
                    status.to_string()
                }
                other => other.label().to_string(),
            };
            m.request_error_total
                .get_or_create(&ObjectiveErrorLabels {
                    model_name: labels.model_name.clone(),
                    target_model_name: labels.target_model_name.clone(),
                    error_code,
                })
                .inc();
        }
        if let Some(usage) = cx.llm.as_ref().and_then(|l| l.usage.as_ref()) {
            m.input_tokens
                .get_or_create(&labels)
                .observe(usage.input_tokens as f64);
            m.output_tokens
                .get_or_create(&labels)
                .observe(usage.output_tokens as f64);
        }
    }
}

#[cfg(test)]
mod tests;
