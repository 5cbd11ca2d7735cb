//! Clusters and their endpoints: one cluster per distinct backend (a route's first, as
//! tollgate's own proxy uses), and the `tollgate` cluster that reaches the ext_proc
//! server. A backend at an IP is an EDS cluster whose endpoints come over ADS (Envoy
//! warms it until they do); a backend by name is a STRICT_DNS cluster Envoy resolves
//! itself, since EDS endpoints must be addresses.

use std::collections::HashMap;

use envoy_types::pb::envoy::config::cluster::v3::{
    circuit_breakers, cluster, CircuitBreakers, Cluster,
};
use envoy_types::pb::envoy::config::core::v3::{
    ConfigSource, Http2ProtocolOptions, KeepaliveSettings,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    lb_endpoint, ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints,
};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::{
    http_protocol_options::{explicit_http_config, ExplicitHttpConfig, UpstreamProtocolOptions},
    HttpProtocolOptions,
};
use envoy_types::pb::google::protobuf::{Duration as PbDuration, UInt32Value};
use envoy_types::util::pack_any;

use super::address::Target;
use super::listener::EXT_PROC_CLUSTER;
use super::tls;
use crate::config::{Backend, BackendTls, Config, ExtProcConfig};

const PROTOCOL_OPTIONS: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

fn duration(d: std::time::Duration) -> Option<PbDuration> {
    Some(PbDuration {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    })
}

/// The cluster of a backend: routes to the same backend (host, TLS and protocol
/// alike) share it, and with it Envoy's connection pool and health. The name reads as
/// the backend: `backend_<host>_<port>`, then `_tls` (and a hash of the TLS settings
/// when they are not the defaults) and `_h2`.
pub fn cluster_name(backend: &Backend) -> String {
    let mut name = format!("backend_{}", backend.host.replace(':', "_"));
    if let Some(tls) = &backend.tls {
        name.push_str("_tls");
        if *tls != BackendTls::default() {
            let mut key = format!("{:?}|{:?}", tls.sni, tls.ca_file);
            if tls.insecure || tls.cert_file.is_some() {
                key.push_str(&format!(
                    "|{}|{:?}|{:?}",
                    tls.insecure, tls.cert_file, tls.key_file
                ));
            }
            let hash = xxhash_rust::xxh64::xxh64(key.as_bytes(), 0);
            name.push_str(&format!("_{:08x}", hash as u32));
        }
    }
    if backend.http2 {
        name.push_str("_h2");
    }
    name
}

/// The endpoints of cluster `name`: one, at `target`.
pub fn load_assignment(name: &str, target: &Target) -> ClusterLoadAssignment {
    ClusterLoadAssignment {
        cluster_name: name.to_string(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints: vec![LbEndpoint {
                host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                    address: Some(target.to_envoy()),
                    ..Default::default()
                })),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// HTTP/2 to the upstream (gRPC, or a backend with `http2: true`), with keepalive pings
/// so a peer that vanished without a FIN is noticed.
fn http2_options() -> HashMap<String, envoy_types::pb::google::protobuf::Any> {
    let options = HttpProtocolOptions {
        upstream_protocol_options: Some(UpstreamProtocolOptions::ExplicitHttpConfig(
            ExplicitHttpConfig {
                protocol_config: Some(explicit_http_config::ProtocolConfig::Http2ProtocolOptions(
                    Http2ProtocolOptions {
                        connection_keepalive: Some(KeepaliveSettings {
                            interval: duration(std::time::Duration::from_secs(30)),
                            timeout: duration(std::time::Duration::from_secs(5)),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                )),
            },
        )),
        ..Default::default()
    };
    [(PROTOCOL_OPTIONS.to_string(), pack_any(options))].into()
}

/// A route's cluster, and its endpoints when they come over EDS.
pub fn backend(
    config: &Config,
    name: &str,
    backend: &Backend,
    target: &Target,
    source: &ConfigSource,
) -> (Cluster, Option<ClusterLoadAssignment>) {
    let mut cluster = Cluster {
        name: name.to_string(),
        connect_timeout: duration(config.upstream.connect_timeout.get()),
        transport_socket: backend
            .tls
            .as_ref()
            .map(|t| tls::upstream(t, &target.host().unwrap_or_default(), backend.http2)),
        typed_extension_protocol_options: if backend.http2 {
            http2_options()
        } else {
            HashMap::new()
        },
        ..Default::default()
    };
    match target {
        Target::Dns(..) => {
            cluster.cluster_discovery_type = Some(cluster::ClusterDiscoveryType::Type(
                cluster::DiscoveryType::StrictDns as i32,
            ));
            cluster.dns_lookup_family = cluster::DnsLookupFamily::V4Preferred as i32;
            cluster.load_assignment = Some(load_assignment(name, target));
            (cluster, None)
        }
        Target::Ip(..) | Target::Pipe(_) => {
            cluster.cluster_discovery_type = Some(cluster::ClusterDiscoveryType::Type(
                cluster::DiscoveryType::Eds as i32,
            ));
            cluster.eds_cluster_config = Some(cluster::EdsClusterConfig {
                eds_config: Some(source.clone()),
                ..Default::default()
            });
            (cluster, Some(load_assignment(name, target)))
        }
    }
}

/// The cluster of every endpoint-picker route: ORIGINAL_DST on the address tollgate's
/// picker hands Envoy as `envoy.lb` dynamic metadata (`x-gateway-destination-endpoint`),
/// which a client cannot set, unlike a header. One cluster serves every pool: it holds
/// no endpoints of its own.
pub fn picked(config: &Config) -> Cluster {
    use envoy_types::pb::envoy::r#type::metadata::v3::{
        metadata_key::{path_segment::Segment, PathSegment},
        MetadataKey,
    };
    Cluster {
        name: PICKED_CLUSTER.into(),
        connect_timeout: duration(config.upstream.connect_timeout.get()),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::OriginalDst as i32,
        )),
        lb_policy: cluster::LbPolicy::ClusterProvided as i32,
        lb_config: Some(cluster::LbConfig::OriginalDstLbConfig(
            cluster::OriginalDstLbConfig {
                metadata_key: Some(MetadataKey {
                    key: "envoy.lb".into(),
                    path: vec![PathSegment {
                        segment: Some(Segment::Key("x-gateway-destination-endpoint".into())),
                    }],
                }),
                ..Default::default()
            },
        )),
        ..Default::default()
    }
}

/// The name of [`picked`]'s cluster.
pub const PICKED_CLUSTER: &str = "tollgate_picked_endpoint";

/// The cluster Envoy's ext_proc filter calls: tollgate's gRPC server at `target`, over
/// HTTP/2, with TLS when the server has it.
pub fn ext_proc(ext: &ExtProcConfig, target: &Target) -> Cluster {
    Cluster {
        transport_socket: (ext.tls.is_some() || ext.self_signed_tls)
            .then(tls::self_signed_ext_proc),
        ..sidecar(EXT_PROC_CLUSTER, target)
    }
}

/// The cluster of tollgate's MCP listener (`xds.mcpAddress`): HTTP/2 (h2c), so the
/// long GET streams and calls of many clients share a few connections.
pub fn mcp_listener(target: &Target) -> Cluster {
    sidecar(super::MCP_CLUSTER, target)
}

/// A cluster for one of tollgate's own servers at `target`, spoken to over HTTP/2.
fn sidecar(name: &str, target: &Target) -> Cluster {
    let discovery = match target {
        Target::Dns(..) => cluster::DiscoveryType::StrictDns,
        _ => cluster::DiscoveryType::Static,
    };
    Cluster {
        name: name.into(),
        connect_timeout: duration(std::time::Duration::from_millis(250)),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(discovery as i32)),
        typed_extension_protocol_options: http2_options(),
        load_assignment: Some(load_assignment(name, target)),
        // Every request (an ext_proc stream, an MCP GET stream) is one HTTP/2 stream
        // here, held for the request's life: Envoy's default of 1,024 at once is too low.
        circuit_breakers: Some(CircuitBreakers {
            thresholds: vec![circuit_breakers::Thresholds {
                max_requests: Some(UInt32Value { value: 100_000 }),
                max_pending_requests: Some(UInt32Value { value: 100_000 }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}
