//! deploy/k8s: every YAML document parses as a Kubernetes object, the pieces refer to
//! each other (InferencePool → Service port → Deployment ports and probes, Role rules),
//! the tollgate configs inside the ConfigMaps pass `tollgate validate`, and the sidecar's
//! Envoy config passes `envoy --mode validate`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_yaml::Value;

use crate::support::{envoy, repo_root, tollgate};

/// Every `.yaml` file under `dir`, recursively, sorted.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(yaml_files(&path));
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// Every document of every file, as `(file, document)`.
fn documents() -> Vec<(PathBuf, Value)> {
    let files = yaml_files(&repo_root().join("deploy/k8s"));
    assert!(!files.is_empty(), "no YAML in deploy/k8s");
    let mut docs = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (i, de) in serde_yaml::Deserializer::from_str(&text).enumerate() {
            let doc = Value::deserialize(de)
                .unwrap_or_else(|e| panic!("{} document {i}: {e}", file.display()));
            docs.push((file.clone(), doc));
        }
    }
    docs
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for key in path {
        cur = cur.get(*key)?;
    }
    cur.as_str()
}

/// The one object of `kind` named `name` (or the only one of that kind when `name` is
/// `None`), from the files directly in `dir` under deploy/k8s.
fn object<'a>(
    docs: &'a [(PathBuf, Value)],
    dir: &str,
    kind: &str,
    name: Option<&str>,
) -> &'a Value {
    let base = repo_root().join("deploy/k8s").join(dir);
    let found: Vec<&Value> = docs
        .iter()
        .filter(|(f, d)| {
            f.parent() == Some(base.as_path())
                && str_at(d, &["kind"]) == Some(kind)
                && name.is_none_or(|n| str_at(d, &["metadata", "name"]) == Some(n))
        })
        .map(|(_, d)| d)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "{kind} {name:?} in deploy/k8s/{dir}: {found:?}"
    );
    found[0]
}

#[test]
fn every_document_is_a_kubernetes_object() {
    let docs = documents();
    let mut kinds = BTreeMap::new();
    for (file, doc) in &docs {
        for field in [&["apiVersion"][..], &["kind"], &["metadata", "name"]] {
            assert!(
                str_at(doc, field).is_some_and(|s| !s.is_empty()),
                "{}: a document has no {}",
                file.display(),
                field.join(".")
            );
        }
        *kinds
            .entry(str_at(doc, &["kind"]).unwrap().to_string())
            .or_insert(0) += 1;
    }
    for kind in [
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ConfigMap",
        "Deployment",
        "Service",
        "InferencePool",
    ] {
        assert!(
            kinds.contains_key(kind),
            "no {kind} in deploy/k8s: {kinds:?}"
        );
    }
}

#[test]
fn the_pieces_refer_to_each_other() {
    let docs = documents();
    // InferencePool v1 → the picker's Service and its ext_proc port.
    let pool = object(&docs, "", "InferencePool", None);
    assert_eq!(
        str_at(pool, &["apiVersion"]),
        Some("inference.networking.k8s.io/v1")
    );
    let spec = &pool["spec"];
    assert!(spec["selector"]["matchLabels"]
        .as_mapping()
        .is_some_and(|m| !m.is_empty()));
    assert_eq!(spec["targetPorts"][0]["number"].as_u64(), Some(8000));
    let epp = &spec["endpointPickerRef"];
    assert_eq!(str_at(epp, &["failureMode"]), Some("FailClose"));
    let svc_name = str_at(epp, &["name"]).unwrap();
    let svc = object(&docs, "", "Service", Some(svc_name));
    let ext_proc_port = epp["port"]["number"].as_u64().unwrap();
    assert_eq!(ext_proc_port, 9002);
    let ports = svc["spec"]["ports"].as_sequence().unwrap();
    let port = ports
        .iter()
        .find(|p| p["port"].as_u64() == Some(ext_proc_port))
        .expect("the Service has the endpointPickerRef port");
    assert_eq!(str_at(port, &["appProtocol"]), Some("http2"));
    let mut svc_ports: Vec<u64> = ports.iter().filter_map(|p| p["port"].as_u64()).collect();
    svc_ports.sort_unstable();
    assert_eq!(svc_ports, [9002, 9003, 9090]);

    // The Service selects the Deployment's pods, which listen on those ports, probe
    // gRPC health on 9003 and run as the ServiceAccount of the Role.
    let deploy = object(&docs, "", "Deployment", None);
    let labels = &deploy["spec"]["template"]["metadata"]["labels"];
    for (k, v) in svc["spec"]["selector"].as_mapping().unwrap() {
        assert_eq!(&labels[k.as_str().unwrap()], v, "pod label {k:?}");
    }
    let pod = &deploy["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(
        str_at(container, &["image"]),
        Some("ghcr.io/tollgate/tollgate:latest")
    );
    let args: Vec<&str> = container["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    assert_eq!(args, ["serve", "-c", "/etc/tollgate/config.yaml"]);
    let mut container_ports: Vec<u64> = container["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|p| p["containerPort"].as_u64())
        .collect();
    container_ports.sort_unstable();
    assert_eq!(container_ports, [9002, 9003, 9090]);
    for (probe, service) in [
        ("livenessProbe", "liveness"),
        ("readinessProbe", "readiness"),
    ] {
        assert_eq!(
            container[probe]["grpc"]["port"].as_u64(),
            Some(9003),
            "{probe}"
        );
        assert_eq!(
            str_at(&container[probe], &["grpc", "service"]),
            Some(service)
        );
    }
    let account = str_at(pod, &["serviceAccountName"]).unwrap();
    object(&docs, "", "ServiceAccount", Some(account));
    let binding = object(&docs, "", "RoleBinding", None);
    assert_eq!(str_at(&binding["subjects"][0], &["name"]), Some(account));
    let role = object(
        &docs,
        "",
        "Role",
        Some(str_at(binding, &["roleRef", "name"]).unwrap()),
    );
    let rules = role["rules"].as_sequence().unwrap();
    for (group, resource) in [
        ("", "pods"),
        ("inference.networking.k8s.io", "inferencepools"),
    ] {
        let rule = rules
            .iter()
            .find(|r| {
                r["apiGroups"]
                    .as_sequence()
                    .is_some_and(|g| g.iter().any(|g| g.as_str() == Some(group)))
                    && r["resources"]
                        .as_sequence()
                        .is_some_and(|g| g.iter().any(|g| g.as_str() == Some(resource)))
            })
            .unwrap_or_else(|| panic!("no Role rule for {resource}"));
        let verbs: Vec<&str> = rule["verbs"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        assert_eq!(verbs, ["get", "list", "watch"], "{resource}");
    }

    // The ConfigMap the Deployment mounts names the same pool.
    let volume = str_at(&pod["volumes"][0], &["configMap", "name"]).unwrap();
    let config = object(&docs, "", "ConfigMap", Some(volume));
    let config: Value =
        serde_yaml::from_str(str_at(config, &["data", "config.yaml"]).unwrap()).unwrap();
    assert_eq!(
        str_at(&config, &["extProc", "address"]),
        Some("0.0.0.0:9002")
    );
    assert_eq!(
        str_at(&config, &["extProc", "healthAddress"]),
        Some("0.0.0.0:9003")
    );
    assert_eq!(str_at(&config, &["admin", "address"]), Some("0.0.0.0:9090"));
    assert_eq!(config["extProc"]["selfSignedTls"], Value::Bool(true));
    let picker = &config["policies"]["endpointPicker"];
    assert_eq!(
        str_at(picker, &["kubernetes", "inferencePool"]),
        str_at(pool, &["metadata", "name"])
    );
}

#[test]
fn configmap_tollgate_configs_validate() {
    let docs = documents();
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for (file, doc) in &docs {
        let Some(text) = str_at(doc, &["data", "config.yaml"]) else {
            continue;
        };
        let config: Value = serde_yaml::from_str(text).unwrap();
        assert!(
            config["extProc"]["healthAddress"].is_string(),
            "{}: extProc.healthAddress (the probes' port) is missing",
            file.display()
        );
        let path = dir.path().join(format!("config{checked}.yaml"));
        std::fs::write(&path, serde_yaml::to_string(&config).unwrap()).unwrap();
        let out = Command::new(tollgate::binary())
            .args(["validate", "-c"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}{}",
            file.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        checked += 1;
    }
    assert_eq!(
        checked, 3,
        "the EPP's, the sidecar's and the xDS Pod's configs"
    );
}

#[test]
fn sidecar_envoy_config_passes_envoy_validate() {
    let docs = documents();
    let cm = object(&docs, "envoy-sidecar", "ConfigMap", None);
    let text = str_at(cm, &["data", "envoy.yaml"]).expect("envoy.yaml in the sidecar ConfigMap");
    let envoy_config: Value = serde_yaml::from_str(text).unwrap();
    let clusters = envoy_config["static_resources"]["clusters"]
        .as_sequence()
        .unwrap();
    let pool = clusters
        .iter()
        .find(|c| str_at(c, &["type"]) == Some("ORIGINAL_DST"))
        .expect("an ORIGINAL_DST cluster");
    assert_eq!(
        str_at(pool, &["original_dst_lb_config", "http_header_name"]),
        Some("x-gateway-destination-endpoint")
    );
    // ext_proc goes to tollgate on loopback, where the sidecar's tollgate listens.
    let tollgate_config: Value =
        serde_yaml::from_str(str_at(cm, &["data", "config.yaml"]).unwrap()).unwrap();
    assert_eq!(
        str_at(&tollgate_config, &["extProc", "address"]),
        Some("127.0.0.1:9002")
    );
    assert!(text.contains("port_value: 9002"), "{text}");
    assert!(
        text.contains("request_body_mode: FULL_DUPLEX_STREAMED"),
        "{text}"
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("envoy.yaml");
    std::fs::write(&path, text).unwrap();
    let (ok, output) = envoy::validate(&path);
    assert!(ok, "{output}");
}

#[test]
fn ads_envoy_bootstrap_passes_envoy_validate() {
    let docs = documents();
    let cm = object(&docs, "ads", "ConfigMap", None);
    let text = str_at(cm, &["data", "envoy.yaml"]).expect("envoy.yaml in the ads ConfigMap");
    assert!(text.contains("ads_config"), "{text}");
    let tollgate_config: Value =
        serde_yaml::from_str(str_at(cm, &["data", "config.yaml"]).unwrap()).unwrap();
    assert!(
        tollgate_config["xds"].is_mapping(),
        "the tollgate config serves xDS"
    );
    let ext_proc = str_at(&tollgate_config, &["extProc", "address"]).unwrap();
    let port = ext_proc.rsplit(':').next().unwrap();
    assert!(
        text.contains(&format!("port_value: {port}")),
        "Envoy's xds cluster dials {ext_proc}"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("envoy.yaml");
    std::fs::write(&path, text).unwrap();
    let (ok, output) = envoy::validate(&path);
    assert!(ok, "{output}");
}
