//! `limits.cel`: Bounds on CEL expressions — their size and shape, checked when a config
//! loads, and the CPU their evaluation may take from the async workers.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, Duration};

/// Bounds on CEL expressions.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CelLimits {
    /// Longest expression source accepted, in bytes.
    #[serde(default = "default_max_expression_bytes")]
    pub max_expression_bytes: usize,
    /// Deepest nesting of calls, operators, lists and maps accepted.
    #[serde(default = "default_max_nesting_depth")]
    pub max_nesting_depth: u16,
    /// Deepest nesting of comprehension macros (`all`, `exists`, `exists_one`, `map`,
    /// `filter`) accepted: each level multiplies the work of the ones inside it.
    #[serde(default = "default_max_comprehension_depth")]
    pub max_comprehension_depth: usize,
    /// Inputs (request body bytes) from which the prompt guard's CEL rules are evaluated
    /// off the async workers; expressions with a comprehension always are.
    #[serde(default = "default_offload_above_bytes")]
    pub offload_above_bytes: usize,
    /// Evaluations running off the async workers at once, process-wide; further ones
    /// wait for a place (without holding a worker).
    #[serde(default = "default_max_concurrent_evaluations")]
    pub max_concurrent_evaluations: usize,
    /// Longest wait for an evaluation off the async workers (its place included); past
    /// it the check fails and the policy's failure mode applies.
    #[serde(default = "default_evaluation_timeout")]
    pub evaluation_timeout: Duration,
}

fn default_max_expression_bytes() -> usize {
    4096
}
fn default_max_nesting_depth() -> u16 {
    32
}
fn default_max_comprehension_depth() -> usize {
    1
}
fn default_offload_above_bytes() -> usize {
    16 * 1024
}
fn default_max_concurrent_evaluations() -> usize {
    2
}
fn default_evaluation_timeout() -> Duration {
    Duration::from_secs(1)
}

impl Default for CelLimits {
    fn default() -> Self {
        CelLimits {
            max_expression_bytes: default_max_expression_bytes(),
            max_nesting_depth: default_max_nesting_depth(),
            max_comprehension_depth: default_max_comprehension_depth(),
            offload_above_bytes: default_offload_above_bytes(),
            max_concurrent_evaluations: default_max_concurrent_evaluations(),
            evaluation_timeout: default_evaluation_timeout(),
        }
    }
}

impl CelLimits {
    /// Checks the bounds; `path` is the section's field path (`limits.cel`).
    pub fn validate(&self, path: &str) -> Result<(), ConfigError> {
        let at_least_one = [
            ("maxExpressionBytes", self.max_expression_bytes),
            ("maxNestingDepth", usize::from(self.max_nesting_depth)),
            ("maxConcurrentEvaluations", self.max_concurrent_evaluations),
        ];
        for (name, value) in at_least_one {
            if value == 0 {
                return Err(ConfigError::field(
                    format!("{path}.{name}"),
                    "must be at least 1",
                ));
            }
        }
        if self.max_nesting_depth > 96 {
            return Err(ConfigError::field(
                format!("{path}.maxNestingDepth"),
                "must be at most 96",
            ));
        }
        if self.evaluation_timeout.get().is_zero() {
            return Err(ConfigError::field(
                format!("{path}.evaluationTimeout"),
                "must be longer than 0",
            ));
        }
        Ok(())
    }
}
