use super::*;

/// Events of every API in their usual shapes, and shapes meant to trip a reader:
/// duplicate keys, escaped keys, fields of other types, other top-level values.
const EVENTS: &[&str] = &[
    r#"{"id":"c","object":"chat.completion.chunk","model":"gpt-4o","choices":[{"index":0,"delta":{"content":"tok0 "}}]}"#,
    r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#,
    r#"{"choices":[{"index":1,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":3}}"#,
    r#"{"choices":[{"delta":{"content":"a"}},{"index":5,"delta":{"content":"b\n\"c\""}}]}"#,
    r#"{"choices":[],"usage":{"prompt_tokens":1010,"completion_tokens":50,"total_tokens":1060}}"#,
    r#"{"choices":[{"index":0,"text":"hello","finish_reason":null}]}"#,
    r#"{"choices":[{"index":"0","delta":{"content":1}},{"index":-1,"delta":[]},{"index":2.0},7,null]}"#,
    r#"{"choices":[{"index":0,"delta":{"content":"x"}}],"choices":[{"index":3,"delta":{"content":"y"}}]}"#,
    r#"{"choices":[{"index":0,"delta":{"content":"x"}}],"choices":{}}"#,
    r#"{"choices":[{"index":0,"index":9,"delta":{"content":"x","content":"z"},"delta":{"content":"w"}}]}"#,
    r#"{"cho\u0069ces":[{"index":0,"delta":{"c\u006fntent":"esc \u00e9\ud83d\ude00"},"finish_reason":"length"}]}"#,
    r#"{"type":"response.output_text.delta","output_index":1,"content_index":2,"delta":"hi"}"#,
    r#"{"type":"response.output_text.done","output_index":1,"content_index":2,"text":"hi"}"#,
    r#"{"type":"response.completed","response":{"usage":{"input_tokens":1}}}"#,
    r#"{"type":"response.output_text.delta","delta":{"text":"no"},"type":"response.created"}"#,
    r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
    r#"{"type":"content_block_start","index":2,"content_block":{"type":"text","text":"pre"}}"#,
    r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"tok"}}"#,
    r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{"}}"#,
    r#"{"type":"content_block_stop","index":0}"#,
    r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":5}}"#,
    r#"{"type":"message_stop"}"#,
    r#"{"type":7,"index":{"a":[1,2,{"b":null}]},"delta":"s","content_block":[]}"#,
    r#"[{"choices":[{"delta":{"content":"in an array"}}]}]"#,
    r#""a string""#,
    "null",
    "  {\n \"choices\" : [ { \"delta\" : { \"content\" : \"spaced\" } } ] }\n",
    "{}",
];

#[test]
fn the_skimmed_reading_is_the_value_reading() {
    for event in EVENTS {
        check_readings_agree(event);
        for api in [Api::ChatCompletions, Api::Responses, Api::Messages] {
            assert!(
                skim(api, event).is_some(),
                "{api:?} left to serde_json: {event}"
            );
        }
    }
}

#[test]
fn text_that_is_not_json_has_no_reading() {
    for bad in [
        "",
        "{",
        "[DONE]",
        "{\"choices\":[}",
        "{\"a\":1}x",
        "{\"a\":\"\\ud800\"}",
    ] {
        check_readings_agree(bad);
        assert!(parse(Api::ChatCompletions, bad).is_none(), "{bad}");
    }
}

#[test]
fn deep_events_are_read_as_values() {
    let deep = format!(
        r#"{{"x":{}1{},"choices":[{{"delta":{{"content":"d"}}}}]}}"#,
        "[".repeat(120),
        "]".repeat(120)
    );
    assert!(skim(Api::ChatCompletions, &deep).is_none());
    let parsed = parse(Api::ChatCompletions, &deep).unwrap();
    assert_eq!(parsed.slots.len(), 1);
    assert_eq!(parsed.slots[0].text, "d");
}

#[test]
fn common_texts_are_borrowed_from_the_event() {
    let parsed = parse(Api::ChatCompletions, EVENTS[0]).unwrap();
    assert!(matches!(parsed.slots[0].text, Cow::Borrowed("tok0 ")));
    assert!(matches!(parsed.slots[0].path, Cow::Borrowed(_)));
    let parsed = parse(Api::Messages, EVENTS[17]).unwrap();
    assert!(matches!(parsed.slots[0].text, Cow::Borrowed("tok")));
}

#[test]
fn meanings_per_api() {
    let p = parse(Api::ChatCompletions, EVENTS[3]).unwrap();
    let keys: Vec<_> = p
        .slots
        .iter()
        .map(|s| (s.key, s.text.to_string()))
        .collect();
    assert_eq!(
        keys,
        [((0, 0), "a".to_owned()), ((5, 0), "b\n\"c\"".to_owned())]
    );
    assert_eq!(p.slots[1].path.len(), 4);
    let p = parse(Api::ChatCompletions, EVENTS[2]).unwrap();
    assert_eq!((p.slots.len(), p.ending.as_slice()), (0, &[(1, 0)][..]));
    let p = parse(Api::ChatCompletions, EVENTS[9]).unwrap();
    assert_eq!((p.slots[0].key, &*p.slots[0].text), ((9, 0), "w"));
    let p = parse(Api::Responses, EVENTS[11]).unwrap();
    assert_eq!((p.slots[0].key, &*p.slots[0].text), ((1, 2), "hi"));
    let p = parse(Api::Responses, EVENTS[12]).unwrap();
    assert!(p.whole && p.ending == [(1, 2)]);
    assert!(parse(Api::Responses, EVENTS[13]).unwrap().terminal);
    assert!(parse(Api::Messages, EVENTS[15]).unwrap().slots.is_empty());
    assert_eq!(
        parse(Api::Messages, EVENTS[16]).unwrap().slots[0].key,
        (2, 0)
    );
    assert_eq!(parse(Api::Messages, EVENTS[19]).unwrap().ending, [(0, 0)]);
    assert!(parse(Api::Messages, EVENTS[21]).unwrap().terminal);
}
