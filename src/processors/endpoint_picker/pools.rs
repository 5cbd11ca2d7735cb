//! One pool per route and picker config, shared through `Services`: a reload that leaves
//! a route's picker as it was keeps its pool — scraped metrics, prefix index, in-flight
//! load — and a route whose picker changed gets a new one. The pool's background work
//! starts when it is made inside the runtime (`tollgate validate` has none, so it starts
//! nothing): scraping its members, and for a file, DNS or Kubernetes source, the watch
//! that feeds membership changes in. Both stop when the last pipeline drops the pool.
//! The session bindings of the picker's session affinity live (and are kept) with it.

use std::sync::{Arc, Weak};

use crate::config::{ConfigError, EndpointPickerPolicy};
use crate::epp::discovery::{self, DiscoveredRoles, EndpointSource};
use crate::epp::flow::FlowController;
use crate::epp::Pool;
use crate::metrics::PoolStatsSource;
use crate::services::Services;

/// A pool, its flow control and the watch of its endpoint source.
pub struct PoolHandle {
    pub pool: Arc<Pool>,
    /// The queues in front of the pool, when `flowControl` is set.
    pub flow: Option<Arc<FlowController>>,
    /// The session affinity, when the profile has one.
    pub affinity: Option<super::session::Affinity>,
    /// Prefill/decode roles and the decider, when configured.
    pub disaggregation: Option<crate::epp::disagg::Disaggregation>,
    discovery: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for PoolHandle {
    fn drop(&mut self) {
        if let Some(task) = self.discovery.take() {
            task.abort();
        }
    }
}

/// The pool of `route`'s picker: the live one when the config is unchanged, else new.
pub fn pool_for(
    policy: &EndpointPickerPolicy,
    services: &Arc<Services>,
    route: &str,
    path: &str,
) -> Result<Arc<PoolHandle>, ConfigError> {
    let source = crate::epp::discovery::source(policy, path)?;
    let config = serde_json::to_string(policy).unwrap_or_default();
    let key = format!("endpoint_picker\n{route}\n{config}");
    services.shared(key, || {
        let pool = Pool::from_policy(policy, path)?;
        let disaggregation = crate::epp::disagg::Disaggregation::from_policy(policy);
        let roles = disaggregation
            .as_ref()
            .map_or_else(Default::default, |d| d.discovered());
        let discovery = start(&pool, source, roles);
        let stats: Arc<dyn PoolStatsSource> = pool.clone();
        services
            .metrics
            .inference
            .watch_pool(route, Arc::downgrade(&stats));
        let flow = policy.flow_control.as_ref().map(|settings| {
            FlowController::new(
                pool.clone(),
                settings.clone(),
                route,
                services.metrics.flow_control.clone(),
            )
        });
        Ok(Arc::new(PoolHandle {
            pool,
            flow,
            affinity: super::session::Affinity::from_policy(policy),
            disaggregation,
            discovery,
        }))
    })
}

/// Starts scraping, and the endpoint source's watch when it is not a fixed list (writing
/// the roles it reports in `roles`).
fn start(
    pool: &Arc<Pool>,
    source: EndpointSource,
    roles: Arc<DiscoveredRoles>,
) -> Option<tokio::task::JoinHandle<()>> {
    let runtime = tokio::runtime::Handle::try_current().ok()?;
    pool.start_scraper();
    if matches!(source, EndpointSource::Static(_)) {
        return None;
    }
    let weak: Weak<Pool> = Arc::downgrade(pool);
    Some(runtime.spawn(async move {
        let mut rx = discovery::watch(source, roles);
        loop {
            let list = rx.borrow_and_update().clone();
            let Some(pool) = weak.upgrade() else {
                return;
            };
            let change = pool.set_endpoints(list);
            if change.added + change.removed > 0 {
                tracing::info!(
                    added = change.added,
                    removed = change.removed,
                    kept = change.kept,
                    "endpoint picker: pool membership changed"
                );
            }
            drop(pool);
            if rx.changed().await.is_err() {
                return;
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    fn policy(yaml: &str) -> EndpointPickerPolicy {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[tokio::test]
    async fn a_watched_file_feeds_the_pool() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pool.txt");
        std::fs::write(&file, "127.0.0.1:9001\n").unwrap();
        let p = policy(&format!(
            "endpointsFile: {{path: {:?}, pollInterval: 20ms}}",
            file.display().to_string()
        ));
        let services = Services::new();
        let handle = pool_for(&p, &services, "r", "p").unwrap();
        assert_eq!(handle.pool.endpoints().len(), 1);
        std::fs::write(&file, "127.0.0.1:9001\n# another\n[::1]:9002\n").unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while handle.pool.endpoints().len() != 2 {
            assert!(
                Instant::now() < deadline,
                "the file change never reached the pool"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(handle
            .pool
            .position(&"[::1]:9002".parse().unwrap())
            .is_some());
    }

    #[tokio::test]
    async fn an_unchanged_picker_keeps_its_pool_and_a_changed_one_gets_a_new_one() {
        let services = Services::new();
        let a = policy("endpoints: ['127.0.0.1:9001']");
        let first = pool_for(&a, &services, "r", "p").unwrap();
        let again = pool_for(&a, &services, "r", "p").unwrap();
        assert!(
            Arc::ptr_eq(&first.pool, &again.pool),
            "same config, same pool"
        );
        let other_route = pool_for(&a, &services, "r2", "p").unwrap();
        assert!(!Arc::ptr_eq(&first.pool, &other_route.pool));
        let b = policy("endpoints: ['127.0.0.1:9002']");
        let changed = pool_for(&b, &services, "r", "p").unwrap();
        assert!(!Arc::ptr_eq(&first.pool, &changed.pool));
        let weak = Arc::downgrade(&first.pool);
        drop((first, again));
        assert!(weak.upgrade().is_none(), "no pipeline holds it: gone");
        let fresh = pool_for(&a, &services, "r", "p").unwrap();
        assert_eq!(fresh.pool.endpoints().len(), 1);
    }
}
