//! Routes with several backends, as Envoy carries them: one cluster per route holding
//! every backend as an endpoint with its weight, balanced by `LEAST_REQUEST` (two
//! random choices weighted, the fewer active requests wins: what tollgate's own proxy
//! does), with outlier detection from `upstream.outlierDetection`; and a route's
//! `retry` policy as Envoy's, which sends a retry to another host (`previous_hosts`).

use envoy_types::pb::envoy::config::cluster::v3::{cluster, Cluster, OutlierDetection};
use envoy_types::pb::envoy::config::core::v3::ConfigSource;
use envoy_types::pb::envoy::config::endpoint::v3::{
    lb_endpoint, ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints,
};
use envoy_types::pb::envoy::config::route::v3::{retry_policy, RetryPolicy as EnvoyRetry};
use envoy_types::pb::envoy::extensions::retry::host::previous_hosts::v3::PreviousHostsPredicate;
use envoy_types::pb::google::protobuf::{Duration as PbDuration, UInt32Value};
use envoy_types::util::pack_any;

use super::address::Target;
use super::clusters;
use crate::config::{Backend, Config, RetryPolicy};

/// The name of a route's own cluster.
pub fn pool_name(route: &str) -> String {
    format!("route_{route}_backends")
}

/// The cluster of a route with several `backends` (at `targets`), and its endpoints
/// when they come over EDS (every backend at an IP); by name, Envoy resolves them
/// (`STRICT_DNS`). TLS and protocol are the first backend's: `check_xds` makes sure
/// every backend shares them.
pub fn pool(
    config: &Config,
    name: &str,
    backends: &[Backend],
    targets: &[Target],
    source: &ConfigSource,
) -> (Cluster, Option<ClusterLoadAssignment>) {
    let by_name = targets.iter().position(|t| matches!(t, Target::Dns(..)));
    // The first backend's cluster, made STRICT_DNS when any backend is a name.
    let template = by_name.map_or(&targets[0], |i| &targets[i]);
    let (mut cluster, eds) = clusters::backend(config, name, &backends[0], template, source);
    cluster.lb_policy = cluster::LbPolicy::LeastRequest as i32;
    cluster.outlier_detection = Some(outlier(config));
    let endpoints = load_assignment(name, backends, targets);
    match eds {
        Some(_) => (cluster, Some(endpoints)),
        None => {
            cluster.load_assignment = Some(endpoints);
            (cluster, None)
        }
    }
}

/// Every backend as an endpoint, with its weight.
fn load_assignment(name: &str, backends: &[Backend], targets: &[Target]) -> ClusterLoadAssignment {
    let lb_endpoints = backends
        .iter()
        .zip(targets)
        .map(|(backend, target)| LbEndpoint {
            host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                address: Some(target.to_envoy()),
                ..Default::default()
            })),
            load_balancing_weight: Some(UInt32Value {
                value: backend.weight.max(1),
            }),
            ..Default::default()
        })
        .collect();
    ClusterLoadAssignment {
        cluster_name: name.to_string(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// `upstream.outlierDetection` as Envoy's: consecutive 5xx (connection failures count
/// as 503s), the base ejection time, the cap.
fn outlier(config: &Config) -> OutlierDetection {
    let o = &config.upstream.outlier_detection;
    OutlierDetection {
        consecutive_5xx: Some(UInt32Value {
            value: o.consecutive_failures.max(1),
        }),
        enforcing_consecutive_5xx: Some(UInt32Value {
            value: if o.consecutive_failures == 0 { 0 } else { 100 },
        }),
        base_ejection_time: pb(o.base_ejection_time.get()),
        max_ejection_percent: Some(UInt32Value {
            value: o.max_ejection_percent,
        }),
        ..Default::default()
    }
}

/// How often Envoy draws again for a retry that drew a host already tried.
pub const HOST_SELECTION_ATTEMPTS: i64 = 20;

/// A route's `retry` policy as Envoy's: connection failures and refused streams always,
/// the listed statuses, `attempts - 1` retries after the policy's backoff; with several
/// backends, each retry on a host not tried yet. `None` for a single attempt.
pub fn retry(policy: &RetryPolicy, several: bool) -> Option<EnvoyRetry> {
    if policy.attempts <= 1 {
        return None;
    }
    let mut retry_on = "connect-failure,refused-stream".to_string();
    if !policy.codes.is_empty() {
        retry_on.push_str(",retriable-status-codes");
    }
    let predicate = retry_policy::RetryHostPredicate {
        name: "envoy.retry_host_predicates.previous_hosts".into(),
        config_type: Some(retry_policy::retry_host_predicate::ConfigType::TypedConfig(
            pack_any(PreviousHostsPredicate {}),
        )),
    };
    Some(EnvoyRetry {
        retry_on,
        num_retries: Some(UInt32Value {
            value: policy.attempts - 1,
        }),
        retriable_status_codes: policy.codes.iter().map(|&c| u32::from(c)).collect(),
        retry_back_off: Some(retry_policy::RetryBackOff {
            base_interval: pb(policy.backoff_before(1)),
            ..Default::default()
        }),
        retry_host_predicate: if several { vec![predicate] } else { Vec::new() },
        // Each reselection is a fresh draw that may land on the host just tried again
        // (half the time with two backends): 5 draws left 1 retry in 64 on the same
        // host; 20 leave about one in two million.
        host_selection_retry_max_attempts: if several { HOST_SELECTION_ATTEMPTS } else { 0 },
        ..Default::default()
    })
}

fn pb(d: std::time::Duration) -> Option<PbDuration> {
    Some(PbDuration {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    })
}
