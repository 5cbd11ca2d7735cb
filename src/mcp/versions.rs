//! The MCP protocol versions this gateway serves, by era: the legacy handshake era
//! (`initialize`, sessions) and the modern stateless era (2026-07-28: every request
//! carries its version in `params._meta`). Both are served on one endpoint, chosen
//! per request.

use serde_json::{json, Value};

/// Versions reached through `initialize`, oldest first.
pub const LEGACY_VERSIONS: [&str; 4] = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];
/// Stateless versions, oldest first.
pub const MODERN_VERSIONS: [&str; 1] = ["2026-07-28"];
/// The version a legacy peer that names none is taken to speak.
pub const DEFAULT_VERSION: &str = "2025-03-26";

/// Whether `version` is one of the stateless era's.
pub fn is_modern(version: &str) -> bool {
    MODERN_VERSIONS.contains(&version)
}

/// Whether `version` is one of the handshake era's.
pub fn is_legacy(version: &str) -> bool {
    LEGACY_VERSIONS.contains(&version)
}

/// Every version served, oldest first.
pub fn supported() -> Vec<&'static str> {
    LEGACY_VERSIONS
        .iter()
        .chain(&MODERN_VERSIONS)
        .copied()
        .collect()
}

/// The JSON-RPC error answering a request for `requested` (-32022 with the versions
/// served, which tells an auto-negotiating client what to fall back to).
pub fn unsupported(id: Option<&Value>, requested: &str) -> Vec<u8> {
    let body = json!({"jsonrpc": "2.0", "id": id, "error": {
        "code": super::jsonrpc::UNSUPPORTED_PROTOCOL_VERSION,
        "message": "Unsupported protocol version",
        "data": {"supported": supported(), "requested": requested},
    }});
    body.to_string().into_bytes()
}
