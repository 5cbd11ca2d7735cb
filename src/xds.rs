//! tollgate as Envoy's control plane: the resources generated from the config
//! (`generate`), per-node snapshots with content versions (`snapshot`), the SotW and
//! Delta protocol state machines (`sotw`, `delta`) driven per stream (`stream`), what
//! each node has accepted so nothing goes out before what it needs (`warm`), the gRPC
//! services (ADS and the per-type CDS/EDS/LDS/RDS, in `service`), the table of
//! connected nodes that `/xds` prints (`status`), `tollgate xds dump` (`dump`), and
//! tollgate's own resource type with the client a sidecar follows a control plane
//! with (`resource`, `client`).
//!
//! [`Xds`] lives for the process: every applied config is published to it, and every
//! open stream sees the new snapshot of its node at once.

pub mod client;
mod delta;
pub mod dump;
pub mod generate;
pub mod resource;
mod service;
pub mod snapshot;
mod sotw;
pub mod status;
mod stream;
mod warm;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::watch;

pub use service::services;
pub use snapshot::{Delivery, Fleet, Fleets, Snapshot};

use crate::config::Config;
use crate::metrics::Metrics;

/// The control plane's state: the snapshots of the running config, and the open
/// streams.
pub struct Xds {
    fleets: Arc<watch::Sender<Arc<Fleets>>>,
    /// Counts publishes; a lingering fleet's cleanup applies only if none came since.
    generation: Arc<AtomicU64>,
    pub streams: Arc<status::Streams>,
    metrics: Arc<Metrics>,
}

/// How long clusters a config no longer names stay served: long enough for every
/// node to take the routes that moved off them first.
const LINGER: std::time::Duration = std::time::Duration::from_secs(10);

impl Xds {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Xds {
            fleets: Arc::new(watch::Sender::new(Arc::new(Fleets::default()))),
            generation: Arc::default(),
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
        let fleet = generate::fleets(config)?;
        let current = self.fleets();
        if *current == fleet {
            return Ok(false);
        }
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let first = fleet.lingering(&current);
        let runtime = tokio::runtime::Handle::try_current();
        if first == fleet || runtime.is_err() {
            self.fleets.send_replace(Arc::new(fleet));
            return Ok(true);
        }
        // Make before break: clusters the config dropped stay until the routes that
        // used them have moved, then go.
        self.fleets.send_replace(Arc::new(first));
        let (sender, counter) = (self.fleets.clone(), self.generation.clone());
        let final_fleet = Arc::new(fleet);
        runtime.expect("checked").spawn(async move {
            tokio::time::sleep(LINGER).await;
            if counter.load(Ordering::SeqCst) == generation {
                sender.send_replace(final_fleet);
            }
        });
        Ok(true)
    }

    /// The snapshots now served, in every delivery.
    pub fn fleets(&self) -> Arc<Fleets> {
        self.fleets.borrow().clone()
    }

    /// The snapshots now served over ADS (the others differ only in the sources they
    /// name).
    pub fn fleet(&self) -> Fleet {
        self.fleets().ads.clone()
    }

    fn subscribe(&self) -> watch::Receiver<Arc<Fleets>> {
        self.fleets.subscribe()
    }
}
