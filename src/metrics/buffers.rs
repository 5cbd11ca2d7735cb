//! Metrics of the bounds on buffered client and upstream data (`limits.buffers`), and
//! of upstream usage objects that were not believed. Every label value comes from a
//! fixed set, except `route`, which the config names.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// `tollgate_buffer_limit_exceeded_total` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BufferLimitLabels {
    pub route: String,
    /// `token_accounting` or `prompt_guard`.
    pub processor: &'static str,
    /// `sse_line`, `sse_event`, `json_body`, `decompressed_bytes` or
    /// `decompression_ratio`.
    pub limit: &'static str,
}

/// `tollgate_usage_invalid_total` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UsageInvalidLabels {
    pub route: String,
    /// `not_an_object`, `not_a_count`, `out_of_range` or `inconsistent`.
    pub reason: &'static str,
}

/// The counters.
pub struct BufferMetrics {
    pub limit_exceeded: Family<BufferLimitLabels, Counter>,
    pub usage_invalid: Family<UsageInvalidLabels, Counter>,
}

impl BufferMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let limit_exceeded = Family::<BufferLimitLabels, Counter>::default();
        registry.register(
            "tollgate_buffer_limit_exceeded",
            "Response bodies whose inspection stopped at a buffer limit, by route, \
             processor and limit",
            limit_exceeded.clone(),
        );
        let usage_invalid = Family::<UsageInvalidLabels, Counter>::default();
        registry.register(
            "tollgate_usage_invalid",
            "Responses whose usage object failed validation (counted as without usage), \
             by route and reason",
            usage_invalid.clone(),
        );
        BufferMetrics {
            limit_exceeded,
            usage_invalid,
        }
    }

    /// Counts one body that hit `limit`.
    pub fn exceeded(&self, route: Option<&str>, processor: &'static str, limit: &'static str) {
        self.limit_exceeded
            .get_or_create(&BufferLimitLabels {
                route: route.unwrap_or_default().to_owned(),
                processor,
                limit,
            })
            .inc();
    }
}
