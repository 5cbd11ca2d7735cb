//! Delta (incremental) xDS on one stream, as a state machine with no I/O.
//!
//! Per type it keeps the subscription (wildcard and names, changed by each request's
//! subscribe and unsubscribe lists) and the version of every resource the node has —
//! from `initial_resource_versions` on a reconnect, then from what was sent. A response
//! carries only the resources whose version differs from the node's and the names
//! the node has that no longer exist, so an edit that touches one route sends one
//! route configuration. ACK and NACK are read as in SotW (a NACK is recorded and not
//! re-sent); subscription changes apply whatever the nonce.

use std::collections::{BTreeSet, HashMap};

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource as DeltaResource,
};
use tonic::Status;

use super::snapshot::{short_type, wildcard_type, Snapshot};
use super::stream::{Protocol, StreamCx};
use super::warm::Warmth;

/// One stream's Delta state.
#[derive(Default)]
pub struct Delta {
    types: HashMap<&'static str, TypeState>,
    nonce: u64,
    warmth: Warmth,
}

#[derive(Default)]
struct TypeState {
    wildcard: bool,
    names: BTreeSet<String>,
    /// Name → version the node has.
    known: HashMap<String, String>,
    sent_nonce: String,
    sent_version: String,
}

impl Protocol for Delta {
    type Request = DeltaDiscoveryRequest;
    type Response = DeltaDiscoveryResponse;
    const VARIANT: &'static str = "delta";

    fn node(
        req: &DeltaDiscoveryRequest,
    ) -> Option<&envoy_types::pb::envoy::config::core::v3::Node> {
        req.node.as_ref()
    }

    fn on_request(
        &mut self,
        req: DeltaDiscoveryRequest,
        snapshot: &Snapshot,
        cx: &StreamCx<'_>,
    ) -> Result<Vec<DeltaDiscoveryResponse>, Status> {
        let type_url = cx.known_type(&req.type_url)?;
        cx.check_names(
            req.resource_names_subscribe.len()
                + req.resource_names_unsubscribe.len()
                + req.initial_resource_versions.len(),
        )?;
        let first = !self.types.contains_key(type_url);
        let state = self.types.entry(type_url).or_default();
        if !req.response_nonce.is_empty() && req.response_nonce == state.sent_nonce {
            match &req.error_detail {
                Some(err) => {
                    self.warmth.nacked(type_url, &req.response_nonce);
                    cx.nack(type_url, "", &state.sent_version, &err.message)
                }
                None => {
                    self.warmth.acked(type_url, &req.response_nonce);
                    cx.ack(type_url, &state.sent_version)
                }
            }
        }
        if first {
            state.known = req.initial_resource_versions;
            state.wildcard = wildcard_type(type_url) && req.resource_names_subscribe.is_empty();
        }
        for name in req.resource_names_subscribe {
            if name == "*" {
                state.wildcard = true;
            } else {
                state.names.insert(name);
            }
        }
        for name in req.resource_names_unsubscribe {
            if name == "*" {
                state.wildcard = false;
            } else {
                state.names.remove(&name);
                state.known.remove(&name);
            }
        }
        Ok(self.answer(type_url, snapshot, first, cx))
    }

    /// The changes of `type_url` the node lacks, if any (on a first wildcard request,
    /// even none: Envoy waits for that answer before it finishes starting).
    fn respond(
        &mut self,
        type_url: &'static str,
        snapshot: &Snapshot,
        first: bool,
        cx: &StreamCx<'_>,
    ) -> Option<DeltaDiscoveryResponse> {
        let state = self.types.get_mut(type_url)?;
        let resources = snapshot.resources(type_url);
        let wildcard = state.wildcard;
        let in_scope = |name: &str| wildcard || state.names.contains(name);
        let updates: Vec<_> = resources
            .items
            .values()
            .filter(|r| in_scope(&r.name) && state.known.get(&r.name) != Some(&r.version))
            .cloned()
            .collect();
        let mut removed: Vec<String> = state
            .known
            .keys()
            .filter(|n| !resources.items.contains_key(*n))
            .cloned()
            .collect();
        removed.sort();
        if updates.is_empty() && removed.is_empty() && !(first && wildcard) {
            return None;
        }
        if cx.orders_types() && !updates.iter().all(|r| self.warmth.ready(r, snapshot)) {
            tracing::debug!(node = %cx.node, r#type = short_type(type_url), "xDS response held: the clusters it needs are not in place yet");
            return None;
        }
        for r in &updates {
            state.known.insert(r.name.clone(), r.version.clone());
        }
        for n in &removed {
            state.known.remove(n);
        }
        self.nonce += 1;
        let response = DeltaDiscoveryResponse {
            system_version_info: resources.version.clone(),
            resources: updates
                .iter()
                .map(|r| DeltaResource {
                    name: r.name.clone(),
                    version: r.version.clone(),
                    resource: Some(r.body.clone()),
                    ..Default::default()
                })
                .collect(),
            type_url: type_url.to_string(),
            removed_resources: removed,
            nonce: self.nonce.to_string(),
            ..Default::default()
        };
        state.sent_nonce = response.nonce.clone();
        state.sent_version = resources.version.clone();
        let names = updates.iter().map(|r| r.name.clone()).collect();
        let removed = response.removed_resources.clone();
        self.warmth
            .sent(type_url, &response.nonce, names, removed, false);
        cx.sent(
            type_url,
            &resources.version,
            prost::Message::encoded_len(&response),
        );
        tracing::debug!(node = %cx.node, r#type = short_type(type_url), updated = updates.len(), removed = response.removed_resources.len(), "xDS delta response");
        Some(response)
    }
}

#[cfg(test)]
#[path = "delta_tests.rs"]
mod tests;
