//! Hostile input: near-matches of every detector, huge runs, invalid UTF-8. These tests
//! check only correctness; `benches/guard.rs` shows the scan stays linear on them.

use std::sync::Arc;

use super::quality::hostile;
use super::{Finding, RuleSet, Scanner, StreamMasker};

fn scanner() -> Scanner {
    Scanner::new(&RuleSet::all_builtins()).unwrap()
}

/// Findings are sorted, disjoint, non-empty, on char boundaries.
fn assert_well_formed(text: &str, found: &[Finding]) {
    let mut last = 0;
    for f in found {
        assert!(f.start >= last && f.end > f.start, "{f:?} after {last}");
        assert!(text.is_char_boundary(f.start) && text.is_char_boundary(f.end));
        last = f.end;
    }
}

#[test]
fn a_mebibyte_of_near_matches_finds_nothing() {
    let s = scanner();
    let noise = hostile(1 << 20, " ");
    let found = s.scan(&noise);
    let first: Vec<_> = found
        .iter()
        .take(5)
        .map(|f| &noise[f.start..f.end])
        .collect();
    assert!(
        found.is_empty(),
        "{} findings, first {first:?}",
        found.len()
    );
}

#[test]
fn glued_near_matches_give_well_formed_findings_and_keep_real_ones() {
    let s = scanner();
    let noise = hostile(1 << 20, "");
    let found = s.scan(&noise);
    assert_well_formed(&noise, &found);
    // Pieces glued together do form entities (`ghp_` + a run of `a`s is a token), and
    // each finding must be one a scan of its own surroundings agrees with.
    for f in found.iter().step_by(7) {
        let window = &noise[f.start.saturating_sub(200)..(f.end + 200).min(noise.len())];
        let again = s.scan(window);
        assert!(
            again.iter().any(|g| g.rule == f.rule && g.len() == f.len()),
            "{f:?}"
        );
    }
    let planted = format!("{noise} bob@example.com {noise} 4111 1111 1111 1111 ");
    let masked = s.mask(&planted);
    assert!(masked.contains(" <EMAIL> ") && masked.contains(" <CREDIT_CARD> "));
}

#[test]
fn huge_runs_of_trigger_bytes() {
    let s = scanner();
    for run in [
        "7".repeat(1 << 20),
        "@".repeat(1 << 20),
        ":".repeat(1 << 20),
        "-".repeat(1 << 20),
        "_".repeat(1 << 20),
        "A".repeat(1 << 20),
        "a".repeat(1 << 20),
        "ey".repeat(1 << 19),
        "1.".repeat(1 << 19),
        "1 ".repeat(1 << 19),
        "+1".repeat(1 << 19),
        "(1".repeat(1 << 19),
        "a@b".repeat(1 << 18),
    ] {
        let found = s.scan(&run);
        assert_well_formed(&run, &found);
        assert!(found.len() <= 1, "{}: {found:?}", &run[..8]);
    }
}

#[test]
fn streaming_hostile_input_equals_whole_text() {
    let s = Arc::new(scanner());
    let noise = hostile(48 * 1024, "");
    let want = s.mask(&noise);
    let mut m = StreamMasker::new(s);
    let mut out = String::new();
    let mut at = 0;
    let mut step = 1;
    while at < noise.len() {
        let mut end = (at + step).min(noise.len());
        while !noise.is_char_boundary(end) {
            end += 1;
        }
        m.push_into(&noise[at..end], &mut out);
        at = end;
        step = step % 97 + 13;
    }
    m.finish_into(&mut out);
    assert_eq!(out, want);
}

#[test]
fn invalid_utf8_never_panics() {
    let s = scanner();
    let mut bytes = hostile(64 * 1024, "").into_bytes();
    let mut rng = super::quality::XorShift::new(99);
    for _ in 0..2000 {
        let at = rng.below(bytes.len() as u64) as usize;
        bytes[at] = 0x80 | rng.below(0x80) as u8;
    }
    let found = s.scan_bytes(&bytes);
    let masked = s.mask_bytes(&bytes);
    assert!(masked.len() <= bytes.len() + found.len() * 16);
}
