//! tollgate as Envoy's control plane: the resources generated from the config
//! (`generate`), per-node snapshots with content versions (`snapshot`), the SotW and
//! Delta protocol state machines (`sotw`, `delta`) driven per stream (`stream`), the
//! gRPC services (ADS and the per-type CDS/EDS/LDS/RDS, in `service`), and the table
//! of connected nodes that `/xds` prints (`status`).
//!
//! [`Xds`] lives for the process: every applied config is published to it, and every
//! open stream sees the new snapshot of its node at once.

mod delta;
pub mod generate;
mod service;
pub mod snapshot;
mod sotw;
pub mod status;
mod stream;

use std::sync::Arc;

use tokio::sync::watch;

pub use service::services;
pub use snapshot::{Fleet, Snapshot};

use crate::config::Config;
use crate::metrics::Metrics;

/// The control plane's state: the snapshots of the running config, and the open
/// streams.
pub struct Xds {
    fleet: watch::Sender<Arc<Fleet>>,
    pub streams: Arc<status::Streams>,
    metrics: Arc<Metrics>,
}

impl Xds {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Xds {
            fleet: watch::Sender::new(Arc::new(Fleet::default())),
            streams: Arc::default(),
            metrics,
        }
    }

    /// Generates the snapshots of `config` and hands them to every stream; returns
    /// whether anything any node sees changed. A config without `xds` publishes
    /// nothing.
    pub fn publish(&self, config: &Config) -> Result<bool, generate::GenerateError> {
        if config.xds.is_none() {
            return Ok(false);
        }
        let fleet = generate::fleet(config)?;
        Ok(self.fleet.send_if_modified(|current| {
            if **current == fleet {
                false
            } else {
                *current = Arc::new(fleet);
                true
            }
        }))
    }

    /// The snapshots now served.
    pub fn fleet(&self) -> Arc<Fleet> {
        self.fleet.borrow().clone()
    }

    fn subscribe(&self) -> watch::Receiver<Arc<Fleet>> {
        self.fleet.subscribe()
    }
}
