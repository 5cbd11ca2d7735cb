//! Where an `endpointPicker`'s pool comes from: next to the static `endpoints` list,
//! exactly one of `endpointsFile`, `dns` or `kubernetes` (an InferencePool). `source()`
//! checks the choice and what can be checked before running (the file exists and parses,
//! the DNS name and port, the Kubernetes support of this build) and names the field of
//! each problem.

use std::net::SocketAddr;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ConfigError, Duration, EndpointPickerPolicy};
use crate::epp::discovery::{file, EndpointSource};

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
    fn path(&self) -> &str {
        match self {
            EndpointsFileSource::Path(p) => p,
            EndpointsFileSource::Options(o) => &o.path,
        }
    }
    fn poll_interval(&self) -> Duration {
        match self {
            EndpointsFileSource::Path(_) => default_poll_interval(),
            EndpointsFileSource::Options(o) => o.poll_interval,
        }
    }
}

impl EndpointPickerPolicy {
    /// Where the pool's endpoints come from, checked; errors name the field at fault.
    pub fn source(&self, path: &str) -> Result<EndpointSource, ConfigError> {
        let mut set: Vec<&str> = Vec::new();
        if !self.endpoints.is_empty() {
            set.push("endpoints");
        }
        if self.endpoints_file.is_some() {
            set.push("endpointsFile");
        }
        if self.dns.is_some() {
            set.push("dns");
        }
        if self.kubernetes.is_some() {
            set.push("kubernetes");
        }
        match set.as_slice() {
            [] => {
                return Err(ConfigError::field(
                    format!("{path}.endpoints"),
                    "no endpoints given: set one of endpoints, endpointsFile, dns or kubernetes",
                ))
            }
            [_] => {}
            [first, second, ..] => {
                return Err(ConfigError::field(
                    format!("{path}.{second}"),
                    format!("only one source of endpoints may be set, and {first} is set too"),
                ))
            }
        }
        if let Some(f) = &self.endpoints_file {
            return file_source(f, &format!("{path}.endpointsFile"));
        }
        if let Some(d) = &self.dns {
            return dns_source(d, &format!("{path}.dns"));
        }
        if let Some(k) = &self.kubernetes {
            return kubernetes_source(k, &format!("{path}.kubernetes"));
        }
        static_list(&self.endpoints, path).map(EndpointSource::Static)
    }
}

/// The static list in config order; errors name the entry.
pub(super) fn static_list(
    endpoints: &[String],
    path: &str,
) -> Result<Vec<SocketAddr>, ConfigError> {
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

fn file_source(f: &EndpointsFileSource, path: &str) -> Result<EndpointSource, ConfigError> {
    let (file_path, poll_path) = match f {
        EndpointsFileSource::Path(_) => (path.to_string(), path.to_string()),
        EndpointsFileSource::Options(_) => (format!("{path}.path"), format!("{path}.pollInterval")),
    };
    if f.path().trim().is_empty() {
        return Err(ConfigError::field(file_path, "the path is empty"));
    }
    let poll_interval = f.poll_interval().get();
    if poll_interval.is_zero() {
        return Err(ConfigError::field(poll_path, "must be more than 0"));
    }
    let p = PathBuf::from(f.path());
    file::read(&p).map_err(|e| ConfigError::field(file_path, e.to_string()))?;
    Ok(EndpointSource::File {
        path: p,
        poll_interval,
    })
}

fn dns_source(d: &DnsSource, path: &str) -> Result<EndpointSource, ConfigError> {
    let name = d.name.trim();
    if name.is_empty() {
        return Err(ConfigError::field(
            format!("{path}.name"),
            "the name is empty",
        ));
    }
    if name.len() > 253
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':'))
    {
        return Err(ConfigError::field(
            format!("{path}.name"),
            format!("{:?} is not a host name or IP address", d.name),
        ));
    }
    if d.port == 0 {
        return Err(ConfigError::field(
            format!("{path}.port"),
            "must be 1 to 65535",
        ));
    }
    if d.refresh.get().is_zero() {
        return Err(ConfigError::field(
            format!("{path}.refresh"),
            "must be more than 0",
        ));
    }
    Ok(EndpointSource::Dns {
        name: name.to_string(),
        port: d.port,
        refresh: d.refresh.get(),
    })
}

/// A DNS-1123 subdomain (object names) or label (namespaces, `label == true`).
fn valid_k8s_name(s: &str, label: bool) -> bool {
    let max = if label { 63 } else { 253 };
    let ok_char =
        |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || (!label && c == '.');
    !s.is_empty()
        && s.len() <= max
        && s.chars().all(ok_char)
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn kubernetes_source(k: &KubernetesSource, path: &str) -> Result<EndpointSource, ConfigError> {
    if !cfg!(feature = "kubernetes") {
        return Err(ConfigError::field(
            path,
            "this build of tollgate has no Kubernetes support (built without the cargo feature `kubernetes`)",
        ));
    }
    if !valid_k8s_name(&k.inference_pool, false) {
        return Err(ConfigError::field(
            format!("{path}.inferencePool"),
            format!(
                "{:?} is not a Kubernetes object name (lowercase letters, digits, '-' and '.')",
                k.inference_pool
            ),
        ));
    }
    let namespace = match &k.namespace {
        Some(ns) => {
            if !valid_k8s_name(ns, true) {
                return Err(ConfigError::field(
                    format!("{path}.namespace"),
                    format!("{ns:?} is not a Kubernetes namespace name"),
                ));
            }
            ns.clone()
        }
        None => own_namespace(),
    };
    Ok(EndpointSource::Kubernetes {
        inference_pool: k.inference_pool.clone(),
        namespace,
    })
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

    fn policy(yaml: &str) -> EndpointPickerPolicy {
        serde_yaml::from_str(yaml).unwrap()
    }

    const P: &str = "routes[0].policies.endpointPicker";

    fn err(yaml: &str) -> String {
        policy(yaml).source(P).unwrap_err().to_string()
    }

    #[test]
    fn static_list_is_sorted_and_checked() {
        let s = policy("endpoints: ['[::1]:8002', '127.0.0.1:8001']")
            .source(P)
            .unwrap();
        let EndpointSource::Static(list) = &s else {
            panic!("{s:?}")
        };
        assert_eq!(list.len(), 2);
        assert_eq!(
            s.initial(),
            vec![
                "127.0.0.1:8001".parse::<SocketAddr>().unwrap(),
                "[::1]:8002".parse().unwrap()
            ]
        );
        assert!(err("endpoints: ['127.0.0.1:1', nope]").starts_with(&format!("{P}.endpoints[1]: ")));
    }

    #[test]
    fn none_or_two_sources_name_the_field() {
        assert_eq!(
            err("{}"),
            format!("{P}.endpoints: no endpoints given: set one of endpoints, endpointsFile, dns or kubernetes")
        );
        assert_eq!(
            err("{endpoints: ['127.0.0.1:1'], dns: {name: localhost, port: 80}}"),
            format!("{P}.dns: only one source of endpoints may be set, and endpoints is set too")
        );
        assert_eq!(
            err("{dns: {name: localhost, port: 80}, kubernetes: {inferencePool: p}}"),
            format!("{P}.kubernetes: only one source of endpoints may be set, and dns is set too")
        );
        assert!(err("{endpointsFile: /x, kubernetes: {inferencePool: p}}")
            .starts_with(&format!("{P}.kubernetes: ")));
    }

    #[test]
    fn file_source_is_read_up_front() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pool.txt");
        std::fs::write(&f, "127.0.0.2:8000\n127.0.0.1:8000\n").unwrap();
        let s = policy(&format!("endpointsFile: {}", f.display()))
            .source(P)
            .unwrap();
        assert_eq!(
            s,
            EndpointSource::File {
                path: f.clone(),
                poll_interval: std::time::Duration::from_secs(1)
            }
        );
        assert_eq!(s.initial().len(), 2);
        let s = policy(&format!(
            "endpointsFile: {{path: {}, pollInterval: 250ms}}",
            f.display()
        ))
        .source(P)
        .unwrap();
        assert!(
            matches!(s, EndpointSource::File { poll_interval, .. } if poll_interval.as_millis() == 250)
        );

        let e = err(&format!(
            "endpointsFile: {}",
            dir.path().join("missing").display()
        ));
        assert!(
            e.starts_with(&format!("{P}.endpointsFile: cannot read ")),
            "{e}"
        );
        std::fs::write(&f, "127.0.0.1:8000\n# ok\nbad:port\n").unwrap();
        let e = err(&format!("endpointsFile: {{path: {}}}", f.display()));
        assert!(e.starts_with(&format!("{P}.endpointsFile.path: ")), "{e}");
        assert!(e.contains("line 3: \"bad:port\""), "{e}");
        let e = err(&format!(
            "endpointsFile: {{path: {}, pollInterval: 0s}}",
            f.display()
        ));
        assert_eq!(
            e,
            format!("{P}.endpointsFile.pollInterval: must be more than 0")
        );
        assert!(serde_yaml::from_str::<EndpointPickerPolicy>(
            "endpointsFile: {path: /x, poll: 1s}"
        )
        .is_err());
    }

    #[test]
    fn dns_source_defaults_and_checks() {
        let s = policy("dns: {name: vllm.models.svc.cluster.local, port: 8000}")
            .source(P)
            .unwrap();
        assert_eq!(
            s,
            EndpointSource::Dns {
                name: "vllm.models.svc.cluster.local".into(),
                port: 8000,
                refresh: std::time::Duration::from_secs(5)
            }
        );
        assert!(s.initial().is_empty());
        for (yaml, field) in [
            ("dns: {name: '', port: 8000}", "dns.name"),
            ("dns: {name: 'a b', port: 8000}", "dns.name"),
            ("dns: {name: localhost, port: 0}", "dns.port"),
            (
                "dns: {name: localhost, port: 1, refresh: 0ms}",
                "dns.refresh",
            ),
        ] {
            let e = err(yaml);
            assert!(e.starts_with(&format!("{P}.{field}: ")), "{yaml}: {e}");
        }
        // Out of range ports fail at parse time.
        assert!(
            serde_yaml::from_str::<EndpointPickerPolicy>("dns: {name: a, port: 65536}").is_err()
        );
    }

    #[test]
    fn kubernetes_source_names_and_namespace() {
        let result =
            policy("kubernetes: {inferencePool: vllm-llama3, namespace: models}").source(P);
        if cfg!(feature = "kubernetes") {
            assert_eq!(
                result.unwrap(),
                EndpointSource::Kubernetes {
                    inference_pool: "vllm-llama3".into(),
                    namespace: "models".into()
                }
            );
            let s = policy("kubernetes: {inferencePool: p}").source(P).unwrap();
            assert_eq!(
                s,
                EndpointSource::Kubernetes {
                    inference_pool: "p".into(),
                    namespace: own_namespace()
                }
            );
            for (yaml, field) in [
                (
                    "kubernetes: {inferencePool: Pool}",
                    "kubernetes.inferencePool",
                ),
                (
                    "kubernetes: {inferencePool: ''}",
                    "kubernetes.inferencePool",
                ),
                (
                    "kubernetes: {inferencePool: p, namespace: a.b}",
                    "kubernetes.namespace",
                ),
            ] {
                let e = err(yaml);
                assert!(e.starts_with(&format!("{P}.{field}: ")), "{yaml}: {e}");
            }
        } else {
            let e = result.unwrap_err().to_string();
            assert!(e.starts_with(&format!("{P}.kubernetes: ")), "{e}");
            assert!(e.contains("cargo feature `kubernetes`"), "{e}");
        }
    }

    #[test]
    fn own_namespace_is_the_service_account_one_else_default() {
        let want = std::fs::read_to_string(SERVICE_ACCOUNT_NAMESPACE)
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "default".into());
        assert_eq!(own_namespace(), want);
    }
}
