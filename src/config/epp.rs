//! `endpointPicker`: pick the model-server endpoint of each inference request, the way a
//! Gateway API Inference Extension endpoint picker (EPP) does.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ConfigError, DnsSource, Duration, EndpointsFileSource, FailureMode, KubernetesSource};

/// The endpoint picker of a route: a pool of model-server endpoints, their scraped
/// metrics, and the reference default scheduler (queue ×2, KV-cache ×2, prefix-cache ×3,
/// max score with random tie-break).
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EndpointPickerPolicy {
    /// The pool: `ip:port` of each model server (IPv6 in brackets, `[::1]:8000`). Set
    /// this or exactly one of `endpointsFile`, `dns` and `kubernetes`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<String>,
    /// The pool from a file of `ip:port` lines (or a YAML list), re-read when it changes:
    /// a path, or `{path, pollInterval}` (default `1s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints_file: Option<EndpointsFileSource>,
    /// The pool from DNS: every A/AAAA record of `name` with `port`, re-resolved every
    /// `refresh` (default `5s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsSource>,
    /// The pool from Kubernetes: the Ready pods of an InferencePool
    /// (`inference.networking.k8s.io/v1`) × its target ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubernetesSource>,
    /// Scraping of each endpoint's Prometheus metrics.
    #[serde(default)]
    pub metrics: EppMetricsConfig,
    /// Largest request body read to find the model and prompt. Default 16 MiB.
    #[serde(default = "default_max_request_bytes")]
    pub max_request_bytes: usize,
    /// What an internal failure of the picker does: `failClosed` (default, the request
    /// fails) or `failOpen` (it goes on without a pick).
    #[serde(default)]
    pub failure_mode: FailureMode,
}

/// How endpoint metrics are scraped.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EppMetricsConfig {
    /// HTTP path of the metrics. Default `/metrics`.
    #[serde(default = "default_metrics_path")]
    pub path: String,
    /// Time between two scrapes of one endpoint. Default `50ms`.
    #[serde(default = "default_interval")]
    pub interval: Duration,
    /// Metrics older than this are stale. Default `200ms`.
    #[serde(default = "default_stale_after")]
    pub stale_after: Duration,
}

fn default_max_request_bytes() -> usize {
    16 * 1024 * 1024
}
fn default_metrics_path() -> String {
    "/metrics".to_string()
}
fn default_interval() -> Duration {
    Duration::from_millis(50)
}
fn default_stale_after() -> Duration {
    Duration::from_millis(200)
}

impl Default for EppMetricsConfig {
    fn default() -> Self {
        EppMetricsConfig {
            path: default_metrics_path(),
            interval: default_interval(),
            stale_after: default_stale_after(),
        }
    }
}

impl EndpointPickerPolicy {
    /// The endpoints as socket addresses, in config order, with the source and the
    /// metrics settings checked; errors name the offending field. With `endpointsFile`,
    /// `dns` or `kubernetes` instead of `endpoints`, what that source holds now
    /// (`EndpointSource::initial`: the file's list; empty for DNS and Kubernetes, whose
    /// lists come from `crate::epp::discovery::watch`).
    pub fn addresses(&self, path: &str) -> Result<Vec<std::net::SocketAddr>, ConfigError> {
        let source = self.source(path)?;
        let out = if self.endpoints.is_empty() {
            source.initial()
        } else {
            super::epp_source::static_list(&self.endpoints, path)?
        };
        if !self.metrics.path.starts_with('/') {
            return Err(ConfigError::field(
                format!("{path}.metrics.path"),
                "must start with /",
            ));
        }
        if self.metrics.interval.get().is_zero() {
            return Err(ConfigError::field(
                format!("{path}.metrics.interval"),
                "must be more than 0",
            ));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    fn policy(yaml: &str) -> super::EndpointPickerPolicy {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn defaults_and_addresses() {
        let p = policy("endpoints: ['127.0.0.1:8001', '[::1]:8002']");
        assert_eq!(p.metrics.path, "/metrics");
        assert_eq!(p.metrics.interval.get().as_millis(), 50);
        let a = p.addresses("policies.endpointPicker").unwrap();
        assert_eq!(a[1].to_string(), "[::1]:8002");
    }

    #[test]
    fn addresses_of_other_sources() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pool");
        std::fs::write(&f, "127.0.0.2:8000\n127.0.0.1:8000\n").unwrap();
        let p = policy(&format!("endpointsFile: {}", f.display()));
        assert_eq!(
            p.addresses("p").unwrap(),
            vec![
                "127.0.0.1:8000".parse::<std::net::SocketAddr>().unwrap(),
                "127.0.0.2:8000".parse().unwrap()
            ]
        );
        assert!(policy("dns: {name: localhost, port: 8000}")
            .addresses("p")
            .unwrap()
            .is_empty());
        // The metrics settings are checked whatever the source.
        let e = policy("{dns: {name: localhost, port: 8000}, metrics: {path: x}}")
            .addresses("p.endpointPicker")
            .unwrap_err();
        assert!(
            e.to_string().starts_with("p.endpointPicker.metrics.path: "),
            "{e}"
        );
    }

    #[test]
    fn bad_endpoints_name_their_field() {
        for (yaml, field) in [
            (
                "endpoints: ['127.0.0.1:8001', 'model-a:8000']",
                "endpoints[1]",
            ),
            ("endpoints: ['127.0.0.1']", "endpoints[0]"),
            ("endpoints: ['127.0.0.1:1', '127.0.0.1:1']", "endpoints[1]"),
            ("endpoints: []", "endpoints"),
            (
                "{endpoints: ['127.0.0.1:1'], metrics: {path: metrics}}",
                "metrics.path",
            ),
        ] {
            let e = policy(yaml).addresses("p.endpointPicker").unwrap_err();
            assert!(
                e.to_string().contains(&format!("p.endpointPicker.{field}")),
                "{yaml}: {e}"
            );
        }
    }
}
