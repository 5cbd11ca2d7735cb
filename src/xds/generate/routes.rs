//! A bind's listeners and routes as one Envoy route configuration.
//!
//! tollgate picks a route by trying, in file order, the routes of every listener whose
//! hostnames match the request's host (a listener without hostnames matches every
//! host). Envoy picks one virtual host by domain first. So each distinct hostname
//! becomes a virtual host holding, in file order, the routes of every listener that
//! would see that host, and `*` holds the routes of the listeners without hostnames.
//! Route names are tollgate's, and Envoy sends them back as `xds.route_name`, so the
//! ext_proc stream runs the policies of the very route Envoy picked.

use envoy_types::pb::envoy::config::route::v3::{
    header_matcher, route, route_action, route_match, HeaderMatcher, Route as EnvoyRoute,
    RouteAction, RouteConfiguration, RouteMatch as EnvoyMatch, VirtualHost,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{
    regex_matcher, string_matcher, RegexMatcher, StringMatcher,
};
use envoy_types::pb::google::protobuf::Duration as PbDuration;

use super::address::Target;
use super::listener;
use crate::config::{Bind, Config, HeaderMatch, PathMatch, Route, RouteMatch, ValueMatch};

/// A route with the name tollgate knows it by and the cluster of its backend.
pub struct NamedRoute<'a> {
    pub name: String,
    pub cluster: String,
    pub route: &'a Route,
}

/// The route configuration of `bind`; `routes[l]` are the named routes of listener `l`.
pub fn route_configuration(
    config: &Config,
    bind: &Bind,
    routes: &[Vec<NamedRoute<'_>>],
) -> RouteConfiguration {
    let mut domains: Vec<String> = Vec::new();
    for listener in &bind.listeners {
        for h in &listener.hostnames {
            if h != "*" && !domains.contains(h) {
                domains.push(h.clone());
            }
        }
    }
    let mut virtual_hosts = Vec::new();
    for domain in &domains {
        let seen = bind.listeners.iter().enumerate().filter(|(_, l)| {
            l.hostnames.is_empty()
                || l.hostnames
                    .iter()
                    .any(|p| p == domain || p == "*" || covers(p, domain))
        });
        let routes = seen
            .flat_map(|(l, _)| &routes[l])
            .flat_map(|r| routes_of(config, r));
        virtual_hosts.push(VirtualHost {
            name: domain.clone(),
            domains: vec![domain.clone()],
            routes: routes.collect(),
            ..Default::default()
        });
    }
    let catch_all: Vec<_> = bind
        .listeners
        .iter()
        .enumerate()
        .filter(|(_, l)| l.hostnames.is_empty() || l.hostnames.iter().any(|h| h == "*"))
        .flat_map(|(l, _)| &routes[l])
        .flat_map(|r| routes_of(config, r))
        .collect();
    if !catch_all.is_empty() {
        virtual_hosts.push(VirtualHost {
            name: "any".into(),
            domains: vec!["*".into()],
            routes: catch_all,
            ..Default::default()
        });
    }
    RouteConfiguration {
        name: listener::name(bind),
        virtual_hosts,
        ..Default::default()
    }
}

/// Whether a `*.suffix` pattern covers the exact host `domain` (a wildcard domain is
/// its own virtual host, and Envoy prefers exact domains to wildcards).
fn covers(pattern: &str, domain: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) if !domain.starts_with("*.") => {
            domain.len() > suffix.len() + 1
                && domain[domain.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
                && domain.as_bytes()[domain.len() - suffix.len() - 1] == b'.'
        }
        _ => false,
    }
}

fn route(config: &Config, named: &NamedRoute<'_>) -> EnvoyRoute {
    let timeout = named
        .route
        .policies
        .timeout
        .unwrap_or(config.upstream.request_timeout)
        .get();
    let dns_backend = named
        .route
        .backends
        .first()
        .and_then(|b| Target::parse(&b.host).ok())
        .is_some_and(|t| matches!(t, Target::Dns(..)));
    let action = RouteAction {
        cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(
            named.cluster.clone(),
        )),
        // Envoy's route timeout runs until the whole response is in, which would cut
        // long SSE completions: off, and tollgate's time-to-headers bound becomes the
        // stream's idle timeout (no byte for that long ends it, before or after the
        // headers).
        timeout: Some(PbDuration::default()),
        idle_timeout: Some(PbDuration {
            seconds: timeout.as_secs() as i64,
            nanos: timeout.subsec_nanos() as i32,
        }),
        // A provider by name wants its own name as the host, as its certificate does.
        host_rewrite_specifier: dns_backend.then_some(
            route_action::HostRewriteSpecifier::AutoHostRewrite(
                envoy_types::pb::google::protobuf::BoolValue { value: true },
            ),
        ),
        ..Default::default()
    };
    EnvoyRoute {
        name: named.name.clone(),
        r#match: Some(
            named
                .route
                .matches
                .first()
                .map_or_else(|| prefix("/"), route_match),
        ),
        action: Some(route::Action::Route(action)),
        ..Default::default()
    }
}

/// The Envoy routes of one tollgate route: Envoy routes have one match each, so a
/// route with several (any of them) becomes one Envoy route per match, all with its
/// name; none matches every path.
pub fn routes_of(config: &Config, named: &NamedRoute<'_>) -> Vec<EnvoyRoute> {
    let base = route(config, named);
    if named.route.matches.len() <= 1 {
        return vec![base];
    }
    named
        .route
        .matches
        .iter()
        .map(|m| EnvoyRoute {
            r#match: Some(route_match(m)),
            ..base.clone()
        })
        .collect()
}

fn prefix(p: &str) -> EnvoyMatch {
    EnvoyMatch {
        path_specifier: Some(route_match::PathSpecifier::Prefix(p.into())),
        ..Default::default()
    }
}

fn regex(pattern: &str) -> RegexMatcher {
    RegexMatcher {
        regex: pattern.to_string(),
        engine_type: None::<regex_matcher::EngineType>,
    }
}

fn string_matcher(v: &ValueMatch) -> StringMatcher {
    let pattern = match v {
        ValueMatch::Exact(s) => string_matcher::MatchPattern::Exact(s.clone()),
        ValueMatch::Regex(r) => string_matcher::MatchPattern::SafeRegex(regex(r)),
    };
    StringMatcher {
        match_pattern: Some(pattern),
        ..Default::default()
    }
}

/// tollgate's path prefix is segment-aware (`/v1` matches `/v1` and `/v1/x`, not
/// `/v10`) unless it ends in `/`: Envoy's `path_separated_prefix` and `prefix`.
fn route_match(m: &RouteMatch) -> EnvoyMatch {
    let path = match &m.path {
        None => route_match::PathSpecifier::Prefix("/".into()),
        Some(PathMatch::PathPrefix(p)) if p.ends_with('/') => {
            route_match::PathSpecifier::Prefix(p.clone())
        }
        Some(PathMatch::PathPrefix(p)) => {
            route_match::PathSpecifier::PathSeparatedPrefix(p.clone())
        }
        Some(PathMatch::Exact(p)) => route_match::PathSpecifier::Path(p.clone()),
        Some(PathMatch::Regex(r)) => route_match::PathSpecifier::SafeRegex(regex(r)),
    };
    let mut headers: Vec<HeaderMatcher> = m.headers.iter().map(header_matcher).collect();
    if let Some(method) = &m.method {
        headers.push(HeaderMatcher {
            name: ":method".into(),
            header_match_specifier: Some(header_matcher::HeaderMatchSpecifier::StringMatch(
                StringMatcher {
                    match_pattern: Some(string_matcher::MatchPattern::Exact(method.clone())),
                    ignore_case: true,
                },
            )),
            ..Default::default()
        });
    }
    EnvoyMatch {
        path_specifier: Some(path),
        headers,
        ..Default::default()
    }
}

fn header_matcher(h: &HeaderMatch) -> HeaderMatcher {
    let spec = match &h.value {
        None => header_matcher::HeaderMatchSpecifier::PresentMatch(true),
        Some(v) => header_matcher::HeaderMatchSpecifier::StringMatch(string_matcher(v)),
    };
    HeaderMatcher {
        name: h.name.to_ascii_lowercase(),
        header_match_specifier: Some(spec),
        ..Default::default()
    }
}
