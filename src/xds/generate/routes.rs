//! A bind's listeners and routes as one Envoy route configuration.
//!
//! tollgate picks a route by trying, in file order, the routes of every listener whose
//! hostnames match the request's host (a listener without hostnames matches every
//! host). Envoy picks one virtual host by domain first. So each distinct hostname
//! becomes a virtual host holding, in file order, the routes of every listener that
//! would see that host, and `*` holds the routes of the listeners without hostnames.
//! Route names are tollgate's, and Envoy sends them back as `xds.route_name`, so the
//! ext_proc stream runs the policies of the very route Envoy picked.

use std::collections::HashMap;

use envoy_types::pb::envoy::config::core::v3::{
    data_source, header_value_option, DataSource, HeaderValue, HeaderValueOption,
};
use envoy_types::pb::envoy::config::route::v3::{
    header_matcher, route, route_action, route_match, DirectResponseAction, HeaderMatcher,
    Route as EnvoyRoute, RouteAction, RouteConfiguration, RouteMatch as EnvoyMatch, VirtualHost,
};
use envoy_types::pb::envoy::extensions::filters::http::ext_proc::v3::{
    ext_proc_per_route, ExtProcPerRoute,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{
    regex_matcher, string_matcher, RegexMatchAndSubstitute, RegexMatcher, StringMatcher,
};
use envoy_types::pb::google::protobuf::Duration as PbDuration;
use envoy_types::util::pack_any;

use super::address::Target;
use super::listener::{self, EXT_PROC_FILTER};
use super::mcp::{DirectTarget, McpWiring, ENVOY_ROUTE_HEADER};
use crate::config::{
    AuthorityRewrite, Bind, Config, DirectResponse, HeaderMatch, PathMatch, PathRewrite,
    RequestRedirect, Route, RouteMatch, ValueMatch, WELL_KNOWN,
};

/// A route with the name tollgate knows it by and the cluster of its backend.
pub struct NamedRoute<'a> {
    pub name: String,
    pub cluster: String,
    pub route: &'a Route,
    /// For an `mcp` route: how Envoy reaches tollgate's MCP listener and the targets.
    pub mcp: Option<McpWiring>,
    /// For a `directResponse` or `requestRedirect` route: Envoy answers (tollgate's
    /// ext_proc does too, first).
    pub answer: Option<Answer>,
}

/// What Envoy answers a route with itself.
pub enum Answer {
    Direct(DirectResponse),
    Redirect(RequestRedirect),
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
    if let Some(mcp) = &named.mcp {
        return mcp_route(named, mcp);
    }
    if let Some(answer) = &named.answer {
        return EnvoyRoute {
            name: named.name.clone(),
            action: Some(answer_action(answer)),
            ..Default::default()
        };
    }
    let policies = named.route.policies.over(&config.policies);
    let timeout = policies
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
        idle_timeout: pb_duration(timeout),
        // A provider by name wants its own name as the host, as its certificate does.
        host_rewrite_specifier: dns_backend.then_some(
            route_action::HostRewriteSpecifier::AutoHostRewrite(
                envoy_types::pb::google::protobuf::BoolValue { value: true },
            ),
        ),
        retry_policy: policies
            .retry
            .as_ref()
            .and_then(|r| super::pool::retry(r, named.route.backends.len() > 1)),
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

/// Envoy's own answer: a direct response, or a redirect built as tollgate builds it.
fn answer_action(answer: &Answer) -> route::Action {
    use envoy_types::pb::envoy::config::route::v3::{redirect_action, RedirectAction};
    use redirect_action::{PathRewriteSpecifier, RedirectResponseCode, SchemeRewriteSpecifier};
    match answer {
        Answer::Direct(d) => route::Action::DirectResponse(DirectResponseAction {
            status: u32::from(d.status),
            body: Some(DataSource {
                specifier: Some(data_source::Specifier::InlineString(d.body.clone())),
                ..Default::default()
            }),
            ..Default::default()
        }),
        Answer::Redirect(r) => {
            let code = match r.status.unwrap_or(302) {
                301 => RedirectResponseCode::MovedPermanently,
                303 => RedirectResponseCode::SeeOther,
                307 => RedirectResponseCode::TemporaryRedirect,
                308 => RedirectResponseCode::PermanentRedirect,
                _ => RedirectResponseCode::Found,
            };
            let (host, port) = match &r.authority {
                Some(AuthorityRewrite::Full(a)) => match a.rsplit_once(':') {
                    Some((h, p)) if p.parse::<u32>().is_ok() => {
                        (h.to_string(), p.parse().unwrap_or(0))
                    }
                    _ => (a.clone(), 0),
                },
                Some(AuthorityRewrite::Host(h)) => (h.clone(), 0),
                Some(AuthorityRewrite::Port(p)) => (String::new(), u32::from(*p)),
                None => (String::new(), 0),
            };
            route::Action::Redirect(RedirectAction {
                host_redirect: host,
                port_redirect: port,
                response_code: code as i32,
                scheme_rewrite_specifier: r
                    .scheme
                    .clone()
                    .map(SchemeRewriteSpecifier::SchemeRedirect),
                path_rewrite_specifier: r.path.as_ref().map(|p| match p {
                    PathRewrite::Full(p) => PathRewriteSpecifier::PathRedirect(p.clone()),
                    PathRewrite::Prefix(p) => PathRewriteSpecifier::PrefixRewrite(p.clone()),
                }),
                ..Default::default()
            })
        }
    }
}

/// An `mcp` route's action: tollgate's MCP listener, told the route by a header Envoy
/// sets, with no route timeout (GET streams and long calls) and ext_proc off (the
/// listener runs the route's policies) unless `mcp.direct` needs it.
fn mcp_route(named: &NamedRoute<'_>, mcp: &McpWiring) -> EnvoyRoute {
    let mut per_filter = HashMap::new();
    if mcp.direct.is_none() {
        let off = ExtProcPerRoute {
            r#override: Some(ext_proc_per_route::Override::Disabled(true)),
        };
        per_filter.insert(EXT_PROC_FILTER.to_string(), pack_any(off));
    }
    EnvoyRoute {
        name: named.name.clone(),
        action: Some(route::Action::Route(RouteAction {
            cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(
                named.cluster.clone(),
            )),
            timeout: Some(PbDuration::default()),
            idle_timeout: pb_duration(mcp.idle),
            ..Default::default()
        })),
        request_headers_to_add: vec![HeaderValueOption {
            header: Some(HeaderValue {
                key: ENVOY_ROUTE_HEADER.into(),
                value: named.name.clone(),
                ..Default::default()
            }),
            append_action: header_value_option::HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
            ..Default::default()
        }],
        typed_per_filter_config: per_filter,
        ..Default::default()
    }
}

/// With `mcp.direct`: per target, the route a call ext_proc marked for it takes (the
/// route's `match` and the target's name in the header) — straight to the target's
/// cluster, host and path rewritten to its URL.
fn direct_routes(
    named: &NamedRoute<'_>,
    matches: &[EnvoyMatch],
    header: &str,
    targets: &[DirectTarget],
    idle: std::time::Duration,
) -> Vec<EnvoyRoute> {
    let mut out = Vec::new();
    for target in targets {
        for m in matches {
            let mut m = m.clone();
            m.headers.push(HeaderMatcher {
                name: header.to_string(),
                header_match_specifier: Some(header_matcher::HeaderMatchSpecifier::StringMatch(
                    string_matcher(&ValueMatch::Exact(target.name.clone())),
                )),
                ..Default::default()
            });
            let action = RouteAction {
                cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(
                    super::clusters::cluster_name(&target.backend),
                )),
                timeout: Some(PbDuration::default()),
                idle_timeout: pb_duration(idle),
                host_rewrite_specifier: Some(
                    route_action::HostRewriteSpecifier::HostRewriteLiteral(
                        target.authority.clone(),
                    ),
                ),
                regex_rewrite: Some(RegexMatchAndSubstitute {
                    pattern: Some(regex("^.*$")),
                    substitution: target.path.clone(),
                }),
                ..Default::default()
            };
            out.push(EnvoyRoute {
                name: named.name.clone(),
                r#match: Some(m),
                action: Some(route::Action::Route(action)),
                ..Default::default()
            });
        }
    }
    out
}

fn pb_duration(d: std::time::Duration) -> Option<PbDuration> {
    Some(PbDuration {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    })
}

/// The Envoy routes of one tollgate route: Envoy routes have one match each, so a
/// route with several (any of them) becomes one Envoy route per match, all with its
/// name; none matches every path. A route with `mcpAuthentication` also matches its
/// RFC 9728 metadata paths, as tollgate's own router does; an `mcp.direct` route's
/// target routes come first.
pub fn routes_of(config: &Config, named: &NamedRoute<'_>) -> Vec<EnvoyRoute> {
    let base = route(config, named);
    let matches: Vec<EnvoyMatch> = if named.route.matches.is_empty() {
        vec![prefix("/")]
    } else {
        named.route.matches.iter().map(route_match).collect()
    };
    let mut out = Vec::new();
    if let Some((header, targets)) = named.mcp.as_ref().and_then(|m| m.direct.as_ref()) {
        let idle = named.mcp.as_ref().map_or_else(Default::default, |m| m.idle);
        out.extend(direct_routes(named, &matches, header, targets, idle));
    }
    let metadata = metadata_paths(config, named.route);
    let exact = metadata.into_iter().map(|p| EnvoyMatch {
        path_specifier: Some(route_match::PathSpecifier::Path(p)),
        ..Default::default()
    });
    for m in matches.into_iter().chain(exact) {
        out.push(EnvoyRoute {
            r#match: Some(m),
            ..base.clone()
        });
    }
    out
}

/// The RFC 9728 metadata paths a route with `mcpAuthentication` (its own or the
/// gateway's) and matches answers: its document's, and the bare well-known path.
fn metadata_paths(config: &Config, route: &Route) -> Vec<String> {
    let policies = route.policies.over(&config.policies);
    let checked = policies
        .mcp_authentication
        .as_ref()
        .and_then(|a| a.check("").ok());
    match checked {
        Some(c) if !route.matches.is_empty() => vec![c.metadata_path, WELL_KNOWN.to_string()],
        _ => Vec::new(),
    }
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
