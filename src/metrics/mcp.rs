//! MCP gateway metrics: every call a route makes to its targets (count and latency by
//! method), and tool calls by tool. Route and target names come from the config and
//! `method` from a fixed set; the tool name is the client's, so it is a bounded label
//! (`limits.labels`: the first distinct names, then `other`).

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::labels::{BoundedLabel, LabelBounds};

/// `tollgate_mcp_target_calls_total` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct McpCallLabels {
    pub route: String,
    pub target: String,
    /// `initialize`, `notifications`, `tools/list`, `tools/call`, `prompts/list`,
    /// `prompts/get`, `resources/list`, `resources/templates/list`, `resources/read`,
    /// `delete` or `other`.
    pub method: &'static str,
    /// `ok` or `error`.
    pub result: &'static str,
}

/// `tollgate_mcp_target_call_duration_seconds` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct McpMethodLabels {
    pub route: String,
    pub target: String,
    pub method: &'static str,
}

/// `tollgate_mcp_requests_total` labels: a client's message, as the gateway answered it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct McpRequestLabels {
    pub route: String,
    /// A fixed set (the methods of `tollgate_mcp_target_calls_total`, `ping`,
    /// `response` for a client's answer, `get`, `delete`, `other`).
    pub method: &'static str,
    /// `ok`, or `error` when the gateway answered with an error (a refusal, a failed
    /// target); a target's own JSON-RPC error passed through is `ok`.
    pub result: &'static str,
}

/// `tollgate_mcp_request_duration_seconds` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct McpRouteMethodLabels {
    pub route: String,
    pub method: &'static str,
}

/// `tollgate_mcp_tool_calls_total` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct McpToolLabels {
    pub route: String,
    pub target: String,
    /// The tool's name at its target, bounded.
    pub tool: String,
    /// `ok` or `error` (the target failed or refused the call; a tool's own `isError`
    /// result is `ok`).
    pub result: &'static str,
}

#[derive(Clone)]
pub struct McpMetrics {
    pub calls: Family<McpCallLabels, Counter>,
    pub duration: Family<McpMethodLabels, Histogram>,
    pub tools: Family<McpToolLabels, Counter>,
    /// Client messages by method and result, and the time to the answer's headers.
    pub requests: Family<McpRequestLabels, Counter>,
    pub request_duration: Family<McpRouteMethodLabels, Histogram>,
    /// `mcpToolLimit` decisions, by route, limit and decision.
    pub limit_decisions: Family<super::LimitLabels, Counter>,
    /// The bound on `tool` values.
    pub tool_names: Arc<BoundedLabel>,
}

impl McpMetrics {
    pub fn register(registry: &mut Registry, bounds: Arc<LabelBounds>) -> Self {
        let calls = Family::<McpCallLabels, Counter>::default();
        registry.register(
            "tollgate_mcp_target_calls",
            "Calls MCP gateway routes made to their targets, by route, target, method and result",
            calls.clone(),
        );
        let duration = Family::<McpMethodLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ])
        });
        registry.register(
            "tollgate_mcp_target_call_duration_seconds",
            "Time an MCP target took to answer a call, by route, target and method (a call \
             passed through, such as tools/call, until its answer's headers)",
            duration.clone(),
        );
        let tools = Family::<McpToolLabels, Counter>::default();
        registry.register(
            "tollgate_mcp_tool_calls",
            "tools/call requests MCP gateway routes routed, by route, target, tool and result",
            tools.clone(),
        );
        let limit_decisions = Family::<super::LimitLabels, Counter>::default();
        registry.register(
            "tollgate_mcp_tool_limit_decisions",
            "mcpToolLimit decisions on tools/call, by route, limit and decision (allowed, denied)",
            limit_decisions.clone(),
        );
        let requests = Family::<McpRequestLabels, Counter>::default();
        registry.register(
            "tollgate_mcp_requests",
            "Client messages MCP gateway routes answered, by route, method and result",
            requests.clone(),
        );
        let request_duration =
            Family::<McpRouteMethodLabels, Histogram>::new_with_constructor(|| {
                Histogram::new([
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    30.0,
                ])
            });
        registry.register(
            "tollgate_mcp_request_duration_seconds",
            "Time an MCP gateway route took to answer a client's message (a stream: until its headers), by route and method",
            request_duration.clone(),
        );
        McpMetrics {
            calls,
            duration,
            tools,
            requests,
            request_duration,
            limit_decisions,
            tool_names: Arc::new(BoundedLabel::new(bounds)),
        }
    }
}
