//! How much of a text's end the built-ins may still change their mind about.
//!
//! Every built-in match is made of characters from a small alphabet, and whether a
//! candidate is a match depends only on those characters and on its immediate
//! neighbours. So a match still in progress at the end of the text — or one whose right
//! neighbour has not arrived — lies in the *trailing run* of its family's alphabet, and
//! starts at a byte that can start such a match. The hold point of a family is the first
//! such byte of the trailing run, but never more than the family's cap (its longest match
//! plus the right context it reads) before the end: a match starting earlier than that
//! would already be complete and decided. PEM blocks are found by their BEGIN line
//! instead, since their alphabet includes newlines.
//!
//! | family | alphabet of the trailing run | can start at | cap |
//! |---|---|---|---|
//! | numeric (card, SSN, phone, IPv4) | digits `space . - ( ) + / :` | digit `(` `+` | 48 |
//! | IBAN | capitals, digits, space | capital | 64 |
//! | email | `A-Za-z0-9 . _ % + - @ :` | letter, digit, `_` | 264 |
//! | tokens (API keys, JWT) | `A-Za-z0-9 _ - .` | letter | max(JWT limit, 300) + 8 |
//! | IPv6 | hex digits `: .` | hex digit, `:` | 64 |

use super::pem;
use crate::guard::rules::{Builtin, Limits};

const NUMERIC_CAP: usize = 48;
const IBAN_CAP: usize = 64;
const EMAIL_CAP: usize = 264;
const IPV6_CAP: usize = 64;

fn numeric(c: u8) -> bool {
    c.is_ascii_digit() || matches!(c, b' ' | b'.' | b'-' | b'(' | b')' | b'+' | b'/' | b':')
}

fn iban(c: u8) -> bool {
    c.is_ascii_uppercase() || c.is_ascii_digit() || c == b' '
}

fn email(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'%' | b'+' | b'-' | b'@' | b':')
}

fn token(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.')
}

fn ipv6(c: u8) -> bool {
    c.is_ascii_hexdigit() || c == b':' || c == b'.'
}

/// The first byte at or after `lo` that the enabled built-ins may still change their
/// mind about (`s.len()` when none).
pub(super) fn hold_from(
    s: &[u8],
    lo: usize,
    on: &dyn Fn(Builtin) -> bool,
    limits: &Limits,
) -> usize {
    use Builtin::*;
    let any = |bs: &[Builtin]| bs.iter().any(|&b| on(b));
    let mut hold = s.len();
    if any(&[CreditCard, Ssn, Phone, Ipv4]) {
        let start = |c: u8| c.is_ascii_digit() || c == b'(' || c == b'+';
        hold = hold.min(trailing(s, lo, NUMERIC_CAP, numeric, start));
    }
    if on(Iban) {
        hold = hold.min(trailing(s, lo, IBAN_CAP, iban, |c| c.is_ascii_uppercase()));
    }
    if on(Email) {
        let start = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
        hold = hold.min(trailing(s, lo, EMAIL_CAP, email, start));
    }
    if any(&[
        AnthropicApiKey,
        OpenaiApiKey,
        AwsAccessKeyId,
        GithubToken,
        GitlabToken,
        SlackToken,
        Jwt,
    ]) {
        let cap = limits.jwt_max_len.max(300) + 8;
        hold = hold.min(trailing(s, lo, cap, token, |c| c.is_ascii_alphabetic()));
    }
    if on(Ipv6) {
        let start = |c: u8| c.is_ascii_hexdigit() || c == b':';
        hold = hold.min(trailing(s, lo, IPV6_CAP, ipv6, start));
    }
    if on(PrivateKey) {
        hold = hold.min(pem::hold(s, lo, limits.private_key_max_len));
    }
    hold.max(lo)
}

/// The first byte that can start a match in the trailing run of `alphabet`, looking no
/// further back than `cap` bytes from the end nor before `lo`.
fn trailing(
    s: &[u8],
    lo: usize,
    cap: usize,
    alphabet: fn(u8) -> bool,
    start: impl Fn(u8) -> bool,
) -> usize {
    let floor = lo.max(s.len().saturating_sub(cap));
    let mut k = s.len();
    while k > floor && alphabet(s[k - 1]) {
        k -= 1;
    }
    while k < s.len() && !start(s[k]) {
        k += 1;
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hold(s: &str, only: &[Builtin]) -> usize {
        hold_from(s.as_bytes(), 0, &|b| only.contains(&b), &Limits::default())
    }

    #[test]
    fn trailing_runs_per_family() {
        use Builtin::*;
        assert_eq!(hold("call me at 415-555-", &[Phone]), 11);
        assert_eq!(hold("call me at 415-555-0123 now", &[Phone]), 27);
        assert_eq!(
            hold("call me at 415-555-0123 ", &[Phone]),
            11,
            "a group may follow"
        );
        assert_eq!(
            hold("hello world ", &[Phone]),
            12,
            "spaces alone start nothing"
        );
        assert_eq!(hold("write to bob@exa", &[Email]), 9);
        assert_eq!(hold("write to bob", &[Email]), 9);
        assert_eq!(hold("write to bob ", &[Email]), 13);
        assert_eq!(hold("IBAN DE89 37", &[Iban]), 0);
        assert_eq!(hold("token sk-proj-abc", &[OpenaiApiKey]), 6);
        assert_eq!(hold("token sk-proj-abc", &[Email, Phone]), 6);
        assert_eq!(hold("at fe80::", &[Ipv6]), 3);
        assert_eq!(hold("done.", &Builtin::ALL), 0, "done.x@y.io could follow");
        assert_eq!(hold("done. ", &Builtin::ALL), 6);
    }

    #[test]
    fn caps_bound_the_hold() {
        let digits = "1 ".repeat(100);
        assert_eq!(hold(&digits, &[Builtin::CreditCard]), 200 - NUMERIC_CAP);
        let word = "a".repeat(20_000);
        assert_eq!(hold(&word, &[Builtin::Jwt]), 20_000 - (8192 + 8));
        let lo = hold_from(b"abc def", 5, &|b| b == Builtin::Email, &Limits::default());
        assert_eq!(lo, 5, "never before lo");
    }
}
