//! The record of a finished exchange: the request metrics and the access-log line.

use super::{Exchange, Outcome};
use crate::metrics::{RequestLabels, RouteLabels};

impl Exchange {
    /// Counts the exchange and writes its access-log line.
    pub(super) fn record(&self, outcome: &Outcome) {
        let route = self.cx.route.as_deref().unwrap_or("none");
        let adapter = self.cx.adapter.as_str();
        let elapsed = self.cx.started.elapsed();
        let metrics = &self.pipeline.metrics;
        // A client that left after the response began still saw its status.
        let status = match outcome.status() {
            0 => self.cx.response_status.unwrap_or(0),
            s => s,
        };
        let seconds = elapsed.as_secs_f64();
        match &self.route {
            Some(r) if r.name == route => {
                r.tallies
                    .record(metrics, route, adapter, status, outcome.label(), seconds)
            }
            _ => {
                let route = route.to_string();
                metrics
                    .requests
                    .get_or_create(&RequestLabels {
                        route: route.clone(),
                        adapter,
                        status,
                        outcome: outcome.label(),
                    })
                    .inc();
                metrics
                    .request_duration
                    .get_or_create(&RouteLabels { route, adapter })
                    .observe(seconds);
            }
        }
        let duration_ms = elapsed.as_secs_f64() * 1000.0;
        let (method, path) = (&self.cx.request.method, self.cx.request.path_only());
        let (outcome_label, request_id) = (outcome.label(), &self.cx.request_id);
        match self.cx.llm.as_ref() {
            None => tracing::info!(
                target: "tollgate::access",
                adapter, route = %route, method = %method, path = %path, status,
                outcome = outcome_label, duration_ms, request_id = %request_id,
                "exchange"
            ),
            Some(llm) => {
                let usage = llm.usage.unwrap_or_default();
                tracing::info!(
                    target: "tollgate::access",
                    adapter, route = %route, method = %method, path = %path, status,
                    outcome = outcome_label, duration_ms, request_id = %request_id,
                    llm.provider = self.cx.provider_of(llm.api).as_str(),
                    llm.request_model = metrics.labels.field(llm.request.model.as_deref().unwrap_or("")),
                    llm.response_model = metrics.labels.field(llm.response_model.as_deref().unwrap_or("")),
                    llm.stream = llm.request.stream,
                    llm.input_tokens = usage.input_tokens,
                    llm.output_tokens = usage.output_tokens,
                    llm.cached_input_tokens = usage.cached_input_tokens,
                    llm.reasoning_tokens = usage.reasoning_tokens,
                    llm.total_tokens = usage.total_tokens,
                    llm.usage_reported = llm.usage_reported,
                    llm.ttft_ms = llm.time_to_first_token.map_or(-1.0, |d| d.as_secs_f64() * 1000.0),
                    llm.cost_usd = llm.cost_usd.unwrap_or(0.0),
                    "exchange"
                )
            }
        }
    }
}
