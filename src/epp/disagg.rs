//! Prefill/decode disaggregation: the endpoints' roles and the decider, as llm-d's
//! disaggregated profile handler with its `prefix-based-pd-decider`.
//!
//! A request is picked in two stages. The destination (the decode side) is picked among
//! the endpoints that decode (`decode` and `prefill-decode`); then, when the prompt's
//! tokens not cached on that endpoint reach the threshold, a prefill endpoint is picked
//! among the `prefill` ones by the same profile, and named to the decode side. No
//! prefill endpoint available: the request runs aggregated.
//!
//! An endpoint's role is what its source reports (a Kubernetes pod's `llm-d.ai/role`
//! label, see `discovery::kubernetes`), else the config's `roles`, else `prefill-decode`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use super::discovery::DiscoveredRoles;
use super::load::CHARS_PER_TOKEN;
use super::pool::Members;
use super::prefix::TOKENS_PER_BLOCK;
use crate::config::{roles_by_addr, EndpointPickerPolicy, EndpointRole};

/// The request header naming the prefill endpoint (`ip:port`) to the decode side.
pub const PREFILLER_HEADER: &str = "x-prefiller-host-port";

/// Roles and the split threshold of one picker.
#[derive(Clone, Debug, Default)]
pub struct Disaggregation {
    roles: HashMap<SocketAddr, EndpointRole>,
    /// The roles the endpoint source reports; they come before `roles`.
    discovered: Arc<DiscoveredRoles>,
    /// Split when at least this many prompt tokens are not cached on the destination; 0
    /// never splits.
    pub non_cached_tokens: u64,
}

impl Disaggregation {
    /// The roles and threshold of a (checked) picker config; `None` when it gives
    /// neither and its endpoints come from no source that reports roles (Kubernetes).
    pub fn from_policy(policy: &EndpointPickerPolicy) -> Option<Disaggregation> {
        let non_cached_tokens = policy
            .disaggregation
            .as_ref()
            .map_or(0, |d| d.non_cached_tokens);
        if policy.roles.is_empty() && non_cached_tokens == 0 && policy.kubernetes.is_none() {
            return None;
        }
        Some(Disaggregation {
            roles: roles_by_addr(&policy.roles).into_iter().collect(),
            discovered: Arc::default(),
            non_cached_tokens,
        })
    }

    /// Where the endpoint source writes the roles it reports.
    pub fn discovered(&self) -> Arc<DiscoveredRoles> {
        self.discovered.clone()
    }

    /// The role of the endpoint at `addr`: reported by its source, else configured, else
    /// `prefill-decode`.
    pub fn role(&self, addr: &SocketAddr) -> EndpointRole {
        self.discovered
            .get(addr)
            .or_else(|| self.roles.get(addr).copied())
            .unwrap_or_default()
    }

    /// The endpoints a destination is picked among: those of `hint` (the gateway's
    /// subset; all members when `None`) that decode. When none decodes, `hint` as given
    /// (an all-prefill pool still answers, aggregated).
    pub fn decode_subset(
        &self,
        members: &Members,
        hint: Option<Vec<SocketAddr>>,
    ) -> Option<Vec<SocketAddr>> {
        if !members.iter().any(|e| !self.role(&e.addr).decodes()) {
            return hint;
        }
        let base: Vec<SocketAddr> = match &hint {
            Some(h) => h.clone(),
            None => members.iter().map(|e| e.addr).collect(),
        };
        let decoders: Vec<SocketAddr> = base
            .into_iter()
            .filter(|a| self.role(a).decodes())
            .collect();
        if decoders.is_empty() {
            hint
        } else {
            Some(decoders)
        }
    }

    /// The members that prefill for others (role `prefill`).
    pub fn prefill_subset(&self, members: &Members) -> Vec<SocketAddr> {
        members
            .iter()
            .map(|e| e.addr)
            .filter(|a| self.role(a) == EndpointRole::Prefill)
            .collect()
    }

    /// The decider: split a prompt of `prompt_chars` characters whose first
    /// `cached_blocks` blocks the destination holds?
    pub fn splits(&self, prompt_chars: usize, cached_blocks: usize) -> bool {
        if self.non_cached_tokens == 0 {
            return false;
        }
        let tokens = prompt_chars as u64 / CHARS_PER_TOKEN;
        let cached = cached_blocks as u64 * TOKENS_PER_BLOCK;
        tokens.saturating_sub(cached) >= self.non_cached_tokens
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::epp::{Pool, PoolSpec};

    fn policy(yaml: &str) -> EndpointPickerPolicy {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn decode_and_prefill_subsets_follow_the_roles() {
        let d = Disaggregation::from_policy(&policy(
            "{endpoints: ['127.0.0.1:1'], roles: {'127.0.0.1:1': prefill, '127.0.0.1:2': decode}}",
        ))
        .unwrap();
        let pool = Pool::new(PoolSpec {
            endpoints: addrs(&["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]),
            metrics_path: "/metrics".into(),
            interval: std::time::Duration::from_secs(1),
            stale_after: std::time::Duration::from_secs(1),
        });
        let m = pool.endpoints();
        assert_eq!(
            d.decode_subset(&m, None),
            Some(addrs(&["127.0.0.1:2", "127.0.0.1:3"]))
        );
        assert_eq!(
            d.decode_subset(&m, Some(addrs(&["127.0.0.1:1", "127.0.0.1:3"]))),
            Some(addrs(&["127.0.0.1:3"])),
            "the gateway's subset, decoders only"
        );
        assert_eq!(
            d.decode_subset(&m, Some(addrs(&["127.0.0.1:1"]))),
            Some(addrs(&["127.0.0.1:1"])),
            "no decoder in the subset: as given"
        );
        assert_eq!(d.prefill_subset(&m), addrs(&["127.0.0.1:1"]));
        assert_eq!(d.non_cached_tokens, 0);
        assert!(!d.splits(100_000, 0), "0 never splits");
        assert!(Disaggregation::from_policy(&policy("{endpoints: ['127.0.0.1:1']}")).is_none());
    }

    #[test]
    fn reported_roles_come_before_the_configured_ones() {
        let d = Disaggregation::from_policy(&policy(
            "{kubernetes: {inferencePool: p}, roles: {'127.0.0.1:1': decode}}",
        ))
        .expect("a Kubernetes pool may report roles");
        let pool = Pool::new(PoolSpec {
            endpoints: addrs(&["127.0.0.1:1", "127.0.0.1:2"]),
            metrics_path: "/metrics".into(),
            interval: std::time::Duration::from_secs(1),
            stale_after: std::time::Duration::from_secs(1),
        });
        let m = pool.endpoints();
        assert_eq!(d.decode_subset(&m, None), None, "all decode");
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        d.discovered()
            .set(HashMap::from([(a, EndpointRole::Prefill)]));
        assert_eq!(d.role(&a), EndpointRole::Prefill, "the label wins");
        assert_eq!(d.decode_subset(&m, None), Some(addrs(&["127.0.0.1:2"])));
        assert_eq!(d.prefill_subset(&m), [a]);
        assert!(Disaggregation::from_policy(&policy("{dns: {name: x, port: 1}}")).is_none());
    }

    #[test]
    fn the_decider_counts_uncached_tokens() {
        let d = Disaggregation::from_policy(&policy(
            "{endpoints: ['127.0.0.1:1'], disaggregation: {nonCachedTokens: 256}}",
        ))
        .unwrap();
        assert!(d.splits(1024, 0), "256 tokens, none cached");
        assert!(!d.splits(1020, 0), "255 tokens");
        // 2,048 characters = 512 tokens; 16 blocks = 256 tokens cached: 256 left.
        assert!(d.splits(2048, 16));
        assert!(!d.splits(2048, 17));
    }
}
