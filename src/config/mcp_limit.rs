//! `mcpToolLimit`: limits on an MCP gateway route's `tools/call`s per key (a user, a
//! team, a tool), in this process or shared by every replica through the Redis store of
//! token limits. The model; its checks live with the compiled rules (`mcp::limits`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Budget, LimitStoreKind};

/// Tool-call limits of an MCP gateway route.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct McpToolLimitPolicy {
    /// Where counters live: `local` (default) or `redis` (shared by every replica;
    /// needs `llm.redis`).
    #[serde(default)]
    pub store: LimitStoreKind,
    /// The limits; a call must fit every one that applies to it.
    pub limits: Vec<ToolLimitRule>,
}

/// One tool-call limit.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ToolLimitRule {
    /// Name for metrics, logs and counter keys.
    pub name: String,
    /// CEL giving the key counters are kept per, over `jwt` (verified claims; `{}`
    /// without `mcpAuthentication`), `mcp.target`, `mcp.tool.name` (the target's own
    /// name) and `route`; e.g. `jwt.sub`. An empty value or an error: the rule does not
    /// apply. Default: one counter for the route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Only these tools, as clients call them (`weather__forecast`). Default: all.
    #[serde(default)]
    pub tools: Vec<String>,
    /// What is limited.
    #[serde(flatten)]
    pub amount: ToolLimitAmount,
    /// `tokenBudget` only: what one call costs, in tokens. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_call: Option<u64>,
    /// `tokenBudget` only: draw on a counter shared by name with `tokenLimit` rules
    /// (`counter:` there), so LLM tokens and tool calls of one key share a budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counter: Option<String>,
}

/// A rate or a budget of tool calls.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ToolLimitAmount {
    /// A bucket: this many calls per minute, refilled continuously.
    CallsPerMinute(u64),
    /// A bucket: this many calls per hour, refilled continuously.
    CallsPerHour(u64),
    /// This many calls per calendar period (UTC).
    CallBudget(Budget<u64>),
    /// This many tokens per calendar period, each call costing `tokensPerCall`.
    TokenBudget(Budget<u64>),
}
