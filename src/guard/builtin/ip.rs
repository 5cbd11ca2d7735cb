//! `ipv4` and `ipv6` addresses.
//!
//! IPv4: four decimal octets 0–255 joined by dots, no leading zeros (`010.1.1.1` is
//! ambiguous — octal to some parsers — and is not reported). Not glued to a word
//! (`v1.2.3.4`), not part of a longer dotted number (`1.2.3.4.5`) or a version with a
//! suffix (`1.2.3.4-beta`), and not right after a version word (`version 4.7.2.0`,
//! `build 1.0.0.1`, `ver. 2.1.0.3`); a CIDR suffix or port after it is fine
//! (`10.0.0.0/8`, `10.0.0.1:8080`).
//!
//! IPv6: found from its first colon. The address is the run of hex digits, colons and
//! dots around it, which must parse as `std::net::Ipv6Addr` (compressed forms, embedded
//! IPv4); a trailing dot (sentence end) or single colon is dropped, a zone (`%eth0`) is not
//! part of it. Not glued to a word on either side, so `std::vec`, `de::Error` and
//! `12:30:45` are not addresses; `::` alone is not reported.

use std::net::Ipv6Addr;

use super::text::{
    at, before, is_alnum, is_digit_at, is_word, numeric_left_ok, run_end, run_start,
};

/// The IPv4 address starting at the first digit `i`.
pub(super) fn ipv4(s: &[u8], i: usize) -> Option<(usize, usize)> {
    let mut p = i;
    for octet in 0..4 {
        let e = run_end(s, p, 3, |c| c.is_ascii_digit());
        let n = e - p;
        if n == 0 || n > 3 || (n > 1 && s[p] == b'0') {
            return None;
        }
        let v = s[p..e]
            .iter()
            .fold(0u32, |v, &c| v * 10 + (c - b'0') as u32);
        if v > 255 {
            return None;
        }
        p = e;
        if octet < 3 {
            if at(s, p) != Some(b'.') || !is_digit_at(s, p + 1) {
                return None;
            }
            p += 1;
        }
    }
    let right_ok = match at(s, p) {
        None => true,
        Some(c) if is_word(c) => false,
        Some(b'.' | b'-') => !at(s, p + 1).is_some_and(is_alnum),
        Some(_) => true,
    };
    let ok = right_ok && numeric_left_ok(s, i, Some(b'.')) && !after_version_word(s, i);
    ok.then_some((i, p))
}

/// Words after which four dotted numbers are a version, not an address.
const VERSION_WORDS: &[&[u8]] = &[
    b"version",
    b"ver",
    b"v",
    b"build",
    b"release",
    b"rev",
    b"revision",
    b"firmware",
    b"fw",
    b"update",
    b"patch",
];

/// `s[..i]` ends with a version word, a space and maybe a dot before it (`ver. `).
fn after_version_word(s: &[u8], i: usize) -> bool {
    let Some(mut k) = i.checked_sub(1).filter(|&k| s[k] == b' ') else {
        return false;
    };
    if k > 0 && s[k - 1] == b'.' {
        k -= 1;
    }
    let w = run_start(s, k, 8, |c| c.is_ascii_alphabetic());
    k - w <= 8
        && VERSION_WORDS
            .iter()
            .any(|v| s[w..k].eq_ignore_ascii_case(v))
}

fn is_hex(c: u8) -> bool {
    c.is_ascii_hexdigit()
}

/// The longest textual IPv6 address (`ffff:…:255.255.255.255`).
const IPV6_MAX: usize = 45;

/// The IPv6 address whose first colon is at `i`.
pub(super) fn ipv6(s: &[u8], i: usize) -> Option<(usize, usize)> {
    let start = run_start(s, i, 4, is_hex);
    if i - start > 4 {
        return None;
    }
    // Only the first colon of an address starts it; and nothing glued before it.
    if before(s, start).is_some_and(|c| c == b':' || c == b'.' || is_word(c)) {
        return None;
    }
    if start == i && at(s, i + 1) != Some(b':') {
        return None;
    }
    let run = run_end(s, start, IPV6_MAX, |c| is_hex(c) || c == b':' || c == b'.');
    if run - start > IPV6_MAX || at(s, run).is_some_and(is_word) {
        return None;
    }
    let mut end = run;
    while s[end - 1] == b'.' {
        end -= 1;
    }
    if s[end - 1] == b':' && s[end - 2] != b':' {
        end -= 1;
    }
    let text = std::str::from_utf8(&s[start..end]).ok()?;
    (text != "::" && text.parse::<Ipv6Addr>().is_ok()).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use crate::guard::builtin::tests::found;

    #[test]
    fn ipv4_addresses() {
        for (text, want) in [
            ("host 192.168.1.10 is up", "192.168.1.10"),
            ("0.0.0.0", "0.0.0.0"),
            ("255.255.255.255.", "255.255.255.255"),
            ("net 10.0.0.0/8", "10.0.0.0"),
            ("at 10.0.0.1:8080", "10.0.0.1"),
            ("IP:8.8.8.8", "8.8.8.8"),
            ("(172.16.254.1)", "172.16.254.1"),
            ("адрес 8.8.4.4。", "8.8.4.4"),
            ("build server 10.0.0.1", "10.0.0.1"),
        ] {
            assert_eq!(found("ipv4", text), [want], "{text}");
        }
    }

    #[test]
    fn ipv4_out_of_range_and_look_alikes() {
        for text in [
            "256.1.1.1",
            "1.2.3.256",
            "1.2.3",
            "1.2.3.4.5",
            "version 1.2.3.4-beta",
            "version 4.7.2.0",
            "Firmware 2.4.1.0",
            "ver. 2.1.0.3",
            "Build 1.0.0.1",
            "v1.2.3.4",
            "01.2.3.4",
            "1.2.3.04",
            "1..2.3.4",
            "1.2.3.4a",
            "1234.1.1.1",
            "3.14159",
            "2024.06.15",
        ] {
            assert_eq!(found("ipv4", text), Vec::<&str>::new(), "{text}");
        }
    }

    #[test]
    fn ipv6_addresses() {
        for (text, want) in [
            ("addr 2001:db8::1 ok", "2001:db8::1"),
            (
                "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
                "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
            ),
            ("loopback ::1.", "::1"),
            ("link fe80::1%eth0", "fe80::1"),
            ("[2001:db8::ff00:42:8329]:443", "2001:db8::ff00:42:8329"),
            ("mapped ::ffff:192.0.2.128 here", "::ffff:192.0.2.128"),
            ("prefix 2001:db8:: is", "2001:db8::"),
            ("FE80::ABCD:1:", "FE80::ABCD:1"),
            ("地址 2001:db8::2。", "2001:db8::2"),
        ] {
            assert_eq!(found("ipv6", text), [want], "{text}");
        }
    }

    #[test]
    fn ipv6_look_alikes() {
        for text in [
            "12:30:45",
            "std::vec::Vec",
            "de::Error",
            "Self::new",
            "00:1A:2B:3C:4D:5E",
            "a :: b",
            "2001:db8::1::2",
            "12345::1",
            "2001:db8::g",
            "1:2:3:4:5:6:7:8:9",
            "x2001:db8::1",
            "ratio 3:4",
        ] {
            assert_eq!(found("ipv6", text), Vec::<&str>::new(), "{text}");
        }
    }
}
