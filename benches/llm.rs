//! The `llm` module's hot paths.
//!
//! - `sse_usage`: usage extraction from a 1,000-chunk Chat Completions stream (one chunk
//!   per network read, as upstreams flush them), beside a bare `memchr` newline scan of
//!   the same bytes — the floor for anything that looks at every byte. Same group, same
//!   throughput unit, so the ratio reads straight off. The target is ≤ 1 µs per event
//!   for accounting (parse + track); divide the time by 1,002 events.
//! - `sse_usage_anthropic`: the same for an Anthropic Messages stream.
//! - `chat_request`: `LlmRequest::parse` alone and with `estimate_prompt_tokens`, and
//!   the `set_include_usage` splice, for 4 KiB, 100 KiB and 1 MiB chat bodies.
//! - `buffer_bounds`: the cost of `limits.buffers` on the response hot path — the SSE
//!   parser, and gzip decoding of the same stream in 1 KiB reads — with the default
//!   bounds and with bounds too large to matter, in one run.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::io::Write;

use tollgate::llm::{
    estimate_prompt_tokens, set_include_usage, Api, DecodeLimits, Decoder, LlmRequest,
    ResponseTracker, SseLimits, SseParser,
};

const WORDS: &[&str] = &[
    " the",
    " model",
    " answered",
    " with",
    " a",
    " long",
    " and",
    " careful",
    " reply",
    " about",
    " Paris",
    ",",
    " France",
    ".",
    " It",
    " is",
    " sunny",
    " today",
    "\n",
];

/// A Chat Completions stream of 1,000 content chunks, a usage chunk and `[DONE]`, in
/// OpenAI's chunk shape; one `Vec` per event as it would arrive.
fn chat_stream() -> Vec<Vec<u8>> {
    let head = r#"{"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_eb9dce56a8","choices":"#;
    let mut events = Vec::new();
    for i in 0..1000 {
        let word = serde_json::to_string(WORDS[i % WORDS.len()]).unwrap();
        events.push(format!(
            "data: {head}[{{\"index\":0,\"delta\":{{\"content\":{word}}},\"logprobs\":null,\"finish_reason\":null}}],\"usage\":null}}\n\n"
        ));
    }
    events.push(format!(
        "data: {head}[],\"usage\":{{\"prompt_tokens\":1117,\"completion_tokens\":1000,\"total_tokens\":2117,\"prompt_tokens_details\":{{\"cached_tokens\":1024,\"audio_tokens\":0}},\"completion_tokens_details\":{{\"reasoning_tokens\":0,\"audio_tokens\":0,\"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}}}}}}\n\n"
    ));
    events.push("data: [DONE]\n\n".to_owned());
    events.into_iter().map(String::into_bytes).collect()
}

/// An Anthropic Messages stream with 1,000 text deltas.
fn anthropic_stream() -> Vec<Vec<u8>> {
    let mut events = vec![
        r#"event: message_start
data: {"type":"message_start","message":{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":472,"cache_creation_input_tokens":2048,"cache_read_input_tokens":1024,"output_tokens":2,"service_tier":"standard"}}}

"#
        .to_owned(),
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n".to_owned(),
    ];
    for i in 0..1000 {
        let word = serde_json::to_string(WORDS[i % WORDS.len()]).unwrap();
        events.push(format!(
            "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":{word}}}}}\n\n"
        ));
    }
    events.push(
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
            .to_owned(),
    );
    events.push("event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":1000}}\n\n".to_owned());
    events.push("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n".to_owned());
    events.into_iter().map(String::into_bytes).collect()
}

fn total_len(chunks: &[Vec<u8>]) -> u64 {
    chunks.iter().map(|c| c.len() as u64).sum()
}

fn newline_scan(chunks: &[Vec<u8>]) -> usize {
    chunks
        .iter()
        .map(|c| memchr::memchr_iter(b'\n', c).count())
        .sum()
}

fn parse_only(chunks: &[Vec<u8>]) -> usize {
    let mut parser = SseParser::new();
    chunks.iter().map(|c| parser.push(c).count()).sum()
}

fn parse_and_track(api: Api, chunks: &[Vec<u8>]) -> u64 {
    let mut parser = SseParser::new();
    let mut tracker = ResponseTracker::new(api);
    for chunk in chunks {
        for event in parser.push(chunk) {
            black_box(tracker.observe_event(&event));
        }
    }
    tracker.usage().expect("the stream has usage").total_tokens
}

fn sse(c: &mut Criterion) {
    for (group, api, chunks) in [
        ("sse_usage", Api::ChatCompletions, chat_stream()),
        ("sse_usage_anthropic", Api::Messages, anthropic_stream()),
    ] {
        let mut g = c.benchmark_group(group);
        g.throughput(Throughput::Bytes(total_len(&chunks)));
        g.bench_function("memchr_newline_scan", |b| {
            b.iter(|| newline_scan(black_box(&chunks)))
        });
        g.bench_function("sse_parse", |b| b.iter(|| parse_only(black_box(&chunks))));
        g.bench_function("sse_parse_and_usage", |b| {
            b.iter(|| parse_and_track(api, black_box(&chunks)))
        });
        g.finish();
    }
}

/// A chat body of about `size` bytes: a system prompt and alternating turns of prose.
fn chat_body(size: usize) -> Vec<u8> {
    let sentence = "The quick brown fox jumps over the lazy dog, and then it considers \
                    the weather in Paris — sunny, 18 °C — before answering \"why?\". ";
    let mut messages =
        vec![serde_json::json!({"role": "system", "content": "You are a helpful assistant."})];
    let mut len = 100;
    let mut turn = 0;
    while len < size {
        let text = sentence.repeat(8);
        len += text.len() + 40;
        let role = if turn % 2 == 0 { "user" } else { "assistant" };
        messages.push(serde_json::json!({"role": role, "content": text}));
        turn += 1;
    }
    serde_json::to_vec(&serde_json::json!({
        "model": "gpt-4o", "stream": true, "messages": messages, "max_tokens": 512
    }))
    .unwrap()
}

fn request(c: &mut Criterion) {
    let mut g = c.benchmark_group("chat_request");
    for (label, size) in [("4KiB", 4 << 10), ("100KiB", 100 << 10), ("1MiB", 1 << 20)] {
        let body = chat_body(size);
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_with_input(BenchmarkId::new("parse", label), &body, |b, body| {
            b.iter(|| LlmRequest::parse(Api::ChatCompletions, black_box(body)).unwrap())
        });
        g.bench_with_input(
            BenchmarkId::new("set_include_usage", label),
            &body,
            |b, body| b.iter(|| set_include_usage(black_box(body)).unwrap()),
        );
        g.bench_with_input(
            BenchmarkId::new("parse_and_estimate", label),
            &body,
            |b, body| {
                b.iter(|| {
                    let req = LlmRequest::parse(Api::ChatCompletions, black_box(body)).unwrap();
                    estimate_prompt_tokens("gpt-4o", &req)
                })
            },
        );
    }
    g.finish();
}

fn parse_with(limits: SseLimits, chunks: &[Vec<u8>]) -> usize {
    let mut parser = SseParser::with_limits(limits);
    chunks.iter().map(|c| parser.push(c).count()).sum()
}

fn decode_with(limits: DecodeLimits, reads: &[&[u8]]) -> usize {
    let mut d = Decoder::with_limits(Some("gzip"), limits).unwrap();
    let n: usize = reads.iter().map(|r| d.push(r).unwrap().len()).sum();
    n + d.finish().unwrap().len()
}

fn buffer_bounds(c: &mut Criterion) {
    let chunks = chat_stream();
    let unbounded_sse = SseLimits {
        line_bytes: usize::MAX / 2,
        event_bytes: usize::MAX / 2,
    };
    let unbounded_decode = DecodeLimits {
        max_bytes: u64::MAX,
        max_ratio: u32::MAX,
    };
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&chunks.concat()).unwrap();
    let gz = gz.finish().unwrap();
    let reads: Vec<&[u8]> = gz.chunks(1024).collect();

    let mut g = c.benchmark_group("buffer_bounds");
    g.throughput(Throughput::Bytes(total_len(&chunks)));
    g.bench_function("sse_parse/default", |b| {
        b.iter(|| parse_with(SseLimits::DEFAULT, black_box(&chunks)))
    });
    g.bench_function("sse_parse/unbounded", |b| {
        b.iter(|| parse_with(unbounded_sse, black_box(&chunks)))
    });
    g.bench_function("gzip_decode/default", |b| {
        b.iter(|| decode_with(DecodeLimits::DEFAULT, black_box(&reads)))
    });
    g.bench_function("gzip_decode/unbounded", |b| {
        b.iter(|| decode_with(unbounded_decode, black_box(&reads)))
    });
    g.finish();
}

criterion_group!(benches, sse, request, buffer_bounds);
criterion_main!(benches);
