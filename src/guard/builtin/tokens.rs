//! API tokens with a fixed prefix: `aws_access_key_id`, `github_token`, `gitlab_token`,
//! `slack_token`, `openai_api_key`, `anthropic_api_key`.
//!
//! Each is found from a byte of its prefix (the first capital, the `_` or the `-`), must
//! not be glued to token characters (`[A-Za-z0-9_-]`) on either side, and has a body of
//! bounded length so a stream never holds back more than 300 bytes for one. OpenAI and
//! Anthropic keys must look random — a capital, a small letter and a digit in the body —
//! so hyphenated words such as `sk-learn` or `sk-this-is-not-a-key-2024` are not keys.

use super::text::{at, before, is_alnum, is_token, is_word, run_end};
use crate::guard::rules::Builtin;

/// Longest token body after its prefix.
pub(super) const BODY_MAX: usize = 255;

fn left_ok(s: &[u8], start: usize) -> bool {
    !before(s, start).is_some_and(is_token)
}

/// `AKIA`/`ASIA` + 16 of `[A-Z0-9]`, at the capital `i`.
pub(super) fn aws(s: &[u8], i: usize) -> Option<(usize, usize)> {
    let prefix = s.get(i..i + 4)?;
    if (prefix != b"AKIA" && prefix != b"ASIA") || before(s, i).is_some_and(is_alnum) {
        return None;
    }
    let body = s.get(i + 4..i + 20)?;
    let ok = body
        .iter()
        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    (ok && !at(s, i + 20).is_some_and(is_alnum)).then_some((i, i + 20))
}

/// `ghp_…` (and `gho_`, `ghu_`, `ghs_`, `ghr_`) or `github_pat_…`, at the `_` `i`.
pub(super) fn github(s: &[u8], i: usize) -> Option<(usize, usize)> {
    let (start, body, min, is_body): (usize, usize, usize, fn(u8) -> bool) =
        if i >= 3 && matches!(&s[i - 3..i], b"ghp" | b"gho" | b"ghu" | b"ghs" | b"ghr") {
            (i - 3, i + 1, 36, is_alnum)
        } else if i >= 6 && &s[i - 6..i] == b"github" && s[i..].starts_with(b"_pat_") {
            (i - 6, i + 5, 40, is_word)
        } else {
            return None;
        };
    let end = run_end(s, body, BODY_MAX - 4, is_body);
    let n = end - body;
    (left_ok(s, start) && (min..=BODY_MAX - 4).contains(&n) && !at(s, end).is_some_and(is_token))
        .then_some((start, end))
}

/// `glpat-` + 20–255 of `[A-Za-z0-9_-]` (dots allowed inside), at the `-` `i`.
pub(super) fn gitlab(s: &[u8], i: usize) -> Option<(usize, usize)> {
    if i < 5 || &s[i - 5..i] != b"glpat" || !left_ok(s, i - 5) {
        return None;
    }
    let run = run_end(s, i + 1, BODY_MAX, |c| is_token(c) || c == b'.');
    let mut end = run;
    while end > i + 1 && s[end - 1] == b'.' {
        end -= 1;
    }
    let n = end - (i + 1);
    ((20..=BODY_MAX).contains(&n) && run - (i + 1) <= BODY_MAX && !at(s, run).is_some_and(is_token))
        .then_some((i - 5, end))
}

/// `xoxa-`/`xoxb-`/`xoxp-`/`xoxr-` + 10–255 of `[A-Za-z0-9-]` with a digit, at the `-`.
pub(super) fn slack(s: &[u8], i: usize) -> Option<(usize, usize)> {
    if i < 4 || &s[i - 4..i - 1] != b"xox" || !matches!(s[i - 1], b'a' | b'b' | b'p' | b'r') {
        return None;
    }
    let end = run_end(s, i + 1, BODY_MAX, |c| is_alnum(c) || c == b'-');
    let body = &s[i + 1..end];
    let ok = (10..=BODY_MAX).contains(&body.len())
        && body.iter().any(u8::is_ascii_digit)
        && !body.ends_with(b"-")
        && !at(s, end).is_some_and(is_token);
    (ok && left_ok(s, i - 4)).then_some((i - 4, end))
}

/// `sk-ant-…` (Anthropic) or another `sk-…` (OpenAI), at the `-` after `sk`: which of
/// the two it is, and its span.
pub(super) fn sk(s: &[u8], i: usize) -> Option<(Builtin, (usize, usize))> {
    if i < 2 || &s[i - 2..i] != b"sk" || !left_ok(s, i - 2) {
        return None;
    }
    let anthropic = s[i + 1..].starts_with(b"ant-");
    let body = if anthropic { i + 5 } else { i + 1 };
    let end = run_end(s, body, BODY_MAX, is_token);
    let b = &s[body..end];
    let random = b.iter().any(u8::is_ascii_uppercase)
        && b.iter().any(u8::is_ascii_lowercase)
        && b.iter().any(u8::is_ascii_digit);
    if !(20..=BODY_MAX).contains(&b.len()) || !random {
        return None;
    }
    let which = if anthropic {
        Builtin::AnthropicApiKey
    } else {
        Builtin::OpenaiApiKey
    };
    Some((which, (i - 2, end)))
}

#[cfg(test)]
mod tests {
    use crate::guard::builtin::tests::found;

    const OPENAI: &str = "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb7cDe0fGh";
    const OPENAI_LEGACY: &str = "sk-T3BlbkFJa1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p6q7r8s9";
    const ANTHROPIC: &str =
        "sk-ant-api03-Zx9yW8vU7tS6rQ5pO4nM3lK2jI1hG0fE-dCbA_9876543210aBcDeFgHiJkLmNoP";

    #[test]
    fn tokens_are_found_with_their_prefix() {
        for (name, token) in [
            ("aws_access_key_id", "AKIAIOSFODNN7EXAMPLE"),
            ("aws_access_key_id", "ASIAY34FZKBOKMUTVV7A"),
            ("github_token", "ghp_1234567890abcdefghijABCDEFGHIJ123456"),
            ("github_token", "gho_16C7e42F292c6912E7710c838347Ae178B4a"),
            (
                "github_token",
                "github_pat_11ABCDEFG0123456789abc_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456",
            ),
            ("gitlab_token", "glpat-xxxxXXXX1234_abcd-ZZ"),
            ("slack_token", "xoxb-1234567890-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"),
            ("slack_token", "xoxp-1234567890-1234567890-1234567890-0123456789abcdef0123456789abcdef"),
            ("openai_api_key", OPENAI),
            ("openai_api_key", OPENAI_LEGACY),
            ("anthropic_api_key", ANTHROPIC),
        ] {
            for text in [
                format!("key: {token}"),
                format!("export X=\"{token}\";"),
                format!("«{token}»"),
                token.to_string(),
            ] {
                assert_eq!(found(name, &text), [token], "{name} in {text}");
            }
        }
    }

    #[test]
    fn look_alikes_are_not_tokens() {
        for (name, text) in [
            ("aws_access_key_id", "AKIAIOSFODNN7EXAMPL"),
            ("aws_access_key_id", "AKIAIOSFODNN7EXAMPLE1"),
            ("aws_access_key_id", "XAKIAIOSFODNN7EXAMPLE"),
            ("aws_access_key_id", "AKIAiosfodnn7example"),
            ("aws_access_key_id", "AKIA is an AWS prefix"),
            ("github_token", "ghp_short123"),
            ("github_token", "xghp_1234567890abcdefghijABCDEFGHIJ123456"),
            ("github_token", "ghx_1234567890abcdefghijABCDEFGHIJ123456"),
            ("gitlab_token", "glpat-short"),
            ("slack_token", "xoxo-1234567890-hugs"),
            ("slack_token", "xoxb-no-digits-here-at-all"),
            ("openai_api_key", "use sk-learn for that"),
            ("openai_api_key", "sk-this-is-not-a-real-key-2024"),
            (
                "openai_api_key",
                "risk-free task-based disk-ABCdef1234567890abcdefgh",
            ),
            ("openai_api_key", "sk-Ab1"),
            ("openai_api_key", ANTHROPIC),
            ("anthropic_api_key", OPENAI),
            ("anthropic_api_key", "sk-ant-api03-short1A"),
        ] {
            assert_eq!(found(name, text), Vec::<&str>::new(), "{name} in {text}");
        }
        let long = format!("sk-{}", "aB3".repeat(90));
        assert_eq!(found("openai_api_key", &long), Vec::<&str>::new());
    }
}
