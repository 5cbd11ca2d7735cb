use serde_json::{json, Value};

use super::*;
use crate::llm::translate::EventTranslator;
use crate::llm::SseEvent;

fn translate(req: Value) -> Value {
    let out = request(&serde_json::to_vec(&req).unwrap()).unwrap();
    serde_json::from_slice(&out.body).unwrap()
}

#[test]
fn a_chat_request_becomes_a_messages_request() {
    let out = translate(json!({
        "model": "claude-sonnet-4-5",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
            {"role": "user", "content": [
                {"type": "text", "text": "What is in this picture?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}
            ]},
            {"role": "assistant", "content": "Let me check.", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "-3 C"},
            {"role": "user", "content": "And tomorrow?"}
        ],
        "max_completion_tokens": 300,
        "temperature": 0.2,
        "stop": "END",
        "user": "u-42",
        "seed": 7,
        "tools": [{"type": "function", "function": {"name": "weather", "description": "Weather now", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        "tool_choice": "required",
        "parallel_tool_calls": false
    }));
    assert_eq!(
        out,
        json!({
            "model": "claude-sonnet-4-5",
            "system": "Be brief.\n\nUse metric units.",
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "What is in this picture?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}
                ]},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "Let me check."},
                    {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Oslo"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "-3 C"},
                    {"type": "text", "text": "And tomorrow?"}
                ]}
            ],
            "max_tokens": 300,
            "temperature": 0.2,
            "stop_sequences": ["END"],
            "metadata": {"user_id": "u-42"},
            "tools": [{"name": "weather", "description": "Weather now", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true}
        })
    );
}

#[test]
fn defaults_streaming_and_tool_choices() {
    let req = json!({
        "model": "m", "messages": [{"role": "user", "content": "hi"}],
        "stream": true, "stream_options": {"include_usage": true},
        "tools": [{"type": "function", "function": {"name": "f"}}],
        "tool_choice": {"type": "function", "function": {"name": "f"}}
    });
    let out = request(&serde_json::to_vec(&req).unwrap()).unwrap();
    assert!(out.stream && out.include_usage);
    let body: Value = serde_json::from_slice(&out.body).unwrap();
    assert_eq!(body["max_tokens"], DEFAULT_MAX_TOKENS);
    assert_eq!(body["stream"], true);
    assert!(body.get("stream_options").is_none());
    assert_eq!(body["tool_choice"], json!({"type": "tool", "name": "f"}));
    assert_eq!(
        body["tools"][0]["input_schema"],
        json!({"type": "object", "properties": {}})
    );
    for (choice, want) in [("auto", "auto"), ("none", "none")] {
        let mut r = req.clone();
        r["tool_choice"] = choice.into();
        assert_eq!(translate(r)["tool_choice"]["type"], want);
    }
    let mut r = req.clone();
    r["stream_options"] = json!(null);
    let out = request(&serde_json::to_vec(&r).unwrap()).unwrap();
    assert!(out.stream && !out.include_usage);
}

#[test]
fn requests_messages_cannot_express_are_refused_with_the_field() {
    let cases = [
        (json!([1]), "not a JSON object"),
        (json!({"messages": []}), "`model`"),
        (json!({"model": "m"}), "`messages`"),
        (json!({"model": "m", "messages": [], "n": 2}), "`n`"),
        (
            json!({"model": "m", "messages": [{"role": "wizard", "content": "x"}]}),
            "`messages[0].role`",
        ),
        (
            json!({"model": "m", "messages": [{"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{oops"}}]}]}),
            "`messages[0].tool_calls[0]`.function.arguments",
        ),
        (
            json!({"model": "m", "messages": [{"role": "tool", "content": "x"}]}),
            "`messages[0].tool_call_id`",
        ),
        (
            json!({"model": "m", "messages": [], "tool_choice": "sometimes"}),
            "`tool_choice`",
        ),
    ];
    for (body, want) in cases {
        let err = request(&serde_json::to_vec(&body).unwrap()).unwrap_err();
        assert!(err.0.contains(want), "{body}: {err}");
    }
}

#[test]
fn a_messages_response_becomes_a_chat_completion() {
    let body = json!({
        "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "s"},
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Oslo"}}
        ],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 10, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 5, "output_tokens": 20}
    });
    let out: Value =
        serde_json::from_slice(&response(&serde_json::to_vec(&body).unwrap()).unwrap()).unwrap();
    assert_eq!(out["id"], "msg_01");
    assert_eq!(out["object"], "chat.completion");
    assert_eq!(out["model"], "claude-sonnet-4-5");
    let choice = &out["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], "Checking.");
    assert_eq!(
        choice["message"]["tool_calls"],
        json!([{"id": "toolu_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}}])
    );
    assert_eq!(
        out["usage"],
        json!({"prompt_tokens": 115, "completion_tokens": 20, "total_tokens": 135, "prompt_tokens_details": {"cached_tokens": 100}})
    );
    for (stop, want) in [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("refusal", "content_filter"),
    ] {
        assert_eq!(finish_reason(Some(stop)), want);
    }
    assert!(response(b"<html>").is_err());
}

fn ev(name: &str, data: Value) -> SseEvent {
    SseEvent {
        event: Some(name.into()),
        data: data.to_string(),
        ..SseEvent::default()
    }
}

/// The `data` of each event in `bytes` (`[DONE]` as the string).
fn datas(bytes: &[u8]) -> Vec<Value> {
    let text = std::str::from_utf8(bytes).unwrap();
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let data = e.strip_prefix("data: ").expect(e);
            serde_json::from_str(data).unwrap_or_else(|_| Value::String(data.into()))
        })
        .collect()
}

/// Anthropic's documented stream for a text answer followed by a tool call.
fn anthropic_stream() -> Vec<SseEvent> {
    vec![
        ev(
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "content": [], "stop_reason": null, "usage": {"input_tokens": 25, "cache_read_input_tokens": 3, "output_tokens": 1}}}),
        ),
        ev(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        ev("ping", json!({"type": "ping"})),
        ev(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}}),
        ),
        ev(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "lo"}}),
        ),
        ev(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ),
        ev(
            "content_block_start",
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {}}}),
        ),
        ev(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"city\":"}}),
        ),
        ev(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "\"Oslo\"}"}}),
        ),
        ev(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 1}),
        ),
        ev(
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": 17}}),
        ),
        ev("message_stop", json!({"type": "message_stop"})),
    ]
}

#[test]
fn a_messages_stream_becomes_chat_chunks_event_by_event() {
    let mut t = Events::new(true);
    let mut out = Vec::new();
    let mut per_event = Vec::new();
    for e in anthropic_stream() {
        let before = out.len();
        t.event(&e, &mut out);
        per_event.push(datas(&out[before..]).len());
    }
    t.finish(&mut out);
    // message_start, block start (empty text), ping, 2 text deltas, block stop, tool
    // start, 2 argument deltas, block stop, message_delta, message_stop (usage + DONE).
    assert_eq!(per_event, [1, 0, 0, 1, 1, 0, 1, 1, 1, 0, 1, 2]);
    let chunks = datas(&out);
    assert_eq!(chunks.len(), 9, "finish after message_stop adds nothing");
    for c in &chunks[..8] {
        assert_eq!(c["id"], "msg_1");
        assert_eq!(c["model"], "claude-sonnet-4-5");
        assert_eq!(c["object"], "chat.completion.chunk");
    }
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    assert_eq!(chunks[1]["choices"][0]["delta"]["content"], "Hel");
    assert_eq!(chunks[2]["choices"][0]["delta"]["content"], "lo");
    assert_eq!(
        chunks[3]["choices"][0]["delta"]["tool_calls"],
        json!([{"index": 0, "id": "toolu_1", "type": "function", "function": {"name": "weather", "arguments": ""}}])
    );
    let args: String = chunks[4..6]
        .iter()
        .map(|c| {
            c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(args, r#"{"city":"Oslo"}"#);
    assert_eq!(chunks[6]["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(chunks[7]["choices"], json!([]));
    assert_eq!(
        chunks[7]["usage"],
        json!({"prompt_tokens": 28, "completion_tokens": 17, "total_tokens": 45, "prompt_tokens_details": {"cached_tokens": 3}})
    );
    assert_eq!(chunks[8], "[DONE]");
}

#[test]
fn without_include_usage_no_usage_chunk_is_sent() {
    let mut t = Events::new(false);
    let mut out = Vec::new();
    for e in anthropic_stream() {
        t.event(&e, &mut out);
    }
    let chunks = datas(&out);
    assert!(chunks.iter().all(|c| c.get("usage").is_none()));
    assert_eq!(chunks.last().unwrap(), "[DONE]");
}

#[test]
fn errors_and_cut_streams_end_with_an_error_chunk_and_done() {
    let mut t = Events::new(false);
    let mut out = Vec::new();
    t.event(&anthropic_stream()[0], &mut out);
    t.event(
        &ev("error", json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})),
        &mut out,
    );
    t.event(&anthropic_stream()[3], &mut out);
    t.finish(&mut out);
    let chunks = datas(&out);
    assert_eq!(chunks.len(), 3, "nothing after the error: {chunks:?}");
    assert_eq!(chunks[1]["error"]["type"], "overloaded_error");
    assert_eq!(chunks[1]["error"]["message"], "Overloaded");
    assert_eq!(chunks[2], "[DONE]");

    let mut cut = Events::new(false);
    let mut out = Vec::new();
    for e in &anthropic_stream()[..4] {
        cut.event(e, &mut out);
    }
    cut.finish(&mut out);
    let chunks = datas(&out);
    assert!(chunks[2]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("message_stop"));
    assert_eq!(chunks[3], "[DONE]");

    // Unparsable data and unknown events are skipped.
    let mut t = Events::new(false);
    let mut out = Vec::new();
    t.event(
        &SseEvent {
            data: "{oops".into(),
            ..SseEvent::default()
        },
        &mut out,
    );
    t.event(
        &ev("something_new", json!({"type": "something_new"})),
        &mut out,
    );
    assert!(out.is_empty());
}
