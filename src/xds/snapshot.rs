//! What one Envoy is served: per resource type, named resources, each with a version
//! that is the hash of its encoded bytes, and a type version that hashes the names and
//! versions of all of them. Equal content gives equal versions, so a reload that
//! changes nothing a node sees pushes nothing to it, and Delta sends only what changed.

use std::collections::BTreeMap;
use std::sync::Arc;

use envoy_types::pb::google::protobuf::Any;
use xxhash_rust::xxh64::xxh64;

pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
pub const ENDPOINT: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
pub const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
/// ECDS: a filter's config on its own (tollgate's ext_proc filter).
pub const EXTENSION_CONFIG: &str = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig";
/// tollgate's own resource: a whole config for a tollgate sidecar (`resource.rs`).
pub const TOLLGATE_CONFIG: &str = "type.googleapis.com/tollgate.config.v1.Config";

/// The types tollgate serves, in the order a change is pushed: a cluster before its
/// endpoints (Envoy warms the cluster until they arrive), every cluster before the
/// listeners whose routes name it, the filter config a listener names before it, a
/// listener before its route configuration; tollgate configs, which no Envoy asks for,
/// last.
pub const PUSH_ORDER: [&str; 6] = [
    CLUSTER,
    ENDPOINT,
    EXTENSION_CONFIG,
    LISTENER,
    ROUTE,
    TOLLGATE_CONFIG,
];

/// Types whose requests may be wildcard (no names: every resource); Envoy names the
/// endpoints and route configurations it wants.
pub fn wildcard_type(type_url: &str) -> bool {
    type_url == CLUSTER || type_url == LISTENER
}

/// A short name of a type URL, for logs, metrics and `/xds`.
pub fn short_type(type_url: &str) -> &'static str {
    match type_url {
        CLUSTER => "cluster",
        ENDPOINT => "endpoint",
        LISTENER => "listener",
        ROUTE => "route",
        EXTENSION_CONFIG => "extension_config",
        TOLLGATE_CONFIG => "tollgate_config",
        _ => "unknown",
    }
}

/// One named resource.
#[derive(Debug, PartialEq)]
pub struct Resource {
    pub name: String,
    /// Hex of the xxh64 of `body.value`.
    pub version: String,
    pub body: Any,
    /// The clusters this resource needs in place before a node takes it (a route
    /// configuration's, a listener's ext_proc cluster).
    pub needs: Vec<String>,
}

/// A resource before it is versioned: type URL, name, body, and the clusters it needs.
pub type Unversioned = (&'static str, String, Any, Vec<String>);

/// The resources of one type.
#[derive(Debug, Default, PartialEq)]
pub struct Resources {
    /// Hash of every name and version, in name order; "" when there are none.
    pub version: String,
    pub items: BTreeMap<String, Arc<Resource>>,
}

/// Everything one node is served, by type URL.
#[derive(Debug, Default, PartialEq)]
pub struct Snapshot {
    by_type: BTreeMap<&'static str, Resources>,
}

impl Snapshot {
    /// A snapshot of `resources` (type URL, name, body) that need nothing.
    pub fn new(resources: impl IntoIterator<Item = (&'static str, String, Any)>) -> Self {
        Self::with_needs(resources.into_iter().map(|(t, n, b)| (t, n, b, Vec::new())))
    }

    /// A snapshot of `resources`. A repeated name keeps the last.
    pub fn with_needs(resources: impl IntoIterator<Item = Unversioned>) -> Self {
        let mut by_type: BTreeMap<&'static str, Resources> = PUSH_ORDER
            .iter()
            .map(|t| (*t, Resources::default()))
            .collect();
        for (type_url, name, body, needs) in resources {
            let version = format!("{:016x}", xxh64(&body.value, 0));
            let resource = Arc::new(Resource {
                name: name.clone(),
                version,
                body,
                needs,
            });
            by_type
                .entry(type_url)
                .or_default()
                .items
                .insert(name, resource);
        }
        for resources in by_type.values_mut() {
            resources.version = type_version(&resources.items);
        }
        Snapshot { by_type }
    }

    /// The resources of `type_url` (empty for a type tollgate does not serve).
    pub fn resources(&self, type_url: &str) -> &Resources {
        static EMPTY: std::sync::OnceLock<Resources> = std::sync::OnceLock::new();
        self.by_type
            .get(type_url)
            .unwrap_or_else(|| EMPTY.get_or_init(Resources::default))
    }

    /// This snapshot with the clusters and endpoint assignments of `older` that it
    /// drops kept a while longer, so that routes moving off a cluster reach Envoy
    /// before the cluster goes (make before break).
    pub fn lingering(&self, older: &Snapshot) -> Snapshot {
        let mut by_type: BTreeMap<&'static str, Resources> = BTreeMap::new();
        for (type_url, resources) in &self.by_type {
            let mut items = resources.items.clone();
            if *type_url == CLUSTER || *type_url == ENDPOINT {
                for (name, r) in &older.resources(type_url).items {
                    items.entry(name.clone()).or_insert_with(|| r.clone());
                }
            }
            let version = type_version(&items);
            by_type.insert(type_url, Resources { version, items });
        }
        Snapshot { by_type }
    }

    /// Every (type URL, resources) pair, in push order.
    pub fn types(&self) -> impl Iterator<Item = (&'static str, &Resources)> {
        PUSH_ORDER.iter().map(|t| (*t, self.resources(t)))
    }
}

fn type_version(items: &BTreeMap<String, Arc<Resource>>) -> String {
    if items.is_empty() {
        return String::new();
    }
    let mut text = String::new();
    for (name, r) in items {
        text.push_str(name);
        text.push('\0');
        text.push_str(&r.version);
        text.push('\0');
    }
    format!("{:016x}", xxh64(text.as_bytes(), 0))
}

/// The snapshots of a whole config: one for every node named in `xds.nodes`, and the
/// one every other node gets.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fleet {
    pub default: Arc<Snapshot>,
    pub nodes: BTreeMap<String, Arc<Snapshot>>,
}

/// How a stream delivers resources, which decides how the listeners and clusters it
/// carries name the source of what they refer to (routes, endpoints, the ext_proc
/// filter's config): the same ADS stream, or, for an Envoy without ADS, the per-type
/// services through its bootstrap cluster, SotW or Delta as the stream itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    Ads,
    PerType { delta: bool },
}

/// The fleet in each [`Delivery`]: they differ only in those sources.
#[derive(Debug, Default, PartialEq)]
pub struct Fleets {
    pub ads: Fleet,
    pub per_type: Fleet,
    pub per_type_delta: Fleet,
}

impl Fleets {
    pub fn of(&self, delivery: Delivery) -> &Fleet {
        match delivery {
            Delivery::Ads => &self.ads,
            Delivery::PerType { delta: false } => &self.per_type,
            Delivery::PerType { delta: true } => &self.per_type_delta,
        }
    }

    /// Each fleet with the clusters of `older`'s that it no longer has (see
    /// [`Snapshot::lingering`]).
    pub fn lingering(&self, older: &Fleets) -> Fleets {
        Fleets {
            ads: self.ads.lingering(&older.ads),
            per_type: self.per_type.lingering(&older.per_type),
            per_type_delta: self.per_type_delta.lingering(&older.per_type_delta),
        }
    }
}

impl Fleet {
    /// Every snapshot of this fleet with what `older`'s dropped lingering (see
    /// [`Snapshot::lingering`]).
    pub fn lingering(&self, older: &Fleet) -> Fleet {
        Fleet {
            default: Arc::new(self.default.lingering(&older.default)),
            nodes: self
                .nodes
                .iter()
                .map(|(id, s)| (id.clone(), Arc::new(s.lingering(&older.snapshot(id)))))
                .collect(),
        }
    }

    /// The snapshot of node `id`.
    pub fn snapshot(&self, id: &str) -> Arc<Snapshot> {
        self.nodes.get(id).unwrap_or(&self.default).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn any(bytes: &[u8]) -> Any {
        Any {
            type_url: CLUSTER.into(),
            value: bytes.to_vec(),
        }
    }

    #[test]
    fn versions_follow_content_only() {
        let a = Snapshot::new([(CLUSTER, "a".to_string(), any(b"1"))]);
        let same = Snapshot::new([(CLUSTER, "a".to_string(), any(b"1"))]);
        let changed = Snapshot::new([(CLUSTER, "a".to_string(), any(b"2"))]);
        assert_eq!(a, same);
        assert_eq!(
            a.resources(CLUSTER).version,
            same.resources(CLUSTER).version
        );
        assert_ne!(
            a.resources(CLUSTER).version,
            changed.resources(CLUSTER).version
        );
        assert_ne!(
            a.resources(CLUSTER).items["a"].version,
            changed.resources(CLUSTER).items["a"].version
        );
        // A rename with the same body is a change of the type's version.
        let renamed = Snapshot::new([(CLUSTER, "b".to_string(), any(b"1"))]);
        assert_ne!(
            a.resources(CLUSTER).version,
            renamed.resources(CLUSTER).version
        );
    }

    #[test]
    fn empty_types_have_an_empty_version_and_every_type_is_listed() {
        let s = Snapshot::new([(LISTENER, "l".to_string(), any(b"x"))]);
        assert_eq!(s.resources(CLUSTER).version, "");
        assert!(!s.resources(LISTENER).version.is_empty());
        let order: Vec<_> = s.types().map(|(t, _)| t).collect();
        assert_eq!(order, PUSH_ORDER);
        assert!(s.resources("type.googleapis.com/x").items.is_empty());
    }

    #[test]
    fn dropped_clusters_and_endpoints_linger_other_types_do_not() {
        let old = Snapshot::new([
            (CLUSTER, "old".to_string(), any(b"o")),
            (ENDPOINT, "old".to_string(), any(b"o")),
            (LISTENER, "gone".to_string(), any(b"g")),
        ]);
        let new = Snapshot::new([(CLUSTER, "new".to_string(), any(b"n"))]);
        let both = new.lingering(&old);
        let names = |s: &Snapshot, t| s.resources(t).items.keys().cloned().collect::<Vec<_>>();
        assert_eq!(names(&both, CLUSTER), ["new", "old"]);
        assert_eq!(names(&both, ENDPOINT), ["old"]);
        assert!(names(&both, LISTENER).is_empty());
        assert_eq!(new.lingering(&new), new);
    }

    #[test]
    fn unlisted_nodes_get_the_default() {
        let special = Arc::new(Snapshot::new([(CLUSTER, "s".to_string(), any(b"s"))]));
        let fleet = Fleet {
            default: Arc::new(Snapshot::default()),
            nodes: [("edge-1".to_string(), special.clone())].into(),
        };
        assert!(Arc::ptr_eq(&fleet.snapshot("edge-1"), &special));
        assert!(fleet.snapshot("other").resources(CLUSTER).items.is_empty());
    }
}
