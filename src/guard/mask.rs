//! Replacing findings with placeholders.

use super::scanner::{Finding, RuleId};

/// `text` with each finding replaced by `placeholder_for(finding.rule)`.
///
/// `findings` are expected as [`Scanner::scan`](super::Scanner::scan) returns them
/// (sorted, non-overlapping, on char boundaries); a finding that overlaps an earlier one
/// or does not lie on char boundaries inside `text` is skipped rather than panicking.
pub fn mask<'p>(
    text: &str,
    findings: &[Finding],
    mut placeholder_for: impl FnMut(RuleId) -> &'p str,
) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for f in findings {
        if f.start < at || text.get(f.start..f.end).is_none() {
            continue;
        }
        out.push_str(&text[at..f.start]);
        out.push_str(placeholder_for(f.rule));
        at = f.end;
    }
    out.push_str(&text[at..]);
    out
}

/// [`mask`] over bytes that may not be valid UTF-8 (findings from
/// [`Scanner::scan_bytes`](super::Scanner::scan_bytes)); everything outside findings is
/// copied unchanged, invalid sequences included.
pub fn mask_bytes<'p>(
    bytes: &[u8],
    findings: &[Finding],
    mut placeholder_for: impl FnMut(RuleId) -> &'p str,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    for f in findings {
        if f.start < at || f.start > f.end || f.end > bytes.len() {
            continue;
        }
        out.extend_from_slice(&bytes[at..f.start]);
        out.extend_from_slice(placeholder_for(f.rule).as_bytes());
        at = f.end;
    }
    out.extend_from_slice(&bytes[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(start: usize, end: usize) -> Finding {
        Finding {
            rule: RuleId(0),
            start,
            end,
        }
    }

    #[test]
    fn replaces_in_order_and_skips_bad_spans() {
        let t = "ab cd ef é";
        assert_eq!(mask(t, &[f(0, 2), f(6, 8)], |_| "<X>"), "<X> cd <X> é");
        // Overlapping, out of range and mid-char findings are ignored.
        assert_eq!(
            mask(t, &[f(0, 2), f(1, 4), f(9, 10), f(3, 99)], |_| "<X>"),
            "<X> cd ef é"
        );
        assert_eq!(mask("", &[], |_| "<X>"), "");
        assert_eq!(
            mask_bytes(b"a\xffb", &[f(2, 3), f(5, 9)], |_| "<X>"),
            b"a\xff<X>"
        );
    }
}
