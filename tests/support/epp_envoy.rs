//! Envoy set up as a Gateway API Inference Extension gateway in front of a pool: the
//! ext_proc filter in FULL_DUPLEX_STREAMED (trailers SEND) towards the picker, receiving
//! `envoy.lb` metadata, and the pool cluster in one of the ways gateways forward to the
//! pick (or, [`start_partial_gateway`], the request body BUFFERED_PARTIAL). The access log records which upstream host served each request.

use std::path::Path;

use super::envoy::Envoy;

/// Envoy (one worker) as the gateway over `pool`, its picker on `ext_proc_port`.
pub async fn start_gateway(
    ext_proc_port: u16,
    pool: &[String],
    forwarding: Forwarding,
    failure_mode_allow: bool,
) -> Envoy {
    Envoy::start_with(1, |admin, ports, log| {
        render(
            admin,
            ports,
            log,
            ext_proc_port,
            pool,
            forwarding,
            failure_mode_allow,
        )
    })
    .await
}

/// [`start_gateway`] (ORIGINAL_DST on the `envoy.lb` metadata) with the request body in
/// BUFFERED_PARTIAL and the listener's buffer limit at `buffer_limit` bytes: Envoy sends
/// the picker a long body's first bytes only, and streams the rest to the pool itself.
pub async fn start_partial_gateway(
    ext_proc_port: u16,
    pool: &[String],
    buffer_limit: u32,
) -> Envoy {
    Envoy::start_with(1, |admin, ports, log| {
        let yaml = render(
            admin,
            ports,
            log,
            ext_proc_port,
            pool,
            Forwarding::OriginalDstMetadata,
            false,
        );
        let (duplex, listener) = (
            "request_body_mode: FULL_DUPLEX_STREAMED",
            "  - name: gateway\n",
        );
        assert!(
            yaml.contains(duplex) && yaml.contains(listener),
            "the gateway config changed"
        );
        yaml.replace(duplex, "request_body_mode: BUFFERED_PARTIAL")
            .replace(
                listener,
                &format!("{listener}    per_connection_buffer_limit_bytes: {buffer_limit}\n"),
            )
    })
    .await
}

/// How Envoy forwards to the picked endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forwarding {
    /// ORIGINAL_DST keyed on `envoy.lb/x-gateway-destination-endpoint` dynamic metadata
    /// (not spoofable by clients).
    OriginalDstMetadata,
    /// ORIGINAL_DST keyed on the `x-gateway-destination-endpoint` request header.
    OriginalDstHeader,
    /// A STATIC cluster of the pool's endpoints with the `override_host` LB policy
    /// (metadata first, then the header; round robin when neither names a known host).
    OverrideHost,
}

/// The Envoy config: listener 0 on `ports[0]`.
pub fn render(
    admin_port: u16,
    ports: &[u16],
    access_log: &Path,
    ext_proc_port: u16,
    pool: &[String],
    forwarding: Forwarding,
    failure_mode_allow: bool,
) -> String {
    let log = access_log.display();
    let listener_port = ports[0];
    let cluster = match forwarding {
        Forwarding::OriginalDstMetadata => r#"
  - name: pool
    type: ORIGINAL_DST
    lb_policy: CLUSTER_PROVIDED
    connect_timeout: 2s
    original_dst_lb_config:
      metadata_key:
        key: envoy.lb
        path:
        - key: x-gateway-destination-endpoint"#
            .to_string(),
        Forwarding::OriginalDstHeader => r#"
  - name: pool
    type: ORIGINAL_DST
    lb_policy: CLUSTER_PROVIDED
    connect_timeout: 2s
    original_dst_lb_config:
      use_http_header: true
      http_header_name: x-gateway-destination-endpoint"#
            .to_string(),
        Forwarding::OverrideHost => {
            let endpoints: String = pool
                .iter()
                .map(|e| {
                    let (host, port) = e.rsplit_once(':').expect("ip:port");
                    format!(
                        "\n        - endpoint: {{ address: {{ socket_address: {{ address: \"{}\", port_value: {port} }} }} }}",
                        host.trim_matches(['[', ']'])
                    )
                })
                .collect();
            format!(
                r#"
  - name: pool
    type: STATIC
    connect_timeout: 2s
    load_assignment:
      cluster_name: pool
      endpoints:
      - lb_endpoints:{endpoints}
    load_balancing_policy:
      policies:
      - typed_extension_config:
          name: envoy.load_balancing_policies.override_host
          typed_config:
            "@type": type.googleapis.com/envoy.extensions.load_balancing_policies.override_host.v3.OverrideHost
            override_host_sources:
            - metadata:
                key: envoy.lb
                path:
                - key: x-gateway-destination-endpoint
            - header: x-gateway-destination-endpoint
            fallback_policy:
              policies:
              - typed_extension_config:
                  name: envoy.load_balancing_policies.round_robin
                  typed_config:
                    "@type": type.googleapis.com/envoy.extensions.load_balancing_policies.round_robin.v3.RoundRobin"#
            )
        }
    };
    format!(
        r#"
admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin_port} }} }}
static_resources:
  listeners:
  - name: gateway
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {listener_port} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: l0
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: "{log}"
              log_format:
                json_format:
                  test_id: "%REQ(X-TEST-ID)%"
                  status: "%RESPONSE_CODE%"
                  upstream_host: "%UPSTREAM_HOST%"
                  picked: "%DYNAMIC_METADATA(envoy.lb:x-gateway-destination-endpoint)%"
                  details: "%RESPONSE_CODE_DETAILS%"
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: "/" }}
                route: {{ cluster: pool, timeout: 30s }}
          http_filters:
          - name: envoy.filters.http.ext_proc
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor
              grpc_service:
                envoy_grpc: {{ cluster_name: picker }}
                timeout: 5s
              failure_mode_allow: {failure_mode_allow}
              message_timeout: 5s
              processing_mode:
                request_header_mode: SEND
                response_header_mode: SEND
                request_body_mode: FULL_DUPLEX_STREAMED
                response_body_mode: FULL_DUPLEX_STREAMED
                request_trailer_mode: SEND
                response_trailer_mode: SEND
              metadata_options:
                receiving_namespaces:
                  untyped: ["envoy.lb"]
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: picker
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
          http2_protocol_options: {{}}
    load_assignment:
      cluster_name: picker
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {ext_proc_port} }} }} }}{cluster}
"#
    )
}
