//! Byte helpers shared by the detectors: bounded runs, character classes, and the
//! boundary rules of the numeric detectors.

/// The end of the run of bytes satisfying `pred` that starts at `i`, reading at most
/// `limit + 1` bytes, so `end - i > limit` means "longer than `limit`".
pub(super) fn run_end(s: &[u8], i: usize, limit: usize, pred: impl Fn(u8) -> bool) -> usize {
    let stop = s.len().min(i.saturating_add(limit).saturating_add(1));
    let mut j = i;
    while j < stop && pred(s[j]) {
        j += 1;
    }
    j
}

/// The start of the run of bytes satisfying `pred` that ends at `i` (exclusive), reading
/// at most `limit + 1` bytes back.
pub(super) fn run_start(s: &[u8], i: usize, limit: usize, pred: impl Fn(u8) -> bool) -> usize {
    let stop = i.saturating_sub(limit.saturating_add(1));
    let mut j = i;
    while j > stop && pred(s[j - 1]) {
        j -= 1;
    }
    j
}

pub(super) fn is_alnum(c: u8) -> bool {
    c.is_ascii_alphanumeric()
}

/// Letters, digits and `_`.
pub(super) fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Letters, digits, `_` and `-`: what API tokens are made of.
pub(super) fn is_token(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
}

pub(super) fn before(s: &[u8], i: usize) -> Option<u8> {
    i.checked_sub(1).map(|j| s[j])
}

pub(super) fn at(s: &[u8], i: usize) -> Option<u8> {
    s.get(i).copied()
}

/// Whether `s[i]` exists and is an ASCII digit.
pub(super) fn is_digit_at(s: &[u8], i: usize) -> bool {
    s.get(i).is_some_and(u8::is_ascii_digit)
}

/// Left boundary of a numeric entity starting at `start` whose groups are joined by
/// `sep` (if any). Rejects: a letter, digit or `_` just before; a `.`, `-` or `/` glued
/// to a letter or digit just before (`v1.2.3.4`, `ORD-415-555-0123`); a `:` after a digit
/// (`12:415…`); a `+` (E.164 owns it); and the same separator after a digit, which would
/// make this a later group of a longer number (`1234 4111 1111 …`).
pub(super) fn numeric_left_ok(s: &[u8], start: usize, sep: Option<u8>) -> bool {
    let Some(p) = before(s, start) else {
        return true;
    };
    let pp = before(s, start - 1);
    if is_word(p) || p == b'+' {
        return false;
    }
    if matches!(p, b'.' | b'-' | b'/') && pp.is_some_and(is_alnum) {
        return false;
    }
    if p == b':' && pp.is_some_and(|c| c.is_ascii_digit()) {
        return false;
    }
    !(Some(p) == sep && pp.is_some_and(|c| c.is_ascii_digit()))
}

/// Right boundary of a numeric entity ending at `end`: no letter, digit or `_` next; no
/// `.`, `-`, `/` or `:` followed by a letter or digit (`415-555-0123-4`, `1.2.3.4.5`);
/// and not the entity's own separator followed by a digit (a longer grouped number).
pub(super) fn numeric_right_ok(s: &[u8], end: usize, sep: Option<u8>) -> bool {
    let Some(n) = at(s, end) else {
        return true;
    };
    let nn = at(s, end + 1);
    if is_word(n) {
        return false;
    }
    if matches!(n, b'.' | b'-' | b'/' | b':') && nn.is_some_and(is_alnum) {
        return false;
    }
    !(Some(n) == sep && nn.is_some_and(|c| c.is_ascii_digit()))
}

/// Parses `s[i..]` as digit groups joined by one `sep` each (`sep = None`: one group).
/// Returns the end and the group lengths (at most `max_groups`), or `None` when a group
/// is longer than `max_group` digits or there are more than `max_groups` groups.
pub(super) fn groups(
    s: &[u8],
    i: usize,
    sep: Option<u8>,
    max_group: usize,
    max_groups: usize,
    lens: &mut [u8; 8],
) -> Option<(usize, usize)> {
    let mut count = 0;
    let mut p = i;
    loop {
        let e = run_end(s, p, max_group, |c| c.is_ascii_digit());
        if e == p || e - p > max_group || count == max_groups.min(lens.len()) {
            return None;
        }
        lens[count] = (e - p) as u8;
        count += 1;
        p = e;
        match sep {
            Some(c) if at(s, p) == Some(c) && is_digit_at(s, p + 1) => p += 1,
            _ => return Some((p, count)),
        }
    }
}

/// Collects the ASCII digits of `s[start..end]` into `buf`; `None` if there are more than
/// `buf.len()`.
pub(super) fn digits_of<'b>(
    s: &[u8],
    start: usize,
    end: usize,
    buf: &'b mut [u8],
) -> Option<&'b [u8]> {
    let mut n = 0;
    for &c in &s[start..end] {
        if c.is_ascii_digit() {
            *buf.get_mut(n)? = c - b'0';
            n += 1;
        }
    }
    Some(&buf[..n])
}

/// The number a short digit string spells.
pub(super) fn value(digits: &[u8]) -> u32 {
    digits.iter().fold(0, |v, &d| v * 10 + d as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_bounded() {
        assert_eq!(run_end(b"12345x", 0, 3, |c| c.is_ascii_digit()), 4);
        assert_eq!(run_end(b"12345x", 0, 9, |c| c.is_ascii_digit()), 5);
        assert_eq!(run_start(b"x12345", 6, 3, |c| c.is_ascii_digit()), 2);
        assert_eq!(run_start(b"x12345", 6, 9, |c| c.is_ascii_digit()), 1);
    }

    #[test]
    fn groups_split_on_one_separator() {
        let mut l = [0; 8];
        assert_eq!(
            groups(b"4111 1111 1111 1111 x", 0, Some(b' '), 6, 8, &mut l),
            Some((19, 4))
        );
        assert_eq!(
            groups(b"4111  1111", 0, Some(b' '), 6, 8, &mut l),
            Some((4, 1))
        );
        assert_eq!(
            groups(b"4111-1111-", 0, Some(b'-'), 6, 8, &mut l),
            Some((9, 2))
        );
        assert_eq!(groups(b"1234567", 0, None, 6, 8, &mut l), None);
    }

    #[test]
    fn numeric_boundaries() {
        assert!(numeric_left_ok(b"call 415", 5, Some(b'-')));
        assert!(!numeric_left_ok(b"v1.415", 3, Some(b'.')));
        assert!(!numeric_left_ok(b"ORD-415", 4, Some(b'-')));
        assert!(!numeric_left_ok(b"1234 415", 5, Some(b' ')));
        assert!(numeric_left_ok(b"12 415", 3, Some(b'-')));
        assert!(numeric_left_ok(b"tel:415", 4, Some(b'-')));
        assert!(!numeric_left_ok(b"12:415", 3, Some(b'-')));
        assert!(numeric_right_ok(b"0123.", 4, Some(b'-')));
        assert!(!numeric_right_ok(b"0123-4", 4, Some(b'-')));
        assert!(!numeric_right_ok(b"0123 4", 4, Some(b' ')));
        assert!(numeric_right_ok(b"0123 4", 4, Some(b'-')));
    }
}
