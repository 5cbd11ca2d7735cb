//! The config dump served on `/config`: the effective config as JSON with secrets
//! replaced by `"<redacted>"`. Secrets are values that came from `${ENV}` substitution,
//! and whatever [`crate::redact`] recognises by shape: values of credential headers (in
//! header modifiers and header matches), fields named like secrets, an MCP route's
//! session keys, `backendAuth` keys, and URL userinfo
//! and credential query parameters in any string.

use serde_json::{Map, Value};

use super::LoadedConfig;
use crate::redact::{is_secret_field, is_secret_header, redact_url, REDACTED};

/// The redacted JSON form of a loaded config.
pub fn redacted_json(loaded: &LoadedConfig) -> Value {
    let mut value = serde_json::to_value(&loaded.config).unwrap_or(Value::Null);
    redact(
        &mut value,
        &mut String::new(),
        &loaded.substituted_paths,
        false,
    );
    value
}

fn redact(value: &mut Value, path: &mut String, substituted: &[String], in_headers: bool) {
    if substituted.iter().any(|p| p == path) {
        *value = Value::String(REDACTED.into());
        return;
    }
    match value {
        Value::Object(map) => {
            if is_credential_header_match(map) {
                hide_strings(map.get_mut("value").expect("checked"));
            }
            for (k, v) in map.iter_mut() {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                // An MCP route's session keys and its targets' header values
                // (credentials): secrets even when written literally.
                let target_headers = path.contains(".mcp.targets") && path.ends_with(".headers");
                let backend_key = path.ends_with("backendAuth.key") && v.is_string();
                if path.ends_with(".mcp.session.keys") || target_headers || backend_key {
                    hide_strings(v);
                    path.truncate(len);
                    continue;
                }
                let secret_name = if in_headers {
                    is_secret_header(k)
                } else {
                    is_secret_field(k)
                };
                if secret_name && v.is_string() {
                    *v = Value::String(REDACTED.into());
                } else {
                    // Header modifiers map header names to values under `set` / `add`,
                    // MCP targets under `headers`.
                    let headers = matches!(k.as_str(), "set" | "add" | "headers");
                    redact(v, path, substituted, headers);
                }
                path.truncate(len);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                redact(item, path, substituted, false);
                path.truncate(len);
            }
        }
        Value::String(s) => {
            if let std::borrow::Cow::Owned(hidden) = redact_url(s) {
                *s = hidden;
            }
        }
        _ => {}
    }
}

/// A header match (`{name, value}`) on a credential header: its value is a secret.
fn is_credential_header_match(map: &Map<String, Value>) -> bool {
    map.contains_key("value")
        && map
            .get("name")
            .and_then(Value::as_str)
            .is_some_and(is_secret_header)
}

fn hide_strings(value: &mut Value) {
    match value {
        Value::String(s) => *s = REDACTED.into(),
        Value::Array(items) => items.iter_mut().for_each(hide_strings),
        Value::Object(map) => map.values_mut().for_each(hide_strings),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_str;

    #[test]
    fn credential_headers_and_env_values_are_hidden() {
        std::env::set_var("TOLLGATE_REDACT_TEST", "hunter2");
        let loaded = parse_str(
            "binds:\n- port: 1\n  listeners:\n  - routes:\n    - policies:\n        requestHeaderModifier:\n          set: {Authorization: \"Bearer sk-live\", x-team: \"${TOLLGATE_REDACT_TEST}\", x-plain: visible}\n",
        )
        .unwrap();
        let dump = redacted_json(&loaded).to_string();
        assert!(!dump.contains("sk-live"), "{dump}");
        assert!(!dump.contains("hunter2"), "{dump}");
        assert!(dump.contains("visible"), "{dump}");
        assert!(dump.contains(REDACTED));
    }

    #[test]
    fn literal_mcp_session_keys_are_hidden() {
        let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
        let loaded = parse_str(&format!(
            "binds:\n- port: 1\n  listeners:\n  - routes:\n    - mcp:\n        targets: [{{name: a, url: \"http://127.0.0.1:9/mcp\"}}]\n        session: {{keys: [\"{key}\"]}}\n"
        ))
        .unwrap();
        let value = redacted_json(&loaded);
        assert!(!value.to_string().contains(key), "{value}");
        let mcp = &value["binds"][0]["listeners"][0]["routes"][0]["mcp"];
        assert_eq!(mcp["session"]["keys"], serde_json::json!([REDACTED]));
        assert_eq!(mcp["targets"][0]["url"], "http://127.0.0.1:9/mcp");
        let debug = format!("{:?}", loaded.config);
        assert!(!debug.contains(key), "{debug}");
    }

    #[test]
    fn every_credential_shape_is_hidden() {
        let loaded = parse_str(
            r#"llm:
  redis: { url: "redis://:redis-pw@127.0.0.1:6379/0" }
binds:
- port: 1
  listeners:
  - routes:
    - matches:
      - headers:
        - { name: x-api-key, value: { exact: match-secret } }
        - { name: x-team, value: { exact: team-a } }
      policies:
        requestHeaderModifier:
          set: { x-goog-api-key: goog-secret, api-key: azure-secret }
          add: { x-custom-token: custom-secret, x-visible: shown }
        promptGuard:
          request:
            webhook: { url: "http://127.0.0.1:9/guard?key=hook-secret&team=a" }
            moderation: { url: "https://m.test/v1/moderations", apiKey: mod-secret }
"#,
        )
        .unwrap();
        let value = redacted_json(&loaded);
        let dump = value.to_string();
        for secret in [
            "redis-pw",
            "match-secret",
            "goog-secret",
            "azure-secret",
            "custom-secret",
            "hook-secret",
            "mod-secret",
        ] {
            assert!(!dump.contains(secret), "{secret} leaked: {dump}");
        }
        for kept in ["team-a", "shown", "team=a", "127.0.0.1:6379/0", "m.test"] {
            assert!(dump.contains(kept), "{kept} hidden: {dump}");
        }
        assert_eq!(
            value["llm"]["redis"]["url"],
            "redis://<redacted>@127.0.0.1:6379/0"
        );
    }
}
