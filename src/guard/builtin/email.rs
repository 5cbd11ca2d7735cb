//! `email`: `local@domain`, parsed outwards from the `@`.
//!
//! - Local part: the run of `[A-Za-z0-9._%+-]` before the `@`, without leading `.%+-`
//!   (so `...bob@x.io` is `bob@x.io`); 1–64 bytes, no `..`, not ending in `.`. Quoted
//!   local parts and other RFC 5322 rarities are not recognised.
//! - Domain: the run of `[A-Za-z0-9.-]` after it, without a trailing `.` or `-`
//!   (sentence end); at least two labels of 1–63 alphanumerics and inner hyphens; the TLD
//!   is 2–63 letters or `xn--` punycode; at most 253 bytes, 254 in all.
//! - Not an email: `a@b@c.io`, `user@localhost`, `@mention`, and `git@github.com:org/repo`
//!   (a host login followed by `:` and a path or port).
//!
//! Emails inside URLs: an `@` in a URL's authority (`https://user@host`,
//! `ssh://git@host`, `https://user:pass@host`) marks a login, not an address, and is not
//! reported — the guard is about personal data, and masking it would break the URL.
//! Emails elsewhere in a URL (`mailto:bob@x.io`, `…?email=bob@x.io`, `/users/bob@x.io`)
//! are reported.

use super::text::{at, before, is_alnum, run_end, run_start};

const LOCAL_MAX: usize = 64;
const DOMAIN_MAX: usize = 253;
const TOTAL_MAX: usize = 254;
/// How far before the local part the URL-authority check looks for `://`.
const USERINFO_MAX: usize = 64;

fn is_local(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'%' | b'+' | b'-')
}

fn is_domain(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'.' || c == b'-'
}

fn is_userinfo(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'.' | b'_'
                | b'~'
                | b'%'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'-'
        )
}

/// The email around the `@` at `i`.
pub(super) fn find(s: &[u8], i: usize) -> Option<(usize, usize)> {
    // Local part, leading punctuation dropped.
    let run = run_start(s, i, LOCAL_MAX + 8, is_local);
    if i - run > LOCAL_MAX + 8 || before(s, run) == Some(b'@') {
        return None;
    }
    let start = run
        + s[run..i]
            .iter()
            .take_while(|c| matches!(c, b'.' | b'%' | b'+' | b'-'))
            .count();
    let local = &s[start..i];
    if local.is_empty() || local.len() > LOCAL_MAX || local.ends_with(b".") || has_double_dot(local)
    {
        return None;
    }
    // Domain, trailing punctuation dropped.
    let run = run_end(s, i + 1, DOMAIN_MAX + 8, is_domain);
    if run - (i + 1) > DOMAIN_MAX + 8 {
        return None;
    }
    let mut end = run;
    while end > i + 1 && matches!(s[end - 1], b'.' | b'-') {
        end -= 1;
    }
    let domain = &s[i + 1..end];
    if domain.len() > DOMAIN_MAX || end - start > TOTAL_MAX || !domain_ok(domain) {
        return None;
    }
    // What follows: another `@`, or `:` and a path or port (scp-style login).
    match (at(s, run), at(s, run + 1)) {
        (Some(b'@'), _) => return None,
        (Some(b':'), Some(c)) if is_alnum(c) || c == b'/' => return None,
        _ => {}
    }
    (!in_url_authority(s, start)).then_some((start, end))
}

fn has_double_dot(b: &[u8]) -> bool {
    b.windows(2).any(|w| w == b"..")
}

fn domain_ok(domain: &[u8]) -> bool {
    let mut labels = 0;
    let mut last: &[u8] = b"";
    for label in domain.split(|&c| c == b'.') {
        let ends_ok = label.first().is_some_and(|c| is_alnum(*c))
            && label.last().is_some_and(|c| is_alnum(*c));
        if label.len() > 63 || !ends_ok {
            return false;
        }
        labels += 1;
        last = label;
    }
    let tld_ok = (last.len() >= 2 && last.iter().all(u8::is_ascii_alphabetic))
        || (last.len() > 4 && last[..4].eq_ignore_ascii_case(b"xn--"));
    labels >= 2 && tld_ok
}

/// Whether the local part starting at `start` is the userinfo of a URL (`scheme://…@`).
fn in_url_authority(s: &[u8], start: usize) -> bool {
    let k = run_start(s, start, USERINFO_MAX, is_userinfo);
    k >= 3 && &s[k - 3..k] == b"://"
}

#[cfg(test)]
mod tests {
    use crate::guard::builtin::tests::found;

    #[test]
    fn addresses() {
        for (text, want) in [
            ("mail bob@example.com now", "bob@example.com"),
            (
                "Jane.Doe+news@mail.example.co.uk.",
                "Jane.Doe+news@mail.example.co.uk",
            ),
            (
                "<first_last-1@sub-domain.example.org>",
                "first_last-1@sub-domain.example.org",
            ),
            ("...bob@x.io", "bob@x.io"),
            ("mailto:bob@example.com", "bob@example.com"),
            (
                "https://x.io/contact?email=bob@example.com&x=1",
                "bob@example.com",
            ),
            ("https://x.io/users/bob@example.com", "bob@example.com"),
            ("write to bob@example.com: thanks", "bob@example.com"),
            ("почта: иван.bob@example.com", "bob@example.com"),
            ("📧bob@example.com📧", "bob@example.com"),
            (
                "user@xn--bcher-kva.xn--tckwe",
                "user@xn--bcher-kva.xn--tckwe",
            ),
            ("ADMIN@EXAMPLE.COM", "ADMIN@EXAMPLE.COM"),
        ] {
            assert_eq!(found("email", text), [want], "{text}");
        }
    }

    #[test]
    fn not_addresses() {
        for text in [
            "https://bob@example.com/repo",
            "ssh://git@github.com/org/repo.git",
            "https://user:secret@example.com:8443/",
            "git@github.com:org/repo.git",
            "user@localhost",
            "@mention me",
            "bob@",
            "a@b.c",
            "bob@example.c0m",
            "bob..x@example.com",
            "bob.@example.com",
            "bob@-example.com",
            "bob@example-.com",
            "a@b@example.com",
            "bob@example.com@evil.io",
            "email@123.123.123.123",
            "price: 5 @ 10.00",
        ] {
            assert_eq!(found("email", text), Vec::<&str>::new(), "{text}");
        }
        let long_local = format!("{}@example.com", "a".repeat(65));
        assert_eq!(found("email", &long_local), Vec::<&str>::new());
        let ok_local = format!("{}@example.com", "a".repeat(64));
        assert_eq!(found("email", &ok_local), [ok_local.as_str()]);
    }
}
