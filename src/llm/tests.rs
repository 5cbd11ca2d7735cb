//! End-to-end over recorded-shape streams: bytes (possibly compressed) → [`Decoder`] →
//! [`SseParser`] → [`ResponseTracker`], checked against known usage and text, and the
//! property that *where* the bytes are cut never changes what comes out.

use super::decode::tests::gzip;
use super::*;

macro_rules! fixture {
    ($name:literal) => {
        &include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/llm/",
            $name
        ))[..]
    };
}

/// One SSE fixture and what it must yield.
struct Case {
    name: &'static str,
    api: Api,
    encoding: Option<&'static str>,
    bytes: Vec<u8>,
    usage: Option<Usage>,
    text: &'static str,
    model: &'static str,
}

/// The cases whose usage comes on its own last chunk (`choices: []`).
const USAGE_ONLY: [&str; 3] = ["chat_usage", "chat_tool_calls", "completions_usage"];

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

fn cases() -> Vec<Case> {
    let chat_usage = Some(usage(1117, 46, 1024, 0, 12, 1163));
    let responses_usage = Some(usage(328, 52, 256, 0, 20, 380));
    let anthropic_usage = Some(usage(472 + 2048 + 1024, 89, 1024, 2048, 0, 3544 + 89));
    let case = |name, api, bytes: &[u8], usage, text, model| Case {
        name,
        api,
        encoding: None,
        bytes: bytes.to_vec(),
        usage,
        text,
        model,
    };
    let paris = "The capital of France is Paris.";
    let hi = "Hi there! How can I help?";
    let hello = "Hello! How can I help you today?";
    let (gpt4o, gpt41, claude) = (
        "gpt-4o-2024-08-06",
        "gpt-4.1-2025-04-14",
        "claude-sonnet-4-5-20250929",
    );
    let mut cases = vec![
        case(
            "chat_usage",
            Api::ChatCompletions,
            fixture!("chat_usage.sse"),
            chat_usage,
            paris,
            gpt4o,
        ),
        case(
            "chat_no_usage",
            Api::ChatCompletions,
            fixture!("chat_no_usage.sse"),
            None,
            paris,
            gpt4o,
        ),
        case(
            "chat_usage_on_content",
            Api::ChatCompletions,
            fixture!("chat_usage_on_content.sse"),
            chat_usage,
            paris,
            gpt4o,
        ),
        case(
            "chat_tool_calls",
            Api::ChatCompletions,
            fixture!("chat_tool_calls.sse"),
            Some(usage(82, 17, 0, 0, 0, 99)),
            "",
            gpt4o,
        ),
        case(
            "completions_usage",
            Api::Completions,
            fixture!("completions_usage.sse"),
            Some(usage(5, 7, 0, 0, 0, 12)),
            "\n\nThis is a test.",
            "gpt-3.5-turbo-instruct",
        ),
        case(
            "responses",
            Api::Responses,
            fixture!("responses.sse"),
            responses_usage,
            hi,
            gpt41,
        ),
        case(
            "responses_no_usage",
            Api::Responses,
            fixture!("responses_no_usage.sse"),
            None,
            hi,
            gpt41,
        ),
        case(
            "anthropic",
            Api::Messages,
            fixture!("anthropic.sse"),
            anthropic_usage,
            hello,
            claude,
        ),
        case(
            "anthropic_delta_usage",
            Api::Messages,
            fixture!("anthropic_delta_usage.sse"),
            Some(usage(472 + 1024, 89, 1024, 0, 0, 1496 + 89)),
            hello,
            claude,
        ),
        case(
            "anthropic_no_usage",
            Api::Messages,
            fixture!("anthropic_no_usage.sse"),
            None,
            hello,
            claude,
        ),
    ];
    // Compressed: brotli fixtures made with Python's brotli (see make_fixtures.py), gzip
    // made here.
    let br = |name, api, bytes: &[u8], usage, text, model| Case {
        encoding: Some("br"),
        ..case(name, api, bytes, usage, text, model)
    };
    cases.push(br(
        "chat_usage.br",
        Api::ChatCompletions,
        fixture!("chat_usage.sse.br"),
        chat_usage,
        paris,
        gpt4o,
    ));
    cases.push(br(
        "anthropic.br",
        Api::Messages,
        fixture!("anthropic.sse.br"),
        anthropic_usage,
        hello,
        claude,
    ));
    for (name, api, plain, usage, text, model) in [
        (
            "responses.gz",
            Api::Responses,
            fixture!("responses.sse"),
            responses_usage,
            hi,
            gpt41,
        ),
        (
            "chat_usage_on_content.gz",
            Api::ChatCompletions,
            fixture!("chat_usage_on_content.sse"),
            chat_usage,
            paris,
            gpt4o,
        ),
    ] {
        cases.push(Case {
            encoding: Some("gzip"),
            bytes: gzip(plain),
            ..case(name, api, plain, usage, text, model)
        });
    }
    cases
}

/// Line-ending and spacing variants of the plain cases: `\r\n`, `\r`, and `data:` /
/// `event:` without the space (plus a keep-alive comment).
fn variants(cases: &[Case]) -> Vec<Case> {
    let mut out = Vec::new();
    for c in cases.iter().filter(|c| c.encoding.is_none()) {
        let text = std::str::from_utf8(&c.bytes).unwrap();
        let crlf = text.replace('\n', "\r\n");
        let cr = text.replace('\n', "\r");
        let tight = format!(
            ": keep-alive\n\n{}",
            text.replace("data: ", "data:").replace("event: ", "event:")
        );
        for (suffix, bytes) in [("crlf", crlf), ("cr", cr), ("no-space", tight)] {
            out.push(Case {
                name: Box::leak(format!("{}.{suffix}", c.name).into_boxed_str()),
                bytes: bytes.into_bytes(),
                encoding: None,
                ..*c
            });
        }
    }
    out
}

/// Everything a run yields.
#[derive(Debug, PartialEq)]
struct Run {
    events: Vec<SseEvent>,
    infos: Vec<EventInfo>,
    usage: Option<Usage>,
    model: Option<String>,
    done: bool,
}

fn run<'a>(api: Api, encoding: Option<&str>, chunks: impl IntoIterator<Item = &'a [u8]>) -> Run {
    let mut decoder = Decoder::for_encoding(encoding).unwrap();
    let mut parser = SseParser::new();
    let mut tracker = ResponseTracker::new(api);
    let mut events = Vec::new();
    for chunk in chunks {
        let plain = decoder.push(chunk).unwrap();
        events.extend(parser.push(&plain));
    }
    let rest = decoder.finish().unwrap();
    events.extend(parser.push(&rest));
    events.extend(parser.finish());
    let infos = events.iter().map(|e| tracker.observe_event(e)).collect();
    assert_eq!(tracker.malformed_events(), 0);
    Run {
        events,
        infos,
        usage: tracker.usage(),
        model: tracker.model().map(str::to_owned),
        done: tracker.is_done(),
    }
}

impl Case {
    fn whole(&self) -> Run {
        run(self.api, self.encoding, [&self.bytes[..]])
    }
}

#[test]
fn fixtures_yield_known_usage_text_and_model() {
    let cases = cases();
    let variants = variants(&cases);
    for c in cases.iter().chain(&variants) {
        let r = c.whole();
        assert_eq!(r.usage, c.usage, "{}", c.name);
        let text: String = r
            .infos
            .iter()
            .filter_map(|i| i.output_text.as_deref())
            .collect();
        assert_eq!(text, c.text, "{}", c.name);
        assert_eq!(r.model.as_deref(), Some(c.model), "{}", c.name);
        assert!(r.done, "{}: no end event", c.name);
        assert_eq!(
            r.infos.iter().filter(|i| i.first_content).count(),
            1,
            "{}",
            c.name
        );
        let usage_only = r.infos.iter().filter(|i| i.usage_only).count();
        let base = c.name.split('.').next().unwrap();
        let want = usize::from(USAGE_ONLY.contains(&base));
        assert_eq!(usage_only, want, "{}", c.name);
    }
}

#[test]
fn variants_parse_to_the_same_events() {
    let cases = cases();
    for v in variants(&cases) {
        let base = cases
            .iter()
            .find(|c| v.name.starts_with(&format!("{}.", c.name)))
            .unwrap();
        assert_eq!(v.whole(), base.whole(), "{}", v.name);
    }
}

/// A small seeded xorshift64: reproducible cuts without a crate.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn split_at<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::with_capacity(cuts.len() + 1);
    let mut last = 0;
    for &cut in cuts {
        out.push(&bytes[last..cut]);
        last = cut;
    }
    out.push(&bytes[last..]);
    out
}

#[test]
fn every_two_way_split_yields_the_same() {
    let cases = cases();
    for c in &cases {
        let whole = c.whole();
        for cut in 0..=c.bytes.len() {
            let split = run(c.api, c.encoding, split_at(&c.bytes, &[cut]));
            assert_eq!(split, whole, "{} cut at {cut}", c.name);
        }
    }
    // For `\r\n` streams the cut that matters is between `\r` and `\n` (every other cut
    // is like one in the plain stream, and the random cuts below reach them too).
    for v in variants(&cases)
        .iter()
        .filter(|v| v.name.ends_with(".crlf"))
    {
        let whole = v.whole();
        for cut in memchr::memchr_iter(b'\r', &v.bytes).map(|i| i + 1) {
            let split = run(v.api, v.encoding, split_at(&v.bytes, &[cut]));
            assert_eq!(split, whole, "{} cut at {cut}", v.name);
        }
    }
}

#[test]
fn random_multi_cuts_yield_the_same() {
    let cases = cases();
    let variants = variants(&cases);
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    for c in cases.iter().chain(&variants) {
        let whole = c.whole();
        for round in 0..300 {
            let n = 1 + rng.below(24);
            let mut cuts: Vec<usize> = (0..n).map(|_| rng.below(c.bytes.len() + 1)).collect();
            cuts.sort_unstable();
            let split = run(c.api, c.encoding, split_at(&c.bytes, &cuts));
            assert_eq!(split, whole, "{} round {round} cuts {cuts:?}", c.name);
        }
        let bytes = run(c.api, c.encoding, c.bytes.chunks(1));
        assert_eq!(bytes, whole, "{} byte by byte", c.name);
    }
}

#[test]
fn dropping_usage_only_chunks_leaves_a_clean_stream() {
    // What a processor does for a client that did not ask for usage: re-emit every event
    // but the usage-only one, and the client sees the stream it asked for.
    let mut parser = SseParser::new();
    let mut tracker = ResponseTracker::new(Api::ChatCompletions);
    let mut out = Vec::new();
    for event in parser.push(fixture!("chat_usage.sse")) {
        if !tracker.observe_event(&event).usage_only {
            event.write_to(&mut out);
        }
    }
    assert_eq!(tracker.usage().map(|u| u.total_tokens), Some(1163));
    let mut client = ResponseTracker::new(Api::ChatCompletions);
    for event in SseParser::new().push(&out) {
        assert!(!client.observe_event(&event).usage_only);
    }
    assert_eq!(client.usage(), None);
    assert!(client.is_done());
}

#[test]
fn request_then_response_end_to_end() {
    // A streaming chat request without include_usage: inject it, estimate, then count.
    let body = br#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"What is the capital of France?"}]}"#;
    let req = LlmRequest::parse(Api::ChatCompletions, body).unwrap();
    assert_eq!(req.include_usage, None);
    let injected = set_include_usage(body).unwrap();
    let again = LlmRequest::parse(Api::ChatCompletions, &injected).unwrap();
    assert_eq!(again.include_usage, Some(true));
    assert_eq!(again.prompt, req.prompt);
    let estimate = estimate_prompt_tokens(req.model.as_deref().unwrap(), &req);
    assert_eq!(
        estimate,
        Encoding::O200kBase.count("What is the capital of France?") + 4 + 3
    );
}
