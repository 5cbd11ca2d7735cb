//! Several backends on one route: each backend's `weight`, the route's `retry` policy
//! (agentgateway's shape: `attempts` counts the first try, `backoff`, `codes`), and
//! passive health (`upstream.outlierDetection`). The standalone proxy applies them
//! itself; under xDS they become Envoy's cluster, retry and outlier settings.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ConfigError, Duration};

/// Most attempts a `retry` policy may ask for (the first included).
pub const MAX_ATTEMPTS: u32 = 10;
/// Largest backend weight (Envoy's endpoint weights are at most 128 × this in total).
pub const MAX_WEIGHT: u32 = 1_000_000;

pub(super) fn default_weight() -> u32 {
    1
}

pub(super) fn is_default_weight(w: &u32) -> bool {
    *w == 1
}

/// The `retry` policy of a route with backends.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RetryPolicy {
    /// Attempts in all, the first included; each retry goes to another backend when
    /// the route has one. Default 1 (no retry); at most 10.
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// Wait before the first retry, doubled before each next one (up to +50 % jitter).
    /// Default `25ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Duration>,
    /// Response statuses that are retried (`429`, `503`, …). Connection failures
    /// (nothing was sent) are always retried; a response already being streamed to the
    /// client never is.
    #[serde(default)]
    pub codes: Vec<u16>,
}

fn default_attempts() -> u32 {
    1
}

impl RetryPolicy {
    /// Checks the values at `path` (`….policies.retry`).
    pub fn check(&self, path: &str) -> Result<(), ConfigError> {
        if !(1..=MAX_ATTEMPTS).contains(&self.attempts) {
            return Err(ConfigError::field(
                format!("{path}.attempts"),
                format!("must be 1 to {MAX_ATTEMPTS} (the first try included)"),
            ));
        }
        for (i, code) in self.codes.iter().enumerate() {
            if !(400..=599).contains(code) {
                return Err(ConfigError::field(
                    format!("{path}.codes[{i}]"),
                    format!("{code} is not an error status (400 to 599)"),
                ));
            }
        }
        Ok(())
    }

    /// The wait before retry number `n` (1 for the first), without jitter.
    pub fn backoff_before(&self, n: u32) -> std::time::Duration {
        let base = self
            .backoff
            .map_or(std::time::Duration::from_millis(25), Duration::get);
        base.saturating_mul(1 << n.saturating_sub(1).min(16))
    }
}

/// Passive health of a route's backends: one that keeps failing is left out for a
/// while. Used when a route has several backends.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OutlierDetection {
    /// Failures in a row (connection errors, timeouts, 5xx) that eject a backend.
    /// Default 5; 0 turns ejection off.
    #[serde(default = "default_consecutive")]
    pub consecutive_failures: u32,
    /// How long the first ejection lasts; the n-th in a row lasts n times this (at most
    /// 10 times). Default `30s`. A 429 with `Retry-After` ejects for that long (at most
    /// 10 times this).
    #[serde(default = "default_ejection")]
    pub base_ejection_time: Duration,
    /// Most of a route's backends ejected at once, in percent: past it, failing
    /// backends stay in. Default 50; at least one backend always stays.
    #[serde(default = "default_max_percent")]
    pub max_ejection_percent: u32,
}

fn default_consecutive() -> u32 {
    5
}
fn default_ejection() -> Duration {
    Duration::from_secs(30)
}
fn default_max_percent() -> u32 {
    50
}

impl Default for OutlierDetection {
    fn default() -> Self {
        OutlierDetection {
            consecutive_failures: default_consecutive(),
            base_ejection_time: default_ejection(),
            max_ejection_percent: default_max_percent(),
        }
    }
}

impl OutlierDetection {
    /// Checks the values at `path` (`upstream.outlierDetection`).
    pub fn check(&self, path: &str) -> Result<(), ConfigError> {
        if self.max_ejection_percent > 100 {
            return Err(ConfigError::field(
                format!("{path}.maxEjectionPercent"),
                "must be 0 to 100",
            ));
        }
        if self.base_ejection_time.get().is_zero() {
            return Err(ConfigError::field(
                format!("{path}.baseEjectionTime"),
                "must be more than 0",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_values_are_checked_with_their_field() {
        let ok = RetryPolicy {
            attempts: 3,
            backoff: None,
            codes: vec![429, 503],
        };
        ok.check("r").unwrap();
        let bad = RetryPolicy {
            attempts: 11,
            ..ok.clone()
        };
        assert!(bad
            .check("r")
            .unwrap_err()
            .to_string()
            .starts_with("r.attempts:"));
        let bad = RetryPolicy {
            codes: vec![429, 200],
            ..ok.clone()
        };
        assert!(bad
            .check("r")
            .unwrap_err()
            .to_string()
            .starts_with("r.codes[1]:"));
        assert_eq!(ok.backoff_before(1), std::time::Duration::from_millis(25));
        assert_eq!(ok.backoff_before(3), std::time::Duration::from_millis(100));
    }

    #[test]
    fn outlier_values_are_checked_with_their_field() {
        OutlierDetection::default().check("o").unwrap();
        let bad = OutlierDetection {
            max_ejection_percent: 101,
            ..OutlierDetection::default()
        };
        assert!(bad
            .check("o")
            .unwrap_err()
            .to_string()
            .starts_with("o.maxEjectionPercent:"));
    }
}
