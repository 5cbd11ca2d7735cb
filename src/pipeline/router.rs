//! Route selection, shared by both transports: a request's host picks the listener, and
//! the first route of that listener whose match rules hold wins. In ext_proc mode all
//! listeners of all binds are considered in file order, and Envoy's route name, when
//! forwarded as the `xds.route_name` attribute, selects a route of the same name directly.

use std::collections::HashMap;
use std::sync::Arc;

use http::{HeaderMap, HeaderName};
use regex::Regex;

use super::{ProcessorFactory, RequestHead};
use crate::config::{Backend, PathMatch, ValueMatch};

/// A route ready to serve.
pub struct CompiledRoute {
    pub name: String,
    pub(super) matches: Vec<Matcher>,
    /// Processor factories in run order.
    pub factories: Vec<Arc<dyn ProcessorFactory>>,
    /// Standalone mode: where to forward (spread by weight, see `adapters::proxy`).
    pub backends: Vec<Backend>,
    /// Standalone mode: retries of a failed upstream call.
    pub retry: Option<crate::config::RetryPolicy>,
    /// Standalone mode: time allowed for the upstream's response headers.
    pub timeout: Option<std::time::Duration>,
    /// Standalone mode: the route is an MCP gateway; this answers its requests instead
    /// of `backend`.
    pub mcp: Option<Arc<crate::mcp::Multiplexer>>,
    /// The route's handles on the request metrics.
    pub tallies: crate::metrics::RouteTallies,
}

impl std::fmt::Debug for CompiledRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledRoute")
            .field("name", &self.name)
            .finish()
    }
}

pub(super) struct Matcher {
    pub path: Option<PathMatcher>,
    pub method: Option<String>,
    pub headers: Vec<(HeaderName, Option<ValueMatcher>)>,
}

pub(super) enum PathMatcher {
    Prefix(String),
    Exact(String),
    Regex(Regex),
}

pub(super) enum ValueMatcher {
    Exact(String),
    Regex(Regex),
}

/// The listeners of one bind (proxy) or of all binds (ext_proc), with their routes.
#[derive(Default)]
pub struct RouteSelector {
    pub(super) listeners: Vec<CompiledListener>,
    pub(super) by_name: HashMap<String, Arc<CompiledRoute>>,
}

pub(super) struct CompiledListener {
    pub hostnames: Vec<String>,
    pub routes: Vec<Arc<CompiledRoute>>,
}

// === impl RouteSelector ===

impl RouteSelector {
    /// The route with this name.
    pub fn by_name(&self, name: &str) -> Option<Arc<CompiledRoute>> {
        self.by_name.get(name).cloned()
    }

    /// The route for a request; `envoy_route` is Envoy's route name when known.
    pub fn select(
        &self,
        head: &RequestHead,
        headers: &HeaderMap,
        envoy_route: Option<&str>,
    ) -> Option<Arc<CompiledRoute>> {
        if let Some(route) = envoy_route.and_then(|n| self.by_name.get(n)) {
            return Some(route.clone());
        }
        let host = strip_port(&head.authority);
        self.listeners
            .iter()
            .filter(|l| l.hostnames.is_empty() || l.hostnames.iter().any(|p| host_matches(p, host)))
            .flat_map(|l| l.routes.iter())
            .find(|r| r.matches.is_empty() || r.matches.iter().any(|m| m.matches(head, headers)))
            .cloned()
    }
}

// === impl Matcher ===

impl Matcher {
    fn matches(&self, head: &RequestHead, headers: &HeaderMap) -> bool {
        if let Some(method) = &self.method {
            if !method.eq_ignore_ascii_case(&head.method) {
                return false;
            }
        }
        if let Some(path) = &self.path {
            if !path.matches(head.path_only()) {
                return false;
            }
        }
        self.headers.iter().all(|(name, value)| {
            let mut values = headers.get_all(name).iter().peekable();
            match value {
                None => values.peek().is_some(),
                Some(m) => values.any(|v| v.to_str().is_ok_and(|v| m.matches(v))),
            }
        })
    }
}

/// Why a path or header match rule does not compile.
#[derive(Debug, thiserror::Error)]
pub enum MatcherError {
    #[error("path prefix {prefix:?} must start with '/'")]
    RelativePrefix { prefix: String },
    /// `error` quotes the pattern.
    #[error("invalid regex: {error}")]
    Regex { error: regex::Error },
}

impl PathMatcher {
    pub fn from_config(m: &PathMatch) -> Result<Self, MatcherError> {
        Ok(match m {
            PathMatch::PathPrefix(p) if !p.starts_with('/') => {
                return Err(MatcherError::RelativePrefix { prefix: p.clone() })
            }
            PathMatch::PathPrefix(p) => PathMatcher::Prefix(p.clone()),
            PathMatch::Exact(p) => PathMatcher::Exact(p.clone()),
            PathMatch::Regex(r) => PathMatcher::Regex(anchored(r)?),
        })
    }

    fn matches(&self, path: &str) -> bool {
        match self {
            PathMatcher::Prefix(p) => {
                path.starts_with(p.as_str())
                    && (p.ends_with('/')
                        || path.len() == p.len()
                        || path.as_bytes()[p.len()] == b'/')
            }
            PathMatcher::Exact(p) => path == p,
            PathMatcher::Regex(r) => r.is_match(path),
        }
    }
}

impl ValueMatcher {
    pub fn from_config(m: &ValueMatch) -> Result<Self, MatcherError> {
        Ok(match m {
            ValueMatch::Exact(v) => ValueMatcher::Exact(v.clone()),
            ValueMatch::Regex(r) => ValueMatcher::Regex(anchored(r)?),
        })
    }

    fn matches(&self, value: &str) -> bool {
        match self {
            ValueMatcher::Exact(v) => v == value,
            ValueMatcher::Regex(r) => r.is_match(value),
        }
    }
}

/// Compiles a regex that must match the whole input.
fn anchored(pattern: &str) -> Result<Regex, MatcherError> {
    Regex::new(&format!("^(?:{pattern})$")).map_err(|error| MatcherError::Regex { error })
}

fn strip_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority.split(']').next().map_or(authority, |h| &h[1..]);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => {
            host.len() > suffix.len() + 1
                && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
                && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
        }
        None => pattern == "*" || pattern.eq_ignore_ascii_case(host),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_matches_at_segment_boundary() {
        let p = PathMatcher::Prefix("/v1".into());
        assert!(p.matches("/v1"));
        assert!(p.matches("/v1/chat"));
        assert!(!p.matches("/v10"));
        assert!(PathMatcher::Prefix("/".into()).matches("/anything"));
    }

    #[test]
    fn regex_is_anchored() {
        let p = PathMatcher::from_config(&PathMatch::Regex("/v[0-9]+/chat".into())).unwrap();
        assert!(p.matches("/v1/chat"));
        assert!(!p.matches("/x/v1/chat"));
        assert!(matches!(
            PathMatcher::from_config(&PathMatch::Regex("(".into())),
            Err(MatcherError::Regex { .. })
        ));
    }

    #[test]
    fn a_prefix_must_be_absolute() {
        let Err(err) = PathMatcher::from_config(&PathMatch::PathPrefix("v1".into())) else {
            panic!("a relative prefix compiled");
        };
        assert!(
            matches!(&err, MatcherError::RelativePrefix { prefix } if prefix == "v1"),
            "{err:?}"
        );
        assert_eq!(err.to_string(), "path prefix \"v1\" must start with '/'");
    }

    #[test]
    fn hosts_and_ports() {
        assert_eq!(strip_port("example.com:8080"), "example.com");
        assert_eq!(strip_port("[::1]:8080"), "::1");
        assert!(host_matches("*.example.com", "api.example.com"));
        assert!(!host_matches("*.example.com", "example.com"));
        assert!(!host_matches("*.example.com", "evilexample.com"));
        assert!(host_matches("Example.com", "example.COM"));
    }
}
