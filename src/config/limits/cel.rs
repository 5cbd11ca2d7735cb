//! `limits.cel`: Bounds on CEL expressions.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Bounds on CEL expressions.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CelLimits {}
