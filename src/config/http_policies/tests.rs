//! The `urlRewrite`, `backendAuth` and `directResponse` policies as a user writes them:
//! errors at their field paths, the key hidden from `Debug` and the config dump.

use crate::config::parse_str;
use crate::pipeline::testing::build_error as build_err;

fn route(policies: &str) -> String {
    format!("binds:\n- port: 1\n  listeners:\n  - routes:\n    - name: r\n      matches: [{{ path: {{ pathPrefix: /api }} }}]\n      policies: {policies}\n      backends: [{{ host: \"127.0.0.1:2\" }}]\n")
}

#[test]
fn bad_values_are_refused_at_their_field() {
    for (policies, field) in [
        (
            "{ urlRewrite: { authority: { full: 'a b' } } }",
            "urlRewrite.authority.full",
        ),
        (
            "{ urlRewrite: { authority: { host: 'a:1' } } }",
            "urlRewrite.authority.host",
        ),
        (
            "{ urlRewrite: { path: { prefix: 'v1' } } }",
            "urlRewrite.path.prefix",
        ),
        (
            "{ urlRewrite: { path: { full: '/a?b' } } }",
            "urlRewrite.path.full",
        ),
        ("{ backendAuth: { key: '' } }", "backendAuth.key"),
        (
            "{ backendAuth: { key: { file: /nonexistent/key } } }",
            "backendAuth.key.file",
        ),
        (
            "{ directResponse: { status: 99 } }",
            "directResponse.status",
        ),
    ] {
        let err = build_err(&route(policies));
        let path = format!("binds[0].listeners[0].routes[0].policies.{field}");
        assert!(err.contains(&path), "{policies}: {err}");
    }
    let unknown = parse_str(&route("{ urlRewrite: { hostname: x } }")).unwrap_err();
    assert!(unknown.to_string().contains("urlRewrite"), "{unknown}");
}

#[test]
fn backend_keys_stay_out_of_debug_and_the_config_dump() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("key");
    std::fs::write(&file, "sk-from-file\n").unwrap();
    let loaded = parse_str(&route("{ backendAuth: { key: sk-inline-secret } }")).unwrap();
    let policy = loaded.config.binds[0].listeners[0].routes[0]
        .policies
        .backend_auth
        .clone()
        .unwrap();
    assert!(!format!("{policy:?}").contains("sk-inline"));
    assert_eq!(
        policy.key("p").unwrap().as_deref(),
        Some("sk-inline-secret")
    );
    let dump = crate::config::redacted_json(&loaded).to_string();
    assert!(!dump.contains("sk-inline-secret"), "{dump}");
    let from_file = format!(
        "{{ backendAuth: {{ key: {{ file: {:?} }} }} }}",
        file.display().to_string()
    );
    let loaded = parse_str(&route(&from_file)).unwrap();
    let policy = loaded.config.binds[0].listeners[0].routes[0]
        .policies
        .backend_auth
        .clone()
        .unwrap();
    assert_eq!(policy.key("p").unwrap().as_deref(), Some("sk-from-file"));
    let passthrough = parse_str(&route("{ backendAuth: { passthrough: {} } }")).unwrap();
    let policy = passthrough.config.binds[0].listeners[0].routes[0]
        .policies
        .backend_auth
        .clone()
        .unwrap();
    assert_eq!(policy.key("p").unwrap(), None);
}
