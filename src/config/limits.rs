//! The `limits` section: every bound that a client, an upstream or an operator's input
//! can push on, in one place. Each sub-section owns one kind of bound and documents its
//! defaults; the README's "Limits" table lists them all.

mod buffers;
mod cel;
mod connections;
mod labels;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use buffers::BufferLimits;
pub use cel::CelLimits;
pub use connections::ConnectionLimits;
pub use labels::LabelLimits;

/// Bounds on memory, CPU, connections and metric cardinality.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LimitsConfig {
    /// Buffers that hold client or upstream data: SSE lines and events, collected JSON,
    /// decompressed bytes.
    #[serde(default)]
    pub buffers: BufferLimits,
    /// Client connections on every listener: count, idle and progress timeouts.
    #[serde(default)]
    pub connections: ConnectionLimits,
    /// Metric labels and access-log fields whose value a client or upstream chooses.
    #[serde(default)]
    pub labels: LabelLimits,
    /// CEL expressions: size at load, cost at evaluation.
    #[serde(default)]
    pub cel: CelLimits,
}
