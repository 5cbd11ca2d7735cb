//! CEL functions of agentgateway's that access-log fields use, registered only for
//! them (`Vars::logging`), and the conversion of a result to JSON:
//!
//! - `flattenRecursive(x)`: a map or list flattened into one entry per leaf, keyed by
//!   the dotted path (`{"a": [{"b": 1}]}` → `a.0.b: 1`); an access-log field whose
//!   value this is becomes one field per entry (`name.a.0.b`). An empty map or list
//!   below the top is a leaf. Nesting past [`MAX_DEPTH`] is kept as JSON.
//! - `flatten(x)`: the same, one level deep (`flatten(request.headers)` → `name.<header>`).
//! - `json(text)`: parses JSON text (`json(request.body).model`).
//! - `toJson(x)`: `x` as JSON text.
//!
//! A flattened value is an opaque CEL value: other functions cannot look into it, as
//! in agentgateway, where these are "usable only for logging".

use std::sync::Arc;

use cel::objects::{Key, Opaque};
use cel::{ExecutionError, Value};
use serde_json::{Map, Value as Json};

/// How deep `flattenRecursive` goes.
pub const MAX_DEPTH: usize = 32;

/// What `flatten` / `flattenRecursive` return: dotted keys to JSON leaves.
#[derive(Debug, PartialEq, Eq)]
pub struct Flattened(pub Map<String, Json>);

impl Opaque for Flattened {
    fn runtime_type_name(&self) -> &str {
        "tollgate.Flattened"
    }
}

/// Registers the logging functions in `context`.
pub fn register(context: &mut cel::Context<'_, '_>) {
    let added = [
        context.add_function("flattenRecursive", |v: Value| flatten(&v, MAX_DEPTH)),
        context.add_function("flatten", |v: Value| flatten(&v, 1)),
        context.add_function("json", parse_json),
        context.add_function("toJson", |v: Value| to_json(&v).to_string()),
    ];
    for result in added {
        if let Err(e) = result {
            tracing::warn!(error = %e, "a CEL logging function could not be registered");
        }
    }
}

/// `value` flattened `depth` levels deep; a value that is neither a map nor a list is
/// returned as it is.
pub fn flatten(value: &Value, depth: usize) -> Value {
    let json = to_json(value);
    if !(json.is_object() || json.is_array()) {
        return value.clone();
    }
    let mut out = Map::new();
    flatten_into(&mut out, None, json, depth);
    Value::Opaque(Arc::new(Flattened(out)))
}

fn flatten_into(out: &mut Map<String, Json>, prefix: Option<&str>, value: Json, depth: usize) {
    let key = |k: &str| prefix.map_or_else(|| k.to_string(), |p| format!("{p}.{k}"));
    match value {
        Json::Object(map) if depth > 0 && (prefix.is_none() || !map.is_empty()) => {
            for (k, v) in map {
                flatten_into(out, Some(&key(&k)), v, depth - 1);
            }
        }
        Json::Array(items) if depth > 0 && (prefix.is_none() || !items.is_empty()) => {
            for (i, v) in items.into_iter().enumerate() {
                flatten_into(out, Some(&key(&i.to_string())), v, depth - 1);
            }
        }
        leaf => {
            out.insert(prefix.unwrap_or_default().to_string(), leaf);
        }
    }
}

fn parse_json(text: Arc<String>) -> Result<Value, ExecutionError> {
    let json: Json = serde_json::from_str(&text)
        .map_err(|e| ExecutionError::function_error("json", e.to_string()))?;
    cel::to_value(json).map_err(|e| ExecutionError::function_error("json", e.to_string()))
}

/// A CEL value as JSON: bytes as (lossy) text, timestamps in RFC 3339, durations in
/// seconds (`"1.5s"`), a flattened value as its map; what JSON cannot hold (a
/// non-finite number, a function) as null.
pub fn to_json(value: &Value) -> Json {
    match value {
        Value::List(items) => Json::Array(items.iter().map(to_json).collect()),
        Value::Map(map) => Json::Object(
            map.map
                .iter()
                .map(|(k, v)| (key_text(k), to_json(v)))
                .collect(),
        ),
        Value::Int(i) => Json::from(*i),
        Value::UInt(u) => Json::from(*u),
        Value::Float(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
        Value::String(s) => Json::String(s.to_string()),
        Value::Bytes(b) => Json::String(String::from_utf8_lossy(b).into_owned()),
        Value::Bool(b) => Json::Bool(*b),
        Value::Duration(d) => Json::String(format!("{}s", d.num_milliseconds() as f64 / 1000.0)),
        Value::Timestamp(t) => Json::String(t.to_rfc3339()),
        Value::Opaque(o) => o
            .downcast_ref::<Flattened>()
            .map_or(Json::Null, |f| Json::Object(f.0.clone())),
        Value::Function(..) | Value::Struct(_) | Value::Null => Json::Null,
    }
}

fn key_text(key: &Key) -> String {
    match key {
        Key::String(s) => s.to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cel(v: Json) -> Value {
        cel::to_value(v).unwrap()
    }

    fn flat(v: &Value) -> Json {
        to_json(v)
    }

    #[test]
    fn flatten_recursive_gives_dotted_leaves() {
        let prompt = cel(json!([
            {"message": {"role": "user", "content": "hi"}},
            {"message": {"role": "assistant", "content": "yo", "extra": []}}
        ]));
        let out = flatten(&prompt, MAX_DEPTH);
        assert!(matches!(out, Value::Opaque(_)));
        assert_eq!(
            flat(&out),
            json!({
                "0.message.role": "user",
                "0.message.content": "hi",
                "1.message.role": "assistant",
                "1.message.content": "yo",
                "1.message.extra": [],
            })
        );
    }

    #[test]
    fn flatten_goes_one_level_and_leaves_scalars() {
        let headers = cel(json!({"a": "1", "b": {"c": 2}}));
        assert_eq!(
            flat(&flatten(&headers, 1)),
            json!({"a": "1", "b": {"c": 2}})
        );
        assert_eq!(flatten(&cel(json!("x")), 1), cel(json!("x")));
        assert_eq!(flat(&flatten(&cel(json!([])), MAX_DEPTH)), json!({}));
    }

    #[test]
    fn functions_are_callable_from_cel() {
        let mut context = cel::Context::default();
        register(&mut context);
        let run = |src: &str| {
            cel::Program::compile(src)
                .unwrap()
                .execute(&context)
                .map(|v| to_json(&v))
        };
        assert_eq!(
            run(r#"flattenRecursive([{"m": "x"}])"#).unwrap(),
            json!({"0.m": "x"})
        );
        assert_eq!(run(r#"json("{\"a\": [1]}").a[0]"#).unwrap(), json!(1));
        assert_eq!(run(r#"toJson({"a": 1})"#).unwrap(), json!(r#"{"a":1}"#));
        assert!(run(r#"json("{")"#).is_err());
    }
}
