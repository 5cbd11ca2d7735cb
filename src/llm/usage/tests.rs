//! Usage and per-event facts, event by event and from whole JSON bodies.

use super::*;

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/llm/",
            $name
        ))
    };
}

fn data(data: &str) -> SseEvent {
    SseEvent {
        event: None,
        data: data.to_owned(),
        id: None,
        retry: None,
    }
}

fn usage(input: u64, output: u64, cached: u64, creation: u64, reasoning: u64, total: u64) -> Usage {
    Usage {
        input_tokens: input,
        output_tokens: output,
        cached_input_tokens: cached,
        cache_creation_input_tokens: creation,
        reasoning_tokens: reasoning,
        total_tokens: total,
    }
}

fn json(api: Api, body: &[u8]) -> ResponseTracker {
    let mut t = ResponseTracker::new(api);
    t.observe_json(body).unwrap();
    assert!(t.is_done());
    t
}

#[test]
fn whole_json_bodies() {
    let t = json(Api::ChatCompletions, fixture!("chat.json"));
    assert_eq!(t.usage(), Some(usage(19, 10, 0, 0, 0, 29)));
    assert_eq!(t.model(), Some("gpt-4.1-2025-04-14"));
    let t = json(Api::Completions, fixture!("completions.json"));
    assert_eq!(t.usage(), Some(usage(5, 7, 0, 0, 0, 12)));
    let t = json(Api::Embeddings, fixture!("embeddings.json"));
    assert_eq!(t.usage(), Some(usage(8, 0, 0, 0, 0, 8)));
    assert_eq!(t.model(), Some("text-embedding-3-small"));
    let t = json(Api::Responses, fixture!("responses.json"));
    assert_eq!(t.usage(), Some(usage(328, 52, 256, 0, 20, 380)));
    // Anthropic: input_tokens excludes cache reads, which are added back.
    let t = json(Api::Messages, fixture!("anthropic.json"));
    assert_eq!(
        t.usage(),
        Some(usage(2095 + 1800, 503, 1800, 0, 0, 2095 + 1800 + 503))
    );
    assert_eq!(t.model(), Some("claude-sonnet-4-5-20250929"));
}

#[test]
fn whole_json_without_usage_or_broken() {
    let t = json(
        Api::ChatCompletions,
        br#"{"id":"x","model":"m","choices":[]}"#,
    );
    assert_eq!(t.usage(), None);
    let t = json(
        Api::Messages,
        br#"{"type":"error","error":{"type":"overloaded_error"}}"#,
    );
    assert_eq!((t.usage(), t.model()), (None, None));
    let mut t = ResponseTracker::new(Api::Responses);
    let err = t.observe_json(b"{\"usage\":").unwrap_err().to_string();
    assert!(
        err.starts_with("invalid responses response body: EOF"),
        "{err}"
    );
    // A count of the wrong type is read, and makes the usage invalid (not the body).
    t.observe_json(br#"{"usage":{"input_tokens":-1}}"#).unwrap();
    assert_eq!(t.usage(), None);
    assert_eq!(t.usage_invalid(), Some(UsageInvalid::NotACount));
}

#[test]
fn total_is_computed_when_absent_or_zero() {
    let t = json(
        Api::ChatCompletions,
        br#"{"usage":{"prompt_tokens":3,"completion_tokens":4}}"#,
    );
    assert_eq!(t.usage().unwrap().total_tokens, 7);
    let t = json(
        Api::ChatCompletions,
        br#"{"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":0}}"#,
    );
    assert_eq!(t.usage().unwrap().total_tokens, 7);
    // OpenAI's cache writes (cache_write_tokens) are kept.
    let t = json(
        Api::Responses,
        br#"{"usage":{"input_tokens":10,"output_tokens":1,"input_tokens_details":{"cached_tokens":2,"cache_write_tokens":5}}}"#,
    );
    assert_eq!(t.usage(), Some(usage(10, 1, 2, 5, 0, 11)));
}

#[test]
fn openai_chunks() {
    let mut t = ResponseTracker::new(Api::ChatCompletions);
    let role = t.observe_event(&data(
        r#"{"model":"gpt-4o","choices":[{"index":0,"delta":{"role":"assistant","content":""}}],"usage":null}"#,
    ));
    assert_eq!(
        role,
        EventInfo::default(),
        "an empty first delta is not content"
    );
    let first = t.observe_event(&data(r#"{"choices":[{"delta":{"content":"Hi"}}]}"#));
    assert!(first.has_content && first.first_content);
    assert_eq!(first.output_text.as_deref(), Some("Hi"));
    let second = t.observe_event(&data(r#"{"choices":[{"delta":{"content":"!"}}]}"#));
    assert!(second.has_content && !second.first_content);
    let tool = t.observe_event(&data(
        r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{"}}]}}]}"#,
    ));
    assert!(tool.has_content && tool.output_text.is_none());
    let reasoning = t.observe_event(&data(
        r#"{"choices":[{"delta":{"reasoning_content":"hmm"}}]}"#,
    ));
    assert!(reasoning.has_content && reasoning.output_text.is_none());

    // Usage on a content chunk, then a later one: the latest wins, whole.
    let on_content = t.observe_event(&data(
        r#"{"choices":[{"delta":{"content":"."}}],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7,"prompt_tokens_details":{"cached_tokens":4}}}"#,
    ));
    assert!(on_content.has_usage && !on_content.usage_only);
    assert_eq!(t.usage(), Some(usage(5, 2, 4, 0, 0, 7)));
    let last = t.observe_event(&data(
        r#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8,"completion_tokens_details":{"reasoning_tokens":1}}}"#,
    ));
    assert!(last.has_usage && last.usage_only && !last.has_content);
    assert_eq!(t.usage(), Some(usage(5, 3, 0, 0, 1, 8)));
    assert!(!t.is_done());
    let done = t.observe_event(&data("[DONE]"));
    assert!(done.done && t.is_done());
    assert_eq!(t.model(), Some("gpt-4o"));
    assert_eq!(t.malformed_events(), 0);
}

#[test]
fn completions_chunks_carry_text() {
    let mut t = ResponseTracker::new(Api::Completions);
    let info = t.observe_event(&data(
        r#"{"choices":[{"text":" is","index":0}],"model":"gpt-3.5-turbo-instruct"}"#,
    ));
    assert_eq!(info.output_text.as_deref(), Some(" is"));
}

#[test]
fn responses_events() {
    let mut t = ResponseTracker::new(Api::Responses);
    let created = t.observe_event(&data(
        r#"{"type":"response.created","response":{"model":"gpt-4.1","usage":null}}"#,
    ));
    assert!(!created.has_usage && !created.done);
    assert_eq!(t.model(), Some("gpt-4.1"));
    let text = t.observe_event(&data(
        r#"{"type":"response.output_text.delta","delta":"Hi"}"#,
    ));
    assert!(text.first_content);
    assert_eq!(text.output_text.as_deref(), Some("Hi"));
    let args = t.observe_event(&data(
        r#"{"type":"response.function_call_arguments.delta","delta":"{\"a\""}"#,
    ));
    assert!(args.has_content && args.output_text.is_none());
    let done_text = t.observe_event(&data(r#"{"type":"response.output_text.done","text":"Hi"}"#));
    assert!(!done_text.has_content);
    let odd = t.observe_event(&data(r#"{"type":"response.future.delta","delta":{"x":1}}"#));
    assert_eq!(odd, EventInfo::default());
    let completed = t.observe_event(&data(
        r#"{"type":"response.completed","response":{"model":"gpt-4.1-2025-04-14","usage":{"input_tokens":9,"output_tokens":2,"total_tokens":11}}}"#,
    ));
    assert!(completed.done && completed.has_usage);
    assert_eq!(t.usage(), Some(usage(9, 2, 0, 0, 0, 11)));
    assert_eq!(t.model(), Some("gpt-4.1-2025-04-14"));

    let mut t = ResponseTracker::new(Api::Responses);
    let incomplete = t.observe_event(&data(
        r#"{"type":"response.incomplete","response":{"usage":{"input_tokens":9,"output_tokens":100}}}"#,
    ));
    assert!(incomplete.done);
    assert_eq!(t.usage().unwrap().total_tokens, 109);
}

#[test]
fn anthropic_merges_field_by_field() {
    let mut t = ResponseTracker::new(Api::Messages);
    t.observe_event(&data(
        r#"{"type":"message_start","message":{"model":"claude-sonnet-4-5","usage":{"input_tokens":10,"cache_read_input_tokens":100,"cache_creation_input_tokens":0,"output_tokens":1}}}"#,
    ));
    assert_eq!(t.usage(), Some(usage(110, 1, 100, 0, 0, 111)));
    let start = t.observe_event(&data(
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
    ));
    assert!(!start.has_content);
    let text = t.observe_event(&data(
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hey"}}"#,
    ));
    assert!(text.first_content);
    assert_eq!(text.output_text.as_deref(), Some("Hey"));
    let tool = t.observe_event(&data(
        r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"t","name":"f","input":{}}}"#,
    ));
    assert!(tool.has_content && tool.output_text.is_none());
    let thinking = t.observe_event(&data(
        r#"{"type":"content_block_delta","index":2,"delta":{"type":"thinking_delta","thinking":"so"}}"#,
    ));
    assert!(thinking.has_content && thinking.output_text.is_none());
    // Zeros do not erase what message_start said; non-zero values replace.
    let delta = t.observe_event(&data(
        r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"input_tokens":0,"cache_creation_input_tokens":7,"output_tokens":42}}"#,
    ));
    assert!(delta.has_usage && !delta.usage_only);
    assert_eq!(t.usage(), Some(usage(117, 42, 100, 7, 0, 159)));
    assert!(t.observe_event(&data(r#"{"type":"message_stop"}"#)).done);
    assert_eq!(t.model(), Some("claude-sonnet-4-5"));
}

#[test]
fn unknown_events_are_ignored_and_junk_is_counted() {
    for api in [Api::ChatCompletions, Api::Responses, Api::Messages] {
        let mut t = ResponseTracker::new(api);
        assert_eq!(
            t.observe_event(&data(r#"{"type":"ping"}"#)),
            EventInfo::default()
        );
        assert_eq!(
            t.observe_event(&data(r#"{"novel":{"deep":[1,2]}}"#)),
            EventInfo::default()
        );
        assert_eq!(t.malformed_events(), 0);
        assert_eq!(t.observe_event(&data("not json")), EventInfo::default());
        let bad_usage = match api {
            Api::Responses => r#"{"response":{"usage":"many"}}"#,
            _ => r#"{"usage":"many"}"#,
        };
        // Usage that is not an object is invalid usage, not a malformed event.
        assert!(t.observe_event(&data(bad_usage)).has_usage);
        assert_eq!(t.malformed_events(), 1);
        assert_eq!(t.usage(), None);
        assert_eq!(t.usage_invalid(), Some(UsageInvalid::NotAnObject));
    }
}

// === validation ===

fn invalid_json(api: Api, body: &str) -> Option<UsageInvalid> {
    let t = json(api, body.as_bytes());
    assert_eq!(t.usage(), None, "{body}");
    t.usage_invalid()
}

#[test]
fn usage_that_is_not_an_object_is_not_read_by_position() {
    use UsageInvalid::*;
    let chat = Api::ChatCompletions;
    assert_eq!(
        invalid_json(chat, r#"{"usage":[1,2,3]}"#),
        Some(NotAnObject)
    );
    assert_eq!(invalid_json(chat, r#"{"usage":"lots"}"#), Some(NotAnObject));
    assert_eq!(invalid_json(chat, r#"{"usage":42}"#), Some(NotAnObject));
    assert_eq!(
        invalid_json(
            chat,
            r#"{"usage":{"prompt_tokens":5,"prompt_tokens_details":[4]}}"#
        ),
        Some(NotAnObject)
    );
    assert_eq!(
        invalid_json(Api::Messages, r#"{"usage":[10,20]}"#),
        Some(NotAnObject)
    );
}

#[test]
fn counts_must_be_non_negative_integers_in_range() {
    use UsageInvalid::*;
    let chat = Api::ChatCompletions;
    for (body, why) in [
        (r#"{"usage":{"prompt_tokens":"5"}}"#, NotACount),
        (r#"{"usage":{"prompt_tokens":-1}}"#, NotACount),
        (r#"{"usage":{"completion_tokens":1.5}}"#, NotACount),
        (r#"{"usage":{"total_tokens":true}}"#, NotACount),
        (r#"{"usage":{"prompt_tokens":{"n":1}}}"#, NotACount),
        (
            r#"{"usage":{"prompt_tokens":18446744073709551615}}"#,
            OutOfRange,
        ),
        (
            r#"{"usage":{"prompt_tokens":1,"completion_tokens":1000000001}}"#,
            OutOfRange,
        ),
    ] {
        assert_eq!(invalid_json(chat, body), Some(why), "{body}");
    }
    let anthropic =
        r#"{"usage":{"input_tokens":1,"cache_read_input_tokens":18446744073709551615}}"#;
    assert_eq!(invalid_json(Api::Messages, anthropic), Some(OutOfRange));
    // At the bound exactly, and `null` counts (absent), are fine.
    let t = json(
        chat,
        br#"{"usage":{"prompt_tokens":1000000000,"completion_tokens":null,"prompt_tokens_details":null}}"#,
    );
    assert_eq!(t.usage_invalid(), None);
    assert_eq!(
        t.usage(),
        Some(usage(1_000_000_000, 0, 0, 0, 0, 1_000_000_000))
    );
}

#[test]
fn cached_over_input_or_reasoning_over_output_is_inconsistent() {
    use UsageInvalid::*;
    for body in [
        r#"{"usage":{"prompt_tokens":5,"prompt_tokens_details":{"cached_tokens":6}}}"#,
        r#"{"usage":{"input_tokens":5,"input_tokens_details":{"cached_tokens":3,"cache_write_tokens":3}}}"#,
        r#"{"usage":{"output_tokens":5,"output_tokens_details":{"reasoning_tokens":9}}}"#,
    ] {
        assert_eq!(
            invalid_json(Api::Responses, body),
            Some(Inconsistent),
            "{body}"
        );
    }
    // Anthropic's input excludes its cache counts: a larger cache read is normal.
    let t = json(
        Api::Messages,
        br#"{"usage":{"input_tokens":5,"cache_read_input_tokens":100,"output_tokens":1}}"#,
    );
    assert_eq!(t.usage(), Some(usage(105, 1, 100, 0, 0, 106)));
}

#[test]
fn one_invalid_usage_object_makes_the_stream_usage_invalid() {
    let mut t = ResponseTracker::new(Api::ChatCompletions);
    t.observe_event(&data(
        r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4}}"#,
    ));
    assert_eq!(t.usage(), Some(usage(3, 4, 0, 0, 0, 7)));
    let info = t.observe_event(&data(r#"{"choices":[],"usage":[1,2,3]}"#));
    assert!(info.has_usage && info.usage_only);
    assert_eq!(t.malformed_events(), 0);
    assert_eq!(t.usage(), None);
    assert_eq!(t.usage_invalid(), Some(UsageInvalid::NotAnObject));
    // A later valid object does not undo it.
    t.observe_event(&data(r#"{"choices":[],"usage":{"prompt_tokens":3}}"#));
    assert_eq!(t.usage(), None);
}
