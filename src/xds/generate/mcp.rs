//! `mcp` routes for Envoy. tollgate's MCP gateway multiplexes inside tollgate, so Envoy
//! sends an MCP route's messages to tollgate's MCP listener (`xds.mcpAddress`, the
//! `tollgate_mcp` cluster), naming the route in a header it sets itself
//! ([`ENVOY_ROUTE_HEADER`]); the listener runs that route's policies, and ext_proc is
//! off on the route so they run once. With `mcp.direct`, ext_proc stays on: it sends
//! single-target calls straight to their target by setting `direct.header` and
//! clearing the route cache, so each target gets an Envoy route ahead of the
//! listener's that matches that header and rewrites the host and path to the target's
//! URL, with a cluster of its own; `deploy/envoy/tollgate-mcp-direct.yaml` is the same
//! wiring written by hand.

use crate::config::{Backend, BackendTls, McpBackend};

pub use crate::config::ENVOY_ROUTE_HEADER;

/// The cluster that reaches tollgate's MCP listener.
pub const MCP_CLUSTER: &str = "tollgate_mcp";

/// How Envoy carries one `mcp` route.
pub struct McpWiring {
    /// Envoy's idle bound on the route's streams: above tollgate's own
    /// `mcp.streamIdleTimeout`, so tollgate's cut (with its JSON-RPC error) comes first.
    pub idle: std::time::Duration,
    /// With `mcp.direct`: the header ext_proc sets, and each target's route.
    pub direct: Option<(String, Vec<DirectTarget>)>,
}

/// A target that ext_proc may send calls to straight through Envoy.
pub struct DirectTarget {
    /// The target's name: the value of the direct header.
    pub name: String,
    /// Its cluster, as a backend at the URL's authority.
    pub backend: Backend,
    /// The URL's `host:port` (the Host Envoy sends) and path.
    pub authority: String,
    pub path: String,
}

/// Envoy's slack over tollgate's own stream idle bound.
const IDLE_SLACK: std::time::Duration = std::time::Duration::from_secs(30);

/// The wiring of a route's `mcp` section (checked when the pipeline was built; a
/// section that does not check gets no direct routes).
pub fn wiring(mcp: &McpBackend) -> McpWiring {
    let idle = mcp.stream_idle_timeout.get() + IDLE_SLACK;
    let direct = mcp.direct.as_ref().and_then(|d| {
        let checked = mcp.check("").ok()?;
        let targets = mcp
            .targets
            .iter()
            .zip(&checked.urls)
            .map(|(t, url)| direct_target(&t.name, url))
            .collect();
        Some((d.header.clone(), targets))
    });
    McpWiring { idle, direct }
}

fn direct_target(name: &str, url: &http::Uri) -> DirectTarget {
    let tls = url.scheme_str() == Some("https");
    let host = url.host().unwrap_or_default();
    let port = url.port_u16().unwrap_or(if tls { 443 } else { 80 });
    // `host()` keeps an IPv6 address's brackets.
    let host_port = format!("{host}:{port}");
    let authority = url
        .authority()
        .map_or_else(|| host_port.clone(), |a| a.to_string());
    DirectTarget {
        name: name.to_string(),
        backend: Backend {
            host: host_port,
            tls: tls.then(BackendTls::default),
            http2: false,
            weight: 1,
        },
        authority,
        path: url.path().to_string(),
    }
}
