//! `tokenAccounting`: counts the tokens of OpenAI- and Anthropic-style exchanges and
//! exports them.
//!
//! When it runs:
//! - request body (buffered): parse the request once (`llm::LlmRequest`; the prompt-token
//!   estimate is made later, only if something needs it), and for a streamed chat / completions request that did not ask for
//!   usage, ask the upstream for it (`stream_options.include_usage: true`). The facts go
//!   to `cx.llm` for the processors after it (`tokenLimit`).
//! - response body (streamed, so SSE keeps its timing): follow the stream (decoding
//!   gzip / brotli incrementally), note the first content token, and drop the usage-only
//!   chunk the client did not ask for.
//! - response body, bounded: past a `limits.buffers` bound (a decompression bomb, a
//!   huge SSE line or event, a JSON body too large to collect) accounting stops
//!   following the response and passes the rest on untouched — it never blocks a
//!   response — counted in `tollgate_buffer_limit_exceeded_total`; the exchange is then
//!   exported with estimated usage.
//! - end of the response: export usage — GenAI metrics, Envoy dynamic metadata
//!   (`io.envoy.ai_gateway`), the access log — and again from `on_complete` for an
//!   exchange that ended early, with what was delivered.
//! - for the access line, only when a `logging.fields` expression reads them: the
//!   request's parameters and the completion's text (`capture`).

mod capture;
mod export;
mod response;

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use http::StatusCode;

use crate::config::{BufferLimits, ConfigError, FailureMode, TokenAccountingPolicy};
use crate::llm::{set_include_usage, Api, LlmRequest};
use crate::pipeline::{
    Body, BodyMode, Ctx, Flow, Headers, LlmFacts, LocalReply, Outcome, Processor, ProcessorError,
    ProcessorFactory,
};

use export::Exporter;
use response::ResponseState;

/// Factory of the `tokenAccounting` policy of one route.
pub struct TokenAccountingFactory {
    policy: TokenAccountingPolicy,
    exporter: Arc<Exporter>,
    limits: Arc<BufferLimits>,
    keep: capture::Keep,
}

impl TokenAccountingFactory {
    pub fn new(
        policy: &TokenAccountingPolicy,
        bcx: &crate::processors::BuildCx<'_>,
        path: &str,
    ) -> Result<Self, ConfigError> {
        Ok(TokenAccountingFactory {
            policy: policy.clone(),
            exporter: Arc::new(Exporter::new(
                policy,
                bcx.services,
                bcx.prices,
                &bcx.config.limits.cel,
                path,
            )?),
            limits: Arc::new(bcx.config.limits.buffers.clone()),
            keep: capture::Keep {
                params: bcx.access_log.wants().params,
                completion: bcx.access_log.wants().completion,
            },
        })
    }
}

impl ProcessorFactory for TokenAccountingFactory {
    fn name(&self) -> &'static str {
        "token_accounting"
    }

    /// A body over `maxRequestBytes` is refused (413) rather than passed uncounted,
    /// which would also let it past token limits.
    fn failure_mode(&self) -> FailureMode {
        FailureMode::FailClosed
    }

    fn new_processor(&self, cx: &Ctx) -> Option<Box<dyn Processor>> {
        let api = Api::from_path(cx.request.path_only())?;
        Some(Box::new(TokenAccounting {
            policy: self.policy.clone(),
            exporter: self.exporter.clone(),
            limits: self.limits.clone(),
            keep: self.keep,
            api,
            started: Instant::now(),
            response: None,
            strip_usage_chunk: false,
            exported: false,
        }))
    }
}

struct TokenAccounting {
    policy: TokenAccountingPolicy,
    exporter: Arc<Exporter>,
    limits: Arc<BufferLimits>,
    keep: capture::Keep,
    api: Api,
    started: Instant,
    response: Option<ResponseState>,
    /// The client did not ask for usage, but tollgate did.
    strip_usage_chunk: bool,
    exported: bool,
}

impl TokenAccounting {
    fn bad_request(&self, status: StatusCode, kind: &str, message: &str) -> Flow {
        let mut reply = LocalReply::error(status, kind, message);
        reply.body = self.api.error_body(status.as_u16(), kind, message).into();
        Flow::Respond(reply)
    }

    fn export(&mut self, cx: &mut Ctx, complete: bool) {
        if self.exported {
            return;
        }
        self.exported = true;
        let state = self.response.take();
        self.exporter
            .export(cx, self.api, self.started, state.as_ref(), complete);
        if self.policy.response_headers {
            export::usage_headers(cx);
        }
    }
}

#[async_trait]
impl Processor for TokenAccounting {
    fn request_body_mode(&self) -> BodyMode {
        BodyMode::Buffer {
            limit: self.policy.max_request_bytes,
        }
    }

    async fn on_request_body(
        &mut self,
        cx: &mut Ctx,
        body: &mut Body,
    ) -> Result<Flow, ProcessorError> {
        if body.is_truncated() {
            return Ok(self.bad_request(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request_too_large",
                "the request body is larger than the gateway buffers",
            ));
        }
        let request = match LlmRequest::parse(self.api, body.data()) {
            Ok(r) => r,
            Err(e) => {
                return Ok(self.bad_request(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    &e.to_string(),
                ))
            }
        };
        let params = self
            .keep
            .params
            .then(|| capture::params(body.data(), &request))
            .flatten();
        let wants_usage_injection = self.policy.include_usage
            && request.stream
            && matches!(self.api, Api::ChatCompletions | Api::Completions)
            && request.include_usage != Some(true);
        if wants_usage_injection {
            match set_include_usage(body.data()) {
                Ok(rewritten) => {
                    body.replace(rewritten.into());
                    self.strip_usage_chunk = true;
                }
                Err(e) => tracing::warn!(error = %e, "could not ask the upstream for usage"),
            }
        }
        let mut facts = LlmFacts::new(self.api, Arc::new(request));
        facts.params = params;
        cx.llm = Some(Box::new(facts));
        Ok(Flow::Continue)
    }

    async fn on_response_headers(
        &mut self,
        cx: &mut Ctx,
        headers: &mut Headers,
    ) -> Result<Flow, ProcessorError> {
        let mut state =
            ResponseState::new(self.api, headers, self.strip_usage_chunk, &self.limits, cx);
        state.completion = self.keep.completion.then(capture::Completion::default);
        self.response = Some(state);
        Ok(Flow::Continue)
    }

    fn response_body_mode(&self) -> BodyMode {
        let streamed = self.response.as_ref().is_none_or(|r| r.is_event_stream());
        if self.policy.response_headers && !streamed {
            // Usage headers must follow the body: hold the (JSON) body back.
            BodyMode::Buffer {
                limit: self.limits.json_body_bytes,
            }
        } else {
            BodyMode::Stream
        }
    }

    async fn on_response_body(
        &mut self,
        cx: &mut Ctx,
        body: &mut Body,
    ) -> Result<Flow, ProcessorError> {
        let stopped = self
            .response
            .as_mut()
            .and_then(|state| state.push(body, cx));
        if let Some(response::Stopped(limit)) = stopped {
            self.exporter.metrics().buffers.exceeded(
                cx.route.as_deref(),
                "token_accounting",
                limit,
            );
        }
        // Export at the stream's last event, not only at the body's end: a client (the
        // openai SDK does) may close as soon as it reads `[DONE]`, and Envoy then resets
        // the exchange before the body's end reaches tollgate — the metadata would be lost.
        let done = self.response.as_ref().is_some_and(|r| r.tracker.is_done());
        if body.end_of_stream() || done {
            self.export(cx, true);
        }
        Ok(Flow::Continue)
    }

    fn on_complete(&mut self, cx: &mut Ctx, outcome: &Outcome) {
        // Answered locally before any response (a limit, a guard, an unreachable
        // upstream): nothing reached the model, so nothing is counted or charged.
        if matches!(outcome, Outcome::LocalReply { .. }) && self.response.is_none() {
            self.exported = true;
            return;
        }
        // An exchange that ended early (client gone, upstream broke) is exported with
        // what was delivered, so `tokenLimit` can charge it.
        let complete = matches!(outcome, Outcome::Completed { .. });
        self.export(cx, complete);
    }
}

#[cfg(test)]
mod tests;
