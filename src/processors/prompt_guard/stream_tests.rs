//! Streamed completions through an `Exchange`: entities split across two and three SSE
//! events reach the client masked in every API's event shape, the text read back from
//! the emitted events equals `mask(original)`, and a reject ends the stream with an
//! error event in the API's format.

use crate::guard::{Builtin, RuleSet, Scanner};
use crate::llm::{Api, ResponseTracker, SseParser};
use crate::pipeline::testing::{metric, receive, send};
use crate::pipeline::Adapter;

use super::tests::{exchange, pipeline, CARD, EMAIL, SECRET};

const GUARD: &str = r#"        promptGuard:
          response:
            rules:
            - { name: pii, builtins: [email, credit_card], action: mask }
            - { name: keys, builtins: [openai_api_key], action: mask }
            - { name: words, keywords: { words: [bluebird] }, action: audit }
"#;

const REJECT: &str = r#"        promptGuard:
          response:
            rules:
            - { name: pii, builtins: [email], action: mask }
            - { name: keys, builtins: [openai_api_key], action: reject, message: "no keys" }
"#;

fn expected(text: &str) -> String {
    let set = RuleSet::new()
        .with_builtin(Builtin::Email)
        .with_builtin(Builtin::CreditCard)
        .with_builtin(Builtin::OpenaiApiKey);
    Scanner::new(&set).unwrap().mask(text)
}

fn request_path(api: Api) -> &'static str {
    match api {
        Api::ChatCompletions => "/v1/chat/completions",
        Api::Completions => "/v1/completions",
        Api::Responses => "/v1/responses",
        _ => "/v1/messages",
    }
}

fn request_body(api: Api) -> &'static [u8] {
    match api {
        Api::ChatCompletions => {
            br#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}"#
        }
        Api::Completions => br#"{"model":"gpt-3.5-turbo-instruct","stream":true,"prompt":"hi"}"#,
        Api::Responses => br#"{"model":"gpt-4o","stream":true,"input":"hi"}"#,
        _ => {
            br#"{"model":"claude","max_tokens":9,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#
        }
    }
}

/// An upstream's SSE stream of `api` carrying `pieces` as text deltas.
fn stream(api: Api, pieces: &[&str]) -> Vec<u8> {
    let whole: String = pieces.concat();
    let mut out = String::new();
    let mut data = |event: Option<&str>, v: serde_json::Value| {
        if let Some(e) = event {
            out.push_str(&format!("event: {e}\n"));
        }
        out.push_str(&format!("data: {v}\n\n"));
    };
    match api {
        Api::ChatCompletions | Api::Completions => {
            let chunk = |choice: serde_json::Value| serde_json::json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o", "choices": [choice]});
            for p in pieces {
                let choice = if api == Api::ChatCompletions {
                    serde_json::json!({"index": 0, "delta": {"content": p}, "finish_reason": null})
                } else {
                    serde_json::json!({"index": 0, "text": p, "finish_reason": null})
                };
                data(None, chunk(choice));
            }
            let last = if api == Api::ChatCompletions {
                serde_json::json!({"index": 0, "delta": {}, "finish_reason": "stop"})
            } else {
                serde_json::json!({"index": 0, "text": "", "finish_reason": "stop"})
            };
            data(None, chunk(last));
            out.push_str("data: [DONE]\n\n");
        }
        Api::Responses => {
            let mut n = 0;
            let mut seq = || {
                n += 1;
                n
            };
            data(
                Some("response.created"),
                serde_json::json!({"type": "response.created", "sequence_number": seq(), "response": {"id": "r1", "output": []}}),
            );
            for p in pieces {
                data(
                    Some("response.output_text.delta"),
                    serde_json::json!({"type": "response.output_text.delta", "item_id": "m1", "output_index": 0, "content_index": 0, "delta": p, "sequence_number": seq()}),
                );
            }
            data(
                Some("response.output_text.done"),
                serde_json::json!({"type": "response.output_text.done", "item_id": "m1", "output_index": 0, "content_index": 0, "text": whole, "sequence_number": seq()}),
            );
            data(
                Some("response.completed"),
                serde_json::json!({"type": "response.completed", "sequence_number": seq(), "response": {"id": "r1", "output": [{"type": "message", "content": [{"type": "output_text", "text": whole}]}], "usage": {"input_tokens": 1, "output_tokens": 2, "total_tokens": 3}}}),
            );
        }
        _ => {
            data(
                Some("message_start"),
                serde_json::json!({"type": "message_start", "message": {"id": "m", "content": [], "usage": {"input_tokens": 3, "output_tokens": 1}}}),
            );
            data(
                Some("content_block_start"),
                serde_json::json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            );
            for p in pieces {
                data(
                    Some("content_block_delta"),
                    serde_json::json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}}),
                );
            }
            data(
                Some("content_block_stop"),
                serde_json::json!({"type": "content_block_stop", "index": 0}),
            );
            data(
                Some("message_delta"),
                serde_json::json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 9}}),
            );
            data(
                Some("message_stop"),
                serde_json::json!({"type": "message_stop"}),
            );
        }
    }
    out.into_bytes()
}

/// The output text a client reads from an SSE stream (every event parsed as the API's).
fn read_back(api: Api, bytes: &[u8]) -> (String, bool) {
    let mut parser = SseParser::new();
    let mut tracker = ResponseTracker::new(api);
    let mut text = String::new();
    let mut events: Vec<_> = parser.push(bytes).collect();
    events.extend(parser.finish());
    for e in &events {
        if e.data != "[DONE]" {
            serde_json::from_str::<serde_json::Value>(&e.data)
                .unwrap_or_else(|err| panic!("event data is not JSON ({err}): {}", e.data));
        }
        if let Some(t) = tracker.observe_event(e).output_text {
            text.push_str(&t);
        }
    }
    assert_eq!(tracker.malformed_events(), 0);
    (text, tracker.is_done())
}

/// Cuts `text` so that `entity` is split into `parts` events (and the text around it
/// into a few more).
fn pieces<'a>(text: &'a str, entity: &str, parts: usize) -> Vec<&'a str> {
    let start = text.find(entity).unwrap();
    let mut cuts = vec![0, start / 2, start];
    for k in 1..parts {
        let mut at = start + entity.len() * k / parts;
        while !text.is_char_boundary(at) {
            at += 1;
        }
        cuts.push(at);
    }
    cuts.push(start + entity.len());
    cuts.push(text.len());
    cuts.dedup();
    cuts.windows(2).map(|w| &text[w[0]..w[1]]).collect()
}

async fn run(api: Api, adapter: Adapter, upstream: &[u8], chunk_size: usize) -> Vec<u8> {
    let p = pipeline(GUARD);
    let mut ex = exchange(&p, adapter, request_path(api));
    send(&mut ex, &[], request_body(api)).await.unwrap();
    let chunks: Vec<&[u8]> = upstream.chunks(chunk_size).collect();
    receive(&mut ex, "text/event-stream", &chunks)
        .await
        .unwrap()
}

#[tokio::test]
async fn entities_split_across_two_and_three_events_come_out_masked_in_every_api() {
    for api in [
        Api::ChatCompletions,
        Api::Completions,
        Api::Responses,
        Api::Messages,
    ] {
        for entity in [EMAIL, CARD, SECRET] {
            let text = format!("Sure — reach Jané at {entity}, today.");
            let want = expected(&text);
            assert!(!want.contains(entity));
            for parts in [2, 3] {
                let upstream = stream(api, &pieces(&text, entity, parts));
                // Whole events per chunk, and chunks that cut events mid-line.
                for chunk_size in [upstream.len(), 7] {
                    let out = run(api, Adapter::Proxy, &upstream, chunk_size).await;
                    let (got, done) = read_back(api, &out);
                    let ctx = format!("{api} {entity} in {parts} events, chunks of {chunk_size}");
                    assert_eq!(got, want, "{ctx}");
                    assert!(done, "{ctx}: the stream's end event is kept");
                    let raw = String::from_utf8(out).unwrap();
                    assert!(!raw.contains(entity), "{ctx}: {raw}");
                }
            }
        }
    }
}

#[tokio::test]
async fn held_text_is_flushed_before_the_finish_chunk_and_hold_back_is_small() {
    // Text that ends in the middle of a possible entity is held, then flushed before
    // the chunk with finish_reason.
    let api = Api::ChatCompletions;
    let upstream = stream(api, &["Write to bob", "@example", ".com"]);
    let out = run(api, Adapter::ExtProc, &upstream, upstream.len()).await;
    let mut parser = SseParser::new();
    let events: Vec<_> = parser.push(&out).collect();
    let datas: Vec<serde_json::Value> = events
        .iter()
        .filter(|e| e.data != "[DONE]")
        .map(|e| serde_json::from_str(&e.data).unwrap())
        .collect();
    let contents: Vec<String> = datas
        .iter()
        .map(|d| {
            d["choices"][0]["delta"]["content"]
                .as_str()
                .unwrap_or("-")
                .to_string()
        })
        .collect();
    // "Write to " goes out at once; the address is held until it is complete, and the
    // held placeholder goes out in a flush chunk before the finish_reason chunk.
    assert_eq!(contents, ["Write to ", "", "", "<EMAIL>", "-"]);
    assert_eq!(datas[3]["id"], "c1", "flush chunks keep the stream's id");
    assert_eq!(datas[4]["choices"][0]["finish_reason"], "stop");
    assert_eq!(events.last().unwrap().data, "[DONE]");
}

#[tokio::test]
async fn audit_findings_in_a_stream_are_counted_once() {
    let api = Api::Messages;
    let p = pipeline(GUARD);
    let mut ex = exchange(&p, Adapter::Proxy, request_path(api));
    send(&mut ex, &[], request_body(api)).await.unwrap();
    let upstream = stream(api, &["the blue", "bird flies; Bluebird"]);
    let out = receive(&mut ex, "text/event-stream", &[&upstream])
        .await
        .unwrap();
    assert_eq!(read_back(api, &out).0, "the bluebird flies; Bluebird");
    assert_eq!(
        metric(
            &p,
            r#"tollgate_guard_findings_total{route="llm",side="response",rule="words",action="audit"}"#
        ),
        Some(2.0)
    );
    assert!(p
        .metrics
        .encode()
        .contains(r#"tollgate_guard_duration_seconds_count{side="response"} 1"#));
}

#[tokio::test]
async fn a_reject_mid_stream_ends_it_with_an_error_event() {
    for api in [Api::ChatCompletions, Api::Messages] {
        let text = format!("Your key: {SECRET} and mail {EMAIL}");
        let upstream = stream(api, &pieces(&text, SECRET, 3));
        let p = pipeline(REJECT);

        // The error event ends the body (`Body::end_stream`) under either transport:
        // the proxy closes the stream after it, Envoy gets every later chunk emptied.
        let chunks: Vec<&[u8]> = upstream.split_inclusive(|&b| b == b'\n').collect();
        let mut outs = Vec::new();
        for adapter in [Adapter::Proxy, Adapter::ExtProc] {
            let mut ex = exchange(&p, adapter, request_path(api));
            send(&mut ex, &[], request_body(api)).await.unwrap();
            outs.push(
                receive(&mut ex, "text/event-stream", &chunks)
                    .await
                    .unwrap(),
            );
        }
        assert_eq!(outs[0], outs[1], "one behaviour for both transports");
        let all = outs.pop().unwrap();
        let raw = String::from_utf8(all.clone()).unwrap();
        assert!(!raw.contains("sk-proj"), "{raw}");
        let mut parser = SseParser::new();
        let events: Vec<_> = parser.push(&all).collect();
        let last = events.last().unwrap();
        let error: serde_json::Value = serde_json::from_str(&last.data).unwrap();
        if api == Api::ChatCompletions {
            assert_eq!(last.event, None);
            assert_eq!(error["error"]["code"], "response_rejected");
            assert_eq!(error["error"]["message"], "no keys");
        } else {
            assert_eq!(last.event.as_deref(), Some("error"));
            assert_eq!(error["type"], "error");
            assert_eq!(error["error"]["type"], "permission_error");
        }
        // What was released before the key is still there.
        assert!(read_back(api, &all).0.starts_with("Your key: "));
        assert_eq!(
            metric(
                &p,
                r#"tollgate_guard_findings_total{route="llm",side="response",rule="keys",action="reject"}"#
            ),
            Some(2.0)
        );
    }
}

#[tokio::test]
async fn non_json_events_and_other_events_pass_through() {
    let api = Api::ChatCompletions;
    let upstream =
        b": keepalive\n\ndata: not json\n\nevent: ping\ndata: {\"x\":1}\n\ndata: [DONE]\n\n";
    let out = run(api, Adapter::Proxy, upstream, 5).await;
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "data: not json\n\nevent: ping\ndata: {\"x\":1}\n\ndata: [DONE]\n\n"
    );
}

#[tokio::test]
async fn a_chunk_that_finds_nothing_and_holds_nothing_goes_out_as_it_came() {
    // Spacing and escapes that re-encoding would not keep, and a comment line.
    let clean = |api: Api| {
        let mut s = String::from(": upstream comment\n\n");
        s.push_str(
            &String::from_utf8(stream(api, &["Paris is 2", " hours \u{e9}", "way."])).unwrap(),
        );
        s.replace("\"model\":", "\"model\" :  ")
            .replace('é', "\\u00e9")
    };
    for api in [Api::ChatCompletions, Api::Completions, Api::Messages] {
        let upstream = clean(api).into_bytes();
        for adapter in [Adapter::Proxy, Adapter::ExtProc] {
            let out = run(api, adapter, &upstream, upstream.len()).await;
            assert_eq!(
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&upstream),
                "{api} {adapter:?}: one whole chunk with nothing to mask is not re-encoded"
            );
        }
        // Cut mid-line, chunks hold partial events: those are re-encoded, same text.
        let out = run(api, Adapter::Proxy, &upstream, 7).await;
        assert_ne!(out, upstream, "{api}: chunks of 7 are re-encoded");
        assert_eq!(read_back(api, &out).0, "Paris is 2 hours éway.", "{api}");
    }
}

#[tokio::test]
async fn clean_chunks_pass_as_they_came_while_a_later_one_is_masked() {
    let api = Api::ChatCompletions;
    let first = stream(api, &["Hello there. "]);
    // `stream` ends every stream with a finish chunk and [DONE]: keep only the text
    // event of the first, then a second stream's events carry the address.
    let first_event = String::from_utf8(first).unwrap();
    let first_event = first_event.split("\n\n").next().unwrap().to_string() + "\n\n";
    let second = stream(api, &["Mail ", "bob@example.com", " now."]);
    let p = pipeline(GUARD);
    let mut ex = exchange(&p, Adapter::ExtProc, request_path(api));
    send(&mut ex, &[], request_body(api)).await.unwrap();
    let out = receive(
        &mut ex,
        "text/event-stream",
        &[first_event.as_bytes(), &second],
    )
    .await
    .unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(
        out.starts_with(&first_event),
        "the clean first chunk is unchanged: {out}"
    );
    assert!(!out.contains("bob@example.com"), "{out}");
    assert_eq!(
        read_back(api, out.as_bytes()).0,
        "Hello there. Mail <EMAIL> now."
    );
}
