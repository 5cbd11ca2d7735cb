//! Messages client, Chat upstream: requests, whole responses and streams, field by field.

use serde_json::{json, Value};

use super::*;
use crate::llm::translate::EventTranslator;
use crate::llm::SseEvent;

fn translate(request_json: Value) -> Value {
    let translated = request(&serde_json::to_vec(&request_json).unwrap()).unwrap();
    serde_json::from_slice(&translated.body).unwrap()
}

fn translate_err(body: &[u8]) -> String {
    request(body).unwrap_err().0
}

#[test]
fn system_string_and_blocks() {
    let out = translate(json!({
        "model": "m", "max_tokens": 10, "system": "be brief",
        "messages": [{"role": "user", "content": "hi"}],
    }));
    assert_eq!(
        out,
        json!({
            "model": "m", "max_tokens": 10,
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "hi"},
            ],
        })
    );
    let out = translate(json!({
        "model": "m",
        "system": [
            {"type": "text", "text": "one", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "two"},
        ],
        "messages": [],
    }));
    assert_eq!(
        out["messages"],
        json!([{"role": "system", "content": "one\n\ntwo"}])
    );
}

#[test]
fn user_text_and_images() {
    let out = translate(json!({
        "model": "m",
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "look"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAA="}},
                {"type": "image", "source": {"type": "url", "url": "https://x/y.jpg"}},
            ]},
            {"role": "user", "content": [
                {"type": "text", "text": "a"},
                {"type": "text", "text": "b"},
            ]},
        ],
    }));
    assert_eq!(
        out["messages"],
        json!([
            {"role": "user", "content": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA="}},
                {"type": "image_url", "image_url": {"url": "https://x/y.jpg"}},
            ]},
            {"role": "user", "content": "a\nb"},
        ])
    );
}

#[test]
fn image_with_a_file_source_is_refused() {
    let body = json!({
        "model": "m",
        "messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "file", "file_id": "f"}},
        ]}],
    });
    let err = translate_err(&serde_json::to_vec(&body).unwrap());
    assert!(err.contains("`file`"), "{err}");
}

fn err_of(messages: Value) -> String {
    let body = json!({"model": "m", "messages": messages});
    translate_err(&serde_json::to_vec(&body).unwrap())
}

#[test]
fn user_blocks_chat_cannot_carry_are_refused() {
    let err = err_of(json!([
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": [
            {"type": "text", "text": "summarize"},
            {"type": "document", "source": {
                "type": "base64", "media_type": "application/pdf", "data": "JVBERi0=",
            }},
        ]},
    ]));
    assert_eq!(
        err,
        "`messages[2].content[1]`: a \"document\" block cannot be sent to this route's \
         provider (OpenAI Chat Completions)"
    );
    let err = err_of(json!([{"role": "user", "content": [
        {"type": "search_result", "source": "s", "title": "t", "content": []},
    ]}]));
    assert_eq!(
        err,
        "`messages[0].content[0]`: a \"search_result\" block cannot be sent to this \
         route's provider (OpenAI Chat Completions)"
    );
    let err = err_of(json!([{"role": "user", "content": [{"text": "no type"}]}]));
    assert_eq!(err, "`messages[0].content[0].type` must be a string");
}

#[test]
fn tool_result_content_other_than_text_is_refused() {
    let err = err_of(json!([
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "shot", "input": {}},
        ]},
        {"role": "user", "content": [
            {"type": "text", "text": "here"},
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": [
                {"type": "text", "text": "the screen:"},
                {"type": "image", "source": {
                    "type": "base64", "media_type": "image/png", "data": "AAA=",
                }},
            ]},
        ]},
    ]));
    assert_eq!(
        err,
        "`messages[1].content[1].content[1]`: an \"image\" block cannot be sent to this \
         route's provider (OpenAI Chat Completions)"
    );
}

#[test]
fn assistant_text_tool_use_and_tool_results() {
    let out = translate(json!({
        "model": "m",
        "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "s"},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "get", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_2", "name": "time", "input": {}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "is_error": true, "content": [
                    {"type": "text", "text": "no"},
                    {"type": "text", "text": "clock"},
                ]},
                {"type": "text", "text": "thanks"},
            ]},
            {"role": "assistant", "content": [
                {"type": "redacted_thinking", "data": "x"},
                {"type": "tool_use", "id": "toolu_3", "name": "get", "input": {"city": "Rome"}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_3", "content": "rain"},
            ]},
        ],
    }));
    assert_eq!(
        out["messages"],
        json!([
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "toolu_1", "type": "function",
                 "function": {"name": "get", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "toolu_2", "type": "function",
                 "function": {"name": "time", "arguments": "{}"}},
            ]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
            {"role": "tool", "tool_call_id": "toolu_2", "content": "no\nclock"},
            {"role": "user", "content": "thanks"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "toolu_3", "type": "function",
                 "function": {"name": "get", "arguments": "{\"city\":\"Rome\"}"}},
            ]},
            {"role": "tool", "tool_call_id": "toolu_3", "content": "rain"},
        ])
    );
}

fn with_tool_choice(choice: Value) -> Value {
    translate(json!({
        "model": "m",
        "messages": [],
        "tools": [
            {"name": "get", "description": "Get it", "input_schema": {"type": "object"}},
            {"type": "custom", "name": "put", "input_schema": {"type": "object", "properties": {}}},
            {"type": "web_search_20250305", "name": "web_search", "max_uses": 3},
        ],
        "tool_choice": choice,
    }))
}

#[test]
fn tools_and_every_tool_choice() {
    let out = with_tool_choice(json!({"type": "auto"}));
    assert_eq!(
        out["tools"],
        json!([
            {"type": "function", "function": {
                "name": "get", "description": "Get it", "parameters": {"type": "object"}}},
            {"type": "function", "function": {
                "name": "put", "parameters": {"type": "object", "properties": {}}}},
        ])
    );
    assert_eq!(out["tool_choice"], json!("auto"));
    assert_eq!(out.get("parallel_tool_calls"), None);
    assert_eq!(
        with_tool_choice(json!({"type": "any"}))["tool_choice"],
        json!("required")
    );
    assert_eq!(
        with_tool_choice(json!({"type": "none"}))["tool_choice"],
        json!("none")
    );
    assert_eq!(
        with_tool_choice(json!({"type": "tool", "name": "put"}))["tool_choice"],
        json!({"type": "function", "function": {"name": "put"}})
    );
    let out = with_tool_choice(json!({"type": "any", "disable_parallel_tool_use": true}));
    assert_eq!(out["parallel_tool_calls"], json!(false));
    let out = with_tool_choice(json!({"type": "auto", "disable_parallel_tool_use": false}));
    assert_eq!(out.get("parallel_tool_calls"), None);
}

#[test]
fn sampling_stop_user_and_stream() {
    let body = json!({
        "model": "m", "max_tokens": 100, "temperature": 0.5, "top_p": 0.9, "top_k": 40,
        "stop_sequences": ["END"], "metadata": {"user_id": "u-1"},
        "stream": true, "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": [{"role": "user", "content": "hi"}],
    });
    let translated = request(&serde_json::to_vec(&body).unwrap()).unwrap();
    assert!(translated.stream);
    assert!(!translated.include_usage);
    let out: Value = serde_json::from_slice(&translated.body).unwrap();
    assert_eq!(
        out,
        json!({
            "model": "m", "max_tokens": 100, "temperature": 0.5, "top_p": 0.9,
            "stop": ["END"], "user": "u-1",
            "stream": true, "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "hi"}],
        })
    );
    let plain = request(br#"{"model":"m","messages":[]}"#).unwrap();
    assert!(!plain.stream);
    let out: Value = serde_json::from_slice(&plain.body).unwrap();
    assert_eq!(out, json!({"model": "m", "messages": []}));
}

#[test]
fn malformed_requests_are_errors() {
    assert_eq!(
        translate_err(b"not json"),
        "the request body is not a JSON object"
    );
    assert_eq!(
        translate_err(b"[1]"),
        "the request body is not a JSON object"
    );
    assert_eq!(
        translate_err(br#"{"messages":[]}"#),
        "`model` must be a string"
    );
    assert_eq!(
        translate_err(br#"{"model":"m"}"#),
        "`messages` must be an array"
    );
    assert_eq!(
        translate_err(br#"{"model":"m","messages":{}}"#),
        "`messages` must be an array"
    );
    let err = translate_err(br#"{"model":"m","messages":[{"role":"system","content":"x"}]}"#);
    assert!(err.contains("`messages[0].role`"), "{err}");
    let err = translate_err(br#"{"model":"m","messages":[{"role":"user","content":3}]}"#);
    assert!(err.contains("`messages[0].content`"), "{err}");
    let err = translate_err(br#"{"model":"m","messages":[7]}"#);
    assert!(err.contains("`messages[0].role`"), "{err}");
    let err = translate_err(br#"{"model":"m","messages":[],"system":5}"#);
    assert!(err.contains("`system`"), "{err}");
    let err = translate_err(
        br#"{"model":"m","messages":[],"tools":[{"name":"a","input_schema":{}}],"tool_choice":{"type":"x"}}"#,
    );
    assert!(err.contains("`tool_choice.type`"), "{err}");
}

#[test]
fn whole_response_text_tool_calls_and_cached_usage() {
    let body = json!({
        "id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-x",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": "Let me check.",
            "tool_calls": [
                {"id": "call_a", "type": "function",
                 "function": {"name": "get", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_b", "type": "function",
                 "function": {"name": "time", "arguments": "{not json"}},
            ],
        }}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120,
                  "prompt_tokens_details": {"cached_tokens": 60}},
    });
    let out: Value =
        serde_json::from_slice(&response(&serde_json::to_vec(&body).unwrap()).unwrap()).unwrap();
    assert_eq!(
        out,
        json!({
            "id": "chatcmpl-1", "type": "message", "role": "assistant", "model": "gpt-x",
            "content": [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "call_a", "name": "get", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "call_b", "name": "time", "input": {}},
            ],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 40, "output_tokens": 20,
                      "cache_read_input_tokens": 60, "cache_creation_input_tokens": 0},
        })
    );
}

#[test]
fn whole_response_finish_reasons_and_odd_shapes() {
    let reason = |finish: Value| {
        let body = json!({"id": "x", "model": "m", "choices": [
            {"finish_reason": finish, "message": {"content": ""}}]});
        let out: Value =
            serde_json::from_slice(&response(&serde_json::to_vec(&body).unwrap()).unwrap())
                .unwrap();
        assert_eq!(out["content"], json!([]));
        out["stop_reason"].clone()
    };
    assert_eq!(reason(json!("stop")), "end_turn");
    assert_eq!(reason(json!("length")), "max_tokens");
    assert_eq!(reason(json!("tool_calls")), "tool_use");
    assert_eq!(reason(json!("function_call")), "tool_use");
    assert_eq!(reason(json!("content_filter")), "refusal");
    assert_eq!(reason(json!(null)), "end_turn");
    assert_eq!(reason(json!("weird")), "end_turn");
    // Cached tokens over prompt tokens saturate; no choices is an empty message.
    let body = br#"{"id":"x","model":"m","choices":[],
        "usage":{"prompt_tokens":1,"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":5}}}"#;
    let out: Value = serde_json::from_slice(&response(body).unwrap()).unwrap();
    assert_eq!(out["usage"]["input_tokens"], 0);
    assert_eq!(out["content"], json!([]));
    assert!(response(b"<html>").is_err());
    assert!(response(b"[]").is_err());
}

fn data(data: &str) -> SseEvent {
    SseEvent {
        event: None,
        data: data.to_owned(),
        id: None,
        retry: None,
    }
}

/// The (name, data) pairs of SSE bytes written by `write_event`.
fn parse_events(bytes: &[u8]) -> Vec<(String, Value)> {
    let text = std::str::from_utf8(bytes).unwrap();
    assert!(text.is_empty() || text.ends_with("\n\n"), "{text:?}");
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let (name, data) = e.split_once('\n').unwrap();
            let name = name.strip_prefix("event: ").unwrap().to_owned();
            let data = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
            (name, data)
        })
        .collect()
}

fn run(chunks: &[&str], finish: bool) -> Vec<(String, Value)> {
    let mut events = Events::new();
    let mut out = Vec::new();
    for chunk in chunks {
        events.event(&data(chunk), &mut out);
    }
    if finish {
        events.finish(&mut out);
    }
    parse_events(&out)
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(name, _)| name.as_str()).collect()
}

const ROLE: &str = r#"{"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"qwen","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}"#;
const TEXT_1: &str = r#"{"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"qwen","choices":[{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null}]}"#;
const TEXT_2: &str = r#"{"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"qwen","choices":[{"index":0,"delta":{"content":" there."},"logprobs":null,"finish_reason":null}]}"#;
const TOOL_1: &str = r#"{"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"qwen","choices":[{"index":0,"delta":{"tool_calls":[{"id":"chatcmpl-tool-abc","type":"function","index":0,"function":{"name":"get_weather","arguments":""}}]},"logprobs":null,"finish_reason":null}]}"#;
const TOOL_2: &str = r#"{"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"qwen","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\": "}}]},"logprobs":null,"finish_reason":null}]}"#;
const TOOL_3: &str = r#"{"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"qwen","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]},"logprobs":null,"finish_reason":null}]}"#;
const FINISH: &str = r#"{"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"qwen","choices":[{"index":0,"delta":{"content":""},"logprobs":null,"finish_reason":"tool_calls","stop_reason":null}]}"#;
const USAGE: &str = r#"{"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"qwen","choices":[],"usage":{"prompt_tokens":50,"total_tokens":62,"completion_tokens":12,"prompt_tokens_details":{"cached_tokens":32}}}"#;

#[test]
fn stream_text_then_tool_call() {
    let events = run(
        &[
            ROLE, TEXT_1, TEXT_2, TOOL_1, TOOL_2, TOOL_3, FINISH, USAGE, "[DONE]",
        ],
        true,
    );
    assert_eq!(
        names(&events),
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
    );
    let data: Vec<&Value> = events.iter().map(|(_, d)| d).collect();
    assert_eq!(
        *data[0],
        json!({"type": "message_start", "message": {
            "id": "chatcmpl-9", "type": "message", "role": "assistant", "model": "qwen",
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 0, "output_tokens": 0}}})
    );
    assert_eq!(
        *data[1],
        json!({"type": "content_block_start", "index": 0,
               "content_block": {"type": "text", "text": ""}})
    );
    assert_eq!(
        *data[2],
        json!({"type": "content_block_delta", "index": 0,
               "delta": {"type": "text_delta", "text": "Hello"}})
    );
    assert_eq!(data[3]["delta"]["text"], " there.");
    assert_eq!(*data[4], json!({"type": "content_block_stop", "index": 0}));
    assert_eq!(
        *data[5],
        json!({"type": "content_block_start", "index": 1, "content_block": {
            "type": "tool_use", "id": "chatcmpl-tool-abc", "name": "get_weather", "input": {}}})
    );
    assert_eq!(
        *data[6],
        json!({"type": "content_block_delta", "index": 1,
               "delta": {"type": "input_json_delta", "partial_json": "{\"city\": "}})
    );
    assert_eq!(data[7]["delta"]["partial_json"], "\"Paris\"}");
    assert_eq!(data[7]["index"], 1);
    assert_eq!(*data[8], json!({"type": "content_block_stop", "index": 1}));
    assert_eq!(
        *data[9],
        json!({"type": "message_delta",
               "delta": {"stop_reason": "tool_use", "stop_sequence": null},
               "usage": {"input_tokens": 18, "output_tokens": 12, "cache_read_input_tokens": 32}})
    );
    assert_eq!(*data[10], json!({"type": "message_stop"}));
}

#[test]
fn stream_two_tool_calls_in_one_chunk() {
    let chunk = r#"{"id":"c","model":"g","choices":[{"index":0,"delta":{"tool_calls":[
        {"index":0,"id":"a","type":"function","function":{"name":"f","arguments":"{}"}},
        {"index":1,"id":"b","type":"function","function":{"name":"g","arguments":"{\"x\":1}"}}
    ]},"finish_reason":"tool_calls"}]}"#;
    let events = run(&[chunk, "[DONE]"], false);
    assert_eq!(
        names(&events),
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
    );
    assert_eq!(events[1].1["content_block"]["id"], "a");
    assert_eq!(events[4].1["index"], 1);
    assert_eq!(events[4].1["content_block"]["name"], "g");
    assert_eq!(events[5].1["delta"]["partial_json"], "{\"x\":1}");
    assert_eq!(events[7].1["usage"]["output_tokens"], 0);
}

#[test]
fn finish_without_done_closes_the_stream() {
    let events = run(&[ROLE, TEXT_1], true);
    assert_eq!(
        names(&events),
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
    );
    assert_eq!(events[4].1["delta"]["stop_reason"], "end_turn");
}

#[test]
fn finish_after_done_adds_nothing() {
    let mut events = Events::new();
    let mut out = Vec::new();
    for chunk in [ROLE, TEXT_1, FINISH, "[DONE]"] {
        events.event(&data(chunk), &mut out);
    }
    let len = out.len();
    assert_eq!(names(&parse_events(&out)).last(), Some(&"message_stop"));
    events.event(&data(TEXT_2), &mut out);
    events.event(&data("[DONE]"), &mut out);
    events.finish(&mut out);
    assert_eq!(out.len(), len);
}

#[test]
fn mid_stream_error_chunk() {
    let error_chunk = r#"{"error":{"object":"error","message":"model overloaded","type":"InternalServerError","code":500}}"#;
    let events = run(&[ROLE, TEXT_1, error_chunk, TEXT_2, "[DONE]"], true);
    assert_eq!(
        names(&events),
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "error"
        ]
    );
    assert_eq!(
        events[3].1,
        json!({"type": "error", "error": {"type": "api_error", "message": "model overloaded"}})
    );
}

#[test]
fn empty_stream_is_an_error_event() {
    let events = run(&[], true);
    assert_eq!(names(&events), ["error"]);
    assert_eq!(
        events[0].1["error"]["message"],
        "the upstream stream ended before any event"
    );
}

#[test]
fn odd_events_are_skipped() {
    let odd = [
        "",
        "not json",
        "[1,2]",
        "42",
        r#"{"choices":"x"}"#,
        r#"{"choices":[{"delta":{"tool_calls":[{"index":"zero"}],"content":7}}]}"#,
        r#"{"choices":[{"delta":null,"finish_reason":5}],"usage":null}"#,
    ];
    let events = run(&odd, true);
    // The first object chunk starts the message; nothing else breaks it.
    assert_eq!(
        names(&events),
        ["message_start", "message_delta", "message_stop"]
    );
}
