//! Turning a loaded config into a `Pipeline` — compiled routes with their processor
//! factories — and validating everything serde cannot (regexes, header names, addresses),
//! with the field path of each problem. Which policies become which processors is not
//! known here: the caller passes the registry in (`Registry`; tollgate's own is
//! `processors::for_route`, behind `Pipeline::build`), so the pipeline depends on no
//! processor. The current pipeline sits in a `PipelineStore`;
//! an exchange holds the `Arc` it started with, so a reload never changes a request in
//! flight.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::HeaderName;

use super::router::{CompiledListener, Matcher, PathMatcher, ValueMatcher};
use super::{CompiledRoute, ProcessorFactory, RouteSelector};
use crate::config::{
    Config, ConfigError, ConfigErrors, LoadedConfig, McpBackend, Policies, Route, MAX_WEIGHT,
};
use crate::mcp::{Multiplexer, MuxConfig, Renewals, Rules, SessionKeys, ToolLimits};
use crate::metrics::Metrics;
use crate::outbound::ClientOptions;
use crate::services::Services;

mod checks;
use checks::{check_backend_tls, insecure_backends, validate_addresses, validate_host_port};

/// One validated config snapshot, ready to serve.
pub struct Pipeline {
    pub loaded: Arc<LoadedConfig>,
    /// Routes of every bind, for ext_proc mode.
    pub ext_proc_routes: RouteSelector,
    /// Routes per bind port, for the proxy.
    pub bind_routes: HashMap<u16, RouteSelector>,
    /// Request headers whose change clears Envoy's route cache.
    pub clear_route_cache_on: Vec<HeaderName>,
    pub metrics: Arc<Metrics>,
    pub services: Arc<Services>,
    /// The access line's CEL fields (`logging.fields`).
    pub access_log: crate::access_log::AccessLog,
}

/// What building a route's processors needs besides its policies.
pub struct BuildCx<'a> {
    pub config: &'a Config,
    /// The access line's CEL fields: what they read decides what processors keep
    /// (`tokenAccounting` keeps the completion only when a field reads it).
    pub access_log: &'a crate::access_log::AccessLog,
    pub services: &'a Arc<Services>,
    pub prices: &'a crate::pricing::Prices,
    /// The processor registry the pipeline is built with.
    pub registry: &'a Registry,
}

/// The processor registry: a route's policies (at field path `path`, for errors) to
/// its processor factories in run order; `route` is the route's name.
pub type Registry = dyn Fn(
        &Policies,
        &str,
        &str,
        Option<&Arc<Multiplexer>>,
        &BuildCx<'_>,
    ) -> Result<Vec<Arc<dyn ProcessorFactory>>, ConfigError>
    + Sync;

impl Pipeline {
    /// Validates and compiles a config, making each route's processors with `registry`.
    /// Every semantic problem is reported, not only the first (`ConfigError::Many`).
    pub fn build_with(
        loaded: LoadedConfig,
        services: Arc<Services>,
        registry: &Registry,
    ) -> Result<Pipeline, ConfigError> {
        let mut loaded = loaded;
        let warnings = insecure_backends(&loaded.config);
        loaded.notices.extend(warnings);
        let config = &loaded.config;
        let mut errs = ConfigErrors::default();
        validate_addresses(config, &mut errs);
        errs.check(config.limits.labels.validate("limits.labels"));
        errs.check(config.limits.cel.validate("limits.cel"));
        errs.check(config.limits.buffers.validate("limits.buffers"));
        let prices = crate::pricing::Prices::new(&config.llm.prices);
        let access_log = errs
            .check(crate::access_log::AccessLog::compile(
                &config.logging.fields,
                &config.limits.cel,
                &loaded.substituted_paths,
            ))
            .unwrap_or_default();
        let bcx = BuildCx {
            config,
            access_log: &access_log,
            services: &services,
            prices: &prices,
            registry,
        };
        // Gateway-wide policies are checked once, at their own path; when they are
        // broken, routes are checked with their own policies only, so one problem is
        // not reported again under every route.
        let no_policies = Policies::default();
        let gateway = match errs.check(registry(
            &config.policies,
            "policies",
            "gateway",
            None,
            &bcx,
        )) {
            Some(_) => &config.policies,
            None => &no_policies,
        };
        let (mut ext_proc_routes, bind_routes) = compile_binds(config, gateway, &bcx, &mut errs);
        if config.binds.is_empty() && config.ext_proc.is_some() && errs.is_empty() {
            // An ext_proc-only config (an endpoint picker, say): the gateway-wide
            // policies apply to every request Envoy sends, as one route named `gateway`.
            let route = crate::config::Route::default();
            let gateway = "gateway".to_string();
            if let Some(compiled) = errs.check(compile_route(
                &route,
                gateway,
                &config.policies,
                "policies",
                &bcx,
            )) {
                let compiled = Arc::new(compiled);
                ext_proc_routes
                    .by_name
                    .insert(compiled.name.clone(), compiled.clone());
                ext_proc_routes.listeners.push(CompiledListener {
                    hostnames: Vec::new(),
                    routes: vec![compiled],
                });
            }
        }
        let mut clear_route_cache_on = vec![HeaderName::from_static("host")];
        if let Some(ext) = &config.ext_proc {
            for (i, name) in ext.clear_route_cache_on.iter().enumerate() {
                let at = format!("extProc.clearRouteCacheOn[{i}]");
                clear_route_cache_on.extend(errs.check(header_name(name, &at)));
            }
        }
        errs.finish(())?;
        services.metrics.labels.configure(&config.limits.labels);
        Ok(Pipeline {
            loaded: Arc::new(loaded),
            ext_proc_routes,
            bind_routes,
            clear_route_cache_on,
            metrics: services.metrics.clone(),
            services,
            access_log,
        })
    }

    pub fn config(&self) -> &Config {
        &self.loaded.config
    }

    /// Whether any route runs the processor of this name.
    pub fn uses(&self, processor: &str) -> bool {
        self.ext_proc_routes
            .listeners
            .iter()
            .flat_map(|l| l.routes.iter())
            .any(|r| r.factories.iter().any(|f| f.name() == processor))
    }
}

/// The routes of every bind: all of them for ext_proc mode, and per port for the proxy.
/// Problems are recorded in `errs`; a broken route is left out.
fn compile_binds(
    config: &Config,
    gateway: &Policies,
    bcx: &BuildCx<'_>,
    errs: &mut ConfigErrors,
) -> (RouteSelector, HashMap<u16, RouteSelector>) {
    let mut ext_proc_routes = RouteSelector::default();
    let mut bind_routes = HashMap::new();
    let mut names: HashMap<String, String> = HashMap::new();
    for (b, bind) in config.binds.iter().enumerate() {
        let mut selector = RouteSelector::default();
        for (l, listener) in bind.listeners.iter().enumerate() {
            let mut routes = Vec::new();
            for (r, route) in listener.routes.iter().enumerate() {
                let path = format!("binds[{b}].listeners[{l}].routes[{r}]");
                let name = route.name_or_index(names.len());
                if let Some(first) = names.insert(name.clone(), path.clone()) {
                    errs.push(ConfigError::field(
                        format!("{path}.name"),
                        format!("route name {name:?} is already used by {first}"),
                    ));
                    continue;
                }
                let Some(compiled) = errs.check(compile_route(route, name, gateway, &path, bcx))
                else {
                    continue;
                };
                let compiled = Arc::new(compiled);
                selector
                    .by_name
                    .insert(compiled.name.clone(), compiled.clone());
                ext_proc_routes
                    .by_name
                    .insert(compiled.name.clone(), compiled.clone());
                routes.push(compiled);
            }
            let listener = CompiledListener {
                hostnames: listener.hostnames.clone(),
                routes,
            };
            ext_proc_routes.listeners.push(CompiledListener {
                hostnames: listener.hostnames.clone(),
                routes: listener.routes.clone(),
            });
            selector.listeners.push(listener);
        }
        if bind_routes.insert(bind.port, selector).is_some() {
            errs.push(ConfigError::field(
                format!("binds[{b}].port"),
                format!("port {} is bound twice", bind.port),
            ));
        }
    }
    (ext_proc_routes, bind_routes)
}

fn compile_route(
    route: &Route,
    name: String,
    gateway: &Policies,
    path: &str,
    bcx: &BuildCx<'_>,
) -> Result<CompiledRoute, ConfigError> {
    let policies = route.policies.over(gateway);
    let mut errs = ConfigErrors::default();
    let mut matches = Vec::new();
    for (i, m) in route.matches.iter().enumerate() {
        matches.extend(errs.check(compile_match(m, &format!("{path}.matches[{i}]"))));
    }
    matches.extend(metadata_matches(route, &policies));
    for (i, backend) in route.backends.iter().enumerate() {
        let at = format!("{path}.backends[{i}]");
        errs.check(validate_host_port(&backend.host, &format!("{at}.host")));
        if let Some(tls) = &backend.tls {
            check_backend_tls(tls, &format!("{at}.tls"), &mut errs);
        }
        if !(1..=MAX_WEIGHT).contains(&backend.weight) {
            errs.push(ConfigError::field(
                format!("{at}.weight"),
                format!("must be 1 to {MAX_WEIGHT}"),
            ));
        }
    }
    if let Some(retry) = &policies.retry {
        errs.check(retry.check(&format!("{path}.policies.retry")));
    }
    let mcp = match &route.mcp {
        Some(mcp) => errs.check(compile_mcp(route, &policies, mcp, &name, path, bcx)),
        None => None,
    };
    let factories = errs.check((bcx.registry)(
        &policies,
        &format!("{path}.policies"),
        &name,
        mcp.as_ref(),
        bcx,
    ));
    let mcp_only = [
        (
            "mcpAuthorization",
            route.policies.mcp_authorization.is_some(),
        ),
        ("mcpToolLimit", route.policies.mcp_tool_limit.is_some()),
    ];
    for (policy, set) in mcp_only {
        if set && route.mcp.is_none() {
            errs.push(ConfigError::field(
                format!("{path}.policies.{policy}"),
                "applies to MCP gateway routes (`mcp`) only; it is not enforced on other routes",
            ));
        }
    }
    errs.finish(())?;
    Ok(CompiledRoute {
        name,
        matches,
        factories: factories.unwrap_or_default(),
        backends: route.backends.clone(),
        retry: policies.retry.clone(),
        timeout: policies.timeout.map(|d| d.get()),
        mcp,
        tallies: Default::default(),
    })
}

/// The multiplexer of an MCP gateway route at `path`. Its outbound client is shared
/// by every MCP route and survives reloads; so does the random session key of a route
/// (by name) that configures none.
fn compile_mcp(
    route: &Route,
    policies: &Policies,
    mcp: &McpBackend,
    name: &str,
    path: &str,
    bcx: &BuildCx<'_>,
) -> Result<Arc<Multiplexer>, ConfigError> {
    let at = format!("{path}.mcp");
    if !route.backends.is_empty() {
        return Err(ConfigError::field(
            at,
            "a route forwards to `backends` or is an MCP gateway (`mcp`), not both",
        ));
    }
    let checked = mcp.check(&at)?;
    let keys = match checked.keys {
        Some(keys) => Arc::new(keys),
        None => bcx
            .services
            .shared(format!("mcp-session-key/{name}"), || {
                tracing::warn!(route = %name, "no MCP session keys configured: sessions are sealed with a random key, valid only in this process");
                Ok::<_, std::convert::Infallible>(Arc::new(SessionKeys::random()))
            })
            .unwrap_or_else(|never| match never {}),
    };
    let upstream = &bcx.config.upstream;
    let client = bcx.services.shared("mcp-client".to_string(), || {
        let options = ClientOptions {
            connect_timeout: Some(upstream.connect_timeout.get()),
            idle_timeout: Some(upstream.idle_timeout.get()),
            max_idle_per_host: Some(upstream.max_idle_per_host),
            ..ClientOptions::default()
        };
        crate::outbound::client(&options)
            .map(Arc::new)
            .map_err(|e| ConfigError::field(&at, format!("cannot build the MCP client: {e}")))
    })?;
    let rules = match &policies.mcp_authorization {
        Some(p) => {
            let field = format!("{path}.policies.mcpAuthorization");
            Some(Arc::new(Rules::compile(p, &field, &bcx.config.limits.cel)?))
        }
        None => None,
    };
    let tool_limits = match &policies.mcp_tool_limit {
        Some(p) => {
            let field = format!("{path}.policies.mcpToolLimit");
            Some(Arc::new(ToolLimits::compile(
                p,
                &field,
                name,
                bcx.config,
                bcx.services,
            )?))
        }
        None => None,
    };
    Ok(Arc::new(Multiplexer::new(MuxConfig {
        route: name.to_string(),
        targets: checked.targets,
        urls: checked.urls,
        headers: checked.headers,
        keys,
        allowed_origins: mcp.allowed_origins.clone(),
        timeout: mcp.timeout.get(),
        stream_idle: mcp.stream_idle_timeout.get(),
        limit: bcx.config.limits.buffers.json_body_bytes,
        client,
        metrics: bcx.services.metrics.mcp.clone(),
        renewals: bcx
            .services
            .shared(format!("mcp-renewals/{name}"), || {
                Ok::<_, std::convert::Infallible>(Arc::new(Renewals::default()))
            })
            .unwrap_or_else(|never| match never {}),
        rules,
        tool_limits,
        direct: checked.direct,
        max_age: mcp.session.max_age.get(),
    })))
}

/// A route with `mcpAuthentication` and matches also matches its RFC 9728 metadata
/// paths, which its authentication processor answers (policy errors are reported there).
fn metadata_matches(route: &Route, policies: &Policies) -> Vec<Matcher> {
    let Some(auth) = policies.mcp_authentication.as_ref() else {
        return Vec::new();
    };
    let Ok(checked) = auth.check("") else {
        return Vec::new();
    };
    if route.matches.is_empty() {
        return Vec::new();
    }
    [checked.metadata_path, crate::config::WELL_KNOWN.to_string()]
        .into_iter()
        .filter_map(|exact| {
            let m = crate::config::RouteMatch {
                path: Some(crate::config::PathMatch::Exact(exact)),
                ..Default::default()
            };
            compile_match(&m, "").ok()
        })
        .collect()
}

/// One match alternative at `mpath`, every problem of it reported.
fn compile_match(m: &crate::config::RouteMatch, mpath: &str) -> Result<Matcher, ConfigError> {
    let mut errs = ConfigErrors::default();
    let path_matcher = m.path.as_ref().and_then(|p| {
        errs.check(PathMatcher::from_config(p).map_err(|e| {
            ConfigError::field(format!("{mpath}.path.{}", path_kind(p)), e.to_string())
        }))
    });
    if let Some(method) = &m.method {
        if http::Method::from_bytes(method.as_bytes()).is_err() {
            errs.push(ConfigError::field(
                format!("{mpath}.method"),
                format!("invalid HTTP method {method:?}"),
            ));
        }
    }
    let mut headers = Vec::new();
    for (h, hm) in m.headers.iter().enumerate() {
        let hpath = format!("{mpath}.headers[{h}]");
        let name = errs.check(header_name(&hm.name, &format!("{hpath}.name")));
        let value = hm.value.as_ref().and_then(|v| {
            errs.check(
                ValueMatcher::from_config(v)
                    .map_err(|e| ConfigError::field(format!("{hpath}.value.regex"), e.to_string())),
            )
        });
        if let Some(name) = name {
            headers.push((name, value));
        }
    }
    errs.finish(Matcher {
        path: path_matcher,
        method: m.method.clone(),
        headers,
    })
}

fn path_kind(p: &crate::config::PathMatch) -> &'static str {
    match p {
        crate::config::PathMatch::PathPrefix(_) => "pathPrefix",
        crate::config::PathMatch::Exact(_) => "exact",
        crate::config::PathMatch::Regex(_) => "regex",
    }
}

/// A lower-case header name, or an error at `path`.
pub fn header_name(name: &str, path: &str) -> Result<HeaderName, ConfigError> {
    HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
        .map_err(|_| ConfigError::field(path, format!("invalid header name {name:?}")))
}

/// The pipeline in force, swapped atomically on reload.
pub struct PipelineStore {
    current: ArcSwap<Pipeline>,
}

impl PipelineStore {
    pub fn new(pipeline: Pipeline) -> Self {
        PipelineStore {
            current: ArcSwap::from_pointee(pipeline),
        }
    }

    /// The pipeline to start a new exchange with.
    pub fn load(&self) -> Arc<Pipeline> {
        self.current.load_full()
    }

    pub fn replace(&self, pipeline: Pipeline) {
        self.current.store(Arc::new(pipeline));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_str;

    fn build(yaml: &str) -> Result<Pipeline, ConfigError> {
        Pipeline::build(parse_str(yaml)?, crate::services::Services::new())
    }

    #[test]
    fn gateway_policies_apply_where_a_route_sets_none() {
        let p = build("policies:\n  responseHeaderModifier: {set: {x-gw: \"1\"}}\nbinds:\n- port: 1\n  listeners:\n  - routes:\n    - name: plain\n    - name: own\n      policies:\n        responseHeaderModifier: {set: {x-own: \"1\"}}\n").unwrap();
        let names = |r: &str| -> Vec<&'static str> {
            p.ext_proc_routes.by_name[r]
                .factories
                .iter()
                .map(|f| f.name())
                .collect()
        };
        assert_eq!(names("plain"), vec!["response_header_modifier"]);
        assert_eq!(names("own"), vec!["response_header_modifier"]);
        let err = build("policies:\n  requestHeaderModifier: {set: {\"bad name\": x}}\n")
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.starts_with("policies.requestHeaderModifier.set.bad name"),
            "{err}"
        );
    }

    #[test]
    fn backend_tls_errors_name_their_field_and_insecure_is_announced() {
        let route = |tls: &str| {
            format!("binds:\n- port: 1\n  listeners:\n  - routes:\n    - backends: [{{ host: \"localhost:2\", tls: {tls} }}]\n")
        };
        let at = "binds[0].listeners[0].routes[0].backends[0].tls";
        for (tls, field) in [
            (
                "{ certFile: Cargo.toml }",
                "keyFile: required with certFile",
            ),
            ("{ keyFile: Cargo.toml }", "certFile: required with keyFile"),
            (
                "{ insecure: true, caFile: Cargo.toml }",
                "insecure: verifies nothing",
            ),
            (
                "{ certFile: /no/such.pem, keyFile: Cargo.toml }",
                "certFile:",
            ),
        ] {
            let err = build(&route(tls)).err().unwrap().to_string();
            assert!(err.contains(&format!("{at}.{field}")), "{tls}: {err}");
        }
        let p = build(&route("{ insecure: true }")).unwrap();
        assert!(
            p.loaded.notices.iter().any(|n| n.starts_with(&format!(
                "{at}.insecure: the certificate of localhost:2 is NOT verified"
            ))),
            "{:?}",
            p.loaded.notices
        );
    }

    #[test]
    fn bad_regex_names_its_field() {
        let err = build("binds:\n- port: 1\n  listeners:\n  - routes:\n    - matches:\n      - path: {regex: \"(\"}\n").err().unwrap().to_string();
        assert!(
            err.starts_with("binds[0].listeners[0].routes[0].matches[0].path.regex: invalid regex"),
            "{err}"
        );
    }

    #[test]
    fn bad_header_name_names_its_field() {
        let err = build("binds:\n- port: 1\n  listeners:\n  - routes:\n    - policies:\n        requestHeaderModifier:\n          set: {\"bad name\": x}\n").err().unwrap().to_string();
        assert!(
            err.starts_with(
                "binds[0].listeners[0].routes[0].policies.requestHeaderModifier.set.bad name:"
            ),
            "{err}"
        );
    }

    #[test]
    fn duplicate_route_names_rejected() {
        let err =
            build("binds:\n- port: 1\n  listeners:\n  - routes:\n    - name: a\n    - name: a\n")
                .err()
                .unwrap()
                .to_string();
        assert!(
            err.starts_with("binds[0].listeners[0].routes[1].name:"),
            "{err}"
        );
    }

    #[test]
    fn mcp_routes_compile_and_their_errors_name_the_field() {
        let route = "binds:\n- port: 1\n  listeners:\n  - routes:\n    - name: tools\n";
        let targets = "      mcp:\n        targets: [{name: a, url: \"http://127.0.0.1:9/mcp\"}]\n";
        let p = build(&format!("{route}{targets}")).unwrap();
        let mux = p.ext_proc_routes.by_name["tools"]
            .mcp
            .as_ref()
            .expect("a multiplexer");
        assert!(format!("{mux:?}").contains("[\"a\"]"), "{mux:?}");
        assert!(p.ext_proc_routes.by_name["tools"].backends.is_empty());
        let err = build(&format!(
            "{route}      backends: [{{host: \"127.0.0.1:1\"}}]\n{targets}"
        ))
        .err()
        .unwrap()
        .to_string();
        assert_eq!(
            err,
            "binds[0].listeners[0].routes[0].mcp: a route forwards to `backends` or is an MCP gateway (`mcp`), not both"
        );
        let err = build(&format!(
            "{route}      mcp:\n        targets:\n        - {{name: a, url: \"http://h:1/\"}}\n        - {{name: \"b c\", url: \"nope\"}}\n"
        ))
        .err()
        .unwrap();
        let problems: Vec<String> = err.problems().iter().map(|p| p.to_string()).collect();
        assert_eq!(
            problems,
            [
                "binds[0].listeners[0].routes[0].mcp.targets[1].name: \"b c\": must be non-empty and made of A-Z, a-z, 0-9 and '-'",
                "binds[0].listeners[0].routes[0].mcp.targets[1].url: \"nope\" must start with http:// or https://",
            ]
        );
    }

    #[test]
    fn bad_backend_and_address() {
        let err = build(
            "binds:\n- port: 1\n  listeners:\n  - routes:\n    - backends: [{host: nohost}]\n",
        )
        .err()
        .unwrap()
        .to_string();
        assert!(
            err.starts_with("binds[0].listeners[0].routes[0].backends[0].host:"),
            "{err}"
        );
        let err = build("extProc: {address: \"nope\"}\n")
            .err()
            .unwrap()
            .to_string();
        assert!(err.starts_with("extProc.address:"), "{err}");
    }
}
