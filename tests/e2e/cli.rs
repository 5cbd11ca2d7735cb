//! The command line: `validate` on the examples and on bad files, `schema`, `version`,
//! and `envoy --mode validate` on deploy/envoy.

use std::process::Command;

use crate::support::{envoy, repo_root, tollgate};

fn yaml_files(dir: &str) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(repo_root().join(dir))
        .unwrap_or_else(|e| panic!("reading {dir}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no YAML files in {dir}");
    files
}

fn validate(path: &std::path::Path) -> std::process::Output {
    Command::new(tollgate::binary())
        .args(["validate", "-c"])
        .arg(path)
        // Examples take credentials from the environment.
        .env("UPSTREAM_API_KEY", "sk-example")
        .output()
        .expect("running tollgate validate")
}

#[test]
fn examples_are_valid() {
    for file in yaml_files("examples") {
        let out = validate(&file);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}: {}{stdout}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(stdout.trim(), format!("{}: ok", file.display()));
    }
}

#[test]
fn validate_names_the_bad_field() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "binds:\n- port: 8080\n  listeners:\n  - routes:\n    - matches:\n      - path: { regex: \"/v1/(\" }\n",
            "binds[0].listeners[0].routes[0].matches[0].path.regex: invalid regex",
        ),
        (
            "binds:\n- port: 8080\n  listeners:\n  - routes:\n    - policies:\n        requestHeaderModifier: { sett: { a: b } }\n",
            "binds[0].listeners[0].routes[0].policies.requestHeaderModifier.sett: unknown field `sett`",
        ),
    ];
    for (i, (yaml, expected)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad{i}.yaml"));
        std::fs::write(&path, yaml).unwrap();
        let out = validate(&path);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(expected),
            "expected {expected:?} in: {stderr}"
        );
    }
}

#[test]
fn deploy_envoy_configs_pass_envoy_validate() {
    for file in yaml_files("deploy/envoy") {
        let (ok, output) = envoy::validate(&file);
        assert!(ok, "{}:\n{output}", file.display());
    }
}

#[test]
fn schema_and_version() {
    let out = Command::new(tollgate::binary())
        .arg("schema")
        .output()
        .unwrap();
    assert!(out.status.success());
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).expect("schema is JSON");
    assert!(schema["properties"]["binds"].is_object(), "{schema}");
    assert!(schema["properties"]["extProc"].is_object(), "{schema}");
    let out = Command::new(tollgate::binary())
        .arg("version")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("tollgate {}", env!("CARGO_PKG_VERSION"))
    );
}
