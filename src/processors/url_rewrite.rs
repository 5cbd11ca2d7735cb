//! `urlRewrite`: the upstream gets another authority (`full`, `host` or `port`) and
//! path (`full`, or `prefix` replacing what the route's `pathPrefix` matched), the
//! query string kept; the route stays the one the client's request chose (Envoy is
//! not asked to route again, though `host` changed). The authority is the
//! `host` header; the path goes to the transport in `cx.upstream_path` (the proxy
//! sends it, ext_proc sets `:path`, which Envoy needs `mutation_rules` for: the
//! generated xDS config allows it).

use std::sync::Arc;

use async_trait::async_trait;
use http::header::HOST;
use http::HeaderValue;

use crate::config::{
    AuthorityRewrite, Config, ConfigError, FailureMode, PathMatch, PathRewrite, UrlRewrite,
};
use crate::pipeline::{Ctx, Flow, Headers, Processor, ProcessorError, ProcessorFactory};

/// Factory of one `urlRewrite` policy.
pub struct UrlRewriteFactory {
    rewrite: Arc<Rewrite>,
}

#[derive(Debug)]
pub(super) struct Rewrite {
    authority: Option<AuthorityRewrite>,
    path: Option<PathRewrite>,
    /// The route's `pathPrefix` matches, longest first (what a `prefix` replaces).
    prefixes: Vec<String>,
}

impl UrlRewriteFactory {
    /// Compiles the policy at `path` for route `route` of `config`.
    pub fn new(
        p: &UrlRewrite,
        config: &Config,
        route: &str,
        path: &str,
    ) -> Result<Self, ConfigError> {
        p.check(path)?;
        let rewrite = Rewrite::new(p.authority.clone(), p.path.clone(), config, route);
        Ok(UrlRewriteFactory {
            rewrite: Arc::new(rewrite),
        })
    }
}

/// The `pathPrefix` values of the route named `name` (routes count in file order).
fn route_prefixes(config: &Config, name: &str) -> Vec<String> {
    let routes = config
        .binds
        .iter()
        .flat_map(|b| &b.listeners)
        .flat_map(|l| &l.routes)
        .enumerate();
    let Some((_, route)) = routes
        .into_iter()
        .find(|(i, r)| r.name_or_index(*i) == name)
    else {
        return Vec::new();
    };
    route
        .matches
        .iter()
        .filter_map(|m| match &m.path {
            Some(PathMatch::PathPrefix(p)) => Some(p.clone()),
            _ => None,
        })
        .collect()
}

impl ProcessorFactory for UrlRewriteFactory {
    fn name(&self) -> &'static str {
        "url_rewrite"
    }

    fn failure_mode(&self) -> FailureMode {
        FailureMode::FailClosed
    }

    fn new_processor(&self, _cx: &Ctx) -> Option<Box<dyn Processor>> {
        Some(Box::new(UrlRewriter(self.rewrite.clone())))
    }
}

struct UrlRewriter(Arc<Rewrite>);

impl Rewrite {
    /// `authority` and `path` to apply on a route named `route` of `config`.
    pub(super) fn new(
        authority: Option<AuthorityRewrite>,
        path: Option<PathRewrite>,
        config: &Config,
        route: &str,
    ) -> Self {
        let mut prefixes: Vec<String> = route_prefixes(config, route);
        prefixes.sort_by_key(|p| std::cmp::Reverse(p.len()));
        Rewrite {
            authority,
            path,
            prefixes,
        }
    }

    /// The authority for a request to `current`.
    pub(super) fn authority(&self, current: &str) -> Option<String> {
        let (host, port) = split_authority(current);
        match self.authority.as_ref()? {
            AuthorityRewrite::Full(a) => Some(a.clone()),
            AuthorityRewrite::Host(h) => Some(match port {
                Some(p) => format!("{h}:{p}"),
                None => h.clone(),
            }),
            AuthorityRewrite::Port(p) => Some(format!("{host}:{p}")),
        }
    }

    /// The path and query for a request to `current` (path and query).
    pub(super) fn path(&self, current: &str) -> Option<String> {
        let (path, query) = match current.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (current, None),
        };
        let new = match self.path.as_ref()? {
            PathRewrite::Full(p) => p.clone(),
            PathRewrite::Prefix(to) => {
                let matched = self.prefixes.iter().find(|p| prefix_of(p, path))?;
                let rest = &path[matched.trim_end_matches('/').len()..];
                let to = to.trim_end_matches('/');
                match (to.is_empty(), rest.is_empty()) {
                    (true, true) => "/".to_string(),
                    _ => format!("{to}{rest}"),
                }
            }
        };
        Some(match query {
            Some(q) => format!("{new}?{q}"),
            None => new,
        })
    }
}

/// Whether `prefix` matches `path` as tollgate's `pathPrefix` does (whole segments).
fn prefix_of(prefix: &str, path: &str) -> bool {
    let p = prefix.trim_end_matches('/');
    path.starts_with(p)
        && (path.len() == p.len() || path[p.len()..].starts_with('/') || p.is_empty())
}

/// `host` and `port` of an authority (`[::1]:8080` keeps its brackets).
fn split_authority(a: &str) -> (&str, Option<&str>) {
    match a.rsplit_once(':') {
        Some((h, p)) if !p.contains(']') && p.bytes().all(|b| b.is_ascii_digit()) => (h, Some(p)),
        _ => (a, None),
    }
}

#[async_trait]
impl Processor for UrlRewriter {
    async fn on_request_headers(
        &mut self,
        cx: &mut Ctx,
        headers: &mut Headers,
    ) -> Result<Flow, ProcessorError> {
        let current = headers
            .get_str("host")
            .map(str::to_string)
            .unwrap_or_else(|| cx.request.authority.clone());
        if let Some(a) = self.0.authority(&current) {
            let value = HeaderValue::from_str(&a).map_err(|_| {
                ProcessorError::internal(format!("rewritten authority {a:?} is not a header value"))
            })?;
            headers.set(HOST, value);
        }
        if let Some(p) = self.0.path(&cx.request.path) {
            cx.upstream_path = Some(p);
        }
        cx.keep_route = true;
        Ok(Flow::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(authority: Option<AuthorityRewrite>, path: Option<PathRewrite>) -> Rewrite {
        Rewrite {
            authority,
            path,
            prefixes: vec!["/api/v1".into(), "/api".into()],
        }
    }

    #[test]
    fn authorities_are_replaced_whole_or_by_part() {
        let full = rewrite(
            Some(AuthorityRewrite::Full("api.example.com:443".into())),
            None,
        );
        assert_eq!(
            full.authority("gw.local:8080").as_deref(),
            Some("api.example.com:443")
        );
        let host = rewrite(Some(AuthorityRewrite::Host("b.example".into())), None);
        assert_eq!(
            host.authority("gw.local:8080").as_deref(),
            Some("b.example:8080")
        );
        assert_eq!(host.authority("gw.local").as_deref(), Some("b.example"));
        let port = rewrite(Some(AuthorityRewrite::Port(9443)), None);
        assert_eq!(
            port.authority("gw.local:8080").as_deref(),
            Some("gw.local:9443")
        );
        assert_eq!(port.authority("[::1]:80").as_deref(), Some("[::1]:9443"));
        assert_eq!(full.path("/x"), None, "no path rewrite");
    }

    #[test]
    fn paths_are_replaced_whole_or_by_the_matched_prefix_keeping_the_query() {
        let full = rewrite(None, Some(PathRewrite::Full("/v2/chat".into())));
        assert_eq!(full.path("/api/v1/x?a=1").as_deref(), Some("/v2/chat?a=1"));
        let prefix = rewrite(
            None,
            Some(PathRewrite::Prefix("/compatible-mode/v1".into())),
        );
        assert_eq!(
            prefix.path("/api/v1/chat/completions?stream=1").as_deref(),
            Some("/compatible-mode/v1/chat/completions?stream=1"),
            "the longest matching prefix is replaced"
        );
        assert_eq!(
            prefix.path("/api/other").as_deref(),
            Some("/compatible-mode/v1/other")
        );
        assert_eq!(prefix.path("/api").as_deref(), Some("/compatible-mode/v1"));
        assert_eq!(prefix.path("/apix"), None, "whole segments only");
        let root = rewrite(None, Some(PathRewrite::Prefix("/".into())));
        assert_eq!(root.path("/api/v1/x").as_deref(), Some("/x"));
        assert_eq!(root.path("/api").as_deref(), Some("/"));
    }
}
