//! `ssn`: US Social Security numbers.
//!
//! `AAA-GG-SSSS` with dashes or spaces (the same both times); nine unbroken digits only
//! with context — `ssn`, `ss#` or `social security` (any case) in the 32 bytes before —
//! since a bare nine-digit number is far more often something else. Never issued, and
//! rejected: area 000, 666 and 900–999, group 00, serial 0000. Numeric boundary rules as
//! in `text.rs`.

use super::text::{digits_of, groups, numeric_left_ok, numeric_right_ok, run_end, value};

/// How far before an unformatted number the context words are looked for.
pub(super) const CONTEXT: usize = 32;

/// The SSN starting at the first digit `i`.
pub(super) fn find(s: &[u8], i: usize) -> Option<(usize, usize)> {
    let first = run_end(s, i, 9, |c| c.is_ascii_digit()) - i;
    let (end, sep) = match first {
        3 => {
            let sep = s.get(i + 3).copied().filter(|c| *c == b' ' || *c == b'-')?;
            let mut lens = [0u8; 8];
            let (end, n) = groups(s, i, Some(sep), 4, 3, &mut lens)?;
            if n != 3 || lens[..3] != [3, 2, 4] {
                return None;
            }
            (end, Some(sep))
        }
        9 if has_context(s, i) => (i + 9, None),
        _ => return None,
    };
    let mut buf = [0u8; 9];
    let d = digits_of(s, i, end, &mut buf)?;
    let (area, group, serial) = (value(&d[..3]), value(&d[3..5]), value(&d[5..]));
    let valid = area != 0 && area != 666 && area < 900 && group != 0 && serial != 0;
    (valid && numeric_left_ok(s, i, sep) && numeric_right_ok(s, end, sep)).then_some((i, end))
}

fn has_context(s: &[u8], i: usize) -> bool {
    let window = &s[i.saturating_sub(CONTEXT)..i];
    let mut lower = [0u8; CONTEXT];
    for (l, c) in lower.iter_mut().zip(window) {
        *l = c.to_ascii_lowercase();
    }
    let lower = &lower[..window.len()];
    [&b"ssn"[..], b"ss#", b"social security"]
        .iter()
        .any(|w| lower.windows(w.len()).any(|x| x == *w))
}

#[cfg(test)]
mod tests {
    use crate::guard::builtin::tests::found;

    #[test]
    fn formatted_and_in_context() {
        for (text, want) in [
            ("SSN 123-45-6789.", "123-45-6789"),
            ("ssn: 123 45 6789", "123 45 6789"),
            ("her number is 078-05-1120", "078-05-1120"),
            ("SSN: 123456789", "123456789"),
            ("Social Security No. 536228741", "536228741"),
            ("ss# 536228741", "536228741"),
            ("номер 899-99-9999 ✓", "899-99-9999"),
        ] {
            assert_eq!(found("ssn", text), [want], "{text}");
        }
    }

    #[test]
    fn invalid_ranges_and_look_alikes_are_rejected() {
        for text in [
            "000-12-3456",
            "666-12-3456",
            "900-12-3456",
            "999-12-3456",
            "123-00-4567",
            "123-45-0000",
            "123-45 6789",      // mixed separators
            "123456789",        // no context
            "order 123456789",  // no context
            "SSN 000000001",    // area 000
            "SSN 1234567890",   // ten digits
            "ssn 123-45-67890", // long serial
            "1-123-45-6789",    // glued
            "123-45-6789-1",
            "2024-12-31",
        ] {
            assert_eq!(found("ssn", text), Vec::<&str>::new(), "{text}");
        }
    }
}
