//! `tracing` (the config section): a span per exchange, exported over OTLP (`otlp`).
//!
//! - Request headers: the client's W3C `traceparent` (when valid) is the parent; the
//!   exchange gets its own span id, and the upstream gets `traceparent` naming it, so
//!   the provider's or model server's spans hang under tollgate's. Sampling: the
//!   client's flag when `clientSampling` and it sent one, else `randomSampling`.
//! - On completion (every path: answered, refused, failed, client gone): a `CLIENT`
//!   span named as OpenTelemetry's GenAI conventions say (`chat gpt-4o-mini`; `GET
//!   route` for other traffic), with `gen_ai.*` attributes (operation, provider,
//!   request and response model, max tokens, token usage, cached input) and HTTP ones
//!   (method, path without the query, status, server address), plus the route and
//!   request id. No header, body, prompt or completion is ever an attribute.

use std::sync::Arc;

use async_trait::async_trait;
use http::{HeaderName, HeaderValue};
use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
    TraceState, Tracer as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};

use crate::config::{ConfigError, FailureMode, TracingConfig};
use crate::otlp::Otlp;
use crate::pipeline::{Ctx, Flow, Headers, Outcome, Processor, ProcessorError, ProcessorFactory};
use crate::services::Services;

const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// Factory of the exchange spans of one config.
pub struct OtelTraceFactory {
    config: TracingConfig,
    otlp: Arc<Otlp>,
}

impl OtelTraceFactory {
    /// The exporter for `config` (shared with the previous config when it is the same).
    pub fn new(config: &TracingConfig, services: &Services) -> Result<Self, ConfigError> {
        let key = format!("otlp/{:?}/{}", config.otlp_protocol, config.otlp_endpoint);
        let otlp = services
            .shared(key, || Otlp::start(config).map(Arc::new))
            .map_err(|e| ConfigError::field("tracing.otlpEndpoint", e))?;
        Ok(OtelTraceFactory {
            config: config.clone(),
            otlp,
        })
    }
}

impl ProcessorFactory for OtelTraceFactory {
    fn name(&self) -> &'static str {
        "otel_trace"
    }

    fn failure_mode(&self) -> FailureMode {
        FailureMode::FailOpen
    }

    fn new_processor(&self, _cx: &Ctx) -> Option<Box<dyn Processor>> {
        Some(Box::new(Trace {
            config: self.config.clone(),
            otlp: self.otlp.clone(),
            span: None,
        }))
    }
}

struct Trace {
    config: TracingConfig,
    otlp: Arc<Otlp>,
    /// This exchange's span, started at its request headers when sampled.
    span: Option<opentelemetry_sdk::trace::Span>,
}

/// A valid W3C `traceparent` (version 00), as a remote span context.
pub fn parse_traceparent(value: &str) -> Option<SpanContext> {
    let mut parts = value.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version != "00"
        || parts.next().is_some()
        || trace.len() != 32
        || span.len() != 16
        || flags.len() != 2
    {
        return None;
    }
    let trace = TraceId::from_hex(trace)
        .ok()
        .filter(|t| *t != TraceId::INVALID)?;
    let span = SpanId::from_hex(span)
        .ok()
        .filter(|s| *s != SpanId::INVALID)?;
    let flags = TraceFlags::new(u8::from_str_radix(flags, 16).ok()?);
    Some(SpanContext::new(
        trace,
        span,
        flags,
        true,
        TraceState::default(),
    ))
}

impl Trace {
    /// Whether this exchange is traced: the client's flag, or the random draw.
    fn sampled(&self, parent: Option<&SpanContext>) -> bool {
        match parent {
            Some(p) if self.config.client_sampling => p.is_sampled(),
            _ => {
                let bits = RandomIdGenerator::default().new_span_id().to_bytes();
                (u64::from_be_bytes(bits) as f64 / u64::MAX as f64)
                    < self.config.random_sampling.ratio()
            }
        }
    }
}

#[async_trait]
impl Processor for Trace {
    async fn on_request_headers(
        &mut self,
        _cx: &mut Ctx,
        headers: &mut Headers,
    ) -> Result<Flow, ProcessorError> {
        let parent = headers.get_str("traceparent").and_then(parse_traceparent);
        let value = if self.sampled(parent.as_ref()) {
            let context =
                parent.map_or_else(Context::new, |p| Context::new().with_remote_span_context(p));
            let tracer = self.otlp.tracer();
            let span = tracer
                .span_builder("exchange")
                .with_kind(SpanKind::Client)
                .start_with_context(tracer, &context);
            let sc = span.span_context().clone();
            self.span = Some(span);
            format!("00-{}-{}-01", sc.trace_id(), sc.span_id())
        } else {
            // Not traced: the upstream still gets the trace, marked unsampled.
            let ids = RandomIdGenerator::default();
            let trace = parent.map_or_else(|| ids.new_trace_id(), |p| p.trace_id());
            format!("00-{trace}-{}-00", ids.new_span_id())
        };
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.set(TRACEPARENT, v);
        }
        Ok(Flow::Continue)
    }

    fn on_complete(&mut self, cx: &mut Ctx, outcome: &Outcome) {
        let Some(mut span) = self.span.take() else {
            return;
        };
        span.update_name(span_name(cx));
        span.set_attributes(attributes(cx, outcome));
        if !matches!(outcome, Outcome::Completed { .. }) || outcome.status() >= 500 {
            span.set_status(Status::error(outcome.label()));
        }
        span.end();
    }
}

/// `{operation} {model}` for an LLM call, else `{method} {route}`.
fn span_name(cx: &Ctx) -> String {
    match &cx.llm {
        Some(llm) => match llm.request.model.as_deref() {
            Some(model) => format!("{} {model}", llm.api.operation()),
            None => llm.api.operation().to_string(),
        },
        None => format!(
            "{} {}",
            cx.request.method,
            cx.route.as_deref().unwrap_or("unrouted")
        ),
    }
}

fn attributes(cx: &Ctx, outcome: &Outcome) -> Vec<KeyValue> {
    let mut a = vec![
        KeyValue::new("http.request.method", cx.request.method.clone()),
        KeyValue::new("url.path", cx.request.path_only().to_string()),
        KeyValue::new("server.address", cx.request.authority.clone()),
        KeyValue::new("http.response.status_code", i64::from(outcome.status())),
        KeyValue::new("tollgate.request_id", cx.request_id.clone()),
        KeyValue::new("tollgate.outcome", outcome.label()),
    ];
    if let Some(route) = &cx.route {
        a.push(KeyValue::new("tollgate.route", route.clone()));
    }
    let Some(llm) = &cx.llm else {
        return a;
    };
    a.push(KeyValue::new("gen_ai.operation.name", llm.api.operation()));
    a.push(KeyValue::new(
        "gen_ai.provider.name",
        cx.provider_of(llm.api).as_str(),
    ));
    if let Some(model) = &llm.request.model {
        a.push(KeyValue::new("gen_ai.request.model", model.clone()));
    }
    if let Some(model) = &llm.response_model {
        a.push(KeyValue::new("gen_ai.response.model", model.clone()));
    }
    if let Some(max) = llm.request.max_output_tokens {
        a.push(KeyValue::new("gen_ai.request.max_tokens", max as i64));
    }
    if let Some(u) = &llm.usage {
        a.push(KeyValue::new(
            "gen_ai.usage.input_tokens",
            u.input_tokens as i64,
        ));
        a.push(KeyValue::new(
            "gen_ai.usage.output_tokens",
            u.output_tokens as i64,
        ));
        if u.cached_input_tokens > 0 {
            a.push(KeyValue::new(
                "gen_ai.usage.cache_read.input_tokens",
                u.cached_input_tokens as i64,
            ));
        }
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_is_parsed_strictly() {
        let ok =
            parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(
            ok.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert!(ok.is_sampled() && ok.is_remote());
        let unsampled =
            parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
        assert!(!unsampled.is_sampled());
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-xyz92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad:?}");
        }
    }
}
