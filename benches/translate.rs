//! The cost of translating between OpenAI Chat Completions and Anthropic Messages
//! (`llm::translate`), per SSE event of a streamed response.
//!
//! - `anthropic_to_chat_events`: a 1,000-event Anthropic Messages stream (message_start,
//!   content_block_start, 995 short `text_delta`s, content_block_stop, message_delta
//!   with usage, message_stop), parsed into `SseEvent`s once outside the timed loop, fed
//!   through a fresh `Translation::ChatViaMessages` translator (with `include_usage`),
//!   then `finish`.
//! - `chat_to_anthropic_events`: the same for a 1,000-event Chat Completions stream (a
//!   role chunk, 996 content chunks, the finish chunk, a usage chunk with `choices: []`,
//!   `[DONE]`) through `Translation::MessagesViaChat`.
//! - `baseline_reencode_anthropic` / `baseline_reencode_chat`: the baseline — the same
//!   events only re-encoded as they are (`SseEvent::write_to`), i.e. passing each event
//!   through untranslated. Same group, same throughput unit (events), so the ratio reads
//!   straight off.
//! - `parse_and_translate_anthropic`: the Anthropic stream's raw bytes pushed through
//!   `SseParser` in 16 KiB reads and translated: parse + translate together, per event.
//! - `chat_request_4k`: `Translation::ChatViaMessages.request` of a ~4 KiB Chat request
//!   (a system message, 6 user/assistant turns, one tool); one element = one request.
//!
//! The target is ≤ 2 µs per event for translation.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use std::time::Duration;

use tollgate::llm::{SseEvent, SseParser, TranslatedRequest, Translation};

const WORDS: &[&str] = &[
    "token123 ",
    "the ",
    "model ",
    "answered ",
    "with ",
    "a ",
    "long ",
    "and ",
    "careful ",
    "reply ",
    "about ",
    "Paris, ",
    "France. ",
    "It ",
    "is ",
    "sunny ",
    "today.\n",
];

/// Text deltas in the Anthropic stream: 5 more events make it 1,000.
const ANTHROPIC_DELTAS: usize = 995;
/// Content chunks in the Chat stream: 4 more events make it 1,000.
const CHAT_CONTENT: usize = 996;

/// An Anthropic Messages stream, as the upstream sends it.
fn anthropic_stream() -> Vec<u8> {
    let mut s = String::from(
        r#"event: message_start
data: {"type":"message_start","message":{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":472,"cache_creation_input_tokens":2048,"cache_read_input_tokens":1024,"output_tokens":2,"service_tier":"standard"}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

"#,
    );
    for i in 0..ANTHROPIC_DELTAS {
        let word = serde_json::to_string(WORDS[i % WORDS.len()]).unwrap();
        s.push_str(&format!(
            "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":{word}}}}}\n\n"
        ));
    }
    s.push_str(
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    );
    s.push_str("event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":995}}\n\n");
    s.push_str("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
    s.into_bytes()
}

/// A Chat Completions chunk stream, as the upstream sends it.
fn chat_stream() -> Vec<u8> {
    let head = r#"{"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_eb9dce56a8","choices":"#;
    let mut s = format!(
        "data: {head}[{{\"index\":0,\"delta\":{{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null}},\"logprobs\":null,\"finish_reason\":null}}],\"usage\":null}}\n\n"
    );
    for i in 0..CHAT_CONTENT {
        let word = serde_json::to_string(WORDS[i % WORDS.len()]).unwrap();
        s.push_str(&format!(
            "data: {head}[{{\"index\":0,\"delta\":{{\"content\":{word}}},\"logprobs\":null,\"finish_reason\":null}}],\"usage\":null}}\n\n"
        ));
    }
    s.push_str(&format!(
        "data: {head}[{{\"index\":0,\"delta\":{{}},\"logprobs\":null,\"finish_reason\":\"stop\"}}],\"usage\":null}}\n\n"
    ));
    s.push_str(&format!(
        "data: {head}[],\"usage\":{{\"prompt_tokens\":1117,\"completion_tokens\":996,\"total_tokens\":2113,\"prompt_tokens_details\":{{\"cached_tokens\":1024,\"audio_tokens\":0}},\"completion_tokens_details\":{{\"reasoning_tokens\":0,\"audio_tokens\":0,\"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}}}}}}\n\n"
    ));
    s.push_str("data: [DONE]\n\n");
    s.into_bytes()
}

fn parse_all(raw: &[u8]) -> Vec<SseEvent> {
    let mut parser = SseParser::new();
    let mut events: Vec<SseEvent> = parser.push(raw).collect();
    events.extend(parser.finish());
    events
}

fn streamed_request() -> TranslatedRequest {
    TranslatedRequest {
        body: vec![],
        stream: true,
        include_usage: true,
    }
}

/// Translates pre-parsed events with a fresh translator: the client's bytes.
fn translate(t: Translation, req: &TranslatedRequest, events: &[SseEvent], cap: usize) -> Vec<u8> {
    let mut tr = t.events(req);
    let mut out = Vec::with_capacity(cap);
    for event in events {
        tr.event(event, &mut out);
    }
    tr.finish(&mut out);
    out
}

/// The events passed through as they are.
fn reencode(events: &[SseEvent], cap: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(cap);
    for event in events {
        event.write_to(&mut out);
    }
    out
}

/// Raw bytes parsed in 16 KiB reads and translated.
fn parse_and_translate(t: Translation, req: &TranslatedRequest, raw: &[u8], cap: usize) -> Vec<u8> {
    let mut parser = SseParser::new();
    let mut tr = t.events(req);
    let mut out = Vec::with_capacity(cap);
    for read in raw.chunks(16 * 1024) {
        for event in parser.push(read) {
            tr.event(&event, &mut out);
        }
    }
    if let Some(event) = parser.finish() {
        tr.event(&event, &mut out);
    }
    tr.finish(&mut out);
    out
}

fn events(c: &mut Criterion) {
    let req = streamed_request();
    let anthropic_raw = anthropic_stream();
    let chat_raw = chat_stream();
    let anthropic = parse_all(&anthropic_raw);
    let chat = parse_all(&chat_raw);
    assert_eq!(anthropic.len(), ANTHROPIC_DELTAS + 5);
    assert_eq!(chat.len(), CHAT_CONTENT + 4);
    // Room for the translated stream, so the timed loop does not measure regrowth.
    let cap_a = anthropic_raw.len() * 2;
    let cap_c = chat_raw.len() * 2;

    // The translations are sound: each ends its client stream properly.
    let to_chat = translate(Translation::ChatViaMessages, &req, &anthropic, cap_a);
    assert!(to_chat.ends_with(b"data: [DONE]\n\n"));
    let to_chat = String::from_utf8(to_chat).unwrap();
    assert!(to_chat.contains("\"usage\""), "the usage chunk is sent");
    let to_anthropic = translate(Translation::MessagesViaChat, &req, &chat, cap_c);
    assert!(to_anthropic.ends_with(b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"));
    assert_eq!(
        parse_and_translate(Translation::ChatViaMessages, &req, &anthropic_raw, cap_a).len(),
        to_chat.len(),
    );

    let mut g = c.benchmark_group("translate");
    g.sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));

    g.throughput(Throughput::Elements(anthropic.len() as u64));
    g.bench_function("anthropic_to_chat_events", |b| {
        b.iter(|| {
            let out = translate(
                Translation::ChatViaMessages,
                &req,
                black_box(&anthropic),
                cap_a,
            );
            black_box(out.len())
        })
    });
    g.bench_function("baseline_reencode_anthropic", |b| {
        b.iter(|| black_box(reencode(black_box(&anthropic), cap_a).len()))
    });
    g.bench_function("parse_and_translate_anthropic", |b| {
        b.iter(|| {
            let out = parse_and_translate(
                Translation::ChatViaMessages,
                &req,
                black_box(&anthropic_raw),
                cap_a,
            );
            black_box(out.len())
        })
    });

    g.throughput(Throughput::Elements(chat.len() as u64));
    g.bench_function("chat_to_anthropic_events", |b| {
        b.iter(|| {
            let out = translate(Translation::MessagesViaChat, &req, black_box(&chat), cap_c);
            black_box(out.len())
        })
    });
    g.bench_function("baseline_reencode_chat", |b| {
        b.iter(|| black_box(reencode(black_box(&chat), cap_c).len()))
    });
    g.finish();
}

/// A Chat request of about 4 KiB: a system message, 6 user/assistant turns, one tool.
fn chat_request_body() -> Vec<u8> {
    let sentence = "The quick brown fox jumps over the lazy dog, and then it considers \
                    the weather in Paris — sunny, 18 °C — before answering \"why?\". ";
    let mut messages = vec![serde_json::json!({
        "role": "system",
        "content": "You are a helpful assistant. Answer briefly, cite your sources, and use \
                    the weather tool when the user asks about the weather somewhere.",
    })];
    for turn in 0..6 {
        let role = if turn % 2 == 0 { "user" } else { "assistant" };
        messages.push(serde_json::json!({"role": role, "content": sentence.repeat(4)}));
    }
    serde_json::to_vec(&serde_json::json!({
        "model": "gpt-4o",
        "stream": true,
        "stream_options": {"include_usage": true},
        "max_tokens": 512,
        "temperature": 0.7,
        "messages": messages,
        "tools": [{
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "The current weather for a city: temperature, sky, wind.",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "city": {"type": "string", "description": "The city, e.g. Paris"},
                        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                    },
                    "required": ["city"],
                },
            },
        }],
        "tool_choice": "auto",
    }))
    .unwrap()
}

fn request(c: &mut Criterion) {
    let body = chat_request_body();
    assert!(
        (3500..=4700).contains(&body.len()),
        "the body is about 4 KiB: {}",
        body.len()
    );
    let translated = Translation::ChatViaMessages.request(&body).unwrap();
    assert!(translated.stream && translated.include_usage);

    let mut g = c.benchmark_group("translate");
    g.sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Elements(1));
    g.bench_function("chat_request_4k", |b| {
        b.iter(|| {
            let t = Translation::ChatViaMessages
                .request(black_box(&body))
                .unwrap();
            black_box(t.body.len())
        })
    });
    g.finish();
}

criterion_group!(benches, events, request);
criterion_main!(benches);
