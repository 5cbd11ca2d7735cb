//! The guard scanner, differentially: streaming a text through `StreamMasker` in any
//! split gives exactly the whole-text `Scanner::mask`, the same findings as
//! `Scanner::scan`, and holds nothing back at the end; `mask_bytes` agrees with `mask`.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use tollgate::guard::{KeywordList, RegexRule, RuleSet, Scanner, StreamMasker};
use tollgate_fuzz::{str_chunks, Input};

/// The built-ins alone, and with a bounded user regex and keyword lists (both cases).
fn scanners() -> &'static [Arc<Scanner>; 2] {
    static SCANNERS: OnceLock<[Arc<Scanner>; 2]> = OnceLock::new();
    SCANNERS.get_or_init(|| {
        let user = RuleSet::all_builtins()
            .with_regex(RegexRule::new("ticket", r"\bTCK-\d{4,8}\b").max_len(16))
            .with_keywords(KeywordList::new("codename", ["Project Falcon", "falcon"]))
            .with_keywords(
                KeywordList::new("exact", ["Ünïcode", "x@y"])
                    .case_insensitive(false)
                    .whole_word(false),
            );
        [
            Arc::new(Scanner::new(&RuleSet::all_builtins()).unwrap()),
            Arc::new(Scanner::new(&user).unwrap()),
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = Input::parse(data) else {
        return;
    };
    let scanner = &scanners()[usize::from(input.flags & 1)];
    let text = String::from_utf8_lossy(input.payload);
    let want = scanner.mask(&text);
    let found = scanner.scan(&text);
    assert_eq!(scanner.mask_bytes(text.as_bytes()), want.as_bytes());
    let mut m = StreamMasker::new(scanner.clone());
    let mut out = String::new();
    let mut streamed = Vec::new();
    for piece in str_chunks(input.splits, &text) {
        m.push_into(piece, &mut out);
        streamed.extend(m.take_findings());
        assert!(
            want.starts_with(&out),
            "emitted text that the whole-text mask differs on"
        );
    }
    m.finish_into(&mut out);
    streamed.extend(m.take_findings());
    assert_eq!(m.held(), 0);
    assert_eq!(out, want, "streamed mask differs");
    assert_eq!(streamed, found, "streamed findings differ");
});
