//! A bind as an Envoy listener: its address, its TLS, and one HTTP connection manager
//! that takes its routes over RDS and runs tollgate's ext_proc filter (its config over
//! ECDS, [`ext_proc_config`]) before the router, set up as
//! `deploy/envoy/tollgate-token-accounting.yaml` is by hand.

use envoy_types::pb::envoy::config::common::mutation_rules::v3::HeaderMutationRules;
use envoy_types::pb::envoy::config::core::v3::{
    api_config_source, config_source, AggregatedConfigSource, ApiConfigSource, ApiVersion,
    ConfigSource, ExtensionConfigSource, GrpcService, TypedExtensionConfig,
};
use envoy_types::pb::envoy::config::listener::v3::{filter, Filter, FilterChain, Listener};
use envoy_types::pb::envoy::extensions::filters::http::ext_proc::v3::{
    metadata_options::MetadataNamespaces, processing_mode, ExternalProcessor, MetadataOptions,
    ProcessingMode,
};
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager, http_filter, HttpConnectionManager, HttpFilter, Rds,
};
use envoy_types::pb::google::protobuf::{BoolValue, Duration as PbDuration, UInt32Value};
use envoy_types::util::pack_any;

use super::address::Target;
use super::tls;
use crate::config::{Bind, Config, XdsConfig};
use crate::xds::snapshot::Delivery;

/// The cluster that reaches tollgate's ext_proc server.
pub const EXT_PROC_CLUSTER: &str = "tollgate";

/// The ext_proc filter's name in every listener, and the name of its config served
/// over ECDS.
pub const EXT_PROC_FILTER: &str = "tollgate_ext_proc";

const EXT_PROC_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor";

/// Dynamic metadata namespaces tollgate writes: token counts, and the endpoint pick.
const RECEIVING_NAMESPACES: [&str; 2] = ["io.envoy.ai_gateway", "envoy.lb"];

/// Requests and prompts tollgate buffers whole need room in Envoy's buffers too.
const CONNECTION_BUFFER_BYTES: u32 = 8 * 1024 * 1024;

/// The name of the listener, and of its route configuration, for a bind.
pub fn name(bind: &Bind) -> String {
    format!("bind_{}", bind.port)
}

/// The listener of `bind`; its routes and filter config come from `source`.
pub fn listener(bind: &Bind, source: &ConfigSource) -> Listener {
    let address = Target::Ip(
        bind.address.parse().unwrap_or([0, 0, 0, 0].into()),
        bind.port,
    );
    let hcm = pack_any(connection_manager(bind, source));
    Listener {
        name: name(bind),
        address: Some(address.to_envoy()),
        per_connection_buffer_limit_bytes: Some(UInt32Value {
            value: CONNECTION_BUFFER_BYTES,
        }),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: "envoy.filters.network.http_connection_manager".into(),
                config_type: Some(filter::ConfigType::TypedConfig(hcm)),
            }],
            transport_socket: bind.tls.as_ref().map(tls::downstream),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Where routes, endpoints and the ext_proc filter's config come from: the same ADS
/// stream as the listener or cluster naming them, or, for an Envoy without ADS, the
/// per-type services through its bootstrap cluster `cluster`.
pub fn source(delivery: Delivery, cluster: &str) -> ConfigSource {
    let specifier = match delivery {
        Delivery::Ads => config_source::ConfigSourceSpecifier::Ads(AggregatedConfigSource {}),
        Delivery::PerType { delta } => {
            let api_type = if delta {
                api_config_source::ApiType::DeltaGrpc
            } else {
                api_config_source::ApiType::Grpc
            };
            config_source::ConfigSourceSpecifier::ApiConfigSource(ApiConfigSource {
                api_type: api_type as i32,
                transport_api_version: ApiVersion::V3 as i32,
                grpc_services: vec![grpc_service(cluster)],
                set_node_on_first_message_only: true,
                ..Default::default()
            })
        }
    };
    ConfigSource {
        resource_api_version: ApiVersion::V3 as i32,
        config_source_specifier: Some(specifier),
        ..Default::default()
    }
}

/// A gRPC service on Envoy's cluster `cluster`.
fn grpc_service(cluster: &str) -> GrpcService {
    use envoy_types::pb::envoy::config::core::v3::grpc_service::{EnvoyGrpc, TargetSpecifier};
    GrpcService {
        target_specifier: Some(TargetSpecifier::EnvoyGrpc(EnvoyGrpc {
            cluster_name: cluster.into(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn seconds(s: u64) -> Option<PbDuration> {
    Some(PbDuration {
        seconds: s as i64,
        nanos: 0,
    })
}

fn duration(d: std::time::Duration) -> Option<PbDuration> {
    Some(PbDuration {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    })
}

fn connection_manager(bind: &Bind, source: &ConfigSource) -> HttpConnectionManager {
    let http_filter = |name: &str, typed| HttpFilter {
        name: name.into(),
        config_type: Some(http_filter::ConfigType::TypedConfig(typed)),
        ..Default::default()
    };
    HttpConnectionManager {
        stat_prefix: name(bind),
        codec_type: http_connection_manager::CodecType::Auto as i32,
        route_specifier: Some(http_connection_manager::RouteSpecifier::Rds(Rds {
            config_source: Some(source.clone()),
            route_config_name: name(bind),
        })),
        // Hostnames match without the port, as tollgate's own listeners match them.
        strip_port_mode: Some(http_connection_manager::StripPortMode::StripAnyHostPort(
            true,
        )),
        // Streams (SSE completions) may run for minutes; idle ones still end.
        stream_idle_timeout: seconds(300),
        request_timeout: seconds(0),
        // The ext_proc filter's config comes over ECDS: changing its timeouts or
        // failure mode updates the filter in place, with no listener drain.
        http_filters: vec![
            HttpFilter {
                name: EXT_PROC_FILTER.into(),
                config_type: Some(http_filter::ConfigType::ConfigDiscovery(
                    ExtensionConfigSource {
                        config_source: Some(source.clone()),
                        type_urls: vec![EXT_PROC_TYPE.into()],
                        ..Default::default()
                    },
                )),
                ..Default::default()
            },
            http_filter("envoy.filters.http.router", pack_any(Router::default())),
        ],
        ..Default::default()
    }
}

/// The ext_proc filter: headers always, bodies streamed unless tollgate overrides the
/// mode per request (it asks for what its processors need and nothing on routes
/// without body policies), the route's name as an attribute so tollgate picks the same
/// route Envoy did, and tollgate's metadata namespaces accepted.
pub fn ext_proc_config(config: &Config, xds: &XdsConfig) -> TypedExtensionConfig {
    let mode_override = config.ext_proc.as_ref().is_some_and(|e| e.mode_override);
    let mut filter = ext_proc(xds, mode_override);
    filter.mutation_rules = Some(mutation_rules(config));
    TypedExtensionConfig {
        name: EXT_PROC_FILTER.into(),
        typed_config: Some(pack_any(filter)),
    }
}

/// Envoy drops a mutation of `host`, `:authority`, `:path`, `:method`, `:scheme` or an
/// `x-envoy-*` header unless the filter's rules allow it. They allow exactly what the
/// config's header modifiers, `urlRewrite`s and `llmProvider`s (a provider path, or a
/// translated request's path; any route's, or the gateway's) touch,
/// so a policy that rewrites the host or path works behind Envoy as it does in the
/// proxy, and nothing else can.
fn mutation_rules(config: &Config) -> HeaderMutationRules {
    let modifiers = all_policies(config).flat_map(|p| {
        [&p.request_header_modifier, &p.response_header_modifier]
            .into_iter()
            .flatten()
    });
    let names: Vec<String> = modifiers
        .flat_map(|m| m.set.keys().chain(m.add.keys()).chain(m.remove.iter()))
        .map(|n| n.to_ascii_lowercase())
        .collect();
    let rewrites =
        all_policies(config).any(|p| p.url_rewrite.is_some() || p.llm_provider.is_some());
    let routing = rewrites
        || names.iter().any(|n| {
            matches!(
                n.as_str(),
                "host" | ":authority" | ":path" | ":method" | ":scheme"
            )
        });
    let envoy = names.iter().any(|n| n.starts_with("x-envoy-"));
    HeaderMutationRules {
        allow_all_routing: Some(BoolValue { value: routing }),
        allow_envoy: Some(BoolValue { value: envoy }),
        ..Default::default()
    }
}

/// Every route's policies, and the gateway's.
fn all_policies(config: &Config) -> impl Iterator<Item = &crate::config::Policies> {
    config
        .binds
        .iter()
        .flat_map(|b| &b.listeners)
        .flat_map(|l| &l.routes)
        .map(|r| &r.policies)
        .chain(std::iter::once(&config.policies))
}

fn ext_proc(xds: &XdsConfig, mode_override: bool) -> ExternalProcessor {
    use processing_mode::{BodySendMode, HeaderSendMode};
    ExternalProcessor {
        grpc_service: Some(grpc_service(EXT_PROC_CLUSTER)),
        failure_mode_allow: xds.failure_mode_allow,
        message_timeout: duration(xds.message_timeout.get()),
        max_message_timeout: duration(xds.max_message_timeout.get()),
        allow_mode_override: mode_override,
        processing_mode: Some(ProcessingMode {
            request_header_mode: HeaderSendMode::Send as i32,
            response_header_mode: HeaderSendMode::Send as i32,
            request_body_mode: BodySendMode::Streamed as i32,
            response_body_mode: BodySendMode::Streamed as i32,
            request_trailer_mode: HeaderSendMode::Skip as i32,
            response_trailer_mode: HeaderSendMode::Skip as i32,
        }),
        request_attributes: vec!["xds.route_name".into()],
        metadata_options: Some(MetadataOptions {
            receiving_namespaces: Some(MetadataNamespaces {
                untyped: RECEIVING_NAMESPACES.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}
