//! `limits.labels`: Bounds on client- or upstream-chosen label values.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Bounds on client- or upstream-chosen label values.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LabelLimits {}
