//! The record of a finished exchange: the request metrics and the access-log line.

use super::{Exchange, Outcome};
use crate::access_log::Input;
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
        self.log_access(outcome, status, elapsed);
    }

    /// Writes the access line: the built-in fields `logging.fields.remove` keeps, and
    /// the CEL fields of `logging.fields.add` as one JSON object (`ACCESS_FIELDS`), which
    /// the log formatter spreads into the line (`crate::telemetry`).
    fn log_access(&self, outcome: &Outcome, status: u16, elapsed: std::time::Duration) {
        let access = &self.pipeline.access_log;
        let added = access.evaluate(&Input {
            cx: &self.cx,
            capture: self.capture.as_deref(),
            status,
        });
        let on = |name: &str| access.keeps(name);
        let cx = &self.cx;
        let (route, labels) = (
            cx.route.as_deref().unwrap_or("none"),
            &self.pipeline.metrics.labels,
        );
        let llm = cx.llm.as_deref();
        let usage = llm.map(|l| l.usage.unwrap_or_default());
        let llm_on = |name: &str| llm.filter(|_| on(name));
        let usage_on = |name: &str| usage.filter(|_| on(name));
        tracing::info!(
            target: "tollgate::access",
            adapter = on("adapter").then_some(cx.adapter.as_str()),
            route = on("route").then_some(display(route)),
            method = on("method").then_some(display(&cx.request.method)),
            path = on("path").then_some(display(cx.request.path_only())),
            status = on("status").then_some(status),
            outcome = on("outcome").then_some(outcome.label()),
            duration_ms = on("duration_ms").then_some(elapsed.as_secs_f64() * 1000.0),
            request_id = on("request_id").then_some(display(&cx.request_id)),
            llm.provider = llm_on("llm.provider").map(|l| cx.provider_of(l.api).as_str()),
            llm.request_model = llm_on("llm.request_model").map(|l| labels.field(l.request.model.as_deref().unwrap_or(""))),
            llm.response_model = llm_on("llm.response_model").map(|l| labels.field(l.response_model.as_deref().unwrap_or(""))),
            llm.stream = llm_on("llm.stream").map(|l| l.request.stream),
            llm.input_tokens = usage_on("llm.input_tokens").map(|u| u.input_tokens),
            llm.output_tokens = usage_on("llm.output_tokens").map(|u| u.output_tokens),
            llm.cached_input_tokens = usage_on("llm.cached_input_tokens").map(|u| u.cached_input_tokens),
            llm.reasoning_tokens = usage_on("llm.reasoning_tokens").map(|u| u.reasoning_tokens),
            llm.total_tokens = usage_on("llm.total_tokens").map(|u| u.total_tokens),
            llm.usage_reported = llm_on("llm.usage_reported").map(|l| l.usage_reported),
            llm.ttft_ms = llm_on("llm.ttft_ms").map(|l| l.time_to_first_token.map_or(-1.0, |d| d.as_secs_f64() * 1000.0)),
            llm.cost_usd = llm_on("llm.cost_usd").map(|l| l.cost_usd.unwrap_or(0.0)),
            access_fields = added.as_deref().map(display),
            "exchange"
        );
    }
}
