//! The endpoint picker's metrics under the Gateway API Inference Extension's names
//! (`inference_objective_*`, `inference_pool_*`, `inference_extension_*`: dashboards
//! built for the reference picker read them unchanged), plus tollgate's own
//! `tollgate_epp_*` (picks per endpoint, shed and rejected requests).
//!
//! Pool gauges are computed when `/metrics` is read, from the live pools registered
//! with [`InferenceMetrics::watch_pool`], so they are never stale between requests.
//!
//! Model names come from clients; a label set may not grow without bound, so they go
//! through a [`BoundedLabel`] (`limits.labels`: first N distinct names, then `other`,
//! each cut to a byte bound).

use std::fmt;
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex, Weak};

use super::labels::{BoundedLabel, LabelBounds};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ObjectiveLabels {
    pub model_name: String,
    pub target_model_name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ObjectiveErrorLabels {
    pub model_name: String,
    pub target_model_name: String,
    pub error_code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    pub model_name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    pub name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PickLabels {
    pub pool: String,
    pub endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServedLabels {
    pub pool: String,
    pub endpoint: String,
    /// `true` when the gateway served the request where the picker sent it, `false`
    /// when it used a fallback or another endpoint.
    pub as_picked: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabels {
    pub pool: String,
    pub reason: &'static str,
}

/// What a pool reports for the `inference_pool_*` gauges.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PoolStats {
    /// The precise prefix cache's figures, for a pool in `kvEvents` mode.
    pub kv_events: Option<crate::epp::kv_events::KvEventsStats>,
    /// Endpoints with fresh metrics.
    pub ready: usize,
    /// Mean KV-cache utilisation over the ready endpoints, 0..=1.
    pub average_kv_cache: f64,
    /// Mean queue length over the ready endpoints.
    pub average_queue: f64,
    /// Block hashes held by every endpoint's prefix index together.
    pub prefix_index_size: usize,
}

/// A pool whose gauges `/metrics` shows.
pub trait PoolStatsSource: Send + Sync {
    fn pool_stats(&self) -> PoolStats;
}

type WatchedPools = Arc<Mutex<Vec<(String, Weak<dyn PoolStatsSource>)>>>;

/// The endpoint picker's metrics.
pub struct InferenceMetrics {
    pub request_total: Family<ObjectiveLabels, Counter>,
    pub request_error_total: Family<ObjectiveErrorLabels, Counter>,
    pub request_duration: Family<ObjectiveLabels, Histogram>,
    pub input_tokens: Family<ObjectiveLabels, Histogram>,
    pub output_tokens: Family<ObjectiveLabels, Histogram>,
    pub running_requests: Family<ModelLabels, Gauge<i64, AtomicI64>>,
    pub scheduler_duration: Histogram,
    pub scheduler_attempts: Family<StatusLabels, Counter>,
    pub prefix_hit_ratio: Histogram,
    /// Request body bytes read when the pick was made (a long prompt is picked on its
    /// start).
    pub body_read_at_pick: Histogram,
    pub picks: Family<PickLabels, Counter>,
    pub served: Family<ServedLabels, Counter>,
    pub dropped: Family<DropLabels, Counter>,
    pools: WatchedPools,
    models: BoundedLabel,
}

impl InferenceMetrics {
    pub fn register(registry: &mut Registry, bounds: Arc<LabelBounds>) -> Self {
        let latency = || {
            Histogram::new([
                0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0,
                6.0, 8.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 120.0, 180.0, 240.0, 300.0, 360.0,
                480.0, 600.0, 900.0, 1200.0, 1800.0, 2700.0, 3600.0,
            ])
        };
        let tokens = || {
            Histogram::new([
                1.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0,
                16384.0, 32768.0, 65536.0, 131072.0, 262144.0, 524288.0, 1048576.0,
            ])
        };
        let request_total = Family::<ObjectiveLabels, Counter>::default();
        registry.register(
            "inference_objective_request",
            "Inference requests, by model and target model",
            request_total.clone(),
        );
        let request_error_total = Family::<ObjectiveErrorLabels, Counter>::default();
        registry.register(
            "inference_objective_request_error",
            "Inference requests that failed, by model, target model and error code",
            request_error_total.clone(),
        );
        let request_duration = Family::<ObjectiveLabels, Histogram>::new_with_constructor(latency);
        registry.register(
            "inference_objective_request_duration_seconds",
            "Inference request latency, from the request to the end of the response",
            request_duration.clone(),
        );
        let input_tokens = Family::<ObjectiveLabels, Histogram>::new_with_constructor(tokens);
        registry.register(
            "inference_objective_input_tokens",
            "Prompt tokens per inference request",
            input_tokens.clone(),
        );
        let output_tokens = Family::<ObjectiveLabels, Histogram>::new_with_constructor(tokens);
        registry.register(
            "inference_objective_output_tokens",
            "Output tokens per inference request",
            output_tokens.clone(),
        );
        let running_requests = Family::<ModelLabels, Gauge<i64, AtomicI64>>::default();
        registry.register(
            "inference_objective_running_requests",
            "Inference requests in flight, by model",
            running_requests.clone(),
        );
        let scheduler_duration = Histogram::new([
            0.000_001, 0.000_002, 0.000_005, 0.000_01, 0.000_02, 0.000_05, 0.000_1, 0.000_2,
            0.000_5, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1,
        ]);
        registry.register(
            "inference_extension_scheduler_e2e_duration_seconds",
            "Time one scheduling decision took",
            scheduler_duration.clone(),
        );
        let scheduler_attempts = Family::<StatusLabels, Counter>::default();
        registry.register(
            "inference_extension_scheduler_attempts",
            "Scheduling attempts, by status (success or failure)",
            scheduler_attempts.clone(),
        );
        let prefix_hit_ratio =
            Histogram::new([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]);
        registry.register(
            "inference_extension_prefix_indexer_hit_ratio",
            "Share of a prompt's blocks the picked endpoint already held",
            prefix_hit_ratio.clone(),
        );
        let body_read_at_pick = Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(1024.0, 4.0, 10),
        );
        registry.register(
            "tollgate_epp_body_read_at_pick_bytes",
            "Request body bytes read when the endpoint was picked (the rest streams on)",
            body_read_at_pick.clone(),
        );
        let picks = Family::<PickLabels, Counter>::default();
        registry.register(
            "tollgate_epp_picks",
            "Requests sent to each endpoint, by pool (route) and endpoint",
            picks.clone(),
        );
        let served = Family::<ServedLabels, Counter>::default();
        registry.register(
            "tollgate_epp_served",
            "Responses by the endpoint the gateway reported as served \
             (x-gateway-destination-endpoint-served), and whether it was the pick",
            served.clone(),
        );
        let dropped = Family::<DropLabels, Counter>::default();
        registry.register(
            "tollgate_epp_dropped",
            "Requests the picker answered itself, by pool and the \
             x-llm-d-request-dropped-reason it gave",
            dropped.clone(),
        );
        let pools: WatchedPools = Arc::default();
        registry.register_collector(Box::new(PoolCollector {
            pools: pools.clone(),
        }));
        InferenceMetrics {
            request_total,
            request_error_total,
            request_duration,
            input_tokens,
            output_tokens,
            running_requests,
            scheduler_duration,
            scheduler_attempts,
            prefix_hit_ratio,
            body_read_at_pick,
            picks,
            served,
            dropped,
            pools,
            models: BoundedLabel::new(bounds),
        }
    }

    /// Shows the gauges of `pool` under `name` for as long as the pool lives (a pool
    /// registered again under the same name replaces the older one).
    pub fn watch_pool(&self, name: &str, pool: Weak<dyn PoolStatsSource>) {
        let mut pools = self.pools.lock().expect("pool list lock");
        pools.retain(|(n, p)| n != name && p.strong_count() > 0);
        pools.push((name.to_string(), pool));
    }

    /// `model` as a label value, bounded (see [`BoundedLabel`]).
    pub fn model_label(&self, model: &str) -> String {
        self.models.value(model)
    }
}

/// Encodes the `inference_pool_*` gauges of the live pools when `/metrics` is read.
#[derive(Debug)]
struct PoolCollector {
    pools: WatchedPools,
}

impl fmt::Debug for dyn PoolStatsSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PoolStatsSource")
    }
}

impl Collector for PoolCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let live: Vec<(String, PoolStats)> = {
            let pools = self.pools.lock().expect("pool list lock");
            pools
                .iter()
                .filter_map(|(name, p)| Some((name.clone(), p.upgrade()?.pool_stats())))
                .collect()
        };
        type Pick = fn(&PoolStats) -> f64;
        let gauges: [(&str, &str, Pick); 4] = [
            (
                "inference_pool_average_kv_cache_utilization",
                "Mean KV-cache utilisation of the pool's ready endpoints",
                |s| s.average_kv_cache,
            ),
            (
                "inference_pool_average_queue_size",
                "Mean queue length of the pool's ready endpoints",
                |s| s.average_queue,
            ),
            (
                "inference_pool_ready_pods",
                "Endpoints of the pool with fresh metrics",
                |s| s.ready as f64,
            ),
            (
                "inference_extension_prefix_indexer_size",
                "Block hashes held by the pool's prefix-cache index",
                |s| s.prefix_index_size as f64,
            ),
        ];
        for (name, help, value) in gauges {
            let mut family = encoder.encode_descriptor(
                name,
                help,
                None,
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            for (pool, stats) in &live {
                let labels = PoolLabels { name: pool.clone() };
                let metric_encoder = family.encode_family(&labels)?;
                ConstGauge::new(value(stats)).encode(metric_encoder)?;
            }
        }
        super::kv_events::encode(&mut encoder, &live)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(PoolStats);

    impl PoolStatsSource for Fixed {
        fn pool_stats(&self) -> PoolStats {
            self.0
        }
    }

    #[test]
    fn pool_gauges_follow_live_pools() {
        let mut registry = Registry::default();
        let m = InferenceMetrics::register(&mut registry, Arc::default());
        let pool: Arc<dyn PoolStatsSource> = Arc::new(Fixed(PoolStats {
            ready: 3,
            average_kv_cache: 0.25,
            average_queue: 1.5,
            prefix_index_size: 42,
            kv_events: Some(crate::epp::kv_events::KvEventsStats {
                fresh: 1,
                malformed: 2,
                ..Default::default()
            }),
        }));
        m.watch_pool("chat", Arc::downgrade(&pool));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("inference_pool_ready_pods{name=\"chat\"} 3"),
            "{text}"
        );
        assert!(text.contains("inference_pool_average_kv_cache_utilization{name=\"chat\"} 0.25"));
        assert!(text.contains("inference_pool_average_queue_size{name=\"chat\"} 1.5"));
        assert!(text.contains("inference_extension_prefix_indexer_size{name=\"chat\"} 42"));
        assert!(text.contains("tollgate_epp_kv_events_fresh_endpoints{name=\"chat\"} 1"));
        assert!(text.contains("tollgate_epp_kv_events_malformed_total{name=\"chat\"} 2"));
        drop(pool);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            !text.contains("name=\"chat\""),
            "a dropped pool is gone: {text}"
        );
    }

    #[test]
    fn model_labels_are_bounded() {
        let mut registry = Registry::default();
        let m = InferenceMetrics::register(&mut registry, Arc::default());
        for i in 0..crate::config::LabelLimits::default().max_values_per_label {
            assert_eq!(m.model_label(&format!("m{i}")), format!("m{i}"));
        }
        assert_eq!(m.model_label("one-too-many"), "other");
        assert_eq!(m.model_label("m0"), "m0");
        assert_eq!(m.model_label(&"x".repeat(1 << 20)), "other");
    }
}
