use super::*;
use crate::epp::Rng;
use crate::llm::{Api, LlmRequest};

/// Scans `body` cut at `cut`, pushed in pieces of at most `piece` bytes.
fn scan(body: &[u8], cut: usize, piece: usize) -> PartialJson {
    let mut p = PartialJson::new();
    for chunk in body[..cut].chunks(piece.max(1)) {
        p.push(chunk);
    }
    p
}

fn chat_body(rng: &mut Rng, model_last: bool) -> String {
    let words = [
        "héllo",
        "wörld",
        "a\"quote",
        "back\\slash",
        "tab\t",
        "😀",
        "plain",
        "\u{7f}",
    ];
    let mut messages = Vec::new();
    for i in 0..(2 + rng.below(4)) {
        let text: Vec<&str> = (0..(1 + rng.below(30)))
            .map(|_| words[rng.below(words.len())])
            .collect();
        let content = if i % 2 == 0 {
            serde_json::json!(text.join(" "))
        } else {
            serde_json::json!([{"type": "text", "text": text.join(" ")}, {"type": "image_url", "image_url": {"url": "data:x"}}])
        };
        messages.push(serde_json::json!({"role": "user", "content": content, "name": null}));
    }
    let messages = serde_json::to_string(&messages).unwrap();
    // Escaped non-ASCII in some bodies (what Python's json.dumps writes by default).
    let messages = if rng.below(2) == 0 {
        messages
    } else {
        messages
            .chars()
            .map(|c| {
                if c.is_ascii() {
                    c.to_string()
                } else {
                    c.encode_utf16(&mut [0; 2])
                        .iter()
                        .map(|u| format!("\\u{u:04x}"))
                        .collect()
                }
            })
            .collect()
    };
    if model_last {
        format!(r#"{{"messages": {messages}, "max_tokens": 12, "model": "m\/1", "stream": true}}"#)
    } else {
        format!(r#"{{ "model":"m\/1","temperature":-0.5e1,"stop":null,"messages":{messages}}}"#)
    }
}

#[test]
fn every_cut_of_a_chat_body_closes_into_json_whose_prompt_is_a_prefix() {
    let mut rng = Rng::with_seed(7);
    for round in 0..40 {
        let body = chat_body(&mut rng, round % 2 == 1);
        let bytes = body.as_bytes();
        let whole = LlmRequest::parse(Api::ChatCompletions, bytes).unwrap();
        let full = whole.prompt_text();
        let model_end = body.find(r#""m\/1""#).unwrap() + r#""m\/1""#.len();
        for cut in 1..=bytes.len() {
            let p = scan(bytes, cut, 1 + rng.below(9));
            assert!(!p.lost(), "round {round} cut {cut}: {body}");
            assert_eq!(p.model().is_some(), cut >= model_end, "model at cut {cut}");
            if let Some(m) = p.model() {
                assert_eq!(m, "m/1");
            }
            let Some(closed) = p.close(&bytes[..cut]) else {
                assert_eq!(cut, 1, "only before the first bracket is nothing kept");
                continue;
            };
            let v: serde_json::Value = serde_json::from_slice(&closed)
                .unwrap_or_else(|e| panic!("cut {cut}: {e}: {}", String::from_utf8_lossy(&closed)));
            assert!(v.is_object());
            let part = LlmRequest::parse(Api::ChatCompletions, &closed).unwrap();
            let prompt = part.prompt_text();
            assert!(
                full.starts_with(&prompt),
                "cut {cut}: {prompt:?} is not a prefix of {full:?}"
            );
        }
        let p = scan(bytes, bytes.len(), 64);
        assert!(p.done());
        assert_eq!(p.close(bytes).unwrap(), bytes);
    }
}

#[test]
fn a_long_prompt_cut_mid_string_keeps_all_that_arrived() {
    let text = "x".repeat(50_000);
    let body = format!(r#"{{"messages":[{{"role":"user","content":"{text}"}}],"model":"big"}}"#);
    let p = scan(body.as_bytes(), 20_000, 16_384);
    let closed = p.close(&body.as_bytes()[..20_000]).unwrap();
    let r = LlmRequest::parse(Api::ChatCompletions, &closed).unwrap();
    assert_eq!(
        r.prompt_text().len(),
        20_000 - r#"{"messages":[{"role":"user","content":""#.len()
    );
    assert_eq!(r.model, None);
    let p = scan(body.as_bytes(), body.len(), 16_384);
    assert_eq!(p.model(), Some("big"));
}

#[test]
fn cuts_inside_escapes_and_characters_back_off() {
    for (body, kept) in [
        (r#"{"prompt":"ab\"#, "ab"),
        (r#"{"prompt":"ab\u00"#, "ab"),
        (r#"{"prompt":"ab\u00e9"#, "abé"),
        ("{\"prompt\":\"ab\u{e9}", "ab\u{e9}"),
    ] {
        let p = scan(body.as_bytes(), body.len(), 3);
        let closed = p.close(body.as_bytes()).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&closed).unwrap();
        assert_eq!(v["prompt"], kept, "{body}");
    }
    // Half of a two-byte character.
    let body = "{\"prompt\":\"ab\u{e9}".as_bytes();
    let cut = &body[..body.len() - 1];
    let closed = scan(cut, cut.len(), 4).close(cut).unwrap();
    assert_eq!(closed, br#"{"prompt":"ab"}"#);
}

#[test]
fn half_read_keys_numbers_and_literals_are_dropped() {
    for (body, closed) in [
        (r#"{"max_tokens": 12"#, "{}"),
        (r#"{"a": 1, "max_tok"#, r#"{"a": 1}"#),
        (r#"{"a": 1, "b":"#, r#"{"a": 1}"#),
        (r#"{"a": [true, fal"#, r#"{"a": [true]}"#),
        (r#"{"a": [true,"#, r#"{"a": [true]}"#),
        (r#"{"a": {"b": [1, {"#, r#"{"a": {"b": [1, {}]}}"#),
    ] {
        let p = scan(body.as_bytes(), body.len(), 2);
        assert!(!p.lost(), "{body}");
        assert_eq!(
            String::from_utf8(p.close(body.as_bytes()).unwrap()).unwrap(),
            closed
        );
    }
}

#[test]
fn only_the_top_level_model_string_is_taken() {
    for (body, model) in [
        (
            r#"{"messages":[{"model":"inner"}],"model":"outer"}"#,
            Some("outer"),
        ),
        (r#"{"metadata":{"model":"inner"}}"#, None),
        (r#"{"model":7,"x":"y"}"#, None),
        (r#"{"modelx":"a","model":"b"}"#, Some("b")),
        (r#"{"model":"a\u00e9"}"#, Some("aé")),
    ] {
        let p = scan(body.as_bytes(), body.len(), 1);
        assert_eq!(p.model(), model, "{body}");
    }
    let long = format!(r#"{{"model":"{}"}}"#, "m".repeat(MAX_MODEL_BYTES + 1));
    assert_eq!(scan(long.as_bytes(), long.len(), 100).model(), None);
}

#[test]
fn top_level_members_are_known_once_read_whole() {
    let body = r#"{"messages":[{"system":"inner"}],"system":[{"type":"text","text":"s"}],"x":1}"#;
    let at = |needle: &str| body.find(needle).unwrap();
    // Cut anywhere before the top-level `system` value ends, in pieces of any size.
    for piece in [1, 3, 100] {
        let before = scan(body.as_bytes(), at(r#","x""#) - 1, piece);
        assert!(before.has_value("messages") && !before.has_value("system"));
        let after = scan(body.as_bytes(), at(r#","x""#), piece);
        assert!(after.has_value("system"), "piece {piece}");
        assert!(!after.has_value("x"), "its value is still being read");
        assert!(scan(body.as_bytes(), body.len(), piece).has_value("x"));
    }
    // A nested key of the same name is not a top-level member.
    let nested = scan(body.as_bytes(), at(r#""system":["#), 1);
    assert!(!nested.has_value("system"));
    // Keys past the longest remembered, and members past the most, are followed only.
    let long_key = "k".repeat(MAX_KEY_BYTES + 1);
    let mut many = format!(r#"{{"{long_key}":1"#);
    for i in 0..MAX_KEYS + 5 {
        many.push_str(&format!(r#","k{i}":{i}"#));
    }
    many.push('}');
    let p = scan(many.as_bytes(), many.len(), 7);
    assert!(!p.has_value(&long_key) && p.has_value("k0"));
    assert!(p.has_value(&format!("k{}", MAX_KEYS - 1)));
    assert!(!p.has_value(&format!("k{MAX_KEYS}")), "bounded");
    assert!(p.done() && !p.lost());
}

#[test]
fn bytes_that_are_not_json_lose_the_scan_and_nothing_panics() {
    for body in [
        "{\"a\" 1}",
        "{\"a\":1}}",
        "{\"a\":1} x",
        "[1 2]",
        "{,}",
        "{\"a\":\"\\q\"}",
        "{\"a\":\"\\u12g4\"}",
        "{]",
        "<html>",
        "{\"a\"::1}",
    ] {
        let p = scan(body.as_bytes(), body.len(), 1);
        assert!(p.lost(), "{body}");
        assert_eq!(p.close(body.as_bytes()), None);
    }
    let deep = "[".repeat(MAX_DEPTH + 1);
    assert!(scan(deep.as_bytes(), deep.len(), 7).lost());
    // Arbitrary bytes: no panic, a lost scan closes nothing.
    let mut rng = Rng::with_seed(3);
    let alphabet = b"{}[]\":,\\u0aZ \xc3\xa9-1.eE+tfn";
    for _ in 0..20_000 {
        let body: Vec<u8> = (0..rng.below(40))
            .map(|_| alphabet[rng.below(alphabet.len())])
            .collect();
        let p = scan(&body, body.len(), 1 + rng.below(5));
        assert!(!(p.lost() && p.close(&body).is_some()));
    }
    // Strings and structure only (what the scan validates): whatever it keeps following
    // closes into JSON.
    let tokens = [
        "{", "}", "[", "]", "\"", ":", ",", "\\", "x", "a", "é", " ", "\\u00e9",
    ];
    let mut kept = 0;
    for _ in 0..50_000 {
        let body: String = std::iter::once("[\"")
            .chain((0..rng.below(30)).map(|_| tokens[rng.below(tokens.len())]))
            .collect();
        let p = scan(body.as_bytes(), body.len(), 1 + rng.below(5));
        if let Some(closed) = p.close(body.as_bytes()) {
            kept += 1;
            let parsed = serde_json::from_slice::<serde_json::Value>(&closed);
            assert!(
                parsed.is_ok(),
                "{body:?} -> {:?}",
                String::from_utf8_lossy(&closed)
            );
        }
    }
    assert!(kept > 5_000, "only {kept} random texts were followable");
}
