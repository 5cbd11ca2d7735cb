//! `mcp` on a route: the route is an MCP gateway that multiplexes several Streamable-HTTP
//! MCP servers (targets) behind its one endpoint, in the standalone proxy. The model and
//! its checks; every error names the field it concerns
//! (`binds[0].listeners[0].routes[0].mcp.targets[1].name: …`). The session keys are
//! secrets: `Debug` hides them and the config dump redacts them.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ConfigError, ConfigErrors, Duration};
use crate::mcp::{PrefixMode, SessionKeys, TargetError, TargetSet};

/// An MCP gateway route: its targets, how tool names tell them apart, and sessions.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct McpBackend {
    /// The MCP servers, in merge order (their tools are listed in this order).
    pub targets: Vec<McpTarget>,
    /// Between a target's name and a tool's in the names the client sees
    /// (`weather__echo`). Made of `A-Z a-z 0-9 _ . -`; no target name may contain it.
    /// Default `__`.
    #[serde(default = "default_separator")]
    pub separator: String,
    /// `auto` (default): tool names carry their target's prefix only when there is more
    /// than one target; `always`: even for a single target.
    #[serde(default)]
    pub prefix: McpPrefix,
    /// How the client's session id is sealed.
    #[serde(default)]
    pub session: McpSession,
    /// Origins a browser may call from (`https://app.example.com`). A request with an
    /// `Origin` header not listed gets 403; a request without one (SDK clients) passes.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Time allowed for each call to a target (its answer read whole when tollgate
    /// merges it, its response headers when it passes through). Default `30s`.
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    /// The longest a target's streamed answer (a `tools/call` running, its progress
    /// events) may send nothing before tollgate cuts it. Default `5m`.
    #[serde(default = "default_stream_idle")]
    pub stream_idle_timeout: Duration,
    /// Behind Envoy: tollgate's ext_proc sends single-target calls (`tools/call`,
    /// `prompts/get`) straight to their target — the body's name without its prefix,
    /// the target's session and credentials, the target's name in `header` with the
    /// route cache cleared, for an Envoy route per target to match. Every other message
    /// goes on to tollgate's MCP listener. Off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct: Option<McpDirect>,
}

/// How calls routed straight to their target are marked for Envoy.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct McpDirect {
    /// The request header that carries the target's name (lower case). Default
    /// `x-tollgate-mcp-target`.
    #[serde(default = "default_direct_header")]
    pub header: String,
}

fn default_direct_header() -> String {
    "x-tollgate-mcp-target".to_string()
}

/// One MCP server behind the gateway.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct McpTarget {
    /// The target's name: `A-Z a-z 0-9 -`, unique; the prefix of its tools' names.
    pub name: String,
    /// The server's Streamable-HTTP endpoint, `http://` or `https://`
    /// (`http://127.0.0.1:9101/mcp`).
    pub url: String,
    /// Headers sent with every call to this target, e.g. its own credentials
    /// (`Authorization: Bearer ${WEATHER_TOKEN}`); the client's token is never
    /// forwarded. Values are hidden in `/config`. Not `Host`, `Content-Type`, `Accept`,
    /// `Content-Length`, `Mcp-Session-Id` nor `MCP-Protocol-Version`, which tollgate sets.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub headers: std::collections::BTreeMap<String, String>,
}

/// Headers tollgate sets on a call to a target itself.
const RESERVED_HEADERS: [&str; 8] = [
    "host",
    "content-type",
    "content-length",
    "accept",
    "mcp-session-id",
    "mcp-protocol-version",
    "transfer-encoding",
    "connection",
];

/// When tool names carry their target's prefix.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum McpPrefix {
    /// Only with more than one target.
    #[default]
    Auto,
    /// Always.
    Always,
}

/// Sealed sessions: the client's `Mcp-Session-Id` carries every target's session,
/// encrypted, so any replica with the same keys serves it and nothing is stored.
#[derive(Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct McpSession {
    /// AES-256 keys, base64url (or base64), 32 bytes each, usually `${ENV}` references:
    /// the first seals, every one opens (put a new key first, keep the old one until
    /// its sessions are gone). Empty: a random key per process, so sessions do not
    /// survive a restart nor move between replicas (a warning says so).
    #[serde(default)]
    pub keys: Vec<String>,
    /// How long a session lasts from its `initialize`; after that it is unknown (404)
    /// and the client initializes again. Bounds how long a leaked session id, or one
    /// DELETEd through another replica, stays usable. Default `24h`.
    #[serde(default = "default_max_age")]
    pub max_age: Duration,
}

fn default_max_age() -> Duration {
    Duration::from_secs(24 * 3600)
}

impl Default for McpSession {
    fn default() -> Self {
        McpSession {
            keys: Vec::new(),
            max_age: default_max_age(),
        }
    }
}

impl fmt::Debug for McpSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("McpSession")
            .field("keys", &format_args!("<{} redacted>", self.keys.len()))
            .field("max_age", &self.max_age)
            .finish()
    }
}

fn default_separator() -> String {
    "__".to_string()
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_stream_idle() -> Duration {
    Duration::from_secs(300)
}

impl From<McpPrefix> for PrefixMode {
    fn from(p: McpPrefix) -> Self {
        match p {
            McpPrefix::Auto => PrefixMode::Auto,
            McpPrefix::Always => PrefixMode::Always,
        }
    }
}

/// What a checked `mcp` section compiles to.
pub struct McpChecked {
    pub targets: TargetSet,
    /// The targets' URLs, in target order.
    pub urls: Vec<http::Uri>,
    /// The targets' own headers, in target order.
    pub headers: Vec<Vec<(http::HeaderName, http::HeaderValue)>>,
    /// `None` when no key is configured.
    pub keys: Option<SessionKeys>,
    /// `direct`: the header that names a call's target.
    pub direct: Option<http::HeaderName>,
}

impl McpBackend {
    /// Checks the section at `path` (`….routes[0].mcp`), reporting every problem.
    pub fn check(&self, path: &str) -> Result<McpChecked, ConfigError> {
        let mut errs = ConfigErrors::default();
        let names = self.targets.iter().map(|t| t.name.clone()).collect();
        let targets = errs.check(
            TargetSet::new(names, self.separator.clone(), self.prefix.into())
                .map_err(|e| target_error(path, e)),
        );
        let mut urls = Vec::new();
        let mut headers = Vec::new();
        for (i, target) in self.targets.iter().enumerate() {
            urls.extend(errs.check(target_url(&target.url, &format!("{path}.targets[{i}].url"))));
            let at = format!("{path}.targets[{i}].headers");
            headers.push(
                errs.check(target_headers(&target.headers, &at))
                    .unwrap_or_default(),
            );
        }
        let keys = if self.session.keys.is_empty() {
            None
        } else {
            errs.check(SessionKeys::from_base64(&self.session.keys).map_err(|e| key_error(path, e)))
        };
        for (i, origin) in self.allowed_origins.iter().enumerate() {
            if origin.is_empty() || !origin.is_ascii() || origin.ends_with('/') {
                errs.push(ConfigError::field(
                    format!("{path}.allowedOrigins[{i}]"),
                    format!("{origin:?} must be an origin such as https://app.example.com"),
                ));
            }
        }
        for (field, d) in [
            ("timeout", self.timeout),
            ("streamIdleTimeout", self.stream_idle_timeout),
            ("session.maxAge", self.session.max_age),
        ] {
            if d.get().is_zero() {
                errs.push(ConfigError::field(
                    format!("{path}.{field}"),
                    "must be above zero",
                ));
            }
        }
        let direct = self.direct.as_ref().and_then(|d| {
            let at = format!("{path}.direct.header");
            errs.check(direct_header(&d.header, &at))
        });
        errs.finish(())?;
        Ok(McpChecked {
            targets: targets.expect("no error recorded"),
            urls,
            headers,
            keys,
            direct,
        })
    }
}

/// `direct.header`: a lower-case header name tollgate does not set for other reasons.
fn direct_header(name: &str, at: &str) -> Result<http::HeaderName, ConfigError> {
    let header = http::HeaderName::from_bytes(name.as_bytes())
        .ok()
        .filter(|h| h.as_str() == name)
        .ok_or_else(|| {
            ConfigError::field(at, format!("{name:?} is not a lower-case header name"))
        })?;
    let reserved =
        RESERVED_HEADERS.contains(&name) || name == "authorization" || name.starts_with("mcp-");
    if reserved {
        return Err(ConfigError::field(
            at,
            format!("{name:?} carries MCP or HTTP meaning; name a header of your own"),
        ));
    }
    Ok(header)
}

/// A target set error at its field.
fn target_error(path: &str, e: TargetError) -> ConfigError {
    let (at, message) = match &e {
        TargetError::Empty => (
            "targets".to_string(),
            "at least one target is needed".into(),
        ),
        TargetError::Separator { .. } => ("separator".to_string(), e.to_string()),
        TargetError::Name { index, .. }
        | TargetError::Duplicate { index, .. }
        | TargetError::ContainsSeparator { index, .. } => {
            // The message starts with `targets[i].name`, which the path now says.
            let text = e.to_string();
            let message = text
                .split_once(' ')
                .map_or(text.clone(), |(_, m)| m.to_string());
            (format!("targets[{index}].name"), message)
        }
    };
    ConfigError::field(format!("{path}.{at}"), message)
}

fn key_error(path: &str, e: crate::mcp::SessionKeyError) -> ConfigError {
    use crate::mcp::SessionKeyError as K;
    let (index, message) = match &e {
        K::Empty => (None, "no keys".to_string()),
        K::Base64 { index, error } => (Some(*index), format!("not base64url: {error}")),
        K::Length { index, len } => (Some(*index), format!("must decode to 32 bytes (got {len})")),
    };
    let at = match index {
        Some(i) => format!("{path}.session.keys[{i}]"),
        None => format!("{path}.session.keys"),
    };
    ConfigError::field(at, message)
}

/// A target's headers, each checked at `path.<name>`.
fn target_headers(
    headers: &std::collections::BTreeMap<String, String>,
    path: &str,
) -> Result<Vec<(http::HeaderName, http::HeaderValue)>, ConfigError> {
    let mut out = Vec::new();
    for (name, value) in headers {
        let at = format!("{path}.{name}");
        let n = http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| ConfigError::field(&at, "invalid header name"))?;
        if RESERVED_HEADERS.contains(&n.as_str()) {
            return Err(ConfigError::field(&at, "set by tollgate on every call"));
        }
        let mut v = http::HeaderValue::from_str(value)
            .map_err(|_| ConfigError::field(&at, "invalid header value"))?;
        v.set_sensitive(true);
        out.push((n, v));
    }
    Ok(out)
}

/// An `http://` or `https://` URL with a host, or an error at `path`.
fn target_url(url: &str, path: &str) -> Result<http::Uri, ConfigError> {
    let bad = |why: &str| ConfigError::field(path, format!("{url:?} {why}"));
    let uri: http::Uri = url.parse().map_err(|_| bad("is not a URL"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(bad("must start with http:// or https://")),
    }
    match uri.authority() {
        Some(a) if !a.host().is_empty() && !a.as_str().contains('@') => Ok(uri),
        Some(_) => Err(bad("must have a host and no userinfo")),
        None => Err(bad("must have a host")),
    }
}

#[cfg(test)]
mod tests;
