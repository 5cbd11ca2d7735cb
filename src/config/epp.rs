//! `endpointPicker`: pick the model-server endpoint of each inference request, the way a
//! Gateway API Inference Extension endpoint picker (EPP) does.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    ConfigError, DisaggregationConfig, DnsSource, Duration, EndpointRole, EndpointsFileSource,
    FailureMode, FlowControlConfig, KubernetesSource, MetricsMapping, PrefixCacheConfig,
    SaturationConfig, SchedulingConfig,
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
    /// When the pool is saturated: requests with a negative priority are refused (or,
    /// with `flowControl`, every request waits).
    #[serde(default)]
    pub saturation: SaturationConfig,
    /// Queues in front of a saturated pool: priority bands, a queue per fairness id,
    /// sharing by tokens consumed. Off unless given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_control: Option<FlowControlConfig>,
    /// Each endpoint's role for prefill/decode disaggregation, by `ip:port`: `prefill`,
    /// `decode` or `prefill-decode` (`both`). An endpoint not listed is
    /// `prefill-decode`. A `prefill` endpoint is never the destination.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub roles: BTreeMap<String, EndpointRole>,
    /// Prefill/decode disaggregation: when a request's prefill runs on a `prefill`
    /// endpoint (named to the destination in `x-prefiller-host-port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disaggregation: Option<DisaggregationConfig>,
    /// Where prefix-cache scores come from: the picker's own record (default) or the
    /// model servers' KV-cache events.
    #[serde(default)]
    pub prefix_cache: PrefixCacheConfig,
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
    /// Checks the settings besides the endpoint source (metrics, objectives, model
    /// rewrites); errors name the offending field. The source is built and checked by
    /// `crate::epp::discovery::source`.
    pub fn check(&self, path: &str) -> Result<(), ConfigError> {
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
        if let Some(f) = &self.flow_control {
            f.validate(&format!("{path}.flowControl"))?;
        }
        super::check_roles(&self.roles, &format!("{path}.roles"))?;
        self.prefix_cache.validate(&format!("{path}.prefixCache"))?;
        Ok(())
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
