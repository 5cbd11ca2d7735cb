//! `limits.connections`: Bounds on client connections.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Bounds on client connections.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConnectionLimits {}
