//! Long-lived shared state that outlives config snapshots: the metrics registry, and
//! the state policies must keep across reloads (limit counters). A reload builds a new
//! `Pipeline` over the same `Services`, so a config change never resets anyone's limit.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use crate::config::FailureMode;
use crate::limits::{
    LimitError, Limiter, LocalStore, RedisFailureMode, RedisStore, RedisStoreConfig,
};
use crate::metrics::Metrics;

/// Where a limiter keeps its counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub enum LimiterSpec {
    /// This process.
    Local,
    /// A Redis shared by every replica.
    Redis { url: String, fail_open: bool },
}

/// Process-wide services handed to every pipeline build.
pub struct Services {
    pub metrics: Arc<Metrics>,
    /// What tollgate serves Envoy over xDS (empty without an `xds` section).
    pub xds: Arc<crate::xds::Xds>,
    limiters: Mutex<HashMap<LimiterSpec, Limiter>>,
    /// State shared by the pipelines that use it (endpoint-picker pools), by key; held
    /// weakly, so it lives as long as some pipeline does.
    shared: Mutex<HashMap<String, Weak<dyn Any + Send + Sync>>>,
}

impl Services {
    pub fn new() -> Arc<Self> {
        let metrics = Arc::new(Metrics::new());
        Arc::new(Services {
            xds: Arc::new(crate::xds::Xds::new(metrics.clone())),
            metrics,
            limiters: Mutex::new(HashMap::new()),
            shared: Mutex::new(HashMap::new()),
        })
    }

    /// The live value under `key`, or a new one from `make`: a reload that builds the
    /// same thing again gets the same value (its state survives), and a value no
    /// pipeline holds any more is made anew.
    pub fn shared<T, E>(
        &self,
        key: String,
        make: impl FnOnce() -> Result<Arc<T>, E>,
    ) -> Result<Arc<T>, E>
    where
        T: Send + Sync + 'static,
    {
        let mut shared = self.shared.lock().expect("shared state lock");
        if let Some(found) = shared
            .get(&key)
            .and_then(Weak::upgrade)
            .and_then(|v| v.downcast::<T>().ok())
        {
            return Ok(found);
        }
        shared.retain(|_, v| v.strong_count() > 0);
        let value = make()?;
        let erased: Arc<dyn Any + Send + Sync> = value.clone();
        shared.insert(key, Arc::downgrade(&erased));
        Ok(value)
    }

    /// The limiter for `spec`, made on first use (it needs the Tokio runtime, which
    /// `tollgate validate` does not start) and kept for the life of the process.
    pub fn limiter(&self, spec: &LimiterSpec) -> Result<Limiter, LimitError> {
        let mut limiters = self.limiters.lock().expect("limiter map lock");
        if let Some(l) = limiters.get(spec) {
            return Ok(l.clone());
        }
        let limiter = match spec {
            LimiterSpec::Local => Limiter::new(Arc::new(LocalStore::new()))?,
            LimiterSpec::Redis { url, fail_open } => {
                let mut config = RedisStoreConfig::new(url.clone());
                config.failure_mode = if *fail_open {
                    RedisFailureMode::FailOpen
                } else {
                    RedisFailureMode::FailClosed
                };
                Limiter::new(Arc::new(RedisStore::new(config)?))?
            }
        };
        limiters.insert(spec.clone(), limiter.clone());
        Ok(limiter)
    }
}

impl Services {
    /// Waits for limit settlements still in flight (called on shutdown, after the
    /// servers drained, so no true-up is lost).
    pub async fn drain(&self) {
        let limiters: Vec<Limiter> = self
            .limiters
            .lock()
            .expect("limiter map lock")
            .values()
            .cloned()
            .collect();
        for l in limiters {
            l.drain().await;
        }
    }
}

impl LimiterSpec {
    pub fn redis(url: &str, failure_mode: FailureMode) -> Self {
        LimiterSpec::Redis {
            url: url.to_string(),
            fail_open: failure_mode == FailureMode::FailOpen,
        }
    }
}
