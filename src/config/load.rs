//! Loading: YAML text → `${ENV}` substitution → typed `Config`, with every error naming
//! the field path it concerns (`binds[0].listeners[0].routes[1].matches[0].path.regex: …`).

use std::path::Path;

use serde_json::Value;

use super::{Config, ConfigError};

/// A parsed config plus what the redacted dump must hide.
#[derive(Clone, Debug)]
pub struct LoadedConfig {
    pub config: Config,
    /// Field paths whose values came from `${ENV}` substitution: treated as secrets.
    pub substituted_paths: Vec<String>,
    /// agentgateway keys the file has that tollgate knows and does not implement (see
    /// `compat`): logged at every load.
    pub notices: Vec<String>,
}

/// Reads and parses a config file (no semantic validation; see `Pipeline::build`).
pub fn load_file(path: &Path) -> Result<LoadedConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse_str(&text)
}

/// Parses config text: YAML (read into a JSON value, so enums are written as one-key
/// maps such as `path: {pathPrefix: /v1}`), agentgateway's keys moved to tollgate's
/// (`compat`), then `${VAR}` substitution in every string value (`$${` is a
/// literal `${`), then the typed model with unknown fields rejected.
pub fn parse_str(text: &str) -> Result<LoadedConfig, ConfigError> {
    // Empty, blank or comment-only text is a half-written or emptied file, never a
    // config: applying it would drop every route.
    if text.trim().is_empty() {
        return Err(ConfigError::Empty);
    }
    let mut value: Value =
        serde_yaml::from_str(text).map_err(|e| ConfigError::Yaml(e.to_string()))?;
    if value.is_null() {
        return Err(ConfigError::Empty);
    }
    let notices = super::compat::normalize(&mut value)?;
    let mut substituted_paths = Vec::new();
    substitute_env(&mut value, &mut String::new(), &mut substituted_paths)?;
    let config: Config = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        let root = path == "." || path.is_empty(); // a null or empty top-level key gives ""
        ConfigError::field(if root { "(root)".into() } else { path }, message)
    })?;
    Ok(LoadedConfig {
        config,
        substituted_paths,
        notices,
    })
}

fn substitute_env(
    value: &mut Value,
    path: &mut String,
    substituted: &mut Vec<String>,
) -> Result<(), ConfigError> {
    match value {
        Value::String(s) if s.contains('$') => {
            let (out, changed) =
                expand(s).map_err(|e| ConfigError::field(path.clone(), e.to_string()))?;
            if changed {
                substituted.push(path.clone());
            }
            *s = out;
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                substitute_env(item, path, substituted)?;
                path.truncate(len);
            }
        }
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                substitute_env(v, path, substituted)?;
                path.truncate(len);
            }
        }
        _ => {}
    }
    Ok(())
}

/// Why a `${VAR}` reference could not be expanded.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
enum EnvRefError {
    #[error("unterminated ${{...}} reference")]
    Unterminated,
    #[error("invalid environment variable name {name:?}")]
    InvalidName { name: String },
    #[error("environment variable {name} is not set")]
    Unset { name: String },
}

/// Expands `${VAR}` references; returns the text and whether anything was substituted.
fn expand(s: &str) -> Result<(String, bool), EnvRefError> {
    let mut out = String::with_capacity(s.len());
    let mut changed = false;
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            let end = tail.find('}').ok_or(EnvRefError::Unterminated)?;
            let name = &tail[..end];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(EnvRefError::InvalidName { name: name.into() });
            }
            let val = std::env::var(name).map_err(|_| EnvRefError::Unset { name: name.into() })?;
            out.push_str(&val);
            changed = true;
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok((out, changed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_field_names_its_path() {
        let err = parse_str(
            "binds:\n- port: 1\n  listeners:\n  - routes:\n    - policies:\n        requestHeaderModifier:\n          sett: {a: b}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("binds[0].listeners[0].routes[0].policies.requestHeaderModifier"),
            "{err}"
        );
        assert!(err.contains("unknown field `sett`"), "{err}");
    }

    #[test]
    fn a_null_top_level_key_is_reported_at_the_root() {
        // Found by the `config` fuzz target: the YAML `?` gave an error with an empty path.
        let err = parse_str("?").unwrap_err().to_string();
        assert!(err.starts_with("(root): unknown field"), "{err}");
        let err = parse_str("'${'").unwrap_err().to_string();
        assert_eq!(err, "(root): unterminated ${...} reference");
    }

    #[test]
    fn wrong_type_names_its_path() {
        let err = parse_str("binds:\n- port: notaport\n  listeners: []\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("binds[0].port:"), "{err}");
    }

    #[test]
    fn env_substitution_and_escape() {
        std::env::set_var("TOLLGATE_TEST_SECRET", "s3cret");
        let loaded = parse_str(
            "binds:\n- port: 1\n  listeners:\n  - routes:\n    - policies:\n        requestHeaderModifier:\n          set: {authorization: \"Bearer ${TOLLGATE_TEST_SECRET}\", x-lit: \"$${HOME}\"}\n",
        )
        .unwrap();
        let m = loaded.config.binds[0].listeners[0].routes[0]
            .policies
            .request_header_modifier
            .as_ref()
            .unwrap();
        assert_eq!(m.set["authorization"], "Bearer s3cret");
        assert_eq!(m.set["x-lit"], "${HOME}");
        assert_eq!(
            loaded.substituted_paths,
            vec![
                "binds[0].listeners[0].routes[0].policies.requestHeaderModifier.set.authorization"
            ]
        );
    }

    #[test]
    fn a_bad_reference_says_which_and_names_the_variable() {
        assert_eq!(expand("x ${"), Err(EnvRefError::Unterminated));
        assert_eq!(
            expand("${BAD-NAME}"),
            Err(EnvRefError::InvalidName {
                name: "BAD-NAME".into()
            })
        );
        assert_eq!(
            expand("a${TOLLGATE_SURELY_UNSET_VAR}b"),
            Err(EnvRefError::Unset {
                name: "TOLLGATE_SURELY_UNSET_VAR".into()
            })
        );
        assert_eq!(expand("$${X} $5"), Ok(("${X} $5".to_string(), false)));
    }

    #[test]
    fn missing_env_var_names_path_and_var() {
        let err = parse_str("admin:\n  address: \"${TOLLGATE_SURELY_UNSET_VAR}\"\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "admin.address: environment variable TOLLGATE_SURELY_UNSET_VAR is not set"
        );
    }

    #[test]
    fn empty_blank_and_comment_only_text_is_not_a_config() {
        for text in [
            "",
            "  \n\t\n",
            "# all commented out\n# binds: []\n",
            "---\n",
            "~\n",
        ] {
            let err = parse_str(text).unwrap_err();
            assert!(matches!(err, ConfigError::Empty), "{text:?}: {err}");
            assert!(err.to_string().contains("the config is empty"), "{err}");
        }
        // An explicitly empty mapping is a document; whether it serves anything is
        // checked later (`check_serves`).
        assert!(parse_str("{}\n").is_ok());
    }

    #[test]
    fn half_written_files_fail_to_parse() {
        for text in [
            "binds:\n",
            "binds:\n- port: 8080\n  listen",
            "binds:\n- port: 8080\n  listeners:\n  - routes:\n",
            "binds:\n- port: 8080\n  listeners:\n  - routes:\n    - name: a\n      backends: [ { host: \"127.0",
        ] {
            assert!(parse_str(text).is_err(), "{text:?} parsed");
        }
    }

    #[test]
    fn embedded_default_parses() {
        let loaded = parse_str(crate::config::EMBEDDED_DEFAULT).unwrap();
        assert_eq!(loaded.config.ext_proc.unwrap().address, "127.0.0.1:50051");
        assert_eq!(loaded.config.binds[0].port, 8080);
    }
}
