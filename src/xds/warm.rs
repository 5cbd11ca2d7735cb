//! What a node has accepted, so that nothing is sent before what it needs: a listener
//! waits for its ext_proc cluster, a route configuration for every cluster its routes
//! name — each ACKed, and for a cluster whose endpoints come over EDS, its endpoints
//! ACKed too. Envoy keeps a new cluster warming (not routable) until its endpoints
//! arrive; routes sent before that would meet "no cluster" for a moment. Pushing in
//! type order alone does not prevent it (go-control-plane leaves it to the caller).
//!
//! Only the last response sent per type is tracked; an ACK of an older one is not
//! counted, which can only hold a response a little longer.

use std::collections::{BTreeSet, HashMap};

use super::snapshot::{Resource, Snapshot, CLUSTER, ENDPOINT};

#[derive(Default)]
pub struct Warmth {
    /// Per type: the last response's nonce, the names it carried, the names it
    /// removed, and whether it was the whole set (SotW) or a change (Delta).
    in_flight: HashMap<&'static str, InFlight>,
    /// Per type: the names the node has accepted.
    accepted: HashMap<&'static str, BTreeSet<String>>,
}

struct InFlight {
    nonce: String,
    names: Vec<String>,
    removed: Vec<String>,
    whole: bool,
}

impl Warmth {
    /// Records a response sent: `whole` when `names` is everything the node now has of
    /// the type (SotW), otherwise the names added or updated, and `removed`.
    pub fn sent(
        &mut self,
        type_url: &'static str,
        nonce: &str,
        names: Vec<String>,
        removed: Vec<String>,
        whole: bool,
    ) {
        self.in_flight.insert(
            type_url,
            InFlight {
                nonce: nonce.to_string(),
                names,
                removed,
                whole,
            },
        );
    }

    /// Records the ACK of the response with `nonce`.
    pub fn acked(&mut self, type_url: &'static str, nonce: &str) {
        if self
            .in_flight
            .get(type_url)
            .is_none_or(|f| f.nonce != nonce)
        {
            return;
        }
        let f = self.in_flight.remove(type_url).expect("checked");
        let accepted = self.accepted.entry(type_url).or_default();
        if f.whole {
            accepted.clear();
        }
        accepted.extend(f.names);
        for n in &f.removed {
            accepted.remove(n);
        }
    }

    /// Forgets the response with `nonce`, refused.
    pub fn nacked(&mut self, type_url: &'static str, nonce: &str) {
        if self
            .in_flight
            .get(type_url)
            .is_some_and(|f| f.nonce == nonce)
        {
            self.in_flight.remove(type_url);
        }
    }

    fn has(&self, type_url: &str, name: &str) -> bool {
        self.accepted
            .get(type_url)
            .is_some_and(|s| s.contains(name))
    }

    /// Whether every cluster `resource` needs is in place on the node.
    pub fn ready(&self, resource: &Resource, snapshot: &Snapshot) -> bool {
        resource.needs.iter().all(|cluster| {
            self.has(CLUSTER, cluster)
                && (!snapshot.resources(ENDPOINT).items.contains_key(cluster)
                    || self.has(ENDPOINT, cluster))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::google::protobuf::Any;

    fn any() -> Any {
        Any {
            type_url: "t".into(),
            value: vec![1],
        }
    }

    #[test]
    fn a_route_waits_for_its_cluster_and_the_endpoints() {
        let snapshot = Snapshot::with_needs([
            (CLUSTER, "eds".to_string(), any(), vec![]),
            (CLUSTER, "dns".to_string(), any(), vec![]),
            (ENDPOINT, "eds".to_string(), any(), vec![]),
            (
                super::super::snapshot::ROUTE,
                "r".to_string(),
                any(),
                vec!["eds".to_string(), "dns".to_string()],
            ),
        ]);
        let route = &snapshot.resources(super::super::snapshot::ROUTE).items["r"];
        let mut w = Warmth::default();
        assert!(!w.ready(route, &snapshot));
        w.sent(CLUSTER, "1", vec!["eds".into(), "dns".into()], vec![], true);
        assert!(!w.ready(route, &snapshot), "sent is not accepted");
        w.acked(CLUSTER, "stale");
        assert!(!w.ready(route, &snapshot));
        w.acked(CLUSTER, "1");
        assert!(
            !w.ready(route, &snapshot),
            "the EDS cluster has no endpoints yet"
        );
        w.sent(ENDPOINT, "2", vec!["eds".into()], vec![], true);
        w.nacked(ENDPOINT, "2");
        assert!(!w.ready(route, &snapshot));
        w.sent(ENDPOINT, "3", vec!["eds".into()], vec![], true);
        w.acked(ENDPOINT, "3");
        assert!(w.ready(route, &snapshot));
        // A delta removal takes the cluster away again.
        w.sent(CLUSTER, "4", vec![], vec!["dns".into()], false);
        w.acked(CLUSTER, "4");
        assert!(!w.ready(route, &snapshot));
    }
}
