//! The config loader and pipeline build (what `tollgate validate` and a reload run):
//! every error names a field path, an accepted config survives a serialize → parse
//! round trip unchanged, and the redacted `/config` dump can always be made.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tollgate::config::{parse_str, redacted_json, ConfigError};
use tollgate::pipeline::Pipeline;
use tollgate::services::Services;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let loaded = match parse_str(text) {
        Ok(loaded) => loaded,
        Err(e) => return check_error(&e),
    };
    let _ = redacted_json(&loaded);
    let value = serde_json::to_value(&loaded.config).expect("a config serializes");
    if !has_dollar(&value) {
        // JSON is YAML: the serialized config reads back as itself.
        let again = parse_str(&value.to_string())
            .unwrap_or_else(|e| panic!("the serialized config does not load: {e}\n{value}"));
        let again = serde_json::to_value(&again.config).unwrap();
        assert_eq!(again, value, "round trip changed the config");
    }
    if let Err(e) = Pipeline::build(loaded, Services::new()) {
        check_error(&e);
    }
});

fn check_error(e: &ConfigError) {
    match e {
        ConfigError::Field { path, message } => {
            assert!(!path.is_empty(), "an error without a field path: {message}");
            assert!(!message.is_empty(), "an empty message at {path}");
        }
        ConfigError::Yaml(m) => assert!(!m.is_empty()),
        ConfigError::Read { .. } => panic!("parse_str read a file"),
        ConfigError::Empty => {}
        ConfigError::Many(all) => {
            assert!(all.len() > 1, "a list of problems with fewer than two");
            all.iter().for_each(check_error);
        }
    }
}

/// `${…}` would be substituted again on the second read.
fn has_dollar(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('$'),
        Value::Array(a) => a.iter().any(has_dollar),
        Value::Object(o) => o.iter().any(|(k, v)| k.contains('$') || has_dollar(v)),
        _ => false,
    }
}
