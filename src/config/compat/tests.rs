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
  tracing: { otlpEndpoint: "http://127.0.0.1:4317", randomSampling: true, fields: { add: { a: '"b"' } } }
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
    let tracing = c.tracing.as_ref().expect("config.tracing moved");
    assert_eq!(tracing.otlp_endpoint, "http://127.0.0.1:4317");
    assert_eq!(loaded.notices.len(), 1, "{:?}", loaded.notices);
    assert!(loaded.notices[0].starts_with("config.tracing.fields"));
}

#[test]
fn unimplemented_and_conflicting_keys_are_errors_at_their_path() {
    for (text, path) in [
        ("config: { enableIpv6: true }\n", "config.enableIpv6"),
        ("config: 5\n", "config"),
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

fn ai_route(backend: &str, policies: &str) -> String {
    format!("binds:\n- port: 1\n  listeners:\n  - routes:\n    - policies: {policies}\n      backends:\n      - ai: {backend}\n")
}

#[test]
fn ai_backends_become_a_host_and_the_routes_provider() {
    let loaded = parse_str(&ai_route(
        "{ name: claude, provider: { anthropic: { model: claude-sonnet-4-5 } } }",
        "{ backendAuth: { key: sk-ant } }",
    ))
    .unwrap();
    let route = &loaded.config.binds[0].listeners[0].routes[0];
    assert_eq!(route.backends[0].host, "api.anthropic.com:443");
    assert!(
        route.backends[0].tls.is_some(),
        "the provider's own host: TLS"
    );
    let llm = route.policies.llm_provider.as_ref().unwrap();
    assert_eq!(llm.provider, crate::config::ProviderKind::Anthropic);
    assert_eq!(llm.model.as_deref(), Some("claude-sonnet-4-5"));
    assert_eq!(llm.path.as_deref(), Some("/v1/messages"));

    let text = ai_route(
        "{ hostOverride: \"127.0.0.1:8000\", provider: { openAI: {} }, policies: { ai: { routes: { /v1/models: passthrough } }, backendTLS: { hostname: vllm.local } } }",
        "{}",
    );
    let loaded = parse_str(&text).unwrap();
    let route = &loaded.config.binds[0].listeners[0].routes[0];
    assert_eq!(route.backends[0].host, "127.0.0.1:8000");
    let tls = route.backends[0]
        .tls
        .as_ref()
        .expect("the backend's backendTLS");
    assert_eq!(tls.sni.as_deref(), Some("vllm.local"));

    let text = ai_route(
        "{ hostOverride: \"127.0.0.1:8443\", provider: { openAI: {} } }",
        "{ backendTLS: { insecure: true, cert: /c.pem, key: /k.pem } }",
    );
    let loaded = parse_str(&text).unwrap();
    let tls = loaded.config.binds[0].listeners[0].routes[0].backends[0]
        .tls
        .clone()
        .unwrap();
    assert!(tls.insecure);
    assert_eq!(tls.cert_file.as_deref(), Some("/c.pem"));
    assert_eq!(tls.key_file.as_deref(), Some("/k.pem"));
    let llm = route.policies.llm_provider.as_ref().unwrap();
    assert_eq!(llm.path, None, "an overridden host keeps the client's path");
    assert_eq!(
        llm.kind_of("/v1/models"),
        crate::config::RouteKind::Passthrough
    );
}

#[test]
fn ai_keys_tollgate_does_not_implement_are_errors_at_their_path() {
    let at = "binds[0].listeners[0].routes[0]";
    for (backend, policies, path) in [
        (
            "{ provider: { bedrock: {} } }",
            "{}",
            "backends[0].ai.provider.bedrock",
        ),
        (
            "{ provider: { openAI: { region: x } } }",
            "{}",
            "backends[0].ai.provider.openAI.region",
        ),
        ("{ provider: {} }", "{}", "backends[0].ai.provider"),
        (
            "{ provider: { openAI: {} }, routing: x }",
            "{}",
            "backends[0].ai.routing",
        ),
        (
            "{ provider: { openAI: {} } }",
            "{ backendTLS: { insecureHost: true } }",
            "policies.backendTLS.insecureHost",
        ),
        (
            "{ provider: { openAI: {} } }",
            "{ llmProvider: { provider: openAI } }",
            "policies.llmProvider",
        ),
    ] {
        let err = parse_str(&ai_route(backend, policies))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(&format!("{at}.{path}")), "{path}: {err}");
    }
}

#[test]
fn gateway_policies_and_timeouts_take_tollgates_shape() {
    let text = r#"
gatewayPolicies:
- name: cors
  target: { gateway: my-gateway }
  policy: { cors: { allowOrigins: ["*"] }, timeout: { requestTimeout: 30s, backendRequestTimeout: 10s } }
binds:
- port: 1
  listeners:
  - routes:
    - policies: { timeout: { requestTimeout: 5s } }
      backends: [ { host: "127.0.0.1:2" } ]
"#;
    let loaded = parse_str(text).expect("parses");
    let c = &loaded.config;
    assert!(c.policies.cors.is_some());
    assert_eq!(
        c.policies.timeout.unwrap().get().as_secs(),
        10,
        "the shorter"
    );
    let route = &c.binds[0].listeners[0].routes[0];
    assert_eq!(route.policies.timeout.unwrap().get().as_secs(), 5);
    for (text, path) in [
        (
            "gatewayPolicies: [ { target: { listener: x }, policy: {} } ]\n",
            "gatewayPolicies[0].target",
        ),
        (
            "policies: { cors: {} }\ngatewayPolicies: [ { target: { gateway: g }, policy: { cors: { maxAge: 1 } } } ]\n",
            "gatewayPolicies[0].policy.cors",
        ),
        ("policies: { timeout: { idleTimeout: 1s } }\n", "policies.timeout.idleTimeout"),
        ("policies: { transformations: {} }\n", "policies.transformations"),
    ] {
        let err = parse_str(text).unwrap_err().to_string();
        assert!(err.starts_with(path), "{path}: {err}");
    }
}
