//! The stream masker must give exactly `mask(whole text)` however the text is split.

use std::sync::Arc;

use super::StreamMasker;
use crate::guard::quality::{Corpus, XorShift};
use crate::guard::{KeywordList, Limits, RegexRule, RuleSet, Scanner};

fn all_builtins() -> Arc<Scanner> {
    Arc::new(Scanner::new(&RuleSet::all_builtins()).unwrap())
}

/// Streams `text` cut at `cuts` (byte offsets on char boundaries, ascending).
fn streamed(scanner: &Arc<Scanner>, text: &str, cuts: &[usize]) -> String {
    let mut m = StreamMasker::new(scanner.clone());
    let mut out = String::new();
    let mut at = 0;
    for &c in cuts {
        m.push_into(&text[at..c], &mut out);
        at = c;
    }
    m.push_into(&text[at..], &mut out);
    m.finish_into(&mut out);
    assert_eq!(m.held(), 0);
    out
}

fn boundaries(text: &str) -> Vec<usize> {
    (0..=text.len())
        .filter(|&k| text.is_char_boundary(k))
        .collect()
}

const CARD: &str = "4111 1111 1111 1111";
const EMAIL: &str = "jane.doe+billing@example.co.uk";
const SECRET: &str = "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb7cDe0fGh";

#[test]
fn every_two_and_three_way_split_of_an_email_a_card_and_a_secret() {
    let s = all_builtins();
    for entity in [EMAIL, CARD, SECRET] {
        let text = format!("Héllo — use {entity}, merci.");
        let want = s.mask(&text);
        assert!(!want.contains(entity), "{want}");
        let b = boundaries(&text);
        for &i in &b {
            assert_eq!(streamed(&s, &text, &[i]), want, "split at {i}");
            for &j in b.iter().filter(|&&j| j >= i) {
                assert_eq!(streamed(&s, &text, &[i, j]), want, "split at {i}, {j}");
            }
        }
    }
}

#[test]
fn one_byte_at_a_time() {
    let s = all_builtins();
    let text = format!(
        "a {EMAIL} b {CARD} c {SECRET} d +1 (415) 555-0123 e DE89 3704 0044 0532 0130 00 f 2001:db8::1 g"
    );
    assert_eq!(streamed(&s, &text, &boundaries(&text)), s.mask(&text));
}

#[test]
fn random_multi_splits_of_a_generated_corpus() {
    let s = all_builtins();
    let corpus = Corpus::generate(7, 400);
    let mut rng = XorShift::new(0x9e37_79b9_7f4a_7c15);
    for doc in corpus.documents(8) {
        let want = s.mask(&doc);
        for _ in 0..6 {
            let mut cuts = Vec::new();
            let mut at = 0;
            loop {
                at += 1 + rng.below(24) as usize;
                while at < doc.len() && !doc.is_char_boundary(at) {
                    at += 1;
                }
                if at >= doc.len() {
                    break;
                }
                cuts.push(at);
            }
            assert_eq!(streamed(&s, &doc, &cuts), want, "cuts {cuts:?}");
        }
    }
}

#[test]
fn private_key_split_everywhere_is_masked_whole() {
    let s = all_builtins();
    let key = crate::guard::builtin::tests::KEY;
    let text = format!("here:\n{key}\nbye");
    let want = "here:\n<SECRET>\nbye";
    assert_eq!(s.mask(&text), want);
    for k in boundaries(&text) {
        assert_eq!(streamed(&s, &text, &[k]), want, "split at {k}");
    }
    assert_eq!(streamed(&s, &text, &boundaries(&text)), want);
}

#[test]
fn user_rules_stream_like_whole_text() {
    let set = RuleSet::all_builtins()
        .with_regex(RegexRule::new("ticket", r"\bTCK-\d{4,8}\b").max_len(16))
        .with_keywords(KeywordList::new("codename", ["Project Falcon", "falcon"]));
    let s = Arc::new(Scanner::new(&set).unwrap());
    let text = "Re TCK-1234 and TCK-99999999 on project falcon: falcon? falconry TCK-123";
    let want = s.mask(text);
    assert_eq!(
        want,
        "Re <TICKET> and <TICKET> on <CODENAME>: <CODENAME>? falconry TCK-123"
    );
    let b = boundaries(text);
    for &i in &b {
        for &j in b.iter().filter(|&&j| j >= i).step_by(3) {
            assert_eq!(streamed(&s, text, &[i, j]), want, "split at {i}, {j}");
        }
    }
}

#[test]
fn prose_is_held_back_by_at_most_its_last_word() {
    let s = all_builtins();
    let mut m = StreamMasker::new(s);
    let mut out = String::new();
    for word in "The quick brown fox jumps over the lazy dog. ".split_inclusive(' ') {
        m.push_into(word, &mut out);
        assert_eq!(m.held(), 0, "after {word:?}");
    }
    m.push_into("Then it sle", &mut out);
    assert_eq!(m.held(), 3);
    assert_eq!(m.finish(), "sle");
}

#[test]
fn findings_are_reported_with_stream_offsets() {
    let s = all_builtins();
    let text = format!("x {EMAIL} y {CARD} z");
    let mut m = StreamMasker::new(s.clone());
    let mut out = String::new();
    let mut found = Vec::new();
    for piece in text.as_bytes().chunks(5) {
        m.push_into(std::str::from_utf8(piece).unwrap(), &mut out);
        found.extend(m.take_findings());
    }
    m.finish_into(&mut out);
    found.extend(m.take_findings());
    assert_eq!(found, s.scan(&text));
    assert_eq!(&text[found[0].start..found[0].end], EMAIL);
}

#[test]
fn works_with_a_borrowed_scanner() {
    let s = Scanner::new(&RuleSet::all_builtins()).unwrap();
    let mut m = StreamMasker::new(&s);
    let mut out = m.push("mail bob@exam");
    out += &m.push("ple.com now");
    out += &m.finish();
    assert_eq!(out, "mail <EMAIL> now");
}

/// Random soups of entity fragments and trigger characters: every way they glue
/// together must stream exactly like the whole text.
#[test]
fn fragment_soup_streams_like_whole_text() {
    const FRAGMENTS: &[&str] = &[
        "4111 1111 1111 1111",
        "4111",
        " 1111",
        "-1111",
        "bob@x.io",
        "@",
        "x.io",
        "sk-",
        "sk-proj-",
        "Ab3dEf6hIj9kLm2nOp5qRs8tUv1w",
        "eyJhbGciOiJIUzI1NiJ9",
        ".",
        "eyJhIjoxfQ",
        "c2ln",
        "-----BEGIN RSA PRIVATE KEY-----\n",
        "MIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tP",
        "-----END RSA PRIVATE KEY-----",
        "-----",
        "DE89",
        " 3704 0044 0532 0130 00",
        "370400440532013000",
        "2001:db8::",
        "::",
        ":",
        "1",
        "-",
        " ",
        "+1 ",
        "(415) ",
        "555-0123",
        "415-",
        "SSN ",
        "123456789",
        "123-45-6789",
        "AKIA",
        "IOSFODNN7EXAMPLE",
        "ghp_",
        "1234567890abcdefghijABCDEFGHIJ123456",
        "xoxb-",
        "1234567890-",
        "glpat-",
        "é",
        "\n",
        "192.168.",
        "0.1",
        "https://",
        "mailto:",
        "_",
        "a",
        "Z",
        "TCK-1234",
        "falcon",
    ];
    let set = RuleSet::all_builtins()
        .with_regex(RegexRule::new("ticket", r"\bTCK-\d{4,8}\b").max_len(16))
        .with_keywords(KeywordList::new("codename", ["falcon", "falcon falcon"]));
    // Small limits too, so blocks and tokens cross them.
    let tight = set.clone().with_limits(Limits {
        private_key_max_len: 100,
        jwt_max_len: 64,
    });
    let scanners = [
        Arc::new(Scanner::new(&set).unwrap()),
        Arc::new(Scanner::new(&tight).unwrap()),
    ];
    let mut rng = XorShift::new(0x50_0c);
    for round in 0..1500 {
        let s = &scanners[round % 2];
        let n = 1 + rng.below(24) as usize;
        let text: String = (0..n).map(|_| *rng.pick(FRAGMENTS)).collect();
        let want = s.mask(&text);
        let mut cuts: Vec<usize> = (0..rng.below(12))
            .map(|_| rng.below(text.len() as u64 + 1) as usize)
            .filter(|&c| text.is_char_boundary(c))
            .collect();
        cuts.sort_unstable();
        assert_eq!(
            streamed(s, &text, &cuts),
            want,
            "round {round}: {text:?} cut at {cuts:?}"
        );
    }
}

/// A finding that ends inside the normalized expansion of one original character (NFKC
/// `⒑` is `10.`, and the ticket's digits end after its `10`) takes the whole character,
/// however the stream is cut (found by the `guard` fuzz target).
#[test]
fn a_finding_ending_inside_an_expanded_character_streams_like_whole_text() {
    let set = RuleSet::all_builtins()
        .with_regex(RegexRule::new("ticket", r"\bTCK-\d{4,8}\b").max_len(16));
    let s = Arc::new(Scanner::new(&set).unwrap());
    for text in [
        "on TCK-1234\u{2491} then",
        "TCK-1234\u{2491}",
        "x TCK-12\u{2491}\u{2491} y",
        "h, TCK-1234\u{2491}\u{7ef}\u{fffd}0v",
        "TCK-1234\u{2491}\u{7ef}",
    ] {
        let want = s.mask(text);
        assert!(want.contains("<TICKET>"), "{want}");
        let b = boundaries(text);
        for &i in &b {
            for &j in b.iter().filter(|&&j| j >= i) {
                assert_eq!(
                    streamed(&s, text, &[i, j]),
                    want,
                    "{text:?} split at {i}, {j}"
                );
            }
        }
    }
}

/// The `guard` fuzz target's finding, as it came: with these cuts a ticket found across
/// `⒑` ended past the stream's cut in original bytes.
#[test]
fn fuzz_finding_a_ticket_ending_inside_an_expanded_character() {
    let set = RuleSet::all_builtins()
        .with_regex(RegexRule::new("ticket", r"\bTCK-\d{4,8}\b").max_len(16))
        .with_keywords(KeywordList::new("codename", ["Project Falcon", "falcon"]))
        .with_keywords(
            KeywordList::new("exact", ["Ünïcode", "x@y"])
                .case_insensitive(false)
                .whole_word(false),
        );
    let s = Arc::new(Scanner::new(&set).unwrap());
    let text = "Cnzj4p4WGeEX6Ppy\u{fffd}\u{fffd}\u{fffd}\u{fffd}1tPf\u{fffd}9Cnzj4p4WGeKL\u{1}+s0Pt8Qu\u{a}---e0fGim, TCK-1234 on2 0130 0wXy4zAb7cDe0fGh, TCK-1234\u{2491}\u{7ef}\u{fffd}\u{fffd}\u{fffd}0v\u{fffd}\u{0}\u{0}\u{0}4\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}LI";
    let want = s.mask(text);
    assert_eq!(
        streamed(
            &s,
            text,
            &[
                0, 0, 0, 0, 0, 9, 19, 28, 37, 46, 55, 64, 73, 82, 91, 100, 109, 118, 127, 136, 145,
                154, 163, 172, 189, 189, 189, 189, 189, 189, 189, 189, 189, 189, 189, 189, 189,
                189, 189, 189, 189, 189, 189, 189, 189, 189, 189, 189, 189, 189, 189, 189, 189,
                189, 189, 189, 189, 189, 189, 189, 189, 189, 189, 189
            ]
        ),
        want
    );
}

/// Text that normalizes to nothing (format characters) is not held back at the end, with
/// or without findings before it (found by the `guard` fuzz target: a lone U+034F).
#[test]
fn text_that_normalizes_to_nothing_is_emitted_at_the_end() {
    let s = all_builtins();
    for text in [
        "\u{34f}",
        "\u{200b}\u{34f}",
        "hi\u{34f}",
        "mail jane@example.com\u{34f}",
        "\u{34f} mail jane@example.com",
    ] {
        let want = s.mask(text);
        for &i in &boundaries(text) {
            assert_eq!(streamed(&s, text, &[i]), want, "{text:?} split at {i}");
        }
    }
}
