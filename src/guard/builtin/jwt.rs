//! `jwt`: JSON Web Tokens in compact serialisation.
//!
//! Three base64url segments joined by dots, the signature possibly empty (`alg: none`).
//! The header must start with `{"` or `{ "` — base64url `eyJ` / `eyA`, which every JWT
//! library emits — and decode to a JSON object with a string `"alg"`. Not glued to
//! token characters or dots on either side, so a five-segment JWE is not reported as a
//! JWT. At most [`Limits::jwt_max_len`](crate::guard::Limits) bytes.

use super::text::{at, before, is_token, run_end};

/// The JWT whose header's third character (`J` or `A` after `ey`) is at `i`.
pub(super) fn find(s: &[u8], i: usize, max_len: usize) -> Option<(usize, usize)> {
    if i < 2 || &s[i - 2..i] != b"ey" || !matches!(s[i], b'J' | b'A') {
        return None;
    }
    let start = i - 2;
    if before(s, start).is_some_and(|c| is_token(c) || c == b'.') {
        return None;
    }
    let header_end = run_end(s, start, max_len, is_token);
    if at(s, header_end) != Some(b'.') {
        return None;
    }
    let payload_end = run_end(s, header_end + 1, max_len, is_token);
    if payload_end == header_end + 1 || at(s, payload_end) != Some(b'.') {
        return None;
    }
    let sig_end = run_end(s, payload_end + 1, max_len, is_token);
    let end = sig_end.max(payload_end + 1);
    if end - start > max_len {
        return None;
    }
    if at(s, sig_end) == Some(b'.') && at(s, sig_end + 1).is_some_and(is_token) {
        return None;
    }
    header_ok(&s[start..header_end]).then_some((start, end))
}

/// The header segment decodes to a JSON object with a string `alg`.
fn header_ok(segment: &[u8]) -> bool {
    let Some(json) = base64url_decode(segment) else {
        return false;
    };
    match serde_json::from_slice::<serde_json::Value>(&json) {
        Ok(serde_json::Value::Object(map)) => map.get("alg").is_some_and(|v| v.is_string()),
        _ => false,
    }
}

/// Decodes unpadded base64url; `None` on a character outside the alphabet or a length
/// that no encoding produces.
pub(super) fn base64url_decode(s: &[u8]) -> Option<Vec<u8>> {
    if s.len() % 4 == 1 {
        return None;
    }
    let sextet = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for chunk in s.chunks(4) {
        let mut acc = 0u32;
        for &c in chunk {
            acc = (acc << 6) | sextet(c)?;
        }
        let bits = chunk.len() * 6;
        let bytes = bits / 8;
        acc <<= 24 - bits;
        for k in 0..bytes {
            out.push((acc >> (16 - 8 * k)) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::base64url_decode;
    use crate::guard::builtin::tests::found;

    // {"alg":"HS256","typ":"JWT"} . {"sub":"1234567890","name":"John Doe","iat":1516239022}
    const JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
    // {"alg":"none"} . {"sub":"x"} . (empty)
    const UNSIGNED: &str = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.";
    // { "alg": "RS256" } . {"a":1} . sig
    const SPACED: &str = "eyAiYWxnIjogIlJTMjU2IiB9.eyJhIjoxfQ.c2ln";

    #[test]
    fn decodes_base64url() {
        assert_eq!(base64url_decode(b"eyJhIjoxfQ").unwrap(), br#"{"a":1}"#);
        assert_eq!(base64url_decode(b"").unwrap(), b"");
        assert!(base64url_decode(b"abcde").is_none());
        assert!(base64url_decode(b"ab+/").is_none());
    }

    #[test]
    fn tokens() {
        for jwt in [JWT, UNSIGNED, SPACED] {
            for text in [
                format!("Authorization: Bearer {jwt}"),
                format!("token={jwt}&next=1"),
                format!("«{jwt}»"),
                jwt.to_string(),
            ] {
                assert_eq!(found("jwt", &text), [jwt], "{text}");
            }
        }
        assert_eq!(found("jwt", &format!("see {JWT}.")), [JWT]);
    }

    #[test]
    fn look_alikes() {
        // {"typ":"JWT"} has no alg.
        let no_alg = "eyJ0eXAiOiJKV1QifQ.eyJhIjoxfQ.c2ln";
        // The header is not JSON: "eyJ" + garbage.
        let not_json = "eyJhbGciOiJIUzI1Ni.eyJhIjoxfQ.c2ln";
        let jwe = format!("{JWT}.aGVsbG8.d29ybGQ");
        for text in [
            no_alg,
            not_json,
            &jwe,
            "eyJhbGciOiJIUzI1NiJ9",
            "eyJhbGciOiJIUzI1NiJ9.eyJhIjoxfQ",
            "xeyJhbGciOiJIUzI1NiJ9.eyJhIjoxfQ.c2ln",
            "hey.JSON.file",
            "they eyJust kidding",
        ] {
            assert_eq!(found("jwt", text), Vec::<&str>::new(), "{text}");
        }
        let long = format!("eyJhbGciOiJIUzI1NiJ9.{}.c2ln", "a".repeat(9000));
        assert_eq!(found("jwt", &long), Vec::<&str>::new());
    }
}
