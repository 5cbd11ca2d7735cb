//! The JSON body rewriters, against `serde_json::Value` as the reference:
//! `rewrite_strings` (prompt-guard masking) accepts every JSON document and changes
//! exactly the string values it is asked to; `set_model` (model rewrite) changes only
//! the top-level `model` of every request the parser accepts; `ModelWriteBack` gives the
//! same bytes however the response is split; a stream event's skimmed text fields are
//! its `Value` reading.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tollgate::fuzzing::{check_readings_agree, rewrite_strings, set_model, ModelWriteBack, Seg};
use tollgate::llm::{Api, LlmRequest};
use tollgate_fuzz::Input;

const MODELS: [&str; 4] = ["m-v2", "a\"b\\c", "é\u{2028}\u{0}", ""];

// flags: bits 0-1 the replacement, bits 2-3 the model name, bit 4 the write-back check.
fuzz_target!(|data: &[u8]| {
    let Some(input) = Input::parse(data) else {
        return;
    };
    let json = input.payload;
    let how = input.flags & 3;
    let model = MODELS[usize::from(input.flags >> 2 & 3)];
    if input.flags & 16 != 0 {
        return check_write_back(&input, model);
    }
    if let Ok(text) = std::str::from_utf8(json) {
        check_readings_agree(text);
    }
    let value = serde_json::from_slice::<Value>(json).ok();
    let rewritten = rewrite_strings(json, |path, text| replace(how, path, text));
    if let Some(value) = &value {
        let out = rewritten.expect("the rewriter refused JSON that serde_json reads");
        match &out {
            None => assert!(how == 1 || !has_string(value, how, &mut Vec::new())),
            Some(_) => assert_ne!(how, 1, "rewrote with no replacement"),
        }
        let out = out.unwrap_or_else(|| json.to_vec());
        let got: Value = serde_json::from_slice(&out).expect("the rewriter wrote JSON");
        let mut want = value.clone();
        map_strings(&mut want, how, &mut Vec::new());
        assert_eq!(got, want, "rewrite differs from the reference");
    }
    check_set_model(json, value, model);
});

/// The replacement `how` asks for: 0 the text itself, 1 none, 2 a marker with
/// characters that need escaping, 3 only values under a `content` key.
fn replace(how: u8, path: &[Seg<'_>], text: &str) -> Option<String> {
    match how {
        0 => Some(text.to_owned()),
        1 => None,
        2 => Some(format!("<{}\"\\\n\u{1}é>", text.len())),
        _ => (path.last().and_then(Seg::key) == Some("content")).then(|| text.to_uppercase()),
    }
}

/// The reference: `replace` applied to every string value of a `Value`.
fn map_strings<'a>(v: &'a mut Value, how: u8, path: &mut Vec<Seg<'a>>) {
    match v {
        Value::String(s) => {
            if let Some(new) = replace(how, path, s) {
                *s = new;
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                path.push(Seg::Index(i));
                map_strings(item, how, path);
                path.pop();
            }
        }
        Value::Object(map) => {
            for (k, item) in map.iter_mut() {
                path.push(Seg::Key(k.as_str().into()));
                map_strings(item, how, path);
                path.pop();
            }
        }
        _ => {}
    }
}

/// Whether some string value would be offered a replacement.
fn has_string<'a>(v: &'a Value, how: u8, path: &mut Vec<Seg<'a>>) -> bool {
    match v {
        Value::String(s) => replace(how, path, s).is_some(),
        Value::Array(items) => items.iter().enumerate().any(|(i, item)| {
            path.push(Seg::Index(i));
            let found = has_string(item, how, path);
            path.pop();
            found
        }),
        Value::Object(map) => map.iter().any(|(k, item)| {
            path.push(Seg::Key(k.as_str().into()));
            let found = has_string(item, how, path);
            path.pop();
            found
        }),
        _ => false,
    }
}

/// Every request the parser accepts has its top-level `model` (and nothing else)
/// replaced, when it names one.
fn check_set_model(json: &[u8], value: Option<Value>, model: &str) {
    let (Ok(req), Some(mut value)) = (LlmRequest::parse(Api::ChatCompletions, json), value) else {
        return;
    };
    let out = set_model(json, model);
    assert_eq!(
        out.is_some(),
        req.model.is_some(),
        "set_model found another model"
    );
    let Some(out) = out else {
        return;
    };
    let got: Value = serde_json::from_slice(&out).expect("set_model wrote JSON");
    value["model"] = Value::String(model.to_owned());
    assert_eq!(got, value, "set_model changed more than the model");
}

fn check_write_back(input: &Input<'_>, model: &str) {
    let whole = ModelWriteBack::new(model, "orig").push(input.payload, true);
    let mut w = ModelWriteBack::new(model, "orig");
    let chunks = input.chunks();
    let mut out = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        out.extend(w.push(chunk, i + 1 == chunks.len()));
    }
    assert_eq!(out, whole, "write-back differs by split");
}
