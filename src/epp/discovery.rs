//! Endpoint discovery: where an endpoint picker's pool comes from — the static
//! `endpoints` list, a file of `ip:port` lines (`file`), the A/AAAA records of a DNS name
//! (`dns`), or a Kubernetes InferencePool and its Ready pods (`kubernetes`, cargo feature
//! `kubernetes`) — published as a `tokio::sync::watch` channel of the current list.
//!
//! Every list sent is sorted and deduplicated, and a new value is sent only when the set
//! changed. Kubernetes also reads each pod's prefill/decode role from its `llm-d.ai/role`
//! label into the pool's [`DiscoveredRoles`], before the list that adds the pod. A source
//! that fails (unreadable file, failed lookup, unreachable API server) keeps the last good
//! list and logs why. Each source runs as a background task that stops once every
//! receiver is dropped.

pub mod dns;
pub mod file;
#[cfg(feature = "kubernetes")]
pub mod kubernetes;
mod source;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::config::EndpointRole;

pub use source::{addresses, source};

/// Where the endpoints of a pool come from (built from the config by `source`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndpointSource {
    /// A fixed list.
    Static(Vec<SocketAddr>),
    /// A file of `ip:port` lines (or a YAML list), re-read when it changes.
    File {
        path: PathBuf,
        /// How often the file's modification time and size are checked.
        poll_interval: Duration,
    },
    /// Every A and AAAA record of `name`, each with `port`, re-resolved every `refresh`.
    Dns {
        name: String,
        port: u16,
        refresh: Duration,
    },
    /// Each Ready pod the InferencePool selects × each of its target ports.
    Kubernetes {
        inference_pool: String,
        namespace: String,
    },
}

impl EndpointSource {
    /// What is known without waiting: the static list, the file's current content (empty
    /// when it cannot be read or parsed); DNS and Kubernetes start empty.
    pub fn initial(&self) -> Vec<SocketAddr> {
        match self {
            EndpointSource::Static(list) => normalize(list.clone()),
            EndpointSource::File { path, .. } => file::read(path).unwrap_or_default(),
            EndpointSource::Dns { .. } | EndpointSource::Kubernetes { .. } => Vec::new(),
        }
    }
}

/// The members' roles as their source reports them (the pods' `llm-d.ai/role` labels), by
/// address: written by the source, read by every pick. An address without one has none
/// reported (the config's `roles`, else `prefill-decode`, apply).
#[derive(Debug, Default)]
pub struct DiscoveredRoles(ArcSwap<HashMap<SocketAddr, EndpointRole>>);

impl DiscoveredRoles {
    /// The role reported for `addr`.
    pub fn get(&self, addr: &SocketAddr) -> Option<EndpointRole> {
        self.0.load().get(addr).copied()
    }

    /// Replaces every reported role.
    pub fn set(&self, roles: HashMap<SocketAddr, EndpointRole>) {
        if **self.0.load() != roles {
            self.0.store(Arc::new(roles));
        }
    }
}

/// Starts watching `source`; the receiver holds the current endpoint list (see
/// `EndpointSource::initial` for the first value), and `roles` the roles the source
/// reports (only Kubernetes does). Call inside a Tokio runtime. The background task stops
/// once every receiver is dropped.
pub fn watch(
    source: EndpointSource,
    roles: Arc<DiscoveredRoles>,
) -> watch::Receiver<Vec<SocketAddr>> {
    let (tx, rx) = watch::channel(source.initial());
    match source {
        EndpointSource::Static(_) => {
            // Nothing ever changes; the sender lives as long as a receiver does, so
            // `changed()` waits instead of failing at once.
            tokio::spawn(async move { tx.closed().await });
        }
        EndpointSource::File {
            path,
            poll_interval,
        } => {
            tokio::spawn(file::run(path, poll_interval, tx));
        }
        EndpointSource::Dns {
            name,
            port,
            refresh,
        } => {
            tokio::spawn(dns::run(name, port, refresh, tx));
        }
        EndpointSource::Kubernetes {
            inference_pool,
            namespace,
        } => {
            #[cfg(feature = "kubernetes")]
            tokio::spawn(kubernetes::run(inference_pool, namespace, tx, roles));
            #[cfg(not(feature = "kubernetes"))]
            {
                drop(roles);
                tracing::error!(
                    inference_pool,
                    namespace,
                    "this build has no Kubernetes support (cargo feature `kubernetes`): the pool stays empty"
                );
                tokio::spawn(async move { tx.closed().await });
            }
        }
    }
    rx
}

/// Sorts and deduplicates a list.
pub fn normalize(mut list: Vec<SocketAddr>) -> Vec<SocketAddr> {
    list.sort_unstable();
    list.dedup();
    list
}

/// Sends `list` (normalized) if it differs from the current value; true when it did.
pub(crate) fn publish(tx: &watch::Sender<Vec<SocketAddr>>, list: Vec<SocketAddr>) -> bool {
    let list = normalize(list);
    tx.send_if_modified(|current| {
        if *current == list {
            false
        } else {
            *current = list;
            true
        }
    })
}

/// Sleeps `d`, or returns false at once when every receiver of `tx` is gone.
pub(crate) async fn sleep_unless_closed<T>(tx: &watch::Sender<T>, d: Duration) -> bool {
    tokio::select! {
        _ = tx.closed() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn normalize_sorts_and_dedups() {
        let list = normalize(addrs(&[
            "[::1]:8000",
            "127.0.0.2:8000",
            "127.0.0.1:9000",
            "127.0.0.2:8000",
            "127.0.0.1:8000",
        ]));
        assert_eq!(
            list,
            addrs(&[
                "127.0.0.1:8000",
                "127.0.0.1:9000",
                "127.0.0.2:8000",
                "[::1]:8000"
            ])
        );
    }

    #[tokio::test]
    async fn publish_sends_only_changes() {
        let (tx, mut rx) = watch::channel(Vec::new());
        assert!(publish(&tx, addrs(&["127.0.0.2:1", "127.0.0.1:1"])));
        assert!(rx.has_changed().unwrap());
        assert_eq!(
            *rx.borrow_and_update(),
            addrs(&["127.0.0.1:1", "127.0.0.2:1"])
        );
        // The same set in another order, with a duplicate: no new value.
        assert!(!publish(
            &tx,
            addrs(&["127.0.0.1:1", "127.0.0.2:1", "127.0.0.1:1"])
        ));
        assert!(!rx.has_changed().unwrap());
    }

    #[tokio::test]
    async fn static_source_holds_its_list() {
        let rx = watch(
            EndpointSource::Static(addrs(&["[::1]:8000", "127.0.0.1:8000", "127.0.0.1:8000"])),
            Arc::default(),
        );
        assert_eq!(*rx.borrow(), addrs(&["127.0.0.1:8000", "[::1]:8000"]));
        let mut rx2 = rx.clone();
        // The sender is alive: no change and no error.
        let waited = tokio::time::timeout(Duration::from_millis(50), rx2.changed()).await;
        assert!(waited.is_err(), "changed() returned {waited:?}");
    }

    #[tokio::test]
    async fn sleep_unless_closed_returns_early_when_closed() {
        let (tx, rx) = watch::channel(0u8);
        assert!(sleep_unless_closed(&tx, Duration::from_millis(1)).await);
        drop(rx);
        let start = std::time::Instant::now();
        assert!(!sleep_unless_closed(&tx, Duration::from_secs(30)).await);
        assert!(start.elapsed() < Duration::from_secs(5));
    }
}
