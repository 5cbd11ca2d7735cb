//! The MCP gateway's domain, free of transport types (no hyper, no tonic): what the
//! multiplexer in front of several MCP servers knows before it sends or answers anything.
//!
//! ```text
//! client body ── jsonrpc::parse ──► Message (request / notification / response / error)
//! Mcp-Session-Id ◄─► SessionKeys::seal / open ◄─► SessionState (per-target upstream sessions)
//! tool names ◄─► TargetSet::encode / decode ("weather__echo" ↔ target 0, tool "echo")
//! upstream results ── merge::merge_initialize / merge_tools ──► one result for the client
//! ```
//!
//! Sessions are sealed into the id the client holds, so any replica that has the keys
//! serves any session and nothing is stored. JSON stays `serde_json::Value` throughout:
//! fields the gateway does not know pass through untouched.

pub mod jsonrpc;
pub mod merge;
pub mod session;
pub mod targets;

pub use jsonrpc::{Message, RpcError};
pub use merge::{merge_initialize, merge_tools};
pub use session::{SessionKeyError, SessionKeys, SessionState, TargetSession};
pub use targets::{PrefixMode, TargetError, TargetSet};
