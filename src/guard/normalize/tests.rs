use super::*;
use crate::guard::RuleId;

fn f(start: usize, end: usize) -> Finding {
    Finding {
        rule: RuleId(0),
        start,
        end,
    }
}

#[test]
fn ascii_is_its_own_form() {
    let n = Normalized::of("plain text");
    assert_eq!(n.text, "plain text");
    assert!(n.is_identity());
    assert_eq!(n.start(3), 3);
    assert_eq!(n.end(5), 5);
}

#[test]
fn fullwidth_at_maps_back_to_its_three_bytes() {
    let orig = "mail a＠b.io now";
    let n = Normalized::of(orig);
    assert_eq!(n.text, "mail a@b.io now");
    assert!(!n.is_identity());
    let m = n.to_original(&f(5, 11)); // "a@b.io"
    assert_eq!(&orig[m.start..m.end], "a＠b.io");
    assert_eq!(n.start(n.text.len()), orig.len());
}

#[test]
fn invisible_characters_inside_a_finding_are_covered() {
    let orig = "key sk-ab\u{200B}cd end";
    let n = Normalized::of(orig);
    assert_eq!(n.text, "key sk-abcd end");
    let m = n.to_original(&f(4, 11));
    assert_eq!(&orig[m.start..m.end], "sk-ab\u{200B}cd");
    // Before and after a finding they stay outside it.
    let orig = "\u{200B}x\u{200B}";
    let n = Normalized::of(orig);
    let m = n.to_original(&f(0, 1));
    assert_eq!(&orig[m.start..m.end], "x");
}

#[test]
fn a_finding_inside_one_expanded_character_covers_it_whole() {
    let orig = "5㎏!"; // NFKC: "5kg!"
    let n = Normalized::of(orig);
    assert_eq!(n.text, "5kg!");
    let m = n.to_original(&f(2, 3)); // "g"
    assert_eq!(&orig[m.start..m.end], "㎏");
    assert_eq!(n.floor_boundary(2), 1);
}

#[test]
fn pushing_pieces_equals_the_whole() {
    let orig = "a＠b\u{200B}c。d 日本 ４２";
    let whole = Normalized::of(orig);
    for split in orig.char_indices().map(|(i, _)| i) {
        let mut n = Normalized::default();
        n.push(&orig[..split]);
        n.push(&orig[split..]);
        assert_eq!(n.text, whole.text);
        for b in 0..=n.text.len() {
            if n.text.is_char_boundary(b) {
                assert_eq!(n.start(b), whole.start(b), "split {split}, byte {b}");
            }
        }
    }
}

#[test]
fn drain_keeps_the_map_of_the_rest() {
    let orig = "ab＠cd\u{200B}ef＠gh";
    let mut n = Normalized::of(orig);
    assert_eq!(n.text, "ab@cdef@gh");
    let keep = n.floor_boundary(3);
    let gone = n.drain(keep);
    assert_eq!(gone, "ab＠".len());
    let rest = &orig[gone..];
    assert_eq!(n.text, "cdef@gh");
    let m = n.to_original(&f(0, 7));
    assert_eq!(&rest[m.start..m.end], "cd\u{200B}ef＠gh");
    assert_eq!(n.orig_len(), rest.len());
    let gone = n.drain(n.floor_boundary(1)); // inside a same run
    assert_eq!(gone, 1);
    assert_eq!(n.start(0), 0);
    assert_eq!(n.text, "def@gh");
}

// === the scanner and the stream masker over obfuscated text ===

mod scanning {
    use std::sync::Arc;

    use crate::guard::{RuleSet, Scanner, StreamMasker};

    const SECRET: &str = "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb7cDe0fGh";

    fn scanner() -> Arc<Scanner> {
        Arc::new(Scanner::new(&RuleSet::all_builtins()).unwrap())
    }

    #[test]
    fn obfuscated_entities_are_masked_in_their_original_bytes() {
        let s = scanner();
        let split = format!("{}\u{200B}{}", &SECRET[..10], &SECRET[10..]);
        let cases = [
            ("mail jane＠example.com ok", "mail <EMAIL> ok"),
            ("mail jane﹫example。com ok", "mail <EMAIL> ok"),
            ("call (268) 195-0446 now", "call <PHONE> now"),
            ("call +1 268-195-0446 now", "call <PHONE> now"),
            (
                "card ４１１１ １１１１ １１１１ １１１１.",
                "card <CREDIT_CARD>.",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(s.mask(text), want, "{text}");
        }
        let masked = s.mask(&format!("key {split} end"));
        assert!(
            masked.starts_with("key <") && masked.ends_with("> end"),
            "{masked}"
        );
        assert!(
            !masked.contains("sk-proj") && !masked.contains('\u{200B}'),
            "{masked}"
        );
        // Text around findings keeps its own characters.
        assert_eq!(
            s.mask("Ｈéllo\u{200B} jane＠example.com"),
            "Ｈéllo\u{200B} <EMAIL>"
        );
    }

    #[test]
    fn the_stream_masks_obfuscated_text_like_the_whole_text() {
        let s = scanner();
        let text = format!(
            "Héllo ｊａｎｅ＠example。com, key {}\u{200B}{} and (268) 195‐0446 — ５㎏ fin",
            &SECRET[..12],
            &SECRET[12..]
        );
        let want = s.mask(&text);
        assert!(
            !want.contains("example") && !want.contains("Ab3dEf"),
            "{want}"
        );
        let cuts: Vec<usize> = (0..=text.len())
            .filter(|&k| text.is_char_boundary(k))
            .collect();
        for &i in &cuts {
            for &j in cuts.iter().filter(|&&j| j >= i).step_by(7) {
                let mut m = StreamMasker::new(s.clone());
                let mut out = String::new();
                m.push_into(&text[..i], &mut out);
                m.push_into(&text[i..j], &mut out);
                m.push_into(&text[j..], &mut out);
                m.finish_into(&mut out);
                assert_eq!(out, want, "split at {i}, {j}");
                assert_eq!(m.held(), 0);
            }
        }
    }
}
