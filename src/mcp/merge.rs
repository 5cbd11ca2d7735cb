//! Merging the targets' results of one fanned-out request into the one result the client
//! gets: `initialize` (the lowest protocol version, the union of capabilities, tollgate as
//! the server) and `tools/list` (every target's tools under their client-facing names).
//!
//! Pure functions over `serde_json::Value`, never typed structs: a field tollgate does not
//! know survives as the upstream wrote it. Results come as `(target index, result)` in
//! any order (as the answers arrived) and are merged in target order; a result for an
//! index that is not a target's is left out.

use serde_json::{json, Map, Value};

use super::envelope::META_SERVER_INFO;
use super::targets::TargetSet;
use super::versions::{LEGACY_VERSIONS, MODERN_VERSIONS};

/// The `initialize` result for the client. With a single target, its own result as it
/// came; else tollgate's: the lowest `protocolVersion` (YYYY-MM-DD compares as text), the
/// union of the capabilities (nested objects merged, a flag such as `listChanged` true when
/// any target's is), `serverInfo` naming tollgate, and each target's `instructions` under
/// a `[target]` line.
pub fn merge_initialize(targets: &TargetSet, results: &[(usize, Value)]) -> Value {
    if let ([(_, only)], 1) = (results, targets.len()) {
        return only.clone();
    }
    let ordered = in_target_order(targets, results);
    let version = ordered
        .iter()
        .filter_map(|(_, r)| r.get("protocolVersion")?.as_str())
        .min();
    let mut capabilities = Map::new();
    for (_, result) in &ordered {
        if let Some(Value::Object(c)) = result.get("capabilities") {
            merge_object(&mut capabilities, c);
        }
    }
    let instructions: Vec<String> = ordered
        .iter()
        .filter_map(|&(i, r)| {
            let text = r.get("instructions")?.as_str()?;
            let name = targets.name(i)?;
            (!text.trim().is_empty()).then(|| format!("[{name}]\n{text}"))
        })
        .collect();

    let mut merged = Map::new();
    if let Some(version) = version {
        merged.insert("protocolVersion".into(), version.into());
    }
    merged.insert("capabilities".into(), Value::Object(capabilities));
    merged.insert(
        "serverInfo".into(),
        json!({"name": "tollgate", "version": env!("CARGO_PKG_VERSION")}),
    );
    if !instructions.is_empty() {
        merged.insert("instructions".into(), instructions.join("\n\n").into());
    }
    Value::Object(merged)
}

/// The `tools/list` result for the client: every target's tools in target order, each
/// renamed by [`TargetSet::encode`] with every other field kept. No `nextCursor`: the
/// gateway does not page. A tool without a string `name` cannot be called through the
/// gateway and is left out, as is a result without a `tools` array.
pub fn merge_tools(targets: &TargetSet, results: &[(usize, Value)]) -> Value {
    merge_named(targets, results, "tools")
}

/// [`merge_tools`] for any list of named items (`tools`, `prompts`): the result's
/// `list` array of every target, each item renamed.
pub fn merge_named(targets: &TargetSet, results: &[(usize, Value)], list: &str) -> Value {
    let mut items = Vec::new();
    for (i, result) in in_target_order(targets, results) {
        let Some(found) = result.get(list).and_then(Value::as_array) else {
            continue;
        };
        for item in found {
            let Some(name) = item.get("name").and_then(Value::as_str) else {
                continue;
            };
            let name = targets.encode(i, name);
            let mut item = item.clone();
            item["name"] = Value::String(name);
            items.push(item);
        }
    }
    let mut merged = serde_json::Map::new();
    merged.insert(list.to_string(), Value::Array(items));
    Value::Object(merged)
}

/// A list whose items keep their identity (`resources` by `uri`, `resourceTemplates`
/// by `uriTemplate`, the `key`): every target's items in target order, unchanged; an
/// item whose key an earlier target listed is left out, and its key returned so the
/// conflict can be reported.
pub fn merge_unique(
    targets: &TargetSet,
    results: &[(usize, Value)],
    list: &str,
    key: &str,
) -> (Value, Vec<String>) {
    let mut seen = std::collections::HashSet::new();
    let mut items = Vec::new();
    let mut shadowed = Vec::new();
    for (_, result) in in_target_order(targets, results) {
        let Some(found) = result.get(list).and_then(Value::as_array) else {
            continue;
        };
        for item in found {
            let Some(id) = item.get(key).and_then(Value::as_str) else {
                continue;
            };
            if seen.insert(id.to_string()) {
                items.push(item.clone());
            } else {
                shadowed.push(id.to_string());
            }
        }
    }
    let mut merged = Map::new();
    merged.insert(list.to_string(), Value::Array(items));
    (Value::Object(merged), shadowed)
}

/// The `server/discover` result (2026-07-28) for the client: the versions the gateway
/// serves (the handshake era's always; a modern one when `modern`, every target
/// answered, and every target lists it), the capabilities and instructions as
/// [`merge_initialize`] unites them, and tollgate as the server. Never cached by
/// shared caches: what a caller may see depends on who asks.
pub fn merge_discover(targets: &TargetSet, results: &[(usize, Value)], modern: bool) -> Value {
    let all_answered = in_target_order(targets, results).len() == targets.len();
    let mut supported: Vec<Value> = LEGACY_VERSIONS.iter().map(|v| json!(v)).collect();
    for version in MODERN_VERSIONS {
        let everywhere = results.iter().all(|(_, r)| {
            r.get("supportedVersions")
                .and_then(Value::as_array)
                .is_some_and(|vs| vs.iter().any(|v| v == version))
        });
        if modern && all_answered && everywhere {
            supported.push(json!(version));
        }
    }
    let united = merge_initialize(targets, results);
    let mut merged = Map::new();
    merged.insert("supportedVersions".into(), Value::Array(supported));
    let capabilities = united.get("capabilities").cloned();
    merged.insert(
        "capabilities".into(),
        capabilities.unwrap_or_else(|| json!({})),
    );
    if let Some(instructions) = united.get("instructions") {
        merged.insert("instructions".into(), instructions.clone());
    }
    merged.insert("resultType".into(), json!("complete"));
    merged.insert("ttlMs".into(), json!(0));
    merged.insert("cacheScope".into(), json!("private"));
    let server = json!({"name": "tollgate", "version": env!("CARGO_PKG_VERSION")});
    merged.insert("_meta".into(), json!({ META_SERVER_INFO: server }));
    Value::Object(merged)
}

/// Adds to a merged list `merged` the 2026-07-28 result fields the targets' `results`
/// carry: `resultType`, `ttlMs` (the shortest), `cacheScope` (`public` only when every
/// target's is), and `_meta` (one target's as it is; with several, tollgate as the
/// server). Results without them (the handshake era) add nothing.
pub fn merge_result_fields(targets: &TargetSet, merged: &mut Value, results: &[(usize, Value)]) {
    let Value::Object(out) = merged else {
        return;
    };
    let ordered = in_target_order(targets, results);
    if ordered.iter().any(|(_, r)| r.get("resultType").is_some()) {
        out.insert("resultType".into(), json!("complete"));
    }
    let ttl = ordered
        .iter()
        .filter_map(|(_, r)| r.get("ttlMs")?.as_u64())
        .min();
    if let Some(ttl) = ttl {
        out.insert("ttlMs".into(), json!(ttl));
    }
    let scopes: Vec<&str> = ordered
        .iter()
        .filter_map(|(_, r)| r.get("cacheScope")?.as_str())
        .collect();
    if !scopes.is_empty() {
        let public = scopes.len() == ordered.len() && scopes.iter().all(|s| *s == "public");
        out.insert(
            "cacheScope".into(),
            json!(if public { "public" } else { "private" }),
        );
    }
    match ordered.as_slice() {
        [(_, only)] if targets.len() == 1 => {
            if let Some(meta) = only.get("_meta") {
                out.insert("_meta".into(), meta.clone());
            }
        }
        _ if ordered.iter().any(|(_, r)| r.get("_meta").is_some()) => {
            let server = json!({"name": "tollgate", "version": env!("CARGO_PKG_VERSION")});
            out.insert("_meta".into(), json!({ META_SERVER_INFO: server }));
        }
        _ => {}
    }
}

/// The results whose index is a target's, in target order (stable for equal indexes).
fn in_target_order<'a>(
    targets: &TargetSet,
    results: &'a [(usize, Value)],
) -> Vec<(usize, &'a Value)> {
    let mut ordered: Vec<(usize, &Value)> = results
        .iter()
        .filter(|(i, _)| *i < targets.len())
        .map(|(i, r)| (*i, r))
        .collect();
    ordered.sort_by_key(|(i, _)| *i);
    ordered
}

/// Adds `from` to `into`: new keys are copied, objects on both sides merged, booleans on
/// both sides or-ed; any other value already there stays.
fn merge_object(into: &mut Map<String, Value>, from: &Map<String, Value>) {
    for (key, value) in from {
        match (into.get_mut(key), value) {
            (None, _) => {
                into.insert(key.clone(), value.clone());
            }
            (Some(Value::Object(a)), Value::Object(b)) => merge_object(a, b),
            (Some(Value::Bool(a)), Value::Bool(b)) => *a |= b,
            (Some(_), _) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcp::targets::PrefixMode;

    fn targets(names: &[&str]) -> TargetSet {
        let names = names.iter().map(|n| n.to_string()).collect();
        TargetSet::new(names, "__".into(), PrefixMode::Auto).unwrap()
    }

    fn init(version: &str, capabilities: Value, instructions: Option<&str>) -> Value {
        let mut r = json!({
            "protocolVersion": version,
            "capabilities": capabilities,
            "serverInfo": {"name": "upstream", "version": "9"},
        });
        if let Some(text) = instructions {
            r["instructions"] = text.into();
        }
        r
    }

    #[test]
    fn single_target_initialize_passes_through() {
        let mut only = init("2025-06-18", json!({"tools": {}}), Some("hi"));
        only["x-extra"] = json!({"kept": [1, 2]});
        let merged = merge_initialize(&targets(&["a"]), &[(0, only.clone())]);
        assert_eq!(merged, only);
    }

    #[test]
    fn initialize_picks_the_lowest_version_and_names_tollgate() {
        let t = targets(&["a", "b", "c"]);
        let results = [
            (0, init("2025-06-18", json!({}), None)),
            (1, init("2025-03-26", json!({}), None)),
            (2, init("2025-11-25", json!({}), None)),
        ];
        let merged = merge_initialize(&t, &results);
        assert_eq!(merged["protocolVersion"], "2025-03-26");
        assert_eq!(merged["serverInfo"]["name"], "tollgate");
        assert_eq!(merged["serverInfo"]["version"], env!("CARGO_PKG_VERSION"));
        assert!(merged.get("instructions").is_none());
        // One answer of several targets is still merged.
        let merged = merge_initialize(&t, &results[2..]);
        assert_eq!(merged["serverInfo"]["name"], "tollgate");
        assert_eq!(merged["protocolVersion"], "2025-11-25");
    }

    #[test]
    fn initialize_unites_capabilities() {
        let t = targets(&["a", "b"]);
        let a = json!({
            "tools": {"listChanged": false},
            "logging": {},
            "experimental": {"x": {"a": 1}},
        });
        let b = json!({
            "tools": {"listChanged": true},
            "prompts": {"listChanged": false},
            "resources": {"subscribe": true},
            "experimental": {"x": {"b": 2}, "y": {}},
        });
        let merged = merge_initialize(
            &t,
            &[
                (1, init("2025-06-18", b, None)),
                (0, init("2025-06-18", a, None)),
            ],
        );
        assert_eq!(
            merged["capabilities"],
            json!({
                "tools": {"listChanged": true},
                "logging": {},
                "prompts": {"listChanged": false},
                "resources": {"subscribe": true},
                "experimental": {"x": {"a": 1, "b": 2}, "y": {}},
            })
        );
    }

    #[test]
    fn initialize_joins_instructions_in_target_order() {
        let t = targets(&["weather", "calendar", "mail"]);
        let results = [
            (2, init("2025-06-18", json!({}), Some("Send mail."))),
            (1, init("2025-06-18", json!({}), Some("  "))),
            (0, init("2025-06-18", json!({}), Some("Ask for a city."))),
        ];
        let merged = merge_initialize(&t, &results);
        assert_eq!(
            merged["instructions"],
            "[weather]\nAsk for a city.\n\n[mail]\nSend mail."
        );
    }

    fn tools(list: Value) -> Value {
        json!({"tools": list, "nextCursor": "page-2", "_meta": {"m": 1}})
    }

    #[test]
    fn tools_are_prefixed_in_target_order_and_keep_unknown_fields() {
        let t = targets(&["weather", "calendar"]);
        let echo = json!({
            "name": "echo",
            "description": "Echoes.",
            "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}},
            "annotations": {"readOnlyHint": true},
            "x-vendor": {"anything": [1, "two", null, 3.5]},
            "_meta": {"io.example/k": "v"},
        });
        let results = [
            (1, tools(json!([echo.clone(), {"name": "calendar_only"}]))),
            (
                0,
                tools(json!([{"name": "echo", "inputSchema": {}}, {"description": "nameless"}])),
            ),
        ];
        let merged = merge_tools(&t, &results);
        let names: Vec<&str> = merged["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            ["weather__echo", "calendar__echo", "calendar__calendar_only"]
        );
        let mut renamed = merged["tools"][1].clone();
        assert_eq!(renamed["name"], "calendar__echo");
        renamed["name"] = "echo".into();
        assert_eq!(renamed, echo);
        assert_eq!(
            merged.as_object().unwrap().len(),
            1,
            "no nextCursor, no _meta"
        );
    }

    #[test]
    fn single_target_tools_are_unprefixed() {
        let t = targets(&["weather"]);
        let list = json!([{"name": "echo", "title": "Echo"}, {"name": "a__b"}]);
        let merged = merge_tools(&t, &[(0, tools(list.clone()))]);
        assert_eq!(merged, json!({ "tools": list }));
    }

    #[test]
    fn odd_results_are_left_out() {
        let t = targets(&["a", "b"]);
        let results = [
            (0, json!({"content": []})),
            (1, json!({"tools": "not a list"})),
            (7, tools(json!([{"name": "ghost"}]))),
        ];
        assert_eq!(merge_tools(&t, &results), json!({"tools": []}));
        assert_eq!(merge_tools(&t, &[]), json!({"tools": []}));
    }
}
