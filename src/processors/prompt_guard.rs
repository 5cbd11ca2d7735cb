//! `promptGuard`: PII, secrets and policy rules on LLM prompts and completions, with the
//! engine in `crate::guard`. Each rule rejects, masks or audits what it finds.
//!
//! When it runs (after `tokenAccounting`, before `tokenLimit`):
//! - request headers: keep what CEL rules may read (`request.*`).
//! - request body (buffered): CEL rules, then the prompt parts of `cx.llm` (parsed by
//!   `tokenAccounting`, or here when it is not on the route) scanned one pass per part.
//!   A reject answers in the API's own error format and nothing goes upstream; a mask
//!   rewrites the JSON body (`request.rs` says which strings); an audit only counts.
//! - response headers: pick the body mode — `text/event-stream` is streamed, JSON is
//!   buffered — and, for a compressed body, decode it here and drop `content-encoding`
//!   (a masked body is sent on uncompressed).
//! - response body: a JSON completion is checked whole (`response.rs`); a stream event
//!   by event (`stream.rs`). A reject in a stream ends it with an error event in the
//!   API's format: the proxy closes the stream there, under Envoy (whose headers are
//!   already out) the rest of the upstream's stream is dropped.
//! - bounds (`limits.buffers`): an SSE line or event over its bound follows
//!   `failureMode` (fail open: the rest of the stream passes unguarded; fail closed: it
//!   ends with an error event). A compressed body that decodes past its size or ratio
//!   bound always ends (an error event, or 502 for JSON): its `content-encoding` is
//!   already gone, so the rest could only be sent decoded — a bomb. Each counts in
//!   `tollgate_buffer_limit_exceeded_total`.
//!
//! A side's `webhook` (`webhook.rs`, `hooks.rs`) is asked after its rules, on the request
//! and on JSON completions; the request side's `moderation` (`moderation.rs`) last.
//!
//! Findings never reach logs or metric labels: only rule names and counts
//! (`tollgate_guard_findings_total`), and the time each check took
//! (`tollgate_guard_duration_seconds`).

mod definitions;
mod hooks;
pub(crate) mod json;
mod moderation;
mod request;
mod response;
mod rules;
mod stream;
mod stream_emit;
mod stream_end;
pub(crate) mod stream_events;
mod tools;
mod webhook;

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use http::{HeaderName, StatusCode};

use crate::config::{BufferLimits, ConfigError, FailureMode, PromptGuardPolicy};
use crate::expr::{Offload, RequestVars};
use crate::llm::{Api, Decoder, LlmError, LlmRequest};
use crate::metrics::{GuardLabels, Metrics, SideLabels};
use crate::pipeline::{
    Body, BodyMode, Ctx, Flow, Headers, LlmFacts, LocalReply, Processor, ProcessorError,
    ProcessorFactory,
};

use request::Decision;
use rules::{CompiledSide, SideKind};
use stream::{StreamGuard, StreamOut};

pub use tools::McpGuardFactory;

/// Factory of the `promptGuard` policy of one route.
pub struct PromptGuardFactory {
    shared: Arc<Shared>,
}

struct Shared {
    request: Option<CompiledSide>,
    response: Option<CompiledSide>,
    failure_mode: FailureMode,
    max_request_bytes: usize,
    max_response_bytes: usize,
    limits: BufferLimits,
    metrics: Arc<Metrics>,
    /// Where heavy request checks run (`limits.cel`).
    offload: Offload,
}

impl PromptGuardFactory {
    /// Compiles the policy; `path` is its field path, for errors.
    pub fn new(
        policy: &PromptGuardPolicy,
        bcx: &crate::processors::BuildCx<'_>,
        path: &str,
    ) -> Result<Self, ConfigError> {
        if policy.request.is_none() && policy.response.is_none() {
            return Err(ConfigError::field(path, "give request or response rules"));
        }
        let (services, cel) = (bcx.services, &bcx.config.limits.cel);
        let side = |s: &Option<crate::config::GuardSide>, kind: SideKind| {
            s.as_ref()
                .map(|s| CompiledSide::new(s, kind, cel, &format!("{path}.{}", kind.as_str())))
                .transpose()
        };
        let permits = services
            .shared(Offload::permits_key(cel), || {
                let permits = tokio::sync::Semaphore::new(cel.max_concurrent_evaluations);
                Ok::<_, std::convert::Infallible>(Arc::new(permits))
            })
            .unwrap_or_else(|never| match never {});
        Ok(PromptGuardFactory {
            shared: Arc::new(Shared {
                request: side(&policy.request, SideKind::Request)?,
                response: side(&policy.response, SideKind::Response)?,
                failure_mode: policy.failure_mode,
                max_request_bytes: policy.max_request_bytes,
                max_response_bytes: policy.max_response_bytes,
                limits: bcx.config.limits.buffers.clone(),
                metrics: bcx.services.metrics.clone(),
                offload: Offload::new(cel, permits),
            }),
        })
    }
}

impl ProcessorFactory for PromptGuardFactory {
    fn name(&self) -> &'static str {
        "prompt_guard"
    }

    /// What a body the guard cannot check does: over the size limit, truncated by
    /// Envoy, or in an encoding it cannot decode.
    fn failure_mode(&self) -> FailureMode {
        self.shared.failure_mode
    }

    fn new_processor(&self, cx: &Ctx) -> Option<Box<dyn Processor>> {
        let api = Api::from_path(cx.request.path_only())?;
        Some(Box::new(PromptGuard {
            shared: self.shared.clone(),
            api,
            vars: None,
            response: ResponseMode::Off,
            decoder: None,
        }))
    }
}

/// How the response body is guarded.
enum ResponseMode {
    Off,
    Json,
    Stream(Box<StreamGuard>),
}

struct PromptGuard {
    shared: Arc<Shared>,
    api: Api,
    /// What CEL rules read as `request`.
    vars: Option<RequestVars>,
    response: ResponseMode,
    /// The response's `content-encoding`, decoded here.
    decoder: Option<Decoder>,
}

/// Findings per rule of one side, for metrics and the log line.
#[derive(Debug)]
pub struct Tally(Vec<u64>);

impl Tally {
    fn new(side: &CompiledSide) -> Self {
        Tally(vec![0; side.rules.len()])
    }

    pub fn add(&mut self, rule: usize, n: u64) {
        self.0[rule] += n;
    }

    fn is_empty(&self) -> bool {
        self.0.iter().all(|&n| n == 0)
    }

    /// Findings counted so far, over every rule.
    fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}

// === impl PromptGuard ===

impl PromptGuard {
    /// Counts findings in the metrics and logs them: rule names and counts only.
    fn report(&self, cx: &Ctx, side: &CompiledSide, tally: &Tally, started: Instant) {
        self.observe(side, started);
        let metrics = &self.shared.metrics;
        if tally.is_empty() {
            return;
        }
        let route = cx.route.clone().unwrap_or_default();
        let mut summary = String::new();
        for (i, &n) in tally.0.iter().enumerate().filter(|(_, &n)| n > 0) {
            let rule = side.rule(i);
            metrics
                .guard_findings
                .get_or_create(&GuardLabels {
                    route: route.clone(),
                    side: side.kind.as_str(),
                    rule: rule.name.clone(),
                    action: rule.action.as_str(),
                })
                .inc_by(n);
            if !summary.is_empty() {
                summary.push(',');
            }
            summary.push_str(&format!("{}:{}={n}", rule.name, rule.action.as_str()));
        }
        tracing::info!(
            target: "tollgate::guard",
            request_id = %cx.request_id, route = %route, side = side.kind.as_str(),
            findings = %summary, "prompt guard findings"
        );
    }

    fn observe(&self, side: &CompiledSide, started: Instant) {
        self.shared
            .metrics
            .guard_duration
            .get_or_create(&SideLabels {
                side: side.kind.as_str(),
            })
            .observe(started.elapsed().as_secs_f64());
    }

    /// A reply from the webhook glue, in this route's API format.
    fn finish_reply(&self, reply: hooks::Reply) -> LocalReply {
        error_reply(self.api, reply.status, reply.kind, &reply.message)
    }

    fn reject(&self, cx: &Ctx, side: &CompiledSide, rule: usize) -> Flow {
        let rule = side.rule(rule);
        tracing::warn!(
            target: "tollgate::guard",
            request_id = %cx.request_id, route = cx.route.as_deref().unwrap_or(""),
            side = side.kind.as_str(), rule = %rule.name, "prompt guard rejected the exchange"
        );
        let kind = match side.kind {
            SideKind::Request => "prompt_rejected",
            SideKind::Response => "response_rejected",
        };
        Flow::Respond(error_reply(self.api, rule.status, kind, &rule.message))
    }

    /// A body the guard cannot check: fail closed answers `status`, fail open lets it
    /// pass with a warning.
    fn unchecked(&self, status: StatusCode, kind: &str, message: &str) -> Flow {
        match self.shared.failure_mode {
            FailureMode::FailClosed => Flow::Respond(error_reply(self.api, status, kind, message)),
            FailureMode::FailOpen => {
                tracing::warn!(target: "tollgate::guard", "{message}; passed unchecked (failOpen)");
                Flow::Continue
            }
        }
    }

    /// The request as `tokenAccounting` parsed it, or parsed here.
    fn request(&self, cx: &mut Ctx, body: &[u8]) -> Result<Arc<LlmRequest>, Box<Flow>> {
        if let Some(facts) = &cx.llm {
            return Ok(facts.request.clone());
        }
        let request = LlmRequest::parse(self.api, body).map_err(|e| {
            Box::new(Flow::Respond(error_reply(
                self.api,
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                &e.to_string(),
            )))
        })?;
        let request = Arc::new(request);
        cx.llm = Some(Box::new(LlmFacts::new(self.api, request.clone())));
        Ok(request)
    }

    fn decode(&mut self, data: &[u8], eos: bool) -> Result<Option<Vec<u8>>, LlmError> {
        let Some(d) = self.decoder.as_mut() else {
            return Ok(None);
        };
        let mut out = d.push(data)?.into_owned();
        if eos {
            out.extend(d.finish()?);
        }
        Ok(Some(out))
    }
}

#[async_trait]
impl Processor for PromptGuard {
    async fn on_request_headers(
        &mut self,
        cx: &mut Ctx,
        headers: &mut Headers,
    ) -> Result<Flow, ProcessorError> {
        if self
            .shared
            .request
            .as_ref()
            .is_some_and(|s| !s.cel.is_empty())
        {
            self.vars = Some(RequestVars::from_head(&cx.request, headers.map()));
        }
        Ok(Flow::Continue)
    }

    fn request_body_mode(&self) -> BodyMode {
        match self.shared.request {
            Some(_) => BodyMode::Buffer {
                limit: self.shared.max_request_bytes,
            },
            None => BodyMode::Skip,
        }
    }

    async fn on_request_body(
        &mut self,
        cx: &mut Ctx,
        body: &mut Body,
    ) -> Result<Flow, ProcessorError> {
        let shared = self.shared.clone();
        let Some(side) = shared.request.as_ref() else {
            return Ok(Flow::Continue);
        };
        if body.is_truncated() {
            return Ok(self.unchecked(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request_too_large",
                "the request body is larger than the prompt guard checks",
            ));
        }
        let started = Instant::now();
        let request = match self.request(cx, body.data()) {
            Ok(r) => r,
            Err(flow) => return Ok(*flow),
        };
        let (vars, jwt) = (self.vars.as_ref(), cx.jwt.as_ref());
        let (decision, tally) = check_request(&shared, vars, jwt, &request, body.data()).await?;
        self.report(cx, side, &tally, started);
        let mut rewritten = match decision {
            Decision::Pass => None,
            Decision::Reject(rule) => return Ok(self.reject(cx, side, rule)),
            Decision::Rewrite(new) => Some(new),
            Decision::Error(message) => return Err(ProcessorError::internal(message)),
        };
        if let Some(webhook) = &side.webhook {
            let started = Instant::now();
            let current = rewritten.as_deref().unwrap_or(body.data());
            let asked = hooks::ask_prompt(
                webhook,
                side,
                &request,
                current,
                rewritten.is_some(),
                cx,
                &shared.metrics,
            )
            .await;
            self.observe(side, started);
            match asked {
                hooks::Asked::Keep => {}
                hooks::Asked::Rewrite(new) => rewritten = Some(new),
                hooks::Asked::Respond(reply) => return Ok(Flow::Respond(self.finish_reply(reply))),
            }
        }
        if let Some(moderation) = &side.moderation {
            let started = Instant::now();
            let asked = hooks::ask_moderation(
                moderation,
                side,
                &request,
                rewritten.is_some(),
                cx,
                &shared.metrics,
            )
            .await;
            self.observe(side, started);
            if let hooks::Asked::Respond(reply) = asked {
                return Ok(Flow::Respond(self.finish_reply(reply)));
            }
        }
        if let Some(new) = rewritten {
            body.replace(new.into());
        }
        Ok(Flow::Continue)
    }

    async fn on_response_headers(
        &mut self,
        cx: &mut Ctx,
        headers: &mut Headers,
    ) -> Result<Flow, ProcessorError> {
        if self.shared.response.is_none() {
            return Ok(Flow::Continue);
        }
        let content_type = headers
            .get_str("content-type")
            .unwrap_or("")
            .trim_start()
            .to_ascii_lowercase();
        let mode = if content_type.starts_with("text/event-stream") {
            let limits = self.shared.limits.sse();
            let guard = StreamGuard::new(self.api, limits, self.shared.failure_mode);
            ResponseMode::Stream(Box::new(guard))
        } else if content_type.contains("json") {
            ResponseMode::Json
        } else {
            return Ok(Flow::Continue); // no completion text in it
        };
        let encoding = headers
            .get_str("content-encoding")
            .map(str::trim)
            .filter(|e| !e.is_empty() && !e.eq_ignore_ascii_case("identity"))
            .map(str::to_owned);
        if let Some(encoding) = encoding {
            match Decoder::with_limits(Some(&encoding), self.shared.limits.decode()) {
                Ok(d) => self.decoder = Some(d),
                Err(e) => {
                    let message = format!("response encoding {encoding:?}: {e}");
                    tracing::warn!(target: "tollgate::guard", request_id = %cx.request_id, "{message}");
                    return match self.shared.failure_mode {
                        FailureMode::FailClosed => Err(ProcessorError {
                            status: StatusCode::BAD_GATEWAY,
                            message,
                        }),
                        FailureMode::FailOpen => Ok(Flow::Continue),
                    };
                }
            }
            headers.remove(&HeaderName::from_static("content-encoding"));
            headers.remove(&http::header::CONTENT_LENGTH);
        }
        if matches!(mode, ResponseMode::Stream(_)) {
            // Masked events differ in length from the upstream's.
            headers.remove(&http::header::CONTENT_LENGTH);
        }
        self.response = mode;
        Ok(Flow::Continue)
    }

    fn response_body_mode(&self) -> BodyMode {
        match self.response {
            ResponseMode::Off => BodyMode::Skip,
            ResponseMode::Json => BodyMode::Buffer {
                limit: self.shared.max_response_bytes,
            },
            ResponseMode::Stream(_) => BodyMode::Stream,
        }
    }

    async fn on_response_body(
        &mut self,
        cx: &mut Ctx,
        body: &mut Body,
    ) -> Result<Flow, ProcessorError> {
        let shared = self.shared.clone();
        let Some(side) = shared.response.as_ref() else {
            return Ok(Flow::Continue);
        };
        let started = Instant::now();
        let eos = body.end_of_stream() || body.is_whole();
        let decoded = match self.decode(body.data(), eos) {
            Ok(decoded) => decoded,
            Err(LlmError::DecodeLimit { limit, .. }) => {
                return Ok(self.decode_limit(cx, body, limit))
            }
            Err(e) => {
                return Err(ProcessorError {
                    status: StatusCode::BAD_GATEWAY,
                    message: format!("the response could not be decoded for the guard: {e}"),
                })
            }
        };
        let data: &[u8] = decoded.as_deref().unwrap_or(body.data());
        let mut tally = Tally::new(side);
        match &mut self.response {
            ResponseMode::Off => Ok(Flow::Continue),
            ResponseMode::Json => {
                if body.is_truncated() {
                    return Ok(self.unchecked(
                        StatusCode::BAD_GATEWAY,
                        "upstream_error",
                        "the response body is larger than the prompt guard checks",
                    ));
                }
                let decision = response::check_json(side, data, &mut tally);
                self.report(cx, side, &tally, started);
                let mut out = match decision {
                    Decision::Reject(rule) => return Ok(self.reject(cx, side, rule)),
                    Decision::Rewrite(new) => Some(new),
                    Decision::Pass | Decision::Error(_) => decoded,
                };
                if let Some(webhook) = &side.webhook {
                    let started = Instant::now();
                    let current = out.as_deref().unwrap_or(body.data());
                    let asked =
                        hooks::ask_response(webhook, side, current, cx, &shared.metrics).await;
                    self.observe(side, started);
                    match asked {
                        hooks::Asked::Keep => {}
                        hooks::Asked::Rewrite(new) => out = Some(new),
                        hooks::Asked::Respond(reply) => {
                            return Ok(Flow::Respond(self.finish_reply(reply)))
                        }
                    }
                }
                if let Some(new) = out {
                    body.replace(new.into());
                }
                Ok(Flow::Continue)
            }
            ResponseMode::Stream(guard) => {
                let out = guard.push(side, data, eos, &mut tally);
                self.report(cx, side, &tally, started);
                if out == StreamOut::Unchanged {
                    // What was pushed goes on: the decoded body, when it was encoded.
                    if let Some(decoded) = decoded {
                        body.replace(decoded.into());
                    }
                    return Ok(Flow::Continue);
                }
                Ok(self.stream_out(cx, side, body, out))
            }
        }
    }
}

/// A local reply with `message` in the API's error format.
fn error_reply(api: Api, status: StatusCode, kind: &str, message: &str) -> LocalReply {
    let mut reply = LocalReply::error(status, kind, message);
    reply.body = api.error_body(status.as_u16(), kind, message).into();
    reply.details = format!("prompt_guard_{kind}");
    reply
}

/// Runs the request side's rules: off the async workers when its CEL conditions are heavy
/// (a large body, or a comprehension; see `limits.cel`), else right here.
async fn check_request(
    shared: &Arc<Shared>,
    vars: Option<&RequestVars>,
    jwt: Option<&serde_json::Value>,
    request: &Arc<LlmRequest>,
    body: &[u8],
) -> Result<(Decision, Tally), ProcessorError> {
    let side = shared
        .request
        .as_ref()
        .expect("checked on the request side");
    let looping = side.cel.iter().any(|(_, e)| e.loops());
    if side.cel.is_empty() || !shared.offload.wanted(body.len(), looping) {
        let mut tally = Tally::new(side);
        let decision = request::check(side, request, vars, jwt, body, &mut tally);
        return Ok((decision, tally));
    }
    let (vars, jwt) = (vars.cloned(), jwt.cloned());
    let (request, body) = (request.clone(), body.to_vec());
    let work = {
        let shared = shared.clone();
        move || {
            let side = shared
                .request
                .as_ref()
                .expect("checked on the request side");
            let mut tally = Tally::new(side);
            let decision = request::check(
                side,
                &request,
                vars.as_ref(),
                jwt.as_ref(),
                &body,
                &mut tally,
            );
            (decision, tally)
        }
    };
    shared
        .offload
        .run(work)
        .await
        .map_err(|e| ProcessorError::internal(format!("prompt guard: {e}")))
}

#[cfg(test)]
mod coverage_tests;
#[cfg(test)]
mod limit_tests;
#[cfg(test)]
mod stream_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod webhook_tests;
