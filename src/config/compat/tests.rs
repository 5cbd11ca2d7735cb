//! agentgateway-shaped files read as tollgate's: moved keys, notices for the known and
//! unimplemented ones, errors at the path the user wrote.

use crate::config::parse_str;

#[test]
fn gateway_keys_move_to_tollgates() {
    let text = r#"
config:
  adminAddr: "127.0.0.1:15999"
  workerThreads: 2
  logging: { level: debug, format: json, fields: { add: { a: '"b"' } } }
  tracing: { otlpEndpoint: "http://127.0.0.1:4317" }
binds:
- port: 3101
  listeners:
  - routes:
    - backends:
      - mcp:
          targets:
          - name: home
            mcp: { host: "http://127.0.0.1:18123/api/mcp" }
"#;
    let loaded = parse_str(text).expect("parses");
    let c = &loaded.config;
    assert_eq!(c.admin.address, "127.0.0.1:15999");
    assert_eq!(c.logging.level, "debug");
    assert_eq!(c.logging.format, crate::config::LogFormat::Json);
    assert_eq!(c.runtime.workers.map(|w| w.get()), Some(2));
    let route = &c.binds[0].listeners[0].routes[0];
    assert!(route.backends.is_empty());
    let mcp = route.mcp.as_ref().expect("an mcp route");
    assert_eq!(mcp.targets[0].name, "home");
    assert_eq!(mcp.targets[0].url, "http://127.0.0.1:18123/api/mcp");
    assert_eq!(loaded.notices.len(), 2, "{:?}", loaded.notices);
    assert!(loaded.notices[0].starts_with("config.logging.fields"));
    assert!(loaded.notices[1].starts_with("config.tracing"));
}

#[test]
fn unimplemented_and_conflicting_keys_are_errors_at_their_path() {
    for (text, path) in [
        ("config: { enableIpv6: true }\n", "config.enableIpv6"),
        ("config: { logging: { filter: x } }\n", "config.logging.filter"),
        (
            "config: { adminAddr: \"127.0.0.1:1\" }\nadmin: { address: \"127.0.0.1:2\" }\n",
            "config.adminAddr",
        ),
        (
            "binds:\n- port: 1\n  listeners:\n  - routes:\n    - backends: [ { mcp: { targets: [ { name: a, stdio: { cmd: x } } ] } } ]\n",
            "binds[0].listeners[0].routes[0].backends[0].mcp.targets[0].stdio",
        ),
        (
            "binds:\n- port: 1\n  listeners:\n  - routes:\n    - backends: [ { mcp: { targets: [] } }, { host: \"127.0.0.1:2\" } ]\n",
            "binds[0].listeners[0].routes[0].backends",
        ),
    ] {
        let err = parse_str(text).unwrap_err().to_string();
        assert!(err.starts_with(path), "{path}: {err}");
    }
}
