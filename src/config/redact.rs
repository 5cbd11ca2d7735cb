//! The config dump served on `/config`: the effective config as JSON with secrets
//! replaced by `"<redacted>"`. Secrets are values that came from `${ENV}` substitution,
//! header values of credential headers, and fields whose name says key, token, secret
//! or password.

use serde_json::Value;

use super::LoadedConfig;

const REDACTED: &str = "<redacted>";

const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "api-key",
    "cookie",
    "set-cookie",
];

const SECRET_WORDS: &[&str] = &["key", "token", "secret", "password", "apikey"];

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
            for (k, v) in map.iter_mut() {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                let lower = k.to_ascii_lowercase();
                let secret_name = (in_headers && SECRET_HEADERS.contains(&lower.as_str()))
                    || (!in_headers && is_secret_field(&lower));
                if secret_name && v.is_string() {
                    *v = Value::String(REDACTED.into());
                } else {
                    let headers = matches!(k.as_str(), "set" | "add");
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
        _ => {}
    }
}

fn is_secret_field(lower: &str) -> bool {
    // `keyFile` names a path, not a key; `failureMode` etc. never match.
    !lower.ends_with("file") && SECRET_WORDS.iter().any(|w| lower.ends_with(w))
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
}
