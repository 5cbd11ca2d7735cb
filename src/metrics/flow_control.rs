//! Flow control's metrics under llm-d's names (`llm_d_epp_flow_control_*`), so
//! dashboards built for the reference router read them unchanged: queue wait by outcome,
//! queue length and bytes per band and fairness id, requests by outcome, and the pool's
//! saturation as the dispatcher last saw it.
//!
//! Fairness ids come from clients: the label keeps the first 1,000 distinct ids (the
//! reference's bound), each cut to 128 bytes, and counts every later one as `other`.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::labels::{BoundedLabel, LabelBounds};
use crate::config::LabelLimits;

/// Distinct fairness ids kept as label values.
pub const FAIRNESS_LABEL_VALUES: usize = 1000;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueDurationLabels {
    pub fairness_id: String,
    pub priority: String,
    pub outcome: &'static str,
    pub inference_pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    pub fairness_id: String,
    pub priority: String,
    pub inference_pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
    pub priority: String,
    pub inference_pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InferencePoolLabels {
    pub inference_pool: String,
}

/// The flow-control families (cheap to clone: each is a shared handle).
#[derive(Clone, Debug)]
pub struct FlowControlMetrics {
    pub queue_duration: Family<QueueDurationLabels, Histogram>,
    pub queue_size: Family<QueueLabels, Gauge>,
    pub queue_bytes: Family<QueueLabels, Gauge>,
    pub requests: Family<OutcomeLabels, Counter>,
    pub saturation: Family<InferencePoolLabels, Gauge<f64, AtomicU64>>,
    fairness: Arc<BoundedLabel>,
}

impl FlowControlMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let queue_duration = Family::<QueueDurationLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0, 60.0,
            ])
        });
        registry.register(
            "llm_d_epp_flow_control_request_queue_duration_seconds",
            "Time requests spent in flow control's queues, by fairness id, priority and outcome",
            queue_duration.clone(),
        );
        let queue_size = Family::<QueueLabels, Gauge>::default();
        registry.register(
            "llm_d_epp_flow_control_queue_size",
            "Requests waiting in flow control's queues",
            queue_size.clone(),
        );
        let queue_bytes = Family::<QueueLabels, Gauge>::default();
        registry.register(
            "llm_d_epp_flow_control_queue_bytes",
            "Request-body bytes waiting in flow control's queues",
            queue_bytes.clone(),
        );
        let requests = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "llm_d_epp_flow_control_requests",
            "Requests through flow control, by outcome (Dispatched, RejectedCapacity, \
             RejectedNoEndpoints, EvictedTTL, EvictedContextCancelled)",
            requests.clone(),
        );
        let saturation = Family::<InferencePoolLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "llm_d_epp_flow_control_pool_saturation",
            "The pool's saturation as flow control last measured it (1 = saturated)",
            saturation.clone(),
        );
        let bounds = Arc::new(LabelBounds::default());
        bounds.configure(&LabelLimits {
            max_values_per_label: FAIRNESS_LABEL_VALUES,
            max_value_bytes: 128,
        });
        FlowControlMetrics {
            queue_duration,
            queue_size,
            queue_bytes,
            requests,
            saturation,
            fairness: Arc::new(BoundedLabel::new(bounds)),
        }
    }

    /// `id` as a `fairness_id` label value (bounded: see the module doc).
    pub fn fairness_label(&self, id: &str) -> String {
        self.fairness.value(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fairness_ids_past_the_bound_are_other() {
        let m = FlowControlMetrics::register(&mut Registry::default());
        for i in 0..FAIRNESS_LABEL_VALUES {
            assert_eq!(m.fairness_label(&format!("t{i}")), format!("t{i}"));
        }
        assert_eq!(m.fairness_label("t-new"), super::super::OTHER);
        assert_eq!(m.fairness_label("t7"), "t7");
        assert_eq!(m.fairness_label(&"x".repeat(4096)), super::super::OTHER);
    }
}
