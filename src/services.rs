//! Long-lived shared state that outlives config snapshots: the metrics registry, and
//! the state policies must keep across reloads (limit counters, pooled clients). A
//! reload builds a new `Pipeline` over the same `Services`.

use std::sync::Arc;

use crate::metrics::Metrics;

/// Process-wide services handed to every pipeline build.
pub struct Services {
    pub metrics: Arc<Metrics>,
}

impl Services {
    pub fn new() -> Arc<Self> {
        Arc::new(Services {
            metrics: Arc::new(Metrics::new()),
        })
    }
}
