//! Routes with several backends, and `retry`, as Envoy gets them.

use envoy_types::pb::envoy::config::cluster::v3::{cluster, Cluster};
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;

use super::mcp_tests::{action, cluster_of, routes};
use super::tests::{config, decode};
use super::*;

const POOL: &str = r#"
extProc: { address: "127.0.0.1:50051" }
xds: {}
upstream: { outlierDetection: { consecutiveFailures: 3, baseEjectionTime: 10s, maxEjectionPercent: 40 } }
binds:
- port: 10000
  listeners:
  - routes:
    - name: spread
      matches: [{ path: { pathPrefix: /v1 } }]
      policies: { retry: { attempts: 3, backoff: 50ms, codes: [429, 503] } }
      backends: [{ host: "127.0.0.1:8000" }, { host: "127.0.0.1:8001", weight: 3 }]
    - name: single
      policies: { retry: { attempts: 2 } }
      backends: [{ host: "127.0.0.1:8002" }]
"#;

#[test]
fn several_backends_are_one_weighted_least_request_cluster_with_outlier_detection() {
    let fleet = fleet(&config(POOL)).unwrap();
    let name = "route_spread_backends";
    let cluster: Cluster = decode(&fleet.default, CLUSTER, name);
    assert_eq!(cluster.lb_policy, cluster::LbPolicy::LeastRequest as i32);
    let o = cluster.outlier_detection.unwrap();
    assert_eq!(o.consecutive_5xx.unwrap().value, 3);
    assert_eq!(o.enforcing_consecutive_5xx.unwrap().value, 100);
    assert_eq!(o.base_ejection_time.unwrap().seconds, 10);
    assert_eq!(o.max_ejection_percent.unwrap().value, 40);
    let endpoints: ClusterLoadAssignment = decode(&fleet.default, ENDPOINT, name);
    let weights: Vec<(String, u32)> = endpoints.endpoints[0]
        .lb_endpoints
        .iter()
        .map(|e| {
            (
                format!("{:?}", e.host_identifier)
                    .contains("8001")
                    .to_string(),
                e.load_balancing_weight.unwrap().value,
            )
        })
        .collect();
    assert_eq!(weights, [("false".to_string(), 1), ("true".to_string(), 3)]);
    let routes = routes(POOL);
    assert_eq!(cluster_of(&routes[0]), name);
    assert_eq!(cluster_of(&routes[1]), "backend_127.0.0.1_8002");
}

#[test]
fn retry_becomes_envoys_retry_policy_on_other_hosts() {
    let routes = routes(POOL);
    let r = action(&routes[0]).retry_policy.clone().unwrap();
    assert_eq!(
        r.retry_on,
        "connect-failure,refused-stream,retriable-status-codes"
    );
    assert_eq!(r.num_retries.unwrap().value, 2);
    assert_eq!(r.retriable_status_codes, [429, 503]);
    assert_eq!(
        r.retry_back_off.unwrap().base_interval.unwrap().nanos,
        50_000_000
    );
    assert_eq!(
        r.retry_host_predicate[0].name,
        "envoy.retry_host_predicates.previous_hosts"
    );
    assert_eq!(r.host_selection_retry_max_attempts, 20);
    let single = action(&routes[1]).retry_policy.clone().unwrap();
    assert_eq!(single.retry_on, "connect-failure,refused-stream");
    assert!(
        single.retry_host_predicate.is_empty(),
        "one host: nowhere else to go"
    );
}

#[test]
fn backends_of_one_route_must_share_cluster_settings() {
    let cases = [
        (
            r#"[{ host: "127.0.0.1:1" }, { host: "127.0.0.1:2", http2: true }]"#,
            "routes[0].backends[1]:",
        ),
        (
            r#"[{ host: "a.example:443", tls: {} }, { host: "b.example:443", tls: {} }]"#,
            "routes[0].backends[1].tls.sni:",
        ),
    ];
    for (backends, want) in cases {
        let text = format!(
            "extProc: {{ address: \"127.0.0.1:50051\" }}\nxds: {{}}\nbinds:\n- port: 1\n  listeners:\n  - routes:\n    - backends: {backends}\n"
        );
        let err = crate::config::check_xds(&config(&text))
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{backends}: {err}");
    }
    let same_host = r#"extProc: { address: "127.0.0.1:50051" }
xds: {}
binds:
- port: 1
  listeners:
  - routes:
    - backends: [{ host: "a.example:443", tls: {} }, { host: "a.example:8443", tls: {} }]
"#;
    crate::config::check_xds(&config(same_host)).unwrap();
}
