//! What a config must serve and which reloads are refused.

use super::*;
use crate::config::parse_str;

fn config(yaml: &str) -> Config {
    parse_str(yaml).unwrap().config
}

const TWO_ROUTES: &str =
    "binds:\n- port: 8080\n  listeners:\n  - routes:\n    - name: a\n    - name: b\n";

#[test]
fn a_config_serving_nothing_is_refused_with_its_field() {
    let err = check_serves(&config("{}")).unwrap_err().to_string();
    assert!(
        err.starts_with("(root): the config serves nothing"),
        "{err}"
    );
    let err = check_serves(&config("admin: {address: \"127.0.0.1:1\"}\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("serves nothing"), "{err}");
}

#[test]
fn a_bind_without_routes_is_refused_each_one_named() {
    let err = check_serves(&config(
        "binds:\n- port: 8080\n  listeners: []\n- port: 8081\n  listeners:\n  - routes: []\n  - routes: []\n",
    ))
    .unwrap_err();
    let text = err.to_string();
    assert_eq!(err.problems().len(), 2, "{text}");
    assert!(
        text.contains("binds[0].listeners: no routes: every request on port 8080"),
        "{text}"
    );
    assert!(
        text.contains("binds[1].listeners: no routes: every request on port 8081"),
        "{text}"
    );
}

#[test]
fn ext_proc_only_with_gateway_policies_stays_legal() {
    let c = config(
        "extProc: {address: \"127.0.0.1:50051\"}\npolicies:\n  requestHeaderModifier: {set: {x-a: b}}\n",
    );
    check_serves(&c).unwrap();
    check_serves(&config(TWO_ROUTES)).unwrap();
    // And a reload between two such configs is fine.
    let edited = config(
        "extProc: {address: \"127.0.0.1:50051\"}\npolicies:\n  requestHeaderModifier: {set: {x-a: c}}\n",
    );
    check_reload(&c, &edited).unwrap();
}

#[test]
fn a_reload_removing_every_route_or_listener_is_refused() {
    let old = config(TWO_ROUTES);
    let none = config("binds:\n- port: 8080\n  listeners:\n  - routes: []\n");
    let err = check_reload(&old, &none).unwrap_err();
    assert!(
        matches!(
            err,
            ReloadRefusal::RemovesEverything {
                what: "route",
                old: 2
            }
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "it would remove every route (2 in the running config, none in the file)"
    );
    // Swapping the proxy for an ext_proc-only config drops every listener.
    let ext_only = config("extProc: {address: \"127.0.0.1:50051\"}\n");
    let err = check_reload(&old, &ext_only).unwrap_err().to_string();
    assert!(err.contains("remove every listener"), "{err}");
}

#[test]
fn a_reload_changing_what_needs_a_restart_is_refused_naming_it() {
    let old = config(
        "extProc: {address: \"127.0.0.1:50051\"}\nbinds:\n- port: 8080\n  listeners:\n  - routes:\n    - name: a\n",
    );
    let cases = [
        (
            "extProc: {address: \"127.0.0.1:50051\"}\nbinds:\n- port: 8081\n  listeners:\n  - routes:\n    - name: a\n",
            "binds: 127.0.0.1:8080 removed, binds: 127.0.0.1:8081 added changed, which only a restart applies",
        ),
        (
            "extProc: {address: \"127.0.0.1:50052\"}\nbinds:\n- port: 8080\n  listeners:\n  - routes:\n    - name: a\n",
            "extProc.address changed, which only a restart applies",
        ),
        (
            "admin: {address: \"127.0.0.1:15001\"}\nextProc: {address: \"127.0.0.1:50051\", healthAddress: \"127.0.0.1:9003\"}\nbinds:\n- port: 8080\n  address: \"::1\"\n  listeners:\n  - routes:\n    - name: a\n",
            "binds: 127.0.0.1:8080 removed, binds: ::1:8080 added, admin.address, extProc.healthAddress changed",
        ),
        (
            "binds:\n- port: 8080\n  listeners:\n  - routes:\n    - name: a\n",
            "extProc removed changed",
        ),
    ];
    for (yaml, want) in cases {
        let err = check_reload(&old, &config(yaml)).unwrap_err();
        assert!(matches!(err, ReloadRefusal::NeedsRestart(_)), "{err}");
        assert!(err.to_string().starts_with(want), "{err} ≠ {want}");
    }
    // Routes and policies alone reload.
    let edited = config(
        "extProc: {address: \"127.0.0.1:50051\"}\nbinds:\n- port: 8080\n  listeners:\n  - routes:\n    - name: b\n      policies: {timeout: 1s}\n    - name: c\n",
    );
    check_reload(&old, &edited).unwrap();
}

#[test]
fn upstream_and_logging_edits_are_named_for_a_warning() {
    let old = config(TWO_ROUTES);
    assert!(start_only_changes(&old, &config(TWO_ROUTES)).is_empty());
    let edited = config(&format!(
        "upstream: {{connectTimeout: 2s}}\nlogging: {{level: debug}}\n{TWO_ROUTES}"
    ));
    assert_eq!(start_only_changes(&old, &edited), ["upstream", "logging"]);
}

#[test]
fn under_xds_bind_edits_reload_and_turning_xds_on_or_off_needs_a_restart() {
    let xds = |port: u16| {
        config(&format!(
            "extProc: {{ address: \"127.0.0.1:50051\" }}\nxds: {{}}\nbinds:\n- port: {port}\n  listeners:\n  - routes:\n    - {{ name: a, backends: [{{ host: \"127.0.0.1:1\" }}] }}\n"
        ))
    };
    // The binds are Envoy's listeners: a new port is a new listener pushed over xDS.
    assert!(check_reload(&xds(10000), &xds(10001)).is_ok());
    let plain = config(
        "extProc: { address: \"127.0.0.1:50051\" }\nbinds:\n- port: 10000\n  listeners:\n  - routes:\n    - { name: a, backends: [{ host: \"127.0.0.1:1\" }] }\n",
    );
    let Err(ReloadRefusal::NeedsRestart(changed)) = check_reload(&plain, &xds(10000)) else {
        panic!("turning xds on needs a restart");
    };
    assert_eq!(changed, ["xds added"]);
    let Err(ReloadRefusal::NeedsRestart(changed)) = check_reload(&xds(10000), &plain) else {
        panic!("turning xds off needs a restart");
    };
    assert_eq!(changed, ["xds removed"]);
}

#[test]
fn under_xds_the_mcp_listener_opens_at_start_only() {
    let with = |mcp: &str, extra: &str| {
        config(&format!(
            "extProc: {{ address: \"127.0.0.1:50051\" }}\nxds: {{ {mcp} }}\nbinds:\n- port: 10000\n  listeners:\n  - routes:\n    - {{ name: a, backends: [{{ host: \"127.0.0.1:1\" }}] }}\n{extra}"
        ))
    };
    let tools =
        "    - { name: t, mcp: { targets: [{ name: w, url: \"http://127.0.0.1:2/mcp\" }] } }\n";
    let none = with("", "");
    let mcp = with("", tools);
    let Err(ReloadRefusal::NeedsRestart(changed)) = check_reload(&none, &mcp) else {
        panic!("the first mcp route needs the listener opened");
    };
    assert!(changed[0].starts_with("xds.mcpAddress"), "{changed:?}");
    let moved = with("mcpAddress: \"127.0.0.1:15999\"", tools);
    let Err(ReloadRefusal::NeedsRestart(changed)) = check_reload(&mcp, &moved) else {
        panic!("moving the listener needs a restart");
    };
    assert_eq!(changed, ["xds.mcpAddress"]);
    // Dropping the last mcp route leaves the listener open and idle.
    assert!(check_reload(&mcp, &none).is_ok());
    assert!(check_reload(&mcp, &mcp).is_ok());
}
