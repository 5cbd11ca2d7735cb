//! A route's own handles on the request metrics (`tollgate_requests`,
//! `tollgate_request_duration_seconds`). Finding a series in a label family hashes its
//! whole label set, route name included, on every exchange; a route keeps the handles it
//! has used instead, so counting an exchange is a short scan and an atomic add. The
//! handles share the family's series, so what they count is what `/metrics` shows.

use std::sync::RwLock;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;

use super::{Metrics, RequestLabels, RouteLabels};

/// Handles kept per route at most; further label sets go through the family each time.
const MAX_KEPT: usize = 32;

/// The request-metric handles one route has used.
#[derive(Default)]
pub struct RouteTallies {
    requests: RwLock<Vec<(RequestKey, Counter)>>,
    durations: RwLock<Vec<(&'static str, Histogram)>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct RequestKey {
    adapter: &'static str,
    status: u16,
    outcome: &'static str,
}

impl RouteTallies {
    /// Counts one exchange of `route` and observes its duration.
    pub fn record(
        &self,
        metrics: &Metrics,
        route: &str,
        adapter: &'static str,
        status: u16,
        outcome: &'static str,
        seconds: f64,
    ) {
        let key = RequestKey {
            adapter,
            status,
            outcome,
        };
        let counter = kept(&self.requests, &key, || {
            metrics
                .requests
                .get_or_create(&RequestLabels {
                    route: route.to_string(),
                    adapter,
                    status,
                    outcome,
                })
                .clone()
        });
        counter.inc();
        let histogram = kept(&self.durations, &adapter, || {
            metrics
                .request_duration
                .get_or_create(&RouteLabels {
                    route: route.to_string(),
                    adapter,
                })
                .clone()
        });
        histogram.observe(seconds);
    }
}

/// The handle kept under `key`, made by `make` (and kept, while there is room).
fn kept<K: PartialEq + Copy, M: Clone>(
    list: &RwLock<Vec<(K, M)>>,
    key: &K,
    make: impl FnOnce() -> M,
) -> M {
    let found = |l: &[(K, M)]| l.iter().find(|(k, _)| k == key).map(|(_, m)| m.clone());
    if let Some(m) = found(&list.read().unwrap_or_else(|e| e.into_inner())) {
        return m;
    }
    let metric = make();
    let mut l = list.write().unwrap_or_else(|e| e.into_inner());
    if found(&l).is_none() && l.len() < MAX_KEPT {
        l.push((*key, metric.clone()));
    }
    metric
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape(m: &Metrics) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &m.registry).unwrap();
        out
    }

    /// What a route counts through its handles is the family's series, and a label set
    /// beyond the kept ones is still counted.
    #[test]
    fn kept_handles_count_into_the_families() {
        let metrics = Metrics::new();
        let tallies = RouteTallies::default();
        for status in 0..(MAX_KEPT as u16 + 5) {
            tallies.record(&metrics, "r", "proxy", 200 + status, "completed", 0.001);
        }
        tallies.record(&metrics, "r", "proxy", 200, "completed", 0.001);
        let text = scrape(&metrics);
        assert!(text.contains(
            r#"tollgate_requests_total{route="r",adapter="proxy",status="200",outcome="completed"} 2"#
        ));
        let last = 200 + MAX_KEPT as u16 + 4;
        assert!(text.contains(&format!(
            r#"tollgate_requests_total{{route="r",adapter="proxy",status="{last}",outcome="completed"}} 1"#
        )));
        assert!(text
            .contains(r#"tollgate_request_duration_seconds_count{route="r",adapter="proxy"} 38"#));
        assert_eq!(tallies.requests.read().unwrap().len(), MAX_KEPT);
    }
}
