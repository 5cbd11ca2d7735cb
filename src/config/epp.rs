//! `endpointPicker`: pick the model-server endpoint of each inference request, the way a
//! Gateway API Inference Extension endpoint picker (EPP) does.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    ConfigError, DnsSource, Duration, EndpointsFileSource, FailureMode, KubernetesSource,
    MetricsMapping, SaturationConfig, SchedulingConfig,
};

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
    /// Inference objectives a request names in `x-gateway-inference-objective` (or
    /// `x-llm-d-inference-objective`): each gives a priority. A negative priority makes
    /// the request sheddable: it is answered 429 while the pool is saturated. A request
    /// naming no objective, or an unknown one, has priority 0.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objectives: Vec<InferenceObjective>,
    /// Model rewrites: a request for `model` is sent to one of `targets`, chosen by
    /// weight, and the response names the model the client asked for. A
    /// `x-gateway-model-name-rewrite` header set by the gateway overrides them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub model_rewrites: Vec<ModelRewrite>,
    /// The scheduling profile: a preset or filters → weighted scorers → picker. Default
    /// the `default` preset.
    #[serde(default)]
    pub scheduling: SchedulingConfig,
    /// When requests with a negative priority are refused.
    #[serde(default)]
    pub saturation: SaturationConfig,
}

/// An inference objective: a name requests refer to and its priority.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct InferenceObjective {
    pub name: String,
    /// Higher is more important; negative is sheddable. Default 0.
    #[serde(default)]
    pub priority: i32,
}

/// A weighted rewrite of one client-facing model name.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ModelRewrite {
    /// The model name clients send.
    pub model: String,
    /// Where it goes; at least one.
    pub targets: Vec<RewriteTarget>,
}

/// One target of a model rewrite.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RewriteTarget {
    /// The model name sent to the model server.
    pub model: String,
    /// Relative share of the requests. Default 1.
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
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
    /// Which Prometheus families are read for what. Default vLLM's and SGLang's names.
    #[serde(default)]
    pub mapping: MetricsMapping,
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
            mapping: MetricsMapping::default(),
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
        self.check_objectives_and_rewrites(path)?;
        Ok(out)
    }

    fn check_objectives_and_rewrites(&self, path: &str) -> Result<(), ConfigError> {
        for (i, o) in self.objectives.iter().enumerate() {
            if o.name.trim().is_empty() {
                return Err(ConfigError::field(
                    format!("{path}.objectives[{i}].name"),
                    "must not be empty",
                ));
            }
            if self.objectives[..i].iter().any(|p| p.name == o.name) {
                return Err(ConfigError::field(
                    format!("{path}.objectives[{i}].name"),
                    format!("{} is listed twice", o.name),
                ));
            }
        }
        for (i, r) in self.model_rewrites.iter().enumerate() {
            let at = format!("{path}.modelRewrites[{i}]");
            if r.model.is_empty() {
                return Err(ConfigError::field(
                    format!("{at}.model"),
                    "must not be empty",
                ));
            }
            if self.model_rewrites[..i].iter().any(|p| p.model == r.model) {
                return Err(ConfigError::field(
                    format!("{at}.model"),
                    format!("{} is rewritten twice", r.model),
                ));
            }
            if r.targets.is_empty() {
                return Err(ConfigError::field(
                    format!("{at}.targets"),
                    "no targets given",
                ));
            }
            for (j, t) in r.targets.iter().enumerate() {
                if t.model.is_empty() {
                    return Err(ConfigError::field(
                        format!("{at}.targets[{j}].model"),
                        "must not be empty",
                    ));
                }
            }
            if r.targets.iter().all(|t| t.weight == 0) {
                return Err(ConfigError::field(
                    format!("{at}.targets"),
                    "at least one target needs a weight above 0",
                ));
            }
        }
        Ok(())
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
            (
                "{endpoints: ['127.0.0.1:1'], objectives: [{name: a}, {name: a}]}",
                "objectives[1].name",
            ),
            (
                "{endpoints: ['127.0.0.1:1'], modelRewrites: [{model: m, targets: []}]}",
                "modelRewrites[0].targets",
            ),
            (
                "{endpoints: ['127.0.0.1:1'], modelRewrites: [{model: m, targets: [{model: a, weight: 0}]}]}",
                "modelRewrites[0].targets",
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
