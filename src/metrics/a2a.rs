//! A2A metrics: JSON-RPC requests to agents behind `a2a` routes, by method (a fixed
//! set), and their latency.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of both A2A families.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct A2aLabels {
    pub route: String,
    /// `message/send`, `tasks/get`, … or `other`.
    pub method: &'static str,
}

#[derive(Clone)]
pub struct A2aMetrics {
    pub requests: Family<A2aLabels, Counter>,
    pub duration: Family<A2aLabels, Histogram>,
}

impl A2aMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let requests = Family::<A2aLabels, Counter>::default();
        registry.register(
            "tollgate_a2a_requests",
            "A2A JSON-RPC requests through a2a routes, by route and method",
            requests.clone(),
        );
        let duration = Family::<A2aLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
            ])
        });
        registry.register(
            "tollgate_a2a_request_duration_seconds",
            "Time A2A requests took to complete (streams: to their end), by route and method",
            duration.clone(),
        );
        A2aMetrics { requests, duration }
    }
}
