//! Building an endpoint picker's running `EndpointSource` from its plain config
//! (`config::EndpointPickerPolicy`): exactly one source is set, and what can be checked
//! before running is (the file exists and parses, the DNS name and port, the Kubernetes
//! support of this build), each problem naming its field.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::{file, EndpointSource};
use crate::config::{
    own_namespace, static_list, ConfigError, DnsSource, EndpointPickerPolicy, EndpointsFileSource,
    KubernetesSource,
};

/// The endpoints as socket addresses, in config order, with the source and the policy's
/// other settings checked; errors name the offending field. With `endpointsFile`, `dns`
/// or `kubernetes` instead of `endpoints`, what that source holds now
/// (`EndpointSource::initial`: the file's list; empty for DNS and Kubernetes, whose
/// lists come from `watch`).
pub fn addresses(
    policy: &EndpointPickerPolicy,
    path: &str,
) -> Result<Vec<SocketAddr>, ConfigError> {
    let source = source(policy, path)?;
    let out = if policy.endpoints.is_empty() {
        source.initial()
    } else {
        static_list(&policy.endpoints, path)?
    };
    policy.check(path)?;
    Ok(out)
}

/// Where the pool's endpoints come from, checked; errors name the field at fault.
pub fn source(policy: &EndpointPickerPolicy, path: &str) -> Result<EndpointSource, ConfigError> {
    let mut set: Vec<&str> = Vec::new();
    if !policy.endpoints.is_empty() {
        set.push("endpoints");
    }
    if policy.endpoints_file.is_some() {
        set.push("endpointsFile");
    }
    if policy.dns.is_some() {
        set.push("dns");
    }
    if policy.kubernetes.is_some() {
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
    if let Some(f) = &policy.endpoints_file {
        return file_source(f, &format!("{path}.endpointsFile"));
    }
    if let Some(d) = &policy.dns {
        return dns_source(d, &format!("{path}.dns"));
    }
    if let Some(k) = &policy.kubernetes {
        return kubernetes_source(k, &format!("{path}.kubernetes"));
    }
    static_list(&policy.endpoints, path).map(EndpointSource::Static)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(yaml: &str) -> EndpointPickerPolicy {
        serde_yaml::from_str(yaml).unwrap()
    }

    const P: &str = "routes[0].policies.endpointPicker";

    fn err(yaml: &str) -> String {
        source(&policy(yaml), P).unwrap_err().to_string()
    }

    #[test]
    fn static_list_is_sorted_and_checked() {
        let s = source(&policy("endpoints: ['[::1]:8002', '127.0.0.1:8001']"), P).unwrap();
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
        let s = source(&policy(&format!("endpointsFile: {}", f.display())), P).unwrap();
        assert_eq!(
            s,
            EndpointSource::File {
                path: f.clone(),
                poll_interval: std::time::Duration::from_secs(1)
            }
        );
        assert_eq!(s.initial().len(), 2);
        let s = source(
            &policy(&format!(
                "endpointsFile: {{path: {}, pollInterval: 250ms}}",
                f.display()
            )),
            P,
        )
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
        let s = source(
            &policy("dns: {name: vllm.models.svc.cluster.local, port: 8000}"),
            P,
        )
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
        let result = source(
            &policy("kubernetes: {inferencePool: vllm-llama3, namespace: models}"),
            P,
        );
        if cfg!(feature = "kubernetes") {
            assert_eq!(
                result.unwrap(),
                EndpointSource::Kubernetes {
                    inference_pool: "vllm-llama3".into(),
                    namespace: "models".into()
                }
            );
            let s = source(&policy("kubernetes: {inferencePool: p}"), P).unwrap();
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
    fn defaults_and_addresses() {
        let p = policy("endpoints: ['127.0.0.1:8001', '[::1]:8002']");
        assert_eq!(p.metrics.path, "/metrics");
        assert_eq!(p.metrics.interval.get().as_millis(), 50);
        let a = addresses(&p, "policies.endpointPicker").unwrap();
        assert_eq!(a[1].to_string(), "[::1]:8002");
    }

    #[test]
    fn addresses_of_other_sources() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pool");
        std::fs::write(&f, "127.0.0.2:8000\n127.0.0.1:8000\n").unwrap();
        let p = policy(&format!("endpointsFile: {}", f.display()));
        assert_eq!(
            addresses(&p, "p").unwrap(),
            vec![
                "127.0.0.1:8000".parse::<std::net::SocketAddr>().unwrap(),
                "127.0.0.2:8000".parse().unwrap()
            ]
        );
        assert!(
            addresses(&policy("dns: {name: localhost, port: 8000}"), "p")
                .unwrap()
                .is_empty()
        );
        // The metrics settings are checked whatever the source.
        let e = addresses(
            &policy("{dns: {name: localhost, port: 8000}, metrics: {path: x}}"),
            "p.endpointPicker",
        )
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
            let e = addresses(&policy(yaml), "p.endpointPicker").unwrap_err();
            assert!(
                e.to_string().contains(&format!("p.endpointPicker.{field}")),
                "{yaml}: {e}"
            );
        }
    }
}
