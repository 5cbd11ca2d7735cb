//! `phone`: E.164 and formatted North American numbers.
//!
//! Reported:
//! - E.164: `+`, a country code starting 1–9, then digits, optionally grouped by single
//!   spaces, dashes or dots, one group may be in parentheses: `+14155550123`,
//!   `+1 (415) 555-0123`, `+44 20 7946 0958`. 8–15 digits in all.
//! - NANP: `NXX-NXX-XXXX` with one separator (`-`, `.` or space) used both times, or
//!   `(NXX) NXX-XXXX` / `(NXX)NXX-XXXX` (separator `-`, `.` or space), each optionally
//!   after a trunk `1` and the same separator (`1-800-555-0199`). The area code starts
//!   with 2–9 and is not `N11`. The exchange is not checked, as E.164 checks none: the
//!   same number is one finding however it is written (`(268) 195-0446` as
//!   `+1 268-195-0446`).
//!
//! Not reported, because they only look like phones: unformatted digit runs of any
//! length (order and account numbers: `4155550123` — use E.164 `+1…` to be detected),
//! other groupings (`12-345-6789`, dates `2024-06-15`, times `12:30:45`, IPs), numbers
//! glued to words or to a longer dotted/dashed number (`v415.555.0123`,
//! `ORD-415-555-0123`, `415-555-0123-4`), seven-digit local numbers, and national
//! formats outside NANP without `+` (`020 7946 0958`).

use super::text::{
    at, before, digits_of, groups, is_digit_at, is_word, numeric_left_ok, numeric_right_ok, run_end,
};

fn is_sep(c: u8) -> bool {
    matches!(c, b' ' | b'-' | b'.')
}

/// A NANP number starting at the first digit `i` (a trunk `1` or the area code).
pub(super) fn nanp(s: &[u8], i: usize) -> Option<(usize, usize)> {
    let mut p = i;
    let mut trunk_sep = None;
    if s[i] == b'1' && at(s, i + 1).is_some_and(is_sep) {
        trunk_sep = Some(s[i + 1]);
        p = i + 2;
    }
    let (end, sep) = if at(s, p) == Some(b'(') {
        if trunk_sep == Some(b'.') {
            return None;
        }
        paren_form(s, p)?
    } else {
        let sep = at(s, p + 3).filter(|&c| is_sep(c))?;
        if trunk_sep.is_some_and(|t| t != sep) {
            return None;
        }
        let mut lens = [0u8; 8];
        let (end, n) = groups(s, p, Some(sep), 4, 3, &mut lens)?;
        if n != 3 || lens[..3] != [3, 3, 4] || !area_exchange_ok(s, p, end) {
            return None;
        }
        (end, sep)
    };
    let left_sep = trunk_sep.unwrap_or(sep);
    (numeric_left_ok(s, i, Some(left_sep)) && numeric_right_ok(s, end, Some(sep)))
        .then_some((i, end))
}

/// `(NXX) NXX-XXXX` starting at the `(` at `i`.
pub(super) fn nanp_paren(s: &[u8], i: usize) -> Option<(usize, usize)> {
    if before(s, i).is_some_and(|c| is_word(c) || c == b'+') {
        return None;
    }
    let (end, sep) = paren_form(s, i)?;
    numeric_right_ok(s, end, Some(sep)).then_some((i, end))
}

/// Parses `(NXX)` + optional space + `NXX` sep `XXXX` at the `(` at `p`: (end, sep).
fn paren_form(s: &[u8], p: usize) -> Option<(usize, u8)> {
    let digits3 = |q: usize| (q..q + 3).all(|k| is_digit_at(s, k)) && !is_digit_at(s, q + 3);
    if !digits3(p + 1) || at(s, p + 4) != Some(b')') {
        return None;
    }
    let mut q = p + 5;
    if at(s, q) == Some(b' ') {
        q += 1;
    }
    let sep = at(s, q + 3).filter(|&c| is_sep(c))?;
    let last = q + 4;
    if !digits3(q) || !(last..last + 4).all(|k| is_digit_at(s, k)) || is_digit_at(s, last + 4) {
        return None;
    }
    area_exchange_ok(s, p, last + 4).then_some((last + 4, sep))
}

/// The area code of the ten digits in `s[start..end]` is assignable.
fn area_exchange_ok(s: &[u8], start: usize, end: usize) -> bool {
    let mut buf = [0u8; 10];
    match digits_of(s, start, end, &mut buf) {
        Some(d) if d.len() == 10 => d[0] >= 2 && !(d[1] == 1 && d[2] == 1),
        _ => false,
    }
}

/// `(` 1–4 digits `)` at `q`: (end, digit count).
fn paren_group(s: &[u8], q: usize) -> Option<(usize, usize)> {
    if at(s, q) != Some(b'(') {
        return None;
    }
    let e = run_end(s, q + 1, 4, |c| c.is_ascii_digit());
    let n = e - (q + 1);
    ((1..=4).contains(&n) && at(s, e) == Some(b')')).then_some((e + 1, n))
}

/// An E.164 number starting at the `+` at `i`.
pub(super) fn e164(s: &[u8], i: usize) -> Option<(usize, usize)> {
    if before(s, i).is_some_and(|c| is_word(c) || c == b'+') {
        return None;
    }
    if !at(s, i + 1).is_some_and(|c| (b'1'..=b'9').contains(&c)) {
        return None;
    }
    let mut p = i + 1;
    let mut digits = 0;
    let mut parens = false;
    loop {
        // A digit group, or the one parenthesised group.
        if is_digit_at(s, p) {
            let e = run_end(s, p, 15, |c| c.is_ascii_digit());
            digits += e - p;
            p = e;
        } else {
            let (e, n) = paren_group(s, p).filter(|_| !parens)?;
            digits += n;
            parens = true;
            p = e;
        }
        if digits > 15 {
            return None;
        }
        // Then at most one separator, if another group follows it.
        let group_at = |q: usize| is_digit_at(s, q) || (!parens && paren_group(s, q).is_some());
        match at(s, p) {
            Some(c) if is_sep(c) && group_at(p + 1) => p += 1,
            _ if group_at(p) => {}
            _ => break,
        }
    }
    ((8..=15).contains(&digits) && numeric_right_ok(s, p, None)).then_some((i, p))
}

#[cfg(test)]
mod tests {
    use crate::guard::builtin::tests::found;

    #[test]
    fn e164_and_nanp_forms() {
        for phone in [
            "+14155550123",
            "+1 415 555 0123",
            "+1-415-555-0123",
            "+1 (415) 555-0123",
            "+44 20 7946 0958",
            "+49 30 901820",
            "+33 1 23 45 67 89",
            "+81.3.1234.5678",
            "+1(415)555-0123",
            "(415) 555-0123",
            "(415)555-0123",
            "(415) 555 0123",
            "415-555-0123",
            "415.555.0123",
            "415 555 0123",
            "1-800-555-0199",
            "1 (800) 555-0199",
            "(268) 195-0446",
            "268-195-0446",
            "+1 268-195-0446",
        ] {
            assert_eq!(
                found("phone", &format!("call {phone} today")),
                [phone],
                "{phone}"
            );
            assert_eq!(found("phone", &format!("«{phone}»")), [phone], "{phone}");
        }
        assert_eq!(found("phone", "tel:+14155550123"), ["+14155550123"]);
        assert_eq!(found("phone", "Tel: 415-555-0123."), ["415-555-0123"]);
        assert_eq!(found("phone", "Room 12 415-555-0123"), ["415-555-0123"]);
        let t = "+1 (415) 555-0123 (mobile), +1 415 555 0123 (work)";
        assert_eq!(found("phone", t), ["+1 (415) 555-0123", "+1 415 555 0123"]);
    }

    #[test]
    fn numbers_that_only_look_like_phones() {
        for text in [
            "4155550123",               // unformatted
            "order 14155550123",        // unformatted
            "12-345-6789",              // grouping
            "2024-06-15 12:30:45",      // timestamp
            "2024-06-15T12:30:45.123Z", // timestamp
            "version 4.15.555.0123",    // version-ish
            "v415.555.0123",            // glued
            "ORD-415-555-0123",         // order id
            "415-555-0123-45",          // longer dashed number
            "415-555-01234",            // long last group
            "415-555 0123",             // mixed separators
            "115-555-0123",             // area starts with 1
            "911-555-0123",             // N11 area
            "555-0123",                 // seven digits
            "192.168.100.200",          // IP
            "+1234567",                 // too short
            "+1234567890123456",        // too long
            "+0 415 555 0123",          // no country code 0
            "1+415-555-0123",           // glued plus
            "1234 415 555 0123",        // later groups of a longer number
            "3.14159265358979",         // long digit runs
            "(415) 555-0123-9",
        ] {
            assert_eq!(found("phone", text), Vec::<&str>::new(), "{text}");
        }
    }
}
