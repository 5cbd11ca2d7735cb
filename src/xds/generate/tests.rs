//! The generator against configs written as users write them; resources are decoded
//! back from their `Any` to check what Envoy will read.

use envoy_types::pb::envoy::config::cluster::v3::{cluster, Cluster};
use envoy_types::pb::envoy::config::core::v3::{transport_socket, TypedExtensionConfig};
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::{filter, Listener};
use envoy_types::pb::envoy::config::route::v3::{route_match, RouteConfiguration};
use envoy_types::pb::envoy::extensions::filters::http::ext_proc::v3::ExternalProcessor;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager, http_filter, HttpConnectionManager,
};
use prost::Message;

use super::*;
use crate::config::parse_str;

const CONFIG: &str = r#"
extProc: { address: "0.0.0.0:50051" }
xds:
  nodes:
    edge-1: { binds: [10001] }
binds:
- port: 10000
  listeners:
  - hostnames: [api.example.com]
    routes:
    - name: chat
      matches: [{ path: { pathPrefix: /v1/chat } }]
      backends: [{ host: "127.0.0.1:8000" }]
  - routes:
    - matches: [{ path: { exact: /v1/messages }, method: POST }, { path: { regex: "/v[0-9]+/x" } }]
      backends: [{ host: "api.anthropic.com:443", tls: {} }]
- port: 10001
  listeners:
  - routes:
    - name: other
      backends: [{ host: "127.0.0.1:8001", http2: true }]
"#;

pub(super) fn config(text: &str) -> Config {
    parse_str(text).expect("valid config").config
}

pub(super) fn decode<M: Message + Default>(snapshot: &Snapshot, type_url: &str, name: &str) -> M {
    let r = snapshot
        .resources(type_url)
        .items
        .get(name)
        .unwrap_or_else(|| {
            panic!(
                "no {name} in {:?}",
                snapshot
                    .resources(type_url)
                    .items
                    .keys()
                    .collect::<Vec<_>>()
            )
        });
    M::decode(r.body.value.as_slice()).expect("decodes")
}

#[test]
fn every_bind_gets_a_listener_routes_and_clusters() {
    let fleet = fleet(&config(CONFIG)).unwrap();
    let s = &fleet.default;
    let names = |t| s.resources(t).items.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(LISTENER), ["bind_10000", "bind_10001"]);
    assert_eq!(names(ROUTE), ["bind_10000", "bind_10001"]);
    assert_eq!(
        names(CLUSTER),
        [
            "backend_127.0.0.1_8000",
            "backend_127.0.0.1_8001_h2",
            "backend_api.anthropic.com_443_tls",
            "tollgate"
        ]
    );
    // Only IP backends have EDS endpoints; the provider by name is resolved by Envoy.
    assert_eq!(
        names(ENDPOINT),
        ["backend_127.0.0.1_8000", "backend_127.0.0.1_8001_h2"]
    );

    let listener: Listener = decode(s, LISTENER, "bind_10000");
    let Some(filter::ConfigType::TypedConfig(hcm)) =
        &listener.filter_chains[0].filters[0].config_type
    else {
        panic!("no typed HCM")
    };
    let hcm = HttpConnectionManager::decode(hcm.value.as_slice()).unwrap();
    assert_eq!(hcm.http_filters[0].name, EXT_PROC_FILTER);
    assert_eq!(hcm.http_filters[1].name, "envoy.filters.http.router");
    let Some(http_filter::ConfigType::ConfigDiscovery(source)) = &hcm.http_filters[0].config_type
    else {
        panic!("the ext_proc filter's config comes over ECDS")
    };
    assert_eq!(
        source.type_urls,
        ["type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor"]
    );
    let served: TypedExtensionConfig = decode(s, EXTENSION_CONFIG, EXT_PROC_FILTER);
    let ext = ExternalProcessor::decode(served.typed_config.unwrap().value.as_slice()).unwrap();
    assert!(ext.allow_mode_override);
    assert_eq!(ext.request_attributes, ["xds.route_name"]);
    assert!(!ext.failure_mode_allow);

    // The ext_proc server listens on every interface: Envoy dials loopback.
    let tollgate: Cluster = decode(s, CLUSTER, "tollgate");
    let la = tollgate.load_assignment.unwrap();
    assert!(format!("{la:?}").contains("127.0.0.1"), "{la:?}");
    assert!(tollgate
        .typed_extension_protocol_options
        .contains_key("envoy.extensions.upstreams.http.v3.HttpProtocolOptions"));

    let provider: Cluster = decode(s, CLUSTER, "backend_api.anthropic.com_443_tls");
    assert_eq!(
        provider.cluster_discovery_type,
        Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::StrictDns as i32
        ))
    );
    assert!(provider.transport_socket.is_some(), "TLS to the provider");
    let chat: Cluster = decode(s, CLUSTER, "backend_127.0.0.1_8000");
    assert_eq!(
        chat.cluster_discovery_type,
        Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Eds as i32
        ))
    );
    let endpoints: ClusterLoadAssignment = decode(s, ENDPOINT, "backend_127.0.0.1_8000");
    assert!(format!("{endpoints:?}").contains("8000"));
}

#[test]
fn routes_keep_tollgate_names_and_matching() {
    let fleet = fleet(&config(CONFIG)).unwrap();
    let rc: RouteConfiguration = decode(&fleet.default, ROUTE, "bind_10000");
    let hosts: Vec<_> = rc.virtual_hosts.iter().map(|v| v.domains.clone()).collect();
    assert_eq!(
        hosts,
        [vec!["api.example.com".to_string()], vec!["*".to_string()]]
    );
    // api.example.com sees its own listener's route, then the catch-all listener's.
    let api: Vec<_> = rc.virtual_hosts[0]
        .routes
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(api, ["chat", "route1", "route1"]);
    let any: Vec<_> = rc.virtual_hosts[1]
        .routes
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(any, ["route1", "route1"], "one Envoy route per match");
    let chat = &rc.virtual_hosts[0].routes[0];
    assert_eq!(
        chat.r#match.as_ref().unwrap().path_specifier,
        Some(route_match::PathSpecifier::PathSeparatedPrefix(
            "/v1/chat".into()
        ))
    );
    let post = &rc.virtual_hosts[1].routes[0];
    let m = post.r#match.as_ref().unwrap();
    assert_eq!(
        m.path_specifier,
        Some(route_match::PathSpecifier::Path("/v1/messages".into()))
    );
    assert_eq!(m.headers[0].name, ":method");
}

#[test]
fn listed_nodes_get_only_their_binds() {
    let fleet = fleet(&config(CONFIG)).unwrap();
    let edge = fleet.snapshot("edge-1");
    let listeners: Vec<_> = edge.resources(LISTENER).items.keys().cloned().collect();
    assert_eq!(listeners, ["bind_10001"]);
    let clusters: Vec<_> = edge.resources(CLUSTER).items.keys().cloned().collect();
    assert_eq!(clusters, ["backend_127.0.0.1_8001_h2", "tollgate"]);
    assert_eq!(fleet.snapshot("anyone").resources(LISTENER).items.len(), 2);
    // Same config, same versions: a reload that changes nothing pushes nothing.
    assert_eq!(fleet, super::fleet(&config(CONFIG)).unwrap());
}

#[test]
fn check_xds_names_the_fields_it_cannot_serve() {
    let text = r#"
xds:
  messageTimeout: 20s
  mcpAddress: "localhost:15081"
  nodes:
    n: { binds: [9] }
binds:
- port: 10000
  listeners:
  - routes:
    - mcp: { targets: [{ name: a, url: "http://127.0.0.1:1/mcp" }] }
    - policies: { endpointPicker: { endpoints: ["127.0.0.1:1"] } }
    - name: nothing
"#;
    let loaded = parse_str(text).expect("parses");
    let err = crate::config::check_xds(&loaded.config)
        .unwrap_err()
        .to_string();
    for path in [
        "xds: xDS is served on the ext_proc gRPC server",
        "xds.messageTimeout",
        "xds.nodes.n.binds[0]: no bind has port 9",
        "xds.mcpAddress: \"localhost:15081\" is not an IP:port",
        "binds[0].listeners[0].routes[2].backends",
    ] {
        assert!(err.contains(path), "{path} missing from:\n{err}");
    }
    assert!(
        !err.contains("routes[0]") && !err.contains("routes[1]"),
        "MCP and picker routes need no backend: {err}"
    );
}

#[test]
fn routes_to_one_backend_share_its_cluster() {
    let text = r#"
extProc: { address: "127.0.0.1:50051" }
xds: {}
binds:
- port: 10000
  listeners:
  - routes:
    - { name: a, matches: [{ path: { pathPrefix: /a } }], backends: [{ host: "127.0.0.1:8000" }] }
    - { name: b, backends: [{ host: "127.0.0.1:8000" }] }
    - { name: c, backends: [{ host: "127.0.0.1:8000", tls: { sni: x.example } }] }
"#;
    let fleet = fleet(&config(text)).unwrap();
    let clusters: Vec<_> = fleet
        .default
        .resources(CLUSTER)
        .items
        .keys()
        .cloned()
        .collect();
    assert_eq!(clusters.len(), 3, "{clusters:?}");
    assert!(
        clusters[1].starts_with("backend_127.0.0.1_8000_tls_"),
        "{clusters:?}"
    );
    let rc: RouteConfiguration = decode(&fleet.default, ROUTE, "bind_10000");
    let targets: Vec<_> = rc.virtual_hosts[0]
        .routes
        .iter()
        .map(|r| format!("{:?}", r.action))
        .collect();
    assert!(
        targets[0].contains("\"backend_127.0.0.1_8000\"")
            && targets[1].contains("\"backend_127.0.0.1_8000\"")
    );
}

#[test]
fn picker_routes_go_to_the_original_destination_tollgate_picks() {
    let text = r#"
extProc: { address: "127.0.0.1:50051" }
xds: {}
binds:
- port: 10000
  listeners:
  - routes:
    - name: llm
      policies: { endpointPicker: { endpoints: ["127.0.0.1:8101", "127.0.0.1:8102"] } }
"#;
    let fleet = fleet(&config(text)).unwrap();
    let picked: Cluster = decode(&fleet.default, CLUSTER, clusters::PICKED_CLUSTER);
    assert_eq!(
        picked.cluster_discovery_type,
        Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::OriginalDst as i32
        ))
    );
    let lb = format!("{:?}", picked.lb_config);
    assert!(
        lb.contains("envoy.lb") && lb.contains("x-gateway-destination-endpoint"),
        "{lb}"
    );
    assert!(
        !lb.contains("use_http_header: true"),
        "a client's header never steers: {lb}"
    );
    let rc: RouteConfiguration = decode(&fleet.default, ROUTE, "bind_10000");
    assert!(
        format!("{:?}", rc.virtual_hosts[0].routes[0].action).contains(clusters::PICKED_CLUSTER)
    );
    let route = &fleet.default.resources(ROUTE).items["bind_10000"];
    assert_eq!(route.needs, [clusters::PICKED_CLUSTER]);
}

#[test]
fn per_type_snapshots_name_the_bootstrap_cluster_where_ads_ones_name_ads() {
    let text = CONFIG.replace("xds:\n", "xds:\n  bootstrapCluster: control_plane\n");
    let fleets = fleets(&config(&text)).unwrap();
    let rds = |fleet: &Fleet| {
        let l: Listener = decode(&fleet.default, LISTENER, "bind_10000");
        let Some(filter::ConfigType::TypedConfig(hcm)) = &l.filter_chains[0].filters[0].config_type
        else {
            panic!("no typed HCM")
        };
        let hcm = HttpConnectionManager::decode(hcm.value.as_slice()).unwrap();
        let Some(http_connection_manager::RouteSpecifier::Rds(rds)) = hcm.route_specifier else {
            panic!("no RDS")
        };
        format!("{:?}", rds.config_source.unwrap().config_source_specifier)
    };
    assert!(
        rds(&fleets.ads).starts_with("Some(Ads("),
        "{}",
        rds(&fleets.ads)
    );
    let grpc = rds(&fleets.per_type);
    assert!(
        grpc.contains("control_plane") && grpc.contains("api_type: Grpc,"),
        "{grpc}"
    );
    let delta = rds(&fleets.per_type_delta);
    assert!(
        delta.contains("control_plane") && delta.contains("api_type: DeltaGrpc,"),
        "{delta}"
    );
    // EDS clusters name the same source; routes and endpoints are the same everywhere.
    let eds: Cluster = decode(&fleets.per_type.default, CLUSTER, "backend_127.0.0.1_8000");
    assert!(format!("{:?}", eds.eds_cluster_config).contains("control_plane"));
    for t in [ROUTE, ENDPOINT, EXTENSION_CONFIG] {
        assert_eq!(
            fleets.ads.default.resources(t),
            fleets.per_type.default.resources(t)
        );
    }
}

#[test]
fn mutation_rules_allow_what_the_header_modifiers_touch() {
    let rules = |text: &str| {
        let fleet = fleet(&config(text)).unwrap();
        let served: TypedExtensionConfig =
            decode(&fleet.default, EXTENSION_CONFIG, EXT_PROC_FILTER);
        let ext = ExternalProcessor::decode(served.typed_config.unwrap().value.as_slice()).unwrap();
        let r = ext.mutation_rules.expect("rules written");
        (
            r.allow_all_routing.unwrap().value,
            r.allow_envoy.unwrap().value,
        )
    };
    assert_eq!(rules(CONFIG), (false, false));
    let host = CONFIG.replace(
        "    - name: chat\n",
        "    - name: chat\n      policies: { requestHeaderModifier: { set: { Host: b.example } } }\n",
    );
    assert_eq!(rules(&host), (true, false));
    let envoy = format!(
        "{CONFIG}policies: {{ responseHeaderModifier: {{ remove: [x-envoy-upstream-service-time] }} }}\n"
    );
    assert_eq!(rules(&envoy), (false, true));
}

#[test]
fn insecure_and_client_certificates_reach_envoys_tls_context() {
    use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::UpstreamTlsContext;
    let text = r#"
extProc: { address: "127.0.0.1:50051" }
xds: {}
binds:
- port: 10000
  listeners:
  - routes:
    - { name: a, backends: [{ host: "localhost:8443", tls: { insecure: true } }] }
    - { name: b, backends: [{ host: "localhost:8443", tls: { certFile: /c.pem, keyFile: /k.pem } }] }
"#;
    let fleet = fleet(&config(text)).unwrap();
    let names: Vec<_> = fleet
        .default
        .resources(CLUSTER)
        .items
        .keys()
        .cloned()
        .collect();
    let tls_of = |name: &str| {
        let c: Cluster = decode(&fleet.default, CLUSTER, name);
        let socket = c.transport_socket.expect("TLS");
        let Some(transport_socket::ConfigType::TypedConfig(any)) = socket.config_type else {
            panic!("typed config");
        };
        UpstreamTlsContext::decode(any.value.as_slice()).unwrap()
    };
    let tls: Vec<_> = names.iter().filter(|n| n.contains("_tls_")).collect();
    assert_eq!(
        tls.len(),
        2,
        "insecure and mTLS are clusters of their own: {names:?}"
    );
    let contexts: Vec<_> = tls.iter().map(|n| tls_of(n)).collect();
    let insecure = contexts
        .iter()
        .find(|c| {
            c.common_tls_context
                .as_ref()
                .unwrap()
                .tls_certificates
                .is_empty()
        })
        .unwrap();
    assert!(
        insecure
            .common_tls_context
            .as_ref()
            .unwrap()
            .validation_context_type
            .is_none(),
        "insecure: no validation context, so Envoy verifies nothing"
    );
    let mtls = contexts
        .iter()
        .find(|c| {
            !c.common_tls_context
                .as_ref()
                .unwrap()
                .tls_certificates
                .is_empty()
        })
        .unwrap();
    let common = mtls.common_tls_context.as_ref().unwrap();
    assert!(
        common.validation_context_type.is_some(),
        "mTLS still verifies the server"
    );
    assert!(format!("{:?}", common.tls_certificates[0]).contains("/k.pem"));
}
