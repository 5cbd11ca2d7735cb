//! The MCP gateway's domain: the multiplexer in front of several MCP servers, and what
//! it knows before it sends or answers anything (no hyper server or tonic types).
//!
//! ```text
//! client request ── mux::Multiplexer::handle ──► the dispatch table (mux.rs)
//! client body ── jsonrpc::parse ──► Message (request / notification / response / error)
//! 2026-07-28 `_meta` + routing headers ── envelope::check ──► a stateless request (versions)
//! Mcp-Session-Id ◄─► SessionKeys::seal / open ◄─► SessionState (per-target upstream sessions)
//! tool names ◄─► TargetSet::encode / decode ("weather__echo" ↔ target 0, tool "echo")
//! upstream results ── merge::merge_initialize / merge_named ──► one result for the client
//! target calls ── upstream::Target::send ──► response::read_answer (JSON or SSE, bounded)
//! refusals and failures ── error::McpError::reply ──► status + JSON-RPC error body
//! ```
//!
//! The multiplexer uses the shared outbound hyper client to call targets; the rest is
//! free of transport types.
//!
//! Sessions are sealed into the id the client holds, so any replica that has the keys
//! serves any session and nothing is stored. JSON stays `serde_json::Value` throughout:
//! fields the gateway does not know pass through untouched.

pub mod authz;
pub mod envelope;
pub mod error;
pub mod events;
pub mod idle;
pub mod jsonrpc;
pub mod limits;
pub mod listen;
pub mod merge;
pub mod mux;
pub mod relay;
pub mod response;
pub mod session;
pub mod targets;
pub mod upstream;
pub mod versions;

pub use authz::Rules;
pub use error::McpError;
pub use jsonrpc::{Message, RpcError};
pub use limits::{Refusal, ToolCall, ToolLimits};
pub use merge::{merge_initialize, merge_named, merge_tools, merge_unique};
pub use mux::{Caller, McpBody, Multiplexer, MuxConfig, Renewals};
pub use session::{SessionKeyError, SessionKeys, SessionState, TargetSession};
pub use targets::{PrefixMode, TargetError, TargetSet};
