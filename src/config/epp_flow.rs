//! `endpointPicker.flowControl`: while the pool is saturated, requests wait in the
//! picker's queues instead of piling onto the model servers — one priority band per
//! objective priority, one queue per fairness id inside a band, tenants sharing the pool
//! by the tokens they actually consume.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ConfigError, Duration};

/// Flow control of one picker. Present (even `{}`) turns it on.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FlowControlConfig {
    /// How the next flow (fairness id) of a priority band is chosen: `tokens` (default:
    /// the flow that has consumed the fewest weighted tokens — prompt tokens plus
    /// `outputTokenWeight` × output tokens, charged with an estimate at dispatch and
    /// corrected with the response's usage), `requests` (the fewest requests: round
    /// robin), or `fcfs` (the oldest request of the band, whoever sent it).
    #[serde(default)]
    pub fairness: FairnessPolicy,
    /// Which request of a flow goes first: `fcfs` (default) or `deadline` (earliest
    /// deadline: arrival + the request's `x-llm-d-slo-ttft-ms`, else arrival + `ttl`).
    #[serde(default)]
    pub ordering: OrderingPolicy,
    /// Longest a request waits in a queue; then it is answered 429
    /// `rejected-ttl-expired`. Default `60s`.
    #[serde(default = "default_ttl")]
    pub ttl: Duration,
    /// Requests one priority band holds; past it, 429 `rejected-saturated`. Default 5000.
    #[serde(default = "default_max_requests")]
    pub max_requests: usize,
    /// Request-body bytes one priority band holds; past it, 429 `rejected-saturated`.
    /// Default 1,000,000,000.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// Weight of an output token against a prompt token in `tokens` fairness. Default 2
    /// (decoding a token costs more than prefilling one).
    #[serde(default = "default_output_weight")]
    pub output_token_weight: f64,
    /// Output tokens assumed at dispatch for a request that names no `max_tokens`,
    /// until the response's usage says how many there were. Default 256.
    #[serde(default = "default_output_estimate")]
    pub default_output_tokens: u64,
    /// The top fraction of the pool's capacity (by the saturation detector) kept for
    /// flows holding less than an equal share of the requests in flight: above
    /// `1 − headroom` a flooding tenant's requests wait while a light tenant's still go
    /// out, so a light tenant does not wait for a flood's request to finish; below it,
    /// such flows' requests go first. The price is that fraction of throughput while
    /// only the flood is queued. Default 0 (llm-d's behaviour: every flow waits at
    /// saturation, in fairness order); below 1.
    #[serde(default)]
    pub headroom: f64,
}

/// How a band's next flow is chosen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum FairnessPolicy {
    /// The flow with the fewest weighted tokens consumed.
    #[default]
    Tokens,
    /// The flow with the fewest requests dispatched.
    Requests,
    /// The band's oldest request.
    Fcfs,
}

/// Which request of a flow goes first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum OrderingPolicy {
    /// Arrival order.
    #[default]
    Fcfs,
    /// Earliest deadline first.
    Deadline,
}

fn default_ttl() -> Duration {
    Duration::from_millis(60_000)
}
fn default_max_requests() -> usize {
    5000
}
fn default_max_bytes() -> u64 {
    1_000_000_000
}
fn default_output_weight() -> f64 {
    2.0
}
fn default_output_estimate() -> u64 {
    256
}

impl Default for FlowControlConfig {
    fn default() -> Self {
        FlowControlConfig {
            fairness: FairnessPolicy::default(),
            ordering: OrderingPolicy::default(),
            ttl: default_ttl(),
            max_requests: default_max_requests(),
            max_bytes: default_max_bytes(),
            output_token_weight: default_output_weight(),
            default_output_tokens: default_output_estimate(),
            headroom: 0.0,
        }
    }
}

impl FlowControlConfig {
    /// Checks the bounds; `at` is the path of this node.
    pub fn validate(&self, at: &str) -> Result<(), ConfigError> {
        if self.ttl.get().is_zero() {
            return Err(ConfigError::field(
                format!("{at}.ttl"),
                "must be more than 0",
            ));
        }
        if self.max_requests == 0 {
            return Err(ConfigError::field(
                format!("{at}.maxRequests"),
                "must be at least 1",
            ));
        }
        if self.max_bytes == 0 {
            return Err(ConfigError::field(
                format!("{at}.maxBytes"),
                "must be at least 1",
            ));
        }
        let w = self.output_token_weight;
        if !(w.is_finite() && w >= 0.0) {
            return Err(ConfigError::field(
                format!("{at}.outputTokenWeight"),
                format!("{w} must be a number of at least 0"),
            ));
        }
        let h = self.headroom;
        if !(h.is_finite() && (0.0..1.0).contains(&h)) {
            return Err(ConfigError::field(
                format!("{at}.headroom"),
                format!("{h} must be a fraction from 0 up to (not including) 1"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_reference_bounds() {
        let c: FlowControlConfig = serde_yaml::from_str("{}").unwrap();
        assert_eq!(c, FlowControlConfig::default());
        assert_eq!(c.ttl.get(), std::time::Duration::from_secs(60));
        assert_eq!((c.max_requests, c.max_bytes), (5000, 1_000_000_000));
        assert_eq!(c.fairness, FairnessPolicy::Tokens);
        assert_eq!(c.headroom, 0.0);
        c.validate("p.flowControl").unwrap();
    }

    #[test]
    fn errors_name_the_field() {
        for (yaml, field) in [
            ("{ttl: 0s}", "p.flowControl.ttl"),
            ("{maxRequests: 0}", "p.flowControl.maxRequests"),
            ("{maxBytes: 0}", "p.flowControl.maxBytes"),
            ("{outputTokenWeight: -1}", "p.flowControl.outputTokenWeight"),
            ("{headroom: 1}", "p.flowControl.headroom"),
            ("{headroom: -0.1}", "p.flowControl.headroom"),
        ] {
            let c: FlowControlConfig = serde_yaml::from_str(yaml).unwrap();
            let e = c.validate("p.flowControl").unwrap_err().to_string();
            assert!(e.contains(&format!("{field}:")), "{yaml}: {e}");
        }
        for bad in ["{fairness: lottery}", "{ordering: lifo}", "{queues: 3}"] {
            assert!(
                serde_yaml::from_str::<FlowControlConfig>(bad).is_err(),
                "{bad}"
            );
        }
    }
}
