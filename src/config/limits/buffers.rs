//! `limits.buffers`: Buffers that hold client or upstream data.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Buffers that hold client or upstream data.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BufferLimits {}
