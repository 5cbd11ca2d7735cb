//! Guard engine hot paths:
//!
//! - `guard/scan`: all built-in detectors over ~384 KiB of generated chat text with
//!   sparse entities, beside `memchr3` over the same bytes (the ceiling: a SIMD pass that
//!   only looks for three bytes) and, for scale, one `regex` alternation of comparable
//!   built-in patterns without any validation; and the built-ins plus two user regexes
//!   and a keyword list.
//! - `guard/hostile`: 1 MiB of near-matches of every detector (pieces separated, and
//!   glued so they sometimes complete each other), with the memchr ceiling again.
//! - `guard/stream`: the stream masker fed 16 KiB of chat text in SSE-sized deltas
//!   (elements = deltas, so criterion's rate is events per second), beside masking the
//!   same text whole.
//! - `guard/normalize`: the cost of Unicode normalization before detection, in one run:
//!   `scan` (normalizes) beside `scan_raw_into` (does not) on the same text — the
//!   quality corpus's chat (`ascii`: mostly English, with some French and Chinese
//!   sentences, so it is normalized rather than passed by the `is_ascii` check), and chat
//!   with accented, CJK, fullwidth and zero-width characters (normalized and mapped back).

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tollgate::guard::{KeywordList, RegexRule, RuleSet, Scanner, StreamMasker};

// Shared with the library's tests and `benches/guard_quality.rs`; each uses a part of it.
#[allow(dead_code, unused_imports)]
#[path = "../src/guard/quality.rs"]
mod quality;

fn builtins() -> Scanner {
    Scanner::new(&RuleSet::all_builtins()).expect("built-ins compile")
}

/// The built-ins plus two user regexes with word boundaries `b` (`\b` is Unicode-aware;
/// `(?-u:\b)` is ASCII-only) and a keyword list.
fn with_user_rules(b: &str) -> Scanner {
    let set = RuleSet::all_builtins()
        .with_regex(RegexRule::new("ticket", format!(r"{b}TCK-\d{{4,8}}{b}")).max_len(16))
        .with_regex(RegexRule::new("employee_id", format!(r"{b}EMP[0-9]{{6}}{b}")).max_len(16))
        .with_keywords(KeywordList::new(
            "codenames",
            ["Project Falcon", "Bluebird", "Nightjar", "Operation Tern"],
        ));
    Scanner::new(&set).expect("rules compile")
}

fn keywords_only() -> Scanner {
    let set = RuleSet::new().with_keywords(KeywordList::new(
        "codenames",
        ["Project Falcon", "Bluebird", "Nightjar", "Operation Tern"],
    ));
    Scanner::new(&set).expect("rules compile")
}

/// Roughly the built-ins' shapes as one regex, for scale: what a "just use a regex"
/// guard would run before any checksum.
fn regex_alternation() -> regex::Regex {
    regex::Regex::new(concat!(
        r"(?-u)[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}",
        r"|\b(?:\d[ -]?){13,19}\b",
        r"|\b\d{3}-\d{2}-\d{4}\b",
        r"|(?:\+\d{1,3}[ .-]?)?\(?\d{3}\)?[ .-]\d{3}[ .-]\d{4}\b",
        r"|\b(?:\d{1,3}\.){3}\d{1,3}\b",
        r"|\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b",
        r"|\b(?:AKIA|ASIA)[A-Z0-9]{16}\b",
        r"|\bgh[pousr]_[A-Za-z0-9]{36,}\b|\bgithub_pat_\w{40,}",
        r"|\bglpat-[\w-]{20,}|\bxox[abpr]-[A-Za-z0-9-]{10,}",
        r"|\bsk-(?:ant-)?[\w-]{20,}",
        r"|\bey[JA][\w-]+\.[\w-]+\.[\w-]*",
        r"|-----BEGIN [A-Z ]*PRIVATE KEY-----",
    ))
    .expect("regex compiles")
}

fn scan(c: &mut Criterion) {
    let chat = quality::chat_text(7, 384 * 1024);
    let bytes = chat.as_bytes();
    let s = builtins();
    let unicode_b = with_user_rules(r"\b");
    let ascii_b = with_user_rules(r"(?-u:\b)");
    let keywords = keywords_only();
    let re = regex_alternation();
    let mut g = c.benchmark_group("guard/scan");
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("builtins/chat", |b| {
        b.iter(|| s.scan(black_box(&chat)).len())
    });
    g.bench_function("memchr3_ceiling/chat", |b| {
        b.iter(|| memchr::memchr3_iter(b'@', b':', b'-', black_box(bytes)).count())
    });
    g.bench_function("regex_alternation_unvalidated/chat", |b| {
        b.iter(|| re.find_iter(black_box(&chat)).count())
    });
    g.bench_function("builtins+2regex+keywords/chat", |b| {
        b.iter(|| unicode_b.scan(black_box(&chat)).len())
    });
    g.bench_function("builtins+2regex_ascii_b+keywords/chat", |b| {
        b.iter(|| ascii_b.scan(black_box(&chat)).len())
    });
    g.bench_function("keywords_only/chat", |b| {
        b.iter(|| keywords.scan(black_box(&chat)).len())
    });
    g.bench_function("mask/chat", |b| b.iter(|| s.mask(black_box(&chat)).len()));
    g.finish();
}

fn hostile(c: &mut Criterion) {
    let s = builtins();
    let mut g = c.benchmark_group("guard/hostile");
    for (name, sep) in [("separated", " "), ("glued", "")] {
        let noise = quality::hostile(1 << 20, sep);
        g.throughput(Throughput::Bytes(noise.len() as u64));
        g.bench_function(format!("builtins/{name}"), |b| {
            b.iter(|| s.scan(black_box(&noise)).len())
        });
        g.bench_function(format!("memchr3_ceiling/{name}"), |b| {
            b.iter(|| memchr::memchr3_iter(b'@', b':', b'-', black_box(noise.as_bytes())).count())
        });
    }
    g.finish();
}

/// `text` cut into deltas of 1–24 bytes (a token or a few), on char boundaries.
fn deltas(text: &str) -> Vec<&str> {
    let mut rng = quality::XorShift::new(11);
    let mut out = Vec::new();
    let mut at = 0;
    while at < text.len() {
        let mut end = (at + 1 + rng.below(24) as usize).min(text.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        out.push(&text[at..end]);
        at = end;
    }
    out
}

fn stream(c: &mut Criterion) {
    let s = Arc::new(builtins());
    let text = quality::chat_text(3, 16 * 1024);
    let events = deltas(&text);
    let mut g = c.benchmark_group("guard/stream");
    g.throughput(Throughput::Elements(events.len() as u64));
    g.bench_function("stream_masker/16KiB_in_deltas", |b| {
        b.iter(|| {
            let mut m = StreamMasker::new(s.clone());
            let mut out = String::with_capacity(text.len());
            for e in &events {
                m.push_into(black_box(e), &mut out);
            }
            m.finish_into(&mut out);
            out.len()
        })
    });
    g.bench_function("whole_text_mask/16KiB", |b| {
        b.iter(|| s.mask(black_box(&text)).len())
    });
    g.finish();
}

/// Chat text with a non-ASCII word every few words: accents, CJK, fullwidth forms and
/// zero-width spaces, as multilingual or obfuscated prompts have.
fn multilingual(bytes: usize) -> String {
    let words = [
        "café",
        "日本語",
        "ｆｕｌｌ",
        "zero\u{200B}width",
        "naïve",
        "＠",
        "Ünïcödé",
    ];
    let mut rng = quality::XorShift::new(5);
    let mut out = String::new();
    for (i, w) in quality::chat_text(9, bytes).split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(w);
        if rng.chance(15) {
            out.push(' ');
            let word: &&str = rng.pick(&words);
            out.push_str(word);
        }
    }
    out
}

fn normalize(c: &mut Criterion) {
    let s = builtins();
    let mut g = c.benchmark_group("guard/normalize");
    let mut found = Vec::new();
    for (name, text) in [
        ("ascii", quality::chat_text(7, 384 * 1024)),
        ("multilingual", multilingual(384 * 1024)),
    ] {
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_function(format!("with_normalization/{name}"), |b| {
            b.iter(|| {
                s.scan_into(black_box(&text), &mut found);
                found.len()
            })
        });
        g.bench_function(format!("without_normalization/{name}"), |b| {
            b.iter(|| {
                s.scan_raw_into(black_box(&text), &mut found);
                found.len()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, scan, hostile, stream, normalize);
criterion_main!(benches);
