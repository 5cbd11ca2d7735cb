//! State-of-the-World xDS on one stream, as a state machine with no I/O: requests and
//! snapshots in, responses out (`stream.rs` drives it).
//!
//! Per type it keeps what the node subscribed to (a wildcard, or names) and the
//! version and nonce last sent. A request whose nonce is not the last one sent is
//! stale and ignored; one that answers the last nonce is an ACK, or a NACK when it
//! carries `error_detail` — recorded, counted, and not answered: the node keeps its
//! last good version, and the next config change is sent as usual. A response goes out
//! on the first request of a type, when the subscription changes, and when the
//! snapshot's content for the subscription changes (its version is a content hash, so
//! an unchanged config sends nothing). A request that names resources the snapshot
//! lacks is held until all of them exist, as go-control-plane's ADS does, so Envoy
//! never sees a route configuration or endpoints half there. A listener or route
//! configuration also waits until the clusters it needs are in place on the node
//! (`warm.rs`).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use tonic::Status;

use super::snapshot::{short_type, wildcard_type, Resource, Snapshot};
use super::stream::{Protocol, StreamCx};
use super::warm::Warmth;

/// One stream's SotW state.
#[derive(Default)]
pub struct Sotw {
    types: HashMap<&'static str, TypeState>,
    nonce: u64,
    warmth: Warmth,
}

#[derive(Default)]
struct TypeState {
    wildcard: bool,
    names: BTreeSet<String>,
    sent_version: Option<String>,
    sent_nonce: String,
}

impl Protocol for Sotw {
    type Request = DiscoveryRequest;
    type Response = DiscoveryResponse;
    const VARIANT: &'static str = "sotw";

    fn node(req: &DiscoveryRequest) -> Option<&envoy_types::pb::envoy::config::core::v3::Node> {
        req.node.as_ref()
    }

    fn on_request(
        &mut self,
        req: DiscoveryRequest,
        snapshot: &Snapshot,
        cx: &StreamCx<'_>,
    ) -> Result<Vec<DiscoveryResponse>, Status> {
        let type_url = cx.known_type(&req.type_url)?;
        cx.check_names(req.resource_names.len())?;
        let first = !self.types.contains_key(type_url);
        let state = self.types.entry(type_url).or_default();
        if !first && !req.response_nonce.is_empty() && req.response_nonce != state.sent_nonce {
            return Ok(Vec::new());
        }
        if !req.response_nonce.is_empty() && req.response_nonce == state.sent_nonce {
            let refused = state.sent_version.clone().unwrap_or_default();
            match &req.error_detail {
                Some(err) => {
                    self.warmth.nacked(type_url, &req.response_nonce);
                    cx.nack(type_url, &req.version_info, &refused, &err.message)
                }
                None => {
                    self.warmth.acked(type_url, &req.response_nonce);
                    cx.ack(type_url, &req.version_info)
                }
            }
        }
        let mut names: BTreeSet<String> = req.resource_names.into_iter().collect();
        let star = names.remove("*");
        let wildcard =
            star || (wildcard_type(type_url) && names.is_empty() && (first || state.wildcard));
        let changed = first || wildcard != state.wildcard || names != state.names;
        state.wildcard = wildcard;
        state.names = names;
        Ok(self.answer(type_url, snapshot, changed, cx))
    }

    /// The response for `type_url` if the node should get one now.
    fn respond(
        &mut self,
        type_url: &'static str,
        snapshot: &Snapshot,
        subscription_changed: bool,
        cx: &StreamCx<'_>,
    ) -> Option<DiscoveryResponse> {
        let state = self.types.get_mut(type_url)?;
        let resources = snapshot.resources(type_url);
        let chosen: Vec<&Arc<Resource>> = if state.wildcard {
            resources.items.values().collect()
        } else {
            let found: Vec<_> = state
                .names
                .iter()
                .filter_map(|n| resources.items.get(n))
                .collect();
            if found.len() < state.names.len() || state.names.is_empty() {
                return None;
            }
            found
        };
        let version = if state.wildcard {
            resources.version.clone()
        } else {
            subset_version(&chosen)
        };
        if !subscription_changed && state.sent_version.as_deref() == Some(version.as_str()) {
            return None;
        }
        if cx.orders_types() && !chosen.iter().all(|r| self.warmth.ready(r, snapshot)) {
            tracing::debug!(node = %cx.node, r#type = short_type(type_url), "xDS response held: the clusters it needs are not in place yet");
            return None;
        }
        self.nonce += 1;
        let response = DiscoveryResponse {
            version_info: version.clone(),
            resources: chosen.iter().map(|r| r.body.clone()).collect(),
            type_url: type_url.to_string(),
            nonce: self.nonce.to_string(),
            ..Default::default()
        };
        state.sent_version = Some(version.clone());
        state.sent_nonce = response.nonce.clone();
        let names = chosen.iter().map(|r| r.name.clone()).collect();
        self.warmth
            .sent(type_url, &response.nonce, names, Vec::new(), true);
        cx.sent(type_url, &version, prost::Message::encoded_len(&response));
        tracing::debug!(node = %cx.node, r#type = short_type(type_url), version = %version, resources = chosen.len(), "xDS response");
        Some(response)
    }
}

/// The version of the named subset a node asked for: only its resources' versions.
fn subset_version(chosen: &[&Arc<Resource>]) -> String {
    let mut text = String::new();
    for r in chosen {
        text.push_str(&r.name);
        text.push('\0');
        text.push_str(&r.version);
        text.push('\0');
    }
    format!("{:016x}", xxhash_rust::xxh64::xxh64(text.as_bytes(), 0))
}

#[cfg(test)]
#[path = "sotw_tests.rs"]
mod tests;
