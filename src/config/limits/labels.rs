//! `limits.labels`: Bounds on client- or upstream-chosen label values.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

/// Bounds on metric label values (and access-log fields) whose value a client or an
/// upstream chooses, such as the request's and the response's `model`.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LabelLimits {
    /// Distinct values kept per label; every later new value is counted as `other`.
    #[serde(default = "default_max_values")]
    pub max_values_per_label: usize,
    /// Longest value kept, in bytes; a longer one is cut at a character boundary.
    #[serde(default = "default_max_bytes")]
    pub max_value_bytes: usize,
}

fn default_max_values() -> usize {
    256
}

fn default_max_bytes() -> usize {
    128
}

impl Default for LabelLimits {
    fn default() -> Self {
        LabelLimits {
            max_values_per_label: default_max_values(),
            max_value_bytes: default_max_bytes(),
        }
    }
}

impl LabelLimits {
    /// Checks the bounds; `path` is the section's field path (`limits.labels`).
    pub fn validate(&self, path: &str) -> Result<(), ConfigError> {
        if self.max_values_per_label == 0 {
            return Err(ConfigError::field(
                format!("{path}.maxValuesPerLabel"),
                "must be at least 1",
            ));
        }
        if self.max_value_bytes < 8 {
            return Err(ConfigError::field(
                format!("{path}.maxValueBytes"),
                "must be at least 8",
            ));
        }
        Ok(())
    }
}
