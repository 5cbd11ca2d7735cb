//! The messages that name one target's item: `tools/call` and `prompts/get` (routed by
//! the name's prefix, under the item's own name, after `mcpAuthorization` and
//! `mcpToolLimit`), and `completion/complete` (a prompt's to its target, a resource
//! template's to every target that may have it). `admit_named` and `settle` are shared
//! with the calls `direct` plans for Envoy.

use bytes::Bytes;
use http::Response;
use serde_json::Value;

use super::{McpBody, Multiplexer, Session};
use crate::limits::Reservation;
use crate::mcp::authz::Item;
use crate::mcp::error::McpError;
use crate::mcp::limits::{Refusal, ToolCall, ToolLimits};
use crate::metrics::McpToolLabels;

/// A `tools/call` or `prompts/get` admitted for its target.
pub(super) struct Named {
    pub(super) index: usize,
    /// The request under the item's own name.
    pub(super) body: Bytes,
    /// Tool-call limit reservations, settled once the target answered.
    pub(super) held: Vec<Reservation>,
    /// The item's own name.
    pub(super) own: String,
}

impl Multiplexer {
    /// `tools/call`: routed as [`Self::route_named`] says, and counted by tool.
    pub(super) async fn call_tool(
        &self,
        state: &Session,
        id: Value,
        value: Value,
    ) -> Result<Response<McpBody>, McpError> {
        let name = value.pointer("/params/name").and_then(Value::as_str);
        let decoded = name.and_then(|n| self.targets.decode(n));
        let Some((index, tool)) = decoded.map(|(i, t)| (i, t.to_string())) else {
            return self.route_named(state, id, value, "tools/call").await;
        };
        let answer = self.route_named(state, id, value, "tools/call").await;
        let ok = matches!(&answer, Ok(r) if r.status().is_success());
        let m = &self.metrics;
        m.tools
            .get_or_create(&McpToolLabels {
                route: self.route.clone(),
                target: self.upstreams[index].name.clone(),
                tool: m.tool_names.value(&tool),
                result: if ok { "ok" } else { "error" },
            })
            .inc();
        answer
    }

    /// `tools/call`, `prompts/get`: the target named by `params.name`'s prefix gets the
    /// request under the item's own name; a name no target lists under is -32602.
    pub(super) async fn route_named(
        &self,
        state: &Session,
        id: Value,
        value: Value,
        method: &'static str,
    ) -> Result<Response<McpBody>, McpError> {
        let Named {
            index, body, held, ..
        } = self.admit_named(state, &id, value, method).await?;
        let answer = self.forward(state, index, id, method, body).await;
        let ok = matches!(&answer, Ok(r) if r.status().is_success());
        Self::settle(held, ok).await;
        answer
    }

    /// A tool-call limit's reservations once the call was sent: kept when the target
    /// took it, else refunded (before the answer goes out, so the caller's next call
    /// sees it).
    pub(super) async fn settle(mut held: Vec<Reservation>, delivered: bool) {
        if delivered {
            ToolLimits::delivered(&mut held);
        } else {
            ToolLimits::refund(held).await;
        }
    }

    /// The checks before a `tools/call` or `prompts/get` goes to its target: the
    /// prefix names a target (else -32602), the rules allow it (else 403), the limits
    /// admit it (reserved); the body with the item's own name.
    pub(super) async fn admit_named(
        &self,
        state: &Session,
        id: &Value,
        mut value: Value,
        method: &'static str,
    ) -> Result<Named, McpError> {
        let id = id.clone();
        let kind = if method == "tools/call" {
            "tool"
        } else {
            "prompt"
        };
        let Some(name) = value.pointer("/params/name").and_then(Value::as_str) else {
            let reason = format!("params.name must be a {kind}'s name");
            return Err(McpError::InvalidParams { id, reason });
        };
        let Some((index, own)) = self.targets.decode(name) else {
            let name = name.to_string();
            return Err(McpError::UnknownTool { id, kind, name });
        };
        let item = if kind == "tool" {
            Item::Tool(own)
        } else {
            Item::Prompt(own)
        };
        let arguments = value.pointer("/params/arguments").unwrap_or(&Value::Null);
        if !self.allows(state, index, item, arguments) {
            let name = name.to_string();
            return Err(McpError::Forbidden { id, kind, name });
        }
        let held = match (&self.tool_limits, item) {
            (Some(limits), Item::Tool(tool)) => {
                let call = ToolCall {
                    name,
                    target: &self.upstreams[index].name,
                    tool,
                    jwt: state.claims.as_ref(),
                };
                limits.admit(call).await.map_err(|r| match r {
                    Refusal::Limited {
                        message,
                        retry_after,
                    } => McpError::Limited {
                        id: id.clone(),
                        message,
                        retry_after,
                    },
                    Refusal::Unavailable(reason) => McpError::LimitsUnavailable {
                        id: id.clone(),
                        reason,
                    },
                })?
            }
            _ => Vec::new(),
        };
        let own = own.to_string();
        value["params"]["name"] = Value::String(own.clone());
        let body = Bytes::from(serde_json::to_vec(&value).expect("a Value serializes"));
        Ok(Named {
            index,
            body,
            held,
            own,
        })
    }

    /// `completion/complete`: a prompt's argument goes to the prompt's target under its
    /// own name; a resource template's to every target that may have it (the first
    /// answer wins).
    pub(super) async fn complete(
        &self,
        state: &Session,
        id: Value,
        mut value: Value,
    ) -> Result<Response<McpBody>, McpError> {
        let reference = value.pointer("/params/ref").cloned().unwrap_or(Value::Null);
        match reference["type"].as_str() {
            Some("ref/prompt") => {
                let name = reference["name"].as_str().unwrap_or_default();
                let Some((index, own)) = self.targets.decode(name) else {
                    let (kind, name) = ("prompt", name.to_string());
                    return Err(McpError::UnknownTool { id, kind, name });
                };
                if !self.allows(state, index, Item::Prompt(own), &Value::Null) {
                    let (kind, name) = ("prompt", name.to_string());
                    return Err(McpError::Forbidden { id, kind, name });
                }
                value["params"]["ref"]["name"] = Value::String(own.to_string());
                let body = Bytes::from(value.to_string());
                self.forward(state, index, id, "completion/complete", body)
                    .await
            }
            Some("ref/resource") => {
                let uri = reference["uri"].as_str().unwrap_or_default();
                let allowed = self.allowed_for(state, Item::Resource(uri));
                if allowed.is_empty() {
                    let (kind, name) = ("resource", uri.to_string());
                    return Err(McpError::Forbidden { id, kind, name });
                }
                self.first_answer(state, id, &value, "completion/complete", allowed)
                    .await
            }
            _ => {
                let reason = "params.ref must be a ref/prompt or a ref/resource".to_string();
                Err(McpError::InvalidParams { id, reason })
            }
        }
    }
}
