//! The LLM request parsers: what a body asks does not depend on how its JSON is
//! written (with or without whitespace between tokens), every prompt part is non-empty and belongs to a
//! counted message, errors name a path, and `set_include_usage` changes exactly
//! `stream_options.include_usage`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tollgate::llm::{estimate_prompt_tokens, set_include_usage, Api, LlmError, LlmRequest};
use tollgate_fuzz::{api, Input};

fuzz_target!(|data: &[u8]| {
    let Some(input) = Input::parse(data) else {
        return;
    };
    let api = api(input.flags);
    let body = input.payload;
    let req = match LlmRequest::parse(api, body) {
        Ok(req) => req,
        Err(LlmError::InvalidRequest { path, error, .. }) => {
            assert!(!path.is_empty() && !error.to_string().is_empty());
            return;
        }
        Err(e) => panic!("parse gave a non-request error: {e}"),
    };
    for part in &req.prompt {
        assert!(!part.text.is_empty(), "an empty prompt part");
        assert!(
            part.message < req.messages.max(1),
            "part of an uncounted message"
        );
    }
    let _ = req.prompt_text();
    let _ = estimate_prompt_tokens(req.model.as_deref().unwrap_or("gpt-4o"), &req);
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return; // accepted but not a Value: numbers beyond f64 in skipped fields
    };
    // Whitespace between tokens changes nothing. (Re-writing through `Value` would also
    // sort keys, which legitimately changes the text kept for blocks of unknown type.)
    let compact = strip_whitespace(body);
    assert_eq!(LlmRequest::parse(api, &compact).ok(), Some(req.clone()));
    if matches!(api, Api::ChatCompletions | Api::Completions) {
        check_include_usage(api, body, value, &req);
    }
});

fn check_include_usage(api: Api, body: &[u8], mut value: Value, req: &LlmRequest) {
    let out = set_include_usage(body).expect("a parsed request is an object");
    let got: Value = serde_json::from_slice(&out).expect("set_include_usage wrote JSON");
    let obj = value
        .as_object_mut()
        .expect("a parsed request is an object");
    let opts = obj
        .entry("stream_options")
        .or_insert_with(|| Value::Object(Default::default()));
    if !opts.is_object() {
        *opts = Value::Object(Default::default());
    }
    opts["include_usage"] = Value::Bool(true);
    assert_eq!(
        got, value,
        "set_include_usage changed more than include_usage"
    );
    let again = LlmRequest::parse(api, &out).expect("the rewritten body parses");
    assert_eq!(again.include_usage, Some(true));
    assert_eq!(
        (&again.model, again.stream, &again.prompt),
        (&req.model, req.stream, &req.prompt)
    );
}

/// The JSON text without the whitespace between its tokens, keys kept in body order.
fn strip_whitespace(json: &[u8]) -> Vec<u8> {
    let (mut out, mut in_string, mut escaped) = (Vec::with_capacity(json.len()), false, false);
    for &b in json {
        if in_string {
            in_string = escaped || b != b'"';
            escaped = !escaped && b == b'\\';
        } else if b == b'"' {
            in_string = true;
        } else if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            continue;
        }
        out.push(b);
    }
    out
}
