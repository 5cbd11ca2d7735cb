//! `xds:` — tollgate as Envoy's control plane. With this section, tollgate serves ADS
//! (State-of-the-World and Delta, and the per-type CDS/EDS/LDS/RDS services) on the
//! `extProc` gRPC server, and the `binds` become Envoy's listeners: Envoy listens on
//! them and tollgate opens no proxy socket of its own, except its MCP listener
//! (`xds.mcpAddress`) when a route has `mcp`. [`check_xds`] names what a config
//! asks of Envoy that the generator cannot write yet.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Config, ConfigError, ConfigErrors, Duration};

/// What tollgate serves Envoy over xDS.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct XdsConfig {
    /// `host:port` at which Envoy reaches tollgate's ext_proc server (the generated
    /// `tollgate` cluster). Default: `extProc.address`, an unspecified IP (`0.0.0.0`,
    /// `[::]`) read as loopback: the sidecar case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ext_proc_address: Option<String>,
    /// `IP:port` of tollgate's MCP listener under xDS: Envoy sends the messages of
    /// every `mcp` route there (with `mcp.direct`, those tollgate's ext_proc does not
    /// send straight to a target), and tollgate listens on it whenever a route has `mcp`.
    /// Default `127.0.0.1:15081`: Envoy and tollgate in one Pod. An unspecified IP
    /// (`0.0.0.0`) is listened on as given and dialed by Envoy as loopback.
    #[serde(default = "default_mcp_address")]
    pub mcp_address: String,
    /// For Envoys without ADS (their bootstrap's `cds_config` and `lds_config` name
    /// tollgate's per-type services): the bootstrap cluster that reaches tollgate. What
    /// those services send names it as the source of the routes, endpoints and ext_proc
    /// filter config the listeners and clusters refer to. Default `xds_cluster`.
    #[serde(default = "default_bootstrap_cluster")]
    pub bootstrap_cluster: String,
    /// The ext_proc filter's `message_timeout`. Default 1s.
    #[serde(default = "default_message_timeout")]
    pub message_timeout: Duration,
    /// The ext_proc filter's `max_message_timeout` (tollgate may raise a stream's
    /// timeout up to it). Default 10s.
    #[serde(default = "default_max_message_timeout")]
    pub max_message_timeout: Duration,
    /// Let requests through when tollgate cannot be reached (`failure_mode_allow`).
    /// Default false: a request tollgate cannot process gets Envoy's 500.
    #[serde(default)]
    pub failure_mode_allow: bool,
    /// Resources for particular Envoys, by node id. A node listed here gets only the
    /// binds named by port; any other node gets every bind.
    #[serde(default)]
    pub nodes: BTreeMap<String, XdsNode>,
    /// Whole tollgate configs this tollgate serves, by name, to tollgate sidecars
    /// started with `tollgate serve --from-xds HOST:PORT --config-name NAME`
    /// (resource type `tollgate.config.v1.Config`). Each is a config as a file holds
    /// it, checked here for what it must serve; the sidecar validates it whole and
    /// NACKs it with the reasons if it cannot apply it. `${ENV}` references are
    /// resolved on this side, and the text travels as it is.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub configs: BTreeMap<String, Box<Config>>,
}

/// What one Envoy node (by `node.id`) is served.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct XdsNode {
    /// Ports of the binds this node listens on.
    pub binds: Vec<u16>,
}

/// The request header in which Envoy names the `mcp` route whose message it sends to
/// tollgate's MCP listener. Envoy sets it itself (overwriting a client's), and the
/// listener serves only the route it names.
pub const ENVOY_ROUTE_HEADER: &str = "x-tollgate-route";

fn default_bootstrap_cluster() -> String {
    "xds_cluster".to_string()
}

fn default_mcp_address() -> String {
    "127.0.0.1:15081".to_string()
}

/// Where tollgate's MCP listener listens under xDS: `xds.mcpAddress` when `xds` is on
/// and some route has `mcp`, else nowhere.
pub fn mcp_listener(config: &Config) -> Option<&str> {
    let xds = config.xds.as_ref()?;
    let has_mcp = config
        .binds
        .iter()
        .flat_map(|b| &b.listeners)
        .flat_map(|l| &l.routes)
        .any(|r| r.mcp.is_some());
    has_mcp.then_some(xds.mcp_address.as_str())
}

fn default_message_timeout() -> Duration {
    Duration::from_secs(1)
}

fn default_max_message_timeout() -> Duration {
    Duration::from_secs(10)
}

/// Checks the `xds` section against the rest of the config, naming each field it
/// cannot serve: ADS runs on the `extProc` server, node binds must exist, and routes
/// whose Envoy side the generator does not write yet (`mcp` targets) are refused
/// rather than served half-wired.
pub fn check_xds(config: &Config) -> Result<(), ConfigError> {
    let Some(xds) = &config.xds else {
        return Ok(());
    };
    let mut errs = ConfigErrors::default();
    if config.ext_proc.is_none() {
        errs.push(ConfigError::field(
            "xds",
            "xDS is served on the ext_proc gRPC server: give `extProc.address` too",
        ));
    }
    if xds.message_timeout > xds.max_message_timeout {
        errs.push(ConfigError::field(
            "xds.messageTimeout",
            "is longer than `xds.maxMessageTimeout`, which Envoy rejects",
        ));
    }
    if xds.bootstrap_cluster.is_empty() {
        errs.push(ConfigError::field(
            "xds.bootstrapCluster",
            "must name the Envoy bootstrap's cluster for tollgate",
        ));
    }
    if xds.mcp_address.parse::<std::net::SocketAddr>().is_err() {
        errs.push(ConfigError::field(
            "xds.mcpAddress",
            format!("{:?} is not an IP:port", xds.mcp_address),
        ));
    }
    for (name, served) in &xds.configs {
        if let Err(e) = super::check_serves(served) {
            for p in e.problems() {
                let (path, message) = match p {
                    ConfigError::Field { path, message } if path == "(root)" => {
                        (format!("xds.configs.{name}"), message.clone())
                    }
                    ConfigError::Field { path, message } => {
                        (format!("xds.configs.{name}.{path}"), message.clone())
                    }
                    other => (format!("xds.configs.{name}"), other.to_string()),
                };
                errs.push(ConfigError::field(path, message));
            }
        }
    }
    for (node, spec) in &xds.nodes {
        for (i, port) in spec.binds.iter().enumerate() {
            if !config.binds.iter().any(|b| b.port == *port) {
                errs.push(ConfigError::field(
                    format!("xds.nodes.{node}.binds[{i}]"),
                    format!("no bind has port {port}"),
                ));
            }
        }
    }
    for (b, bind) in config.binds.iter().enumerate() {
        for (l, listener) in bind.listeners.iter().enumerate() {
            for (r, route) in listener.routes.iter().enumerate() {
                let path = format!("binds[{b}].listeners[{l}].routes[{r}]");
                if route.mcp.is_some() {
                    // Envoy sends them to tollgate's MCP listener: no backend needed.
                } else if route.policies.endpoint_picker.is_some()
                    || config.policies.endpoint_picker.is_some()
                {
                    // Envoy forwards to the pick: no backend needed.
                } else if answered(route, config) {
                    // Answered at the gateway: no backend needed.
                } else if route.backends.is_empty() {
                    errs.push(ConfigError::field(
                        format!("{path}.backends"),
                        "Envoy needs a backend to send this route's requests to",
                    ));
                } else if let Some(e) = unshared_settings(&route.backends, &path) {
                    errs.push(e);
                }
            }
        }
    }
    errs.finish(())
}

/// Several backends on one route are one Envoy cluster, so they must share its TLS and
/// protocol settings — and its SNI: with TLS, one host name or an explicit `tls.sni`.
fn unshared_settings(backends: &[super::Backend], path: &str) -> Option<ConfigError> {
    let first = backends.first()?;
    let tls_of = |b: &super::Backend| b.tls.clone();
    let host_of = |b: &super::Backend| {
        b.host
            .rsplit_once(':')
            .map_or(b.host.clone(), |h| h.0.to_string())
    };
    for (i, b) in backends.iter().enumerate().skip(1) {
        if b.http2 != first.http2 || tls_of(b) != tls_of(first) {
            return Some(ConfigError::field(
                format!("{path}.backends[{i}]"),
                "a route's backends are one Envoy cluster: they must have the `tls` and `http2` settings of backends[0]",
            ));
        }
        let sni = first.tls.as_ref().map(|t| t.sni.is_none());
        if sni == Some(true) && host_of(b) != host_of(first) {
            return Some(ConfigError::field(
                format!("{path}.backends[{i}].tls.sni"),
                "TLS backends of one route share one SNI: give every one the same `tls.sni`, or use one host name",
            ));
        }
    }
    None
}

/// Whether a route is answered at the gateway (`directResponse`, `requestRedirect`).
fn answered(route: &super::Route, config: &Config) -> bool {
    let policies = route.policies.over(&config.policies);
    policies.direct_response.is_some() || policies.request_redirect.is_some()
}
