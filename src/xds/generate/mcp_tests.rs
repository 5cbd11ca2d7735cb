//! `mcp` routes as Envoy gets them: to tollgate's MCP listener with the route named in
//! a header Envoy sets and ext_proc off, or with `mcp.direct`, a route per target
//! ahead of the listener's; and the RFC 9728 metadata paths of `mcpAuthentication`.

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::header_value_option::HeaderAppendAction;
use envoy_types::pb::envoy::config::route::v3::{
    route, route_action, route_match, Route as EnvoyRoute, RouteAction, RouteConfiguration,
};
use envoy_types::pb::envoy::extensions::filters::http::ext_proc::v3::{
    ext_proc_per_route, ExtProcPerRoute,
};
use prost::Message;

use super::mcp::ENVOY_ROUTE_HEADER;
use super::tests::{config, decode};
use super::*;

fn mcp_config(direct: &str, policies: &str) -> String {
    format!(
        r#"
extProc: {{ address: "127.0.0.1:50051" }}
xds: {{ mcpAddress: "0.0.0.0:15099" }}
binds:
- port: 10000
  listeners:
  - routes:
    - name: chat
      matches: [{{ path: {{ pathPrefix: /v1 }} }}]
      backends: [{{ host: "127.0.0.1:8000" }}]
    - name: tools
      matches: [{{ path: {{ exact: /mcp }} }}]
{policies}      mcp:
        streamIdleTimeout: 2m
        targets:
        - {{ name: weather, url: "http://127.0.0.1:9101/mcp" }}
        - {{ name: search, url: "https://search.example.com/v2/mcp" }}
{direct}"#
    )
}

pub(super) fn routes(text: &str) -> Vec<EnvoyRoute> {
    let fleet = fleet(&config(text)).unwrap();
    let rc: RouteConfiguration = decode(&fleet.default, ROUTE, "bind_10000");
    rc.virtual_hosts[0].routes.clone()
}

pub(super) fn action(r: &EnvoyRoute) -> &RouteAction {
    match &r.action {
        Some(route::Action::Route(a)) => a,
        other => panic!("not a route action: {other:?}"),
    }
}

pub(super) fn cluster_of(r: &EnvoyRoute) -> &str {
    match &action(r).cluster_specifier {
        Some(route_action::ClusterSpecifier::Cluster(c)) => c,
        other => panic!("no cluster: {other:?}"),
    }
}

fn ext_proc_disabled(r: &EnvoyRoute) -> bool {
    r.typed_per_filter_config
        .get(EXT_PROC_FILTER)
        .map(|any| ExtProcPerRoute::decode(any.value.as_slice()).unwrap())
        .is_some_and(|p| p.r#override == Some(ext_proc_per_route::Override::Disabled(true)))
}

#[test]
fn mcp_routes_go_to_tollgates_mcp_listener_which_envoy_tells_the_route() {
    let text = mcp_config("", "");
    let routes = routes(&text);
    let names: Vec<_> = routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["chat", "tools"]);
    let tools = &routes[1];
    assert_eq!(cluster_of(tools), MCP_CLUSTER);
    assert!(
        ext_proc_disabled(tools),
        "the listener runs the policies once"
    );
    assert!(!ext_proc_disabled(&routes[0]));
    let header = tools.request_headers_to_add[0].clone();
    let value = header.header.unwrap();
    assert_eq!(
        (value.key.as_str(), value.value.as_str()),
        (ENVOY_ROUTE_HEADER, "tools")
    );
    assert_eq!(
        header.append_action,
        HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        "a client's own header is replaced"
    );
    let a = action(tools);
    assert_eq!(a.timeout.unwrap().seconds, 0, "GET streams are not cut");
    assert_eq!(a.idle_timeout.unwrap().seconds, 150, "2m + 30s");

    let fleet = fleet(&config(&text)).unwrap();
    let listener: Cluster = decode(&fleet.default, CLUSTER, MCP_CLUSTER);
    let la = format!("{:?}", listener.load_assignment);
    assert!(la.contains("127.0.0.1") && la.contains("15099"), "{la}");
    let needs = &fleet.default.resources(ROUTE).items["bind_10000"].needs;
    assert_eq!(needs, &["backend_127.0.0.1_8000", MCP_CLUSTER]);
    // No target clusters without `direct`: tollgate calls the targets itself.
    assert_eq!(fleet.default.resources(CLUSTER).items.len(), 3);
}

#[test]
fn direct_mcp_routes_send_marked_calls_to_each_target() {
    let routes = routes(&mcp_config("        direct: {}\n", ""));
    let names: Vec<_> = routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["chat", "tools", "tools", "tools"]);
    let (weather, search, listener) = (&routes[1], &routes[2], &routes[3]);
    assert_eq!(cluster_of(listener), MCP_CLUSTER);
    assert!(
        !ext_proc_disabled(listener),
        "ext_proc marks the direct calls"
    );
    assert_eq!(cluster_of(weather), "backend_127.0.0.1_9101");
    assert_eq!(cluster_of(search), "backend_search.example.com_443_tls");
    let m = search.r#match.as_ref().unwrap();
    assert_eq!(
        m.path_specifier,
        Some(route_match::PathSpecifier::Path("/mcp".into()))
    );
    assert_eq!(m.headers[0].name, "x-tollgate-mcp-target");
    assert!(format!("{:?}", m.headers[0]).contains("\"search\""));
    let a = action(search);
    assert_eq!(
        a.host_rewrite_specifier,
        Some(route_action::HostRewriteSpecifier::HostRewriteLiteral(
            "search.example.com".into()
        ))
    );
    assert_eq!(a.regex_rewrite.as_ref().unwrap().substitution, "/v2/mcp");
    assert!(weather.request_headers_to_add.is_empty());

    let fleet = fleet(&config(&mcp_config("        direct: {}\n", ""))).unwrap();
    let tls: Cluster = decode(
        &fleet.default,
        CLUSTER,
        "backend_search.example.com_443_tls",
    );
    assert!(tls.transport_socket.is_some(), "an https target gets TLS");
    let needs = &fleet.default.resources(ROUTE).items["bind_10000"].needs;
    assert_eq!(
        needs,
        &[
            "backend_127.0.0.1_8000",
            "backend_127.0.0.1_9101",
            "backend_search.example.com_443_tls",
            MCP_CLUSTER
        ]
    );
}

#[test]
fn authenticated_routes_also_answer_their_metadata_paths() {
    let policies = "      policies:\n        mcpAuthentication:\n          issuer: https://idp.test\n          audiences: [\"https://mcp.test/mcp\"]\n          jwks: { file: /dev/null }\n";
    let routes = routes(&mcp_config("", policies));
    let paths: Vec<_> = routes[1..]
        .iter()
        .map(|r| {
            assert_eq!(cluster_of(r), MCP_CLUSTER);
            r.r#match.as_ref().unwrap().path_specifier.clone()
        })
        .collect();
    let exact = |p: &str| Some(route_match::PathSpecifier::Path(p.into()));
    assert_eq!(
        paths,
        [
            exact("/mcp"),
            exact("/.well-known/oauth-protected-resource/mcp"),
            exact("/.well-known/oauth-protected-resource"),
        ]
    );
}
