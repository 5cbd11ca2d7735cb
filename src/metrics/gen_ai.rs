//! LLM metrics under the OpenTelemetry GenAI semantic-convention names (dots become
//! underscores in Prometheus text), with the conventions' histogram buckets, plus
//! tollgate's cost counter.
//!
//! The request's and the response's model are chosen by the client and the upstream:
//! both go through one [`BoundedLabel`] (`limits.labels`), made by [`GenAiMetrics::model`].

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::labels::{BoundedLabel, LabelBounds};

/// Labels shared by the GenAI metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GenAiLabels {
    pub gen_ai_operation_name: &'static str,
    pub gen_ai_provider_name: &'static str,
    pub gen_ai_request_model: String,
    pub gen_ai_response_model: String,
    pub route: String,
}

/// `gen_ai_client_token_usage` labels: the shared ones plus the token type.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    #[prometheus(flatten)]
    pub common: GenAiLabels,
    /// `input`, `output`, `cached_input`, `cache_creation_input` or `reasoning`.
    pub gen_ai_token_type: &'static str,
}

/// Duration labels: the shared ones plus `error_type` (empty on success).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DurationLabels {
    #[prometheus(flatten)]
    pub common: GenAiLabels,
    pub error_type: String,
}

pub struct GenAiMetrics {
    pub token_usage: Family<TokenLabels, Histogram>,
    pub request_duration: Family<DurationLabels, Histogram>,
    pub time_to_first_token: Family<GenAiLabels, Histogram>,
    pub time_per_output_token: Family<GenAiLabels, Histogram>,
    pub cost_usd: Family<GenAiLabels, Counter<f64, AtomicU64>>,
    models: BoundedLabel,
}

fn tokens() -> Histogram {
    Histogram::new(TOKEN_BUCKETS.iter().copied())
}
fn durations() -> Histogram {
    Histogram::new(DURATION_BUCKETS.iter().copied())
}
fn ttft() -> Histogram {
    Histogram::new(TTFT_BUCKETS.iter().copied())
}
fn tpot() -> Histogram {
    Histogram::new(TPOT_BUCKETS.iter().copied())
}

const TOKEN_BUCKETS: &[f64] = &[
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
    16777216.0, 67108864.0,
];
const DURATION_BUCKETS: &[f64] = &[
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];
const TTFT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
const TPOT_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
];

impl GenAiMetrics {
    /// A request or response model as a label value, bounded.
    pub fn model(&self, model: &str) -> String {
        self.models.value(model)
    }

    pub fn register(registry: &mut Registry, bounds: Arc<LabelBounds>) -> Self {
        let m = GenAiMetrics {
            token_usage: Family::new_with_constructor(tokens),
            request_duration: Family::new_with_constructor(durations),
            time_to_first_token: Family::new_with_constructor(ttft),
            time_per_output_token: Family::new_with_constructor(tpot),
            cost_usd: Family::default(),
            models: BoundedLabel::new(bounds),
        };
        registry.register(
            "gen_ai_client_token_usage",
            "Tokens used per request, by token type (gen_ai.client.token.usage)",
            m.token_usage.clone(),
        );
        registry.register(
            "gen_ai_server_request_duration",
            "Seconds from request to the end of the response (gen_ai.server.request.duration)",
            m.request_duration.clone(),
        );
        registry.register(
            "gen_ai_server_time_to_first_token",
            "Seconds from request to the first output token (gen_ai.server.time_to_first_token)",
            m.time_to_first_token.clone(),
        );
        registry.register(
            "gen_ai_server_time_per_output_token",
            "Seconds per output token after the first (gen_ai.server.time_per_output_token)",
            m.time_per_output_token.clone(),
        );
        registry.register(
            "tollgate_llm_cost_usd",
            "Money spent by LLM requests in US dollars, from the configured price table",
            m.cost_usd.clone(),
        );
        m
    }
}
