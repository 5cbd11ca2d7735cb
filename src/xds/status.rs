//! Who is connected and what they accepted: per xDS stream, the node, the protocol
//! variant, and per type the version last sent, the version last ACKed and the last
//! NACK with Envoy's error detail. The admin server's `/xds` prints it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Serialize;

/// Longest NACK message kept (Envoy's error details can carry whole proto dumps).
const NACK_MESSAGE_BYTES: usize = 2048;

/// A NACK: the version the node kept, and why it refused the one sent.
#[derive(Clone, Debug, Serialize)]
pub struct Nack {
    /// The version the node still runs (the last it accepted).
    pub kept_version: String,
    /// The version it refused.
    pub refused_version: String,
    pub message: String,
    #[serde(with = "unix_seconds")]
    pub at: SystemTime,
}

/// One type on one stream.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TypeStatus {
    pub sent_version: String,
    pub acked_version: String,
    pub responses: u64,
    pub last_nack: Option<Nack>,
}

/// One xDS stream.
#[derive(Clone, Debug, Serialize)]
pub struct StreamStatus {
    pub node: String,
    pub cluster: String,
    /// `sotw` or `delta`.
    pub variant: &'static str,
    #[serde(with = "unix_seconds")]
    pub connected_at: SystemTime,
    /// By short type name (`cluster`, `endpoint`, `listener`, `route`).
    pub types: BTreeMap<&'static str, TypeStatus>,
}

/// Every open stream, by id.
#[derive(Default)]
pub struct Streams {
    next: AtomicU64,
    open: Mutex<BTreeMap<u64, Arc<Mutex<StreamStatus>>>>,
}

/// A stream's entry; removed from [`Streams`] when dropped.
pub struct Registered {
    id: u64,
    streams: Arc<Streams>,
    pub status: Arc<Mutex<StreamStatus>>,
}

impl Streams {
    /// Registers a stream of `node` until the returned guard drops.
    pub fn register(
        self: &Arc<Self>,
        node: String,
        cluster: String,
        variant: &'static str,
    ) -> Registered {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let status = Arc::new(Mutex::new(StreamStatus {
            node,
            cluster,
            variant,
            connected_at: SystemTime::now(),
            types: BTreeMap::new(),
        }));
        self.lock().insert(id, status.clone());
        Registered {
            id,
            streams: self.clone(),
            status,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Mutex<StreamStatus>>>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of every open stream's status, oldest first.
    pub fn list(&self) -> Vec<StreamStatus> {
        self.lock()
            .values()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .collect()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Registered {
    /// Updates the status of `kind` on this stream.
    pub fn update(&self, kind: &'static str, f: impl FnOnce(&mut TypeStatus)) {
        let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        f(status.types.entry(kind).or_default());
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.streams.lock().remove(&self.id);
    }
}

/// A NACK message cut to a bound, at a character boundary.
pub fn bounded_message(text: &str) -> String {
    if text.len() <= NACK_MESSAGE_BYTES {
        return text.to_string();
    }
    let mut end = NACK_MESSAGE_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// What `/xds` prints: per snapshot (the default and each listed node) the version and
/// resource names of every type, and every open stream.
pub fn report(xds: &super::Xds) -> serde_json::Value {
    let fleet = xds.fleet();
    let served = |s: &super::Snapshot| -> serde_json::Value {
        s.types()
            .map(|(t, r)| {
                let names: Vec<&String> = r.items.keys().collect();
                (
                    super::snapshot::short_type(t).to_string(),
                    serde_json::json!({ "version": r.version, "resources": names }),
                )
            })
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    let nodes: serde_json::Map<_, _> = fleet
        .nodes
        .iter()
        .map(|(id, s)| (id.clone(), served(s)))
        .collect();
    serde_json::json!({
        "served": { "default": served(&fleet.default), "nodes": nodes },
        "streams": xds.streams.list(),
    })
}

mod unix_seconds {
    use std::time::{SystemTime, UNIX_EPOCH};

    pub fn serialize<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        let secs = t
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        s.serialize_f64((secs * 1000.0).round() / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_leave_the_registry_when_dropped() {
        let streams = Arc::new(Streams::default());
        let a = streams.register("n1".into(), "c".into(), "sotw");
        let b = streams.register("n2".into(), "c".into(), "delta");
        a.update("cluster", |t| t.acked_version = "v1".into());
        let list = streams.list();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].types["cluster"].acked_version, "v1");
        drop(a);
        assert_eq!(streams.list()[0].node, "n2");
        drop(b);
        assert!(streams.is_empty());
    }

    #[test]
    fn long_messages_are_cut_at_a_char_boundary() {
        let text = "é".repeat(3000);
        let cut = bounded_message(&text);
        assert!(cut.len() <= NACK_MESSAGE_BYTES + '…'.len_utf8());
        assert!(cut.ends_with('…'));
        assert_eq!(bounded_message("short"), "short");
    }
}
