//! Where an `endpointPicker`'s pool comes from: next to the static `endpoints` list,
//! exactly one of `endpointsFile`, `dns` or `kubernetes` (an InferencePool), as plain
//! config types. `crate::epp::discovery::source` builds the running source from them.

use std::net::SocketAddr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ConfigError, Duration};

/// Where the pod's namespace is, in a Kubernetes pod with a service account.
pub const SERVICE_ACCOUNT_NAMESPACE: &str =
    "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// `endpointsFile`: a path, or a path with its poll interval.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum EndpointsFileSource {
    /// The path of the file; polled every second.
    Path(String),
    /// The path and how often it is polled.
    Options(EndpointsFileOptions),
}

/// `endpointsFile: {path, pollInterval}`.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EndpointsFileOptions {
    /// The file: one `ip:port` per line (IPv6 in brackets), `#` comments and blank lines
    /// ignored; or a YAML list of `ip:port` strings.
    pub path: String,
    /// How often the file's modification time and size are checked. Default `1s`.
    #[serde(default = "default_poll_interval")]
    pub poll_interval: Duration,
}

/// `dns`: every A and AAAA record of a name, each with one port.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DnsSource {
    /// The name to resolve (a headless Service's name gives its ready pods).
    pub name: String,
    /// The model servers' port, 1 to 65535.
    pub port: u16,
    /// Time between two resolutions. Default `5s`.
    #[serde(default = "default_refresh")]
    pub refresh: Duration,
}

/// `kubernetes`: the Ready pods of an InferencePool (`inference.networking.k8s.io/v1`),
/// each with each of its target ports.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KubernetesSource {
    /// The InferencePool's name.
    pub inference_pool: String,
    /// Its namespace. Default: the namespace of tollgate's own pod (from the service
    /// account), else `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

fn default_poll_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_refresh() -> Duration {
    Duration::from_secs(5)
}

impl EndpointsFileSource {
    /// The file's path.
    pub fn path(&self) -> &str {
        match self {
            EndpointsFileSource::Path(p) => p,
            EndpointsFileSource::Options(o) => &o.path,
        }
    }
    /// How often the file is checked.
    pub fn poll_interval(&self) -> Duration {
        match self {
            EndpointsFileSource::Path(_) => default_poll_interval(),
            EndpointsFileSource::Options(o) => o.poll_interval,
        }
    }
}

/// The static list in config order; errors name the entry.
pub fn static_list(endpoints: &[String], path: &str) -> Result<Vec<SocketAddr>, ConfigError> {
    let mut out = Vec::with_capacity(endpoints.len());
    for (i, e) in endpoints.iter().enumerate() {
        let addr: SocketAddr = e.trim().parse().map_err(|_| {
            ConfigError::field(
                format!("{path}.endpoints[{i}]"),
                format!("{e:?} is not an ip:port address (IPv6 in brackets: [::1]:8000)"),
            )
        })?;
        if out.contains(&addr) {
            return Err(ConfigError::field(
                format!("{path}.endpoints[{i}]"),
                format!("{e} is listed twice"),
            ));
        }
        out.push(addr);
    }
    Ok(out)
}

/// The namespace of this pod (service account), else `default`.
pub fn own_namespace() -> String {
    std::fs::read_to_string(SERVICE_ACCOUNT_NAMESPACE)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_namespace_is_the_service_account_one_else_default() {
        let want = std::fs::read_to_string(SERVICE_ACCOUNT_NAMESPACE)
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "default".into());
        assert_eq!(own_namespace(), want);
    }
}
