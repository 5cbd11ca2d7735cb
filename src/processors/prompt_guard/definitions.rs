//! Which strings of a request body the guard reads: the prompt text (what
//! `llm::LlmRequest` extracts) and the definitions a model reads besides it — tool
//! definitions (`tools[].function.description` and `parameters`, Anthropic's
//! `tools[].description` and `input_schema`, Responses API tools), `functions`, and
//! structured-output schemas (`response_format.json_schema`, the Responses API's
//! `text.format`). One predicate, [`masked`], says which strings a mask rewrites, and the
//! detection walks exactly the definition strings it would rewrite, so nothing is found
//! that a mask would then leave in place.
//!
//! Inside definitions every string value is read except the schema's own vocabulary
//! ([`SCHEMA_KEYS`]: types, formats, `$ref`, the `required` property names), which a
//! placeholder would break. Object keys (property names) are never rewritten.

use memchr::memmem;

use super::json::{rewrite_strings, Malformed, Seg};
use super::request::SKIP_KEYS;

/// Top-level keys whose values are definitions a model reads.
pub const DEFINITION_ROOTS: &[&str] = &["tools", "functions", "response_format", "text"];

/// Keys inside definitions whose strings are schema vocabulary, not text.
pub const SCHEMA_KEYS: &[&str] = &[
    "type", "$ref", "$schema", "$id", "format", "required", "strict",
];

/// Whether a mask rewrites the string at `path`.
pub fn masked(path: &[Seg<'_>]) -> bool {
    if in_definitions(path) {
        let nearest = path.iter().rev().find_map(Seg::key);
        return !nearest.is_some_and(|k| SCHEMA_KEYS.contains(&k));
    }
    !path
        .iter()
        .any(|s| s.key().is_some_and(|k| SKIP_KEYS.contains(&k)))
}

fn in_definitions(path: &[Seg<'_>]) -> bool {
    path.len() > 1 && path[0].key().is_some_and(|k| DEFINITION_ROOTS.contains(&k))
}

/// The definition strings of `body` the guard reads (empty for a body without any).
pub fn texts(body: &[u8]) -> Result<Vec<String>, Malformed> {
    let mut out = Vec::new();
    // Most requests carry no definitions: skip the walk unless a root key appears.
    const NEEDLES: [&[u8]; 4] = [
        b"\"tools\"",
        b"\"functions\"",
        b"\"response_format\"",
        b"\"text\"",
    ];
    let any = NEEDLES.iter().any(|k| memmem::find(body, k).is_some());
    if !any {
        return Ok(out);
    }
    rewrite_strings(body, |path, text| {
        if in_definitions(path) && masked(path) {
            out.push(text.to_string());
        }
        None
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The texts read, sorted (`json!` orders keys its own way).
    fn texts_of(json: serde_json::Value) -> Vec<String> {
        let mut t = texts(json.to_string().as_bytes()).unwrap();
        t.sort();
        t
    }

    #[test]
    fn openai_tools_and_response_schema_are_read() {
        let t = texts_of(serde_json::json!({
            "model": "m",
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "function", "function": {
                "name": "lookup",
                "description": "uses key K1",
                "parameters": {"type": "object", "required": ["q"],
                    "properties": {"q": {"type": "string", "description": "D1", "enum": ["E1"]}}}
            }}],
            "response_format": {"type": "json_schema", "json_schema": {
                "name": "out", "schema": {"type": "object", "description": "S1"}}}
        }));
        assert_eq!(t, ["D1", "E1", "S1", "lookup", "out", "uses key K1"]);
    }

    #[test]
    fn anthropic_and_responses_definitions_are_read() {
        let t = texts_of(serde_json::json!({
            "tools": [{"name": "t", "description": "A1",
                "input_schema": {"type": "object", "properties": {"x": {"description": "A2"}}}}],
            "text": {"format": {"type": "json_schema", "name": "n", "schema": {"description": "R1"}}}
        }));
        assert_eq!(t, ["A1", "A2", "R1", "n", "t"]);
    }

    #[test]
    fn mask_and_detection_agree() {
        let key = |k: &'static str| Seg::Key(k.into());
        // Schema vocabulary is neither read nor rewritten.
        let schema_type = [key("tools"), Seg::Index(0), key("parameters"), key("type")];
        assert!(!masked(&schema_type));
        // A property named like a skipped key is still text inside definitions.
        let desc = [
            key("tools"),
            Seg::Index(0),
            key("input_schema"),
            key("properties"),
            key("model"),
            key("description"),
        ];
        assert!(masked(&desc));
        // Outside definitions the skipped keys stay skipped.
        assert!(!masked(&[key("model")]));
        assert!(masked(&[key("messages"), Seg::Index(0), key("content")]));
    }

    #[test]
    fn bodies_without_definitions_are_not_walked() {
        assert!(texts(b"{\"messages\": [").unwrap().is_empty());
    }
}
