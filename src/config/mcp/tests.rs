use super::*;
use crate::config::parse_str;

const AT: &str = "binds[0].listeners[0].routes[0].mcp";
/// 32 bytes, base64url.
const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";

/// The route's `mcp` section from YAML written under `mcp:`.
fn section(mcp: &str) -> McpBackend {
    let indented: String = mcp.lines().map(|l| format!("        {l}\n")).collect();
    let yaml = format!("binds:\n- port: 1\n  listeners:\n  - routes:\n    - mcp:\n{indented}");
    let loaded = parse_str(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    loaded.config.binds[0].listeners[0].routes[0]
        .mcp
        .clone()
        .expect("an mcp section")
}

fn problems(mcp: &str) -> Vec<String> {
    match section(mcp).check(AT) {
        Ok(_) => Vec::new(),
        Err(e) => e.problems().iter().map(|p| p.to_string()).collect(),
    }
}

#[test]
fn defaults_and_a_good_section() {
    let s = section("targets:\n- {name: weather, url: \"http://127.0.0.1:9101/mcp\"}\n- {name: cal-2, url: \"https://cal.example.com/mcp\"}");
    assert_eq!(s.separator, "__");
    assert_eq!(s.prefix, McpPrefix::Auto);
    assert_eq!(s.timeout.get(), std::time::Duration::from_secs(30));
    assert!(s.allowed_origins.is_empty());
    let checked = s.check(AT).unwrap();
    assert_eq!(checked.targets.names(), ["weather", "cal-2"]);
    assert!(checked.targets.prefixed());
    assert_eq!(checked.urls[1].host(), Some("cal.example.com"));
    assert!(checked.keys.is_none());
    assert_eq!(
        s.session.max_age.get(),
        std::time::Duration::from_secs(24 * 3600)
    );
    assert!(checked.direct.is_none());
}

#[test]
fn every_problem_names_its_field() {
    let found = problems(&format!(
        "separator: \"--\"\ntargets:\n- {{name: ok, url: \"ftp://x/mcp\"}}\n- {{name: \"cal--x\", url: \"http://127.0.0.1:1/mcp\"}}\nsession:\n  keys: [\"{KEY}\", \"AAAA\"]\n  maxAge: 0s\nallowedOrigins: [\"https://a.example/\"]\ntimeout: 0s\ndirect: {{header: \"mcp-target\"}}"
    ));
    assert_eq!(
        found,
        [
            format!("{AT}.targets[1].name: \"cal--x\": contains the separator \"--\""),
            format!("{AT}.targets[0].url: \"ftp://x/mcp\" must start with http:// or https://"),
            format!("{AT}.session.keys[1]: must decode to 32 bytes (got 3)"),
            format!("{AT}.allowedOrigins[0]: \"https://a.example/\" must be an origin such as https://app.example.com"),
            format!("{AT}.timeout: must be above zero"),
            format!("{AT}.session.maxAge: must be above zero"),
            format!("{AT}.direct.header: \"mcp-target\" carries MCP or HTTP meaning; name a header of your own"),
        ]
    );
}

#[test]
fn target_names_and_the_separator_are_checked() {
    assert_eq!(
        problems("targets: []"),
        [format!("{AT}.targets: at least one target is needed")]
    );
    assert_eq!(
        problems("targets:\n- {name: a, url: \"http://h:1/\"}\n- {name: a, url: \"http://h:2/\"}"),
        [format!(
            "{AT}.targets[1].name: \"a\": the same as targets[0].name"
        )]
    );
    assert_eq!(
        problems("targets:\n- {name: \"a b\", url: \"http://h:1/\"}"),
        [format!(
            "{AT}.targets[0].name: \"a b\": must be non-empty and made of A-Z, a-z, 0-9 and '-'"
        )]
    );
    let bad_sep = problems("separator: \"/\"\ntargets:\n- {name: a, url: \"http://h:1/\"}");
    assert_eq!(bad_sep.len(), 1);
    assert!(
        bad_sep[0].starts_with(&format!("{AT}.separator: separator \"/\"")),
        "{bad_sep:?}"
    );
}

#[test]
fn keys_decode_and_bad_ones_are_named() {
    let s = section(&format!("targets: [{{name: a, url: \"http://h:1/\"}}]\nsession: {{keys: [\"{KEY}\"]}}\nprefix: always"));
    let checked = s.check(AT).unwrap();
    assert!(checked.keys.is_some());
    assert!(
        checked.targets.prefixed(),
        "always prefixes a single target"
    );
    let found = problems("targets: [{name: a, url: \"http://h:1/\"}]\nsession: {keys: [\"!!!\"]}");
    assert_eq!(found.len(), 1);
    assert!(
        found[0].starts_with(&format!("{AT}.session.keys[0]: not base64url")),
        "{found:?}"
    );
    // Neither the key nor its bytes appear in what the section prints.
    assert!(!format!("{s:?}").contains(KEY));
}

#[test]
fn unknown_fields_are_rejected_at_their_path() {
    let yaml = "binds:\n- port: 1\n  listeners:\n  - routes:\n    - mcp:\n        targets: [{name: a, url: \"http://h:1/\", weight: 2}]\n";
    let err = parse_str(yaml).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("{AT}.targets[0].weight: unknown field `weight`")),
        "{err}"
    );
    let yaml = "binds:\n- port: 1\n  listeners:\n  - routes:\n    - mcp:\n        targets: []\n        prefix: never\n";
    let err = parse_str(yaml).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("{AT}.prefix: unknown variant `never`")),
        "{err}"
    );
}

#[test]
fn target_headers_are_checked_and_hidden_in_the_dump() {
    let found = problems("targets:\n- {name: a, url: \"http://127.0.0.1:1/mcp\", headers: {host: x}}\n- {name: b, url: \"http://127.0.0.1:2/mcp\", headers: {\"bad name\": x}}");
    assert_eq!(
        found,
        [
            format!("{AT}.targets[0].headers.host: set by tollgate on every call"),
            format!("{AT}.targets[1].headers.bad name: invalid header name"),
        ]
    );
    let yaml = "binds:\n- port: 1\n  listeners:\n  - routes:\n    - mcp:\n        targets:\n        - {name: a, url: \"http://127.0.0.1:1/mcp\", headers: {x-weird-name: literal-secret}}\n";
    let dump = crate::config::redacted_json(&parse_str(yaml).unwrap()).to_string();
    assert!(!dump.contains("literal-secret"), "{dump}");
    assert!(dump.contains("\"x-weird-name\":\"<redacted>\""), "{dump}");
}
