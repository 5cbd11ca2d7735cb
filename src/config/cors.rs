//! `cors`: answering browsers' cross-origin checks at the gateway, with agentgateway's
//! keys and Envoy's semantics (a preflight from an origin not allowed is answered
//! locally without CORS headers, never forwarded). See `processors/cors.rs`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Duration;

/// Cross-origin resource sharing for a route (or every route, at the top level).
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CorsPolicy {
    /// Origins allowed: `*` (any), or `scheme://host[:port]` where the host may hold
    /// `*` wildcards (`https://*.example.com`); the port defaults to the scheme's.
    /// Empty: no origin is allowed.
    #[serde(default)]
    pub allow_origins: Vec<String>,
    /// Methods a preflight may allow (`Access-Control-Allow-Methods`); `*` allows the
    /// method the preflight asks for.
    #[serde(default)]
    pub allow_methods: Vec<String>,
    /// Request headers a preflight may allow (`Access-Control-Allow-Headers`); `*`
    /// allows the ones the preflight asks for.
    #[serde(default)]
    pub allow_headers: Vec<String>,
    /// Response headers the browser may expose to the page
    /// (`Access-Control-Expose-Headers`).
    #[serde(default)]
    pub expose_headers: Vec<String>,
    /// Send `Access-Control-Allow-Credentials: true`.
    #[serde(default)]
    pub allow_credentials: bool,
    /// How long a browser may cache a preflight's answer (`Access-Control-Max-Age`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<Duration>,
}
