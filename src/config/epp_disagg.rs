//! Prefill/decode disaggregation of the endpoint picker: each endpoint's role
//! (`endpointPicker.roles`) and when a request is split (`endpointPicker.disaggregation`),
//! as llm-d's `llm-d.ai/role` label and `prefix-based-pd-decider`.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ConfigError;

/// What an endpoint serves (llm-d's `llm-d.ai/role` label values).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
pub enum EndpointRole {
    /// Prefills only: picked as the prefill side of a disaggregated request, never as
    /// the destination.
    #[serde(rename = "prefill")]
    Prefill,
    /// Decodes: a destination; pulls a prefill endpoint's KV cache when it is named in
    /// `x-prefiller-host-port`.
    #[serde(rename = "decode")]
    Decode,
    /// Both (the default of an endpoint without a role); `both` is the deprecated
    /// spelling.
    #[default]
    #[serde(rename = "prefill-decode", alias = "both")]
    PrefillDecode,
}

impl EndpointRole {
    /// The role an `llm-d.ai/role` label value names (`both` and `prefill-decode` alike);
    /// `None` for any other value.
    pub fn from_label(value: &str) -> Option<EndpointRole> {
        match value {
            "prefill" => Some(EndpointRole::Prefill),
            "decode" => Some(EndpointRole::Decode),
            "both" | "prefill-decode" => Some(EndpointRole::PrefillDecode),
            _ => None,
        }
    }

    /// Whether the endpoint can be the destination (it decodes).
    pub fn decodes(self) -> bool {
        self != EndpointRole::Prefill
    }
}

/// When a request is disaggregated.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DisaggregationConfig {
    /// Split a request into a prefill on a `prefill` endpoint and the decode on the
    /// destination when the prompt's tokens not cached on the destination (prompt
    /// characters / 4 − its cached prefix) are at least this many. 0 (the reference's
    /// default) never splits.
    #[serde(default)]
    pub non_cached_tokens: u64,
}

/// Checks every key of `roles` is an `ip:port`; `at` is the path of the map.
pub fn check_roles(roles: &BTreeMap<String, EndpointRole>, at: &str) -> Result<(), ConfigError> {
    for key in roles.keys() {
        if key.parse::<SocketAddr>().is_err() {
            return Err(ConfigError::field(
                format!("{at}[{key:?}]"),
                "must be an ip:port (IPv6 in brackets)",
            ));
        }
    }
    Ok(())
}

/// The roles by address (keys checked with [`check_roles`]).
pub fn roles_by_addr(roles: &BTreeMap<String, EndpointRole>) -> Vec<(SocketAddr, EndpointRole)> {
    roles
        .iter()
        .filter_map(|(k, r)| Some((k.parse().ok()?, *r)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_with_the_deprecated_alias() {
        let r: BTreeMap<String, EndpointRole> = serde_yaml::from_str(
            "{'127.0.0.1:1': prefill, '127.0.0.1:2': decode, '127.0.0.1:3': both, '[::1]:4': prefill-decode}",
        )
        .unwrap();
        check_roles(&r, "p.roles").unwrap();
        let by: Vec<EndpointRole> = roles_by_addr(&r).into_iter().map(|(_, r)| r).collect();
        use EndpointRole::*;
        assert_eq!(by, [Prefill, Decode, PrefillDecode, PrefillDecode]);
        assert!(!Prefill.decodes() && Decode.decodes() && PrefillDecode.decodes());
        assert!(serde_yaml::from_str::<EndpointRole>("encode").is_err());
        let labels = [
            "prefill",
            "decode",
            "both",
            "prefill-decode",
            "encode",
            "Prefill",
        ];
        let from: Vec<Option<EndpointRole>> =
            labels.iter().map(|v| EndpointRole::from_label(v)).collect();
        let known = [Some(Prefill), Some(Decode), Some(PrefillDecode)];
        assert_eq!(
            from,
            [&known[..], &[Some(PrefillDecode), None, None]].concat()
        );
        let d: DisaggregationConfig = serde_yaml::from_str("{}").unwrap();
        assert_eq!(d.non_cached_tokens, 0, "the reference's default: never");
        assert!(serde_yaml::from_str::<DisaggregationConfig>("{threshold: 1}").is_err());
    }

    #[test]
    fn a_bad_key_names_its_path() {
        let r: BTreeMap<String, EndpointRole> = serde_yaml::from_str("{'pod-a': decode}").unwrap();
        let e = check_roles(&r, "p.roles").unwrap_err().to_string();
        assert!(e.contains("p.roles[\"pod-a\"]:"), "{e}");
    }
}
