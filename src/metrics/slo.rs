//! The latency model's predictions and the latency objectives: the predicted time to
//! first token of each pick (llm-d's `llm_d_epp_request_predicted_ttft_seconds`), how far
//! off it was once the first token came (`tollgate_epp_ttft_prediction_error_ratio`,
//! |observed − predicted| / observed, streamed responses only), and requests that
//! missed an objective they carried (`llm_d_epp_request_slo_violation_total{type}`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
/// The objective missed: `ttft` or `tpot`.
pub struct SloType {
    pub r#type: &'static str,
}

/// The families (cheap to clone).
#[derive(Clone, Debug)]
pub struct SloMetrics {
    pub predicted_ttft: Histogram,
    pub ttft_prediction_error: Histogram,
    pub violations: Family<SloType, Counter>,
}

impl SloMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let predicted_ttft = Histogram::new([
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        ]);
        registry.register(
            "llm_d_epp_request_predicted_ttft_seconds",
            "Time to first token the latency model predicted for each pick",
            predicted_ttft.clone(),
        );
        let ttft_prediction_error =
            Histogram::new([0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0]);
        registry.register(
            "tollgate_epp_ttft_prediction_error_ratio",
            "How far the predicted time to first token was off: |observed - predicted| / observed",
            ttft_prediction_error.clone(),
        );
        let violations = Family::<SloType, Counter>::default();
        registry.register(
            "llm_d_epp_request_slo_violation",
            "Requests that missed a latency objective they carried, by type (ttft, tpot)",
            violations.clone(),
        );
        SloMetrics {
            predicted_ttft,
            ttft_prediction_error,
            violations,
        }
    }

    /// A first token came `observed` seconds after a pick that predicted `predicted`.
    pub fn observe_ttft(&self, predicted: f64, observed: f64) {
        if observed > 0.0 && predicted.is_finite() {
            self.ttft_prediction_error
                .observe((observed - predicted).abs() / observed);
        }
    }

    pub fn violated(&self, kind: &'static str) {
        self.violations
            .get_or_create(&SloType { r#type: kind })
            .inc();
    }
}
