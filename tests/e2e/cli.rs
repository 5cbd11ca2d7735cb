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
        .env("OPENAI_API_KEY", "sk-example")
        .env("ANTHROPIC_API_KEY", "sk-ant-example")
        // 32 bytes, base64url: examples/mcp-gateway.yaml's session key.
        .env(
            "MCP_SESSION_KEY",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
        )
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

/// Writes each `(name, yaml)` to a temp dir and runs `validate` on it.
fn validate_texts(cases: &[(&str, &str)]) -> Vec<(std::process::Output, String)> {
    let dir = tempfile::tempdir().unwrap();
    cases
        .iter()
        .map(|(name, yaml)| {
            let path = dir.path().join(name);
            std::fs::write(&path, yaml).unwrap();
            let out = validate(&path);
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            (out, stderr)
        })
        .collect()
}

#[test]
fn validate_refuses_empty_half_written_and_serving_nothing() {
    let cases = [
        ("empty.yaml", "", "the config is empty"),
        ("blank.yaml", "  \n\n", "the config is empty"),
        (
            "comments.yaml",
            "# binds:\n#  - port: 8080\n",
            "the config is empty",
        ),
        (
            "half.yaml",
            "binds:\n- port: 8080\n  listen",
            "invalid YAML",
        ),
        (
            "cut.yaml",
            "binds:\n- port: 8080\n  listeners:\n  - routes:\n",
            "binds[0].listeners[0].routes",
        ),
        (
            "nothing.yaml",
            "admin: { address: \"127.0.0.1:15000\" }\n",
            "(root): the config serves nothing",
        ),
        (
            "no-routes.yaml",
            "binds:\n- port: 8080\n  listeners:\n  - routes: []\n",
            "binds[0].listeners: no routes",
        ),
    ];
    let texts: Vec<_> = cases.iter().map(|(n, y, _)| (*n, *y)).collect();
    for ((out, stderr), (name, _, expected)) in validate_texts(&texts).iter().zip(cases) {
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        assert!(
            stderr.contains(expected),
            "{name}: expected {expected:?} in {stderr}"
        );
    }
    // An ext_proc-only config with gateway-wide policies is legal.
    let ok = validate_texts(&[(
        "ext-proc-only.yaml",
        "extProc: { address: \"127.0.0.1:50051\" }\npolicies:\n  requestHeaderModifier: { set: { x-a: b } }\n",
    )]);
    assert!(ok[0].0.status.success(), "{}", ok[0].1);
}

#[test]
fn validate_reports_every_problem_in_one_run() {
    let yaml = r#"admin: { address: "not-an-address" }
extProc: { address: "127.0.0.1:50051", clearRouteCacheOn: ["bad header"] }
policies:
  responseHeaderModifier: { set: { "bad gateway header": x } }
binds:
- port: 8080
  address: "nowhere"
  listeners:
  - routes:
    - name: a
      matches: [ { path: { regex: "(" }, method: "B@D" } ]
      backends: [ { host: "no-port" } ]
      policies:
        requestHeaderModifier: { set: { "bad name": x } }
        tokenLimit: { limits: [] }
    - name: a
- port: 8080
  listeners:
  - routes: [ { name: b } ]
"#;
    let (out, stderr) = &validate_texts(&[("many.yaml", yaml)])[0];
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let expected = [
        "admin.address:",
        "extProc.clearRouteCacheOn[0]:",
        "policies.responseHeaderModifier.set.bad gateway header:",
        "binds[0].address:",
        "binds[0].listeners[0].routes[0].matches[0].path.regex: invalid regex",
        "binds[0].listeners[0].routes[0].matches[0].method:",
        "binds[0].listeners[0].routes[0].backends[0].host:",
        "binds[0].listeners[0].routes[0].policies.requestHeaderModifier.set.bad name:",
        "binds[0].listeners[0].routes[0].policies.tokenLimit: tokenLimit needs tokenAccounting",
        "binds[0].listeners[0].routes[1].name: route name \"a\" is already used",
        "binds[1].port: port 8080 is bound twice",
    ];
    for e in expected {
        assert!(stderr.contains(e), "expected {e:?} in:\n{stderr}");
    }
    assert!(
        stderr.contains(&format!("{} problems:", expected.len())),
        "{stderr}"
    );
    // The gateway policy's problem is reported once, not again under each route.
    let gateway_lines = stderr.lines().filter(|l| l.contains("bad gateway header"));
    assert_eq!(gateway_lines.count(), 1, "{stderr}");
}

#[test]
fn xds_dump_prints_envoy_json_and_refuses_configs_without_xds() {
    let example = crate::support::repo_root().join("examples/xds-gateway.yaml");
    let out = Command::new(tollgate::binary())
        .args(["xds", "dump", "-c"])
        .arg(&example)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dump: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let listener = &dump["resources"]["listener"]["resources"][0];
    assert_eq!(listener["name"], "bind_10000");
    assert_eq!(
        listener["resource"]["@type"],
        "type.googleapis.com/envoy.config.listener.v3.Listener"
    );
    let filters =
        &listener["resource"]["filterChains"][0]["filters"][0]["typedConfig"]["httpFilters"];
    assert_eq!(filters[0]["name"], "tollgate_ext_proc");
    assert_eq!(
        filters[0]["configDiscovery"]["configSource"]["ads"],
        serde_json::json!({})
    );
    let ecds = &dump["resources"]["extension_config"]["resources"][0]["resource"];
    assert_eq!(ecds["name"], "tollgate_ext_proc");
    assert_eq!(
        ecds["typedConfig"]["grpcService"]["envoyGrpc"]["clusterName"],
        "tollgate"
    );
    let routes =
        &dump["resources"]["route"]["resources"][0]["resource"]["virtualHosts"][0]["routes"];
    assert_eq!(routes[0]["name"], "openai");
    // The MCP route goes to tollgate's MCP listener with ext_proc off there.
    let mcp = &routes[2];
    assert_eq!(mcp["route"]["cluster"], "tollgate_mcp");
    assert_eq!(
        mcp["typedPerFilterConfig"]["tollgate_ext_proc"]["disabled"],
        true
    );
    assert!(listener["version"].as_str().is_some_and(|v| v.len() == 16));

    let yaml = Command::new(tollgate::binary())
        .args(["xds", "dump", "--format", "yaml", "-c"])
        .arg(&example)
        .output()
        .unwrap();
    let parsed: serde_json::Value = serde_yaml::from_slice(&yaml.stdout).unwrap();
    assert_eq!(parsed, dump, "YAML and JSON print the same");

    let plain = crate::support::repo_root().join("examples/token-accounting.yaml");
    let out = Command::new(tollgate::binary())
        .args(["xds", "dump", "-c"])
        .arg(&plain)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("has no `xds` section"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
