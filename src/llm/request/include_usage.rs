//! Asking an OpenAI stream for usage: `stream_options.include_usage: true` set in a
//! request body with every other byte left as it was.
//!
//! The fast path is a byte-level splice: a small scanner walks the top-level object's
//! members (skipping values without building them), finds the last `stream_options`
//! (JSON parsers keep the last of duplicate keys) and its last `include_usage`, and
//! inserts or replaces only that. The scanner checks structure, not every detail of
//! JSON grammar (number syntax, escapes): the body was parsed by `LlmRequest::parse`
//! before anyone injects usage, and an invalid body stays exactly as invalid.
//!
//! It falls back to a `serde_json::Value` round trip when the splice cannot be sure:
//! a key written with escapes (`"stream\u005foptions"`), a `stream_options` that is
//! neither an object nor null, or a body the scanner cannot follow. That path re-writes
//! the whole body — compact, and with keys sorted, since this crate's serde_json keeps
//! no key order — and reports invalid JSON as an error.

use memchr::memchr2;
use serde_json::Value;

use crate::llm::LlmError;

const MEMBER: &[u8] = br#""stream_options":{"include_usage":true}"#;
const INNER_MEMBER: &[u8] = br#""include_usage":true"#;
const OBJECT: &[u8] = br#"{"include_usage":true}"#;

/// `body` with `stream_options.include_usage` set to `true`.
///
/// Only for Chat Completions and Completions requests with `stream: true`: OpenAI rejects
/// `stream_options` on a request that does not stream, and the other APIs have no such
/// option (their streams always carry usage).
pub fn set_include_usage(body: &[u8]) -> Result<Vec<u8>, LlmError> {
    match splice(body) {
        Some(out) => Ok(out),
        None => via_value(body),
    }
}

/// The byte-level splice; `None` when it cannot be sure.
pub(super) fn splice(body: &[u8]) -> Option<Vec<u8>> {
    let mut s = Scanner { b: body, i: 0 };
    s.ws();
    let top = s.members(b"stream_options")?;
    s.ws();
    if s.i != body.len() {
        return None;
    }
    match top.found {
        None => {
            let at = top.insert_at;
            let comma = if top.count > 0 { &b","[..] } else { b"" };
            Some(join(body, at, at, &[comma, MEMBER]))
        }
        Some((start, end)) => match body[start] {
            b'n' if &body[start..end] == b"null" => Some(join(body, start, end, &[OBJECT])),
            b'{' => {
                let mut inner = Scanner {
                    b: &body[..end],
                    i: start,
                };
                let opts = inner.members(b"include_usage")?;
                match opts.found {
                    Some((vs, ve)) => Some(join(body, vs, ve, &[b"true"])),
                    None => {
                        let at = start + 1;
                        let comma = if opts.count > 0 { &b","[..] } else { b"" };
                        Some(join(body, at, at, &[INNER_MEMBER, comma]))
                    }
                }
            }
            _ => None,
        },
    }
}

/// The fallback: parse, set, re-serialize.
pub(super) fn via_value(body: &[u8]) -> Result<Vec<u8>, LlmError> {
    let mut value: Value = serde_json::from_slice(body).map_err(|e| LlmError::IncludeUsage {
        reason: format!("the body is not valid JSON: {e}"),
    })?;
    let Some(obj) = value.as_object_mut() else {
        return Err(LlmError::IncludeUsage {
            reason: "the body is not a JSON object".to_owned(),
        });
    };
    let opts = obj
        .entry("stream_options")
        .or_insert_with(|| Value::Object(Default::default()));
    if !opts.is_object() {
        *opts = Value::Object(Default::default());
    }
    opts["include_usage"] = Value::Bool(true);
    Ok(serde_json::to_vec(&value).expect("a Value always serializes"))
}

/// `body` with `body[start..end]` replaced by `insert`.
fn join(body: &[u8], start: usize, end: usize, insert: &[&[u8]]) -> Vec<u8> {
    let extra: usize = insert.iter().map(|s| s.len()).sum();
    let mut out = Vec::with_capacity(body.len() + extra);
    out.extend_from_slice(&body[..start]);
    for piece in insert {
        out.extend_from_slice(piece);
    }
    out.extend_from_slice(&body[end..]);
    out
}

// === Scanner ===

/// What [`Scanner::members`] saw in one object.
struct Members {
    count: usize,
    /// Value span of the last member named as asked.
    found: Option<(usize, usize)>,
    /// Where a new last member goes: after the last value (or after `{` when empty).
    insert_at: usize,
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.i += 1)
    }

    /// The object at the cursor, up to and including its `}`. `None` if it is not an
    /// object, or a key has escapes (it might spell `key`).
    fn members(&mut self, key: &[u8]) -> Option<Members> {
        self.eat(b'{')?;
        let mut m = Members {
            count: 0,
            found: None,
            insert_at: self.i,
        };
        self.ws();
        if self.eat(b'}').is_some() {
            return Some(m);
        }
        loop {
            self.ws();
            let (ks, ke, escaped) = self.string()?;
            if escaped {
                return None;
            }
            self.ws();
            self.eat(b':')?;
            self.ws();
            let (vs, ve) = self.value()?;
            if &self.b[ks + 1..ke - 1] == key {
                m.found = Some((vs, ve));
            }
            m.count += 1;
            m.insert_at = ve;
            self.ws();
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Some(m);
                }
                _ => return None,
            }
        }
    }

    /// The string at the cursor: its span with quotes, and whether it has escapes.
    fn string(&mut self) -> Option<(usize, usize, bool)> {
        let start = self.i;
        self.eat(b'"')?;
        let mut escaped = false;
        loop {
            let at = self.i + memchr2(b'"', b'\\', &self.b[self.i..])?;
            if self.b[at] == b'"' {
                self.i = at + 1;
                return Some((start, self.i, escaped));
            }
            escaped = true;
            self.i = at + 2;
            if self.i > self.b.len() {
                return None;
            }
        }
    }

    /// Skips the value at the cursor; its span.
    fn value(&mut self) -> Option<(usize, usize)> {
        let start = self.i;
        match self.peek()? {
            b'"' => {
                self.string()?;
            }
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    match self.peek()? {
                        b'"' => {
                            self.string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                self.i += 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                    self.i += 1;
                }
            }
            _ => {
                while !matches!(
                    self.peek(),
                    None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
                ) {
                    self.i += 1;
                }
                if self.i == start {
                    return None;
                }
            }
        }
        Some((start, self.i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spliced(body: &str) -> String {
        String::from_utf8(splice(body.as_bytes()).expect("splice path")).unwrap()
    }

    #[test]
    fn splice_inserts_replaces_and_leaves_the_rest() {
        let cases = [
            (
                r#"{"model":"gpt-4o","stream":true}"#,
                r#"{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true}}"#,
            ),
            ("{}", r#"{"stream_options":{"include_usage":true}}"#),
            (
                " { } \n",
                " {\"stream_options\":{\"include_usage\":true} } \n",
            ),
            (
                "{\n  \"a\": [1, {\"b\": \"}\"}],\n  \"c\": 1.50\n}\n",
                "{\n  \"a\": [1, {\"b\": \"}\"}],\n  \"c\": 1.50,\"stream_options\":{\"include_usage\":true}\n}\n",
            ),
            (
                r#"{"stream_options":{"include_usage":false},"n":1e3}"#,
                r#"{"stream_options":{"include_usage":true},"n":1e3}"#,
            ),
            (
                r#"{"stream_options": {"x": 1}, "stream": true}"#,
                r#"{"stream_options": {"include_usage":true,"x": 1}, "stream": true}"#,
            ),
            (
                r#"{"stream_options": { }}"#,
                r#"{"stream_options": {"include_usage":true }}"#,
            ),
            (
                r#"{"stream_options":null,"m":"a\"b\\"}"#,
                r#"{"stream_options":{"include_usage":true},"m":"a\"b\\"}"#,
            ),
            (
                r#"{"stream_options":{"include_usage":false},"stream_options":{"include_usage":null}}"#,
                r#"{"stream_options":{"include_usage":false},"stream_options":{"include_usage":true}}"#,
            ),
        ];
        for (body, want) in cases {
            assert_eq!(spliced(body), want, "{body}");
        }
    }

    #[test]
    fn splice_and_value_paths_agree() {
        let bodies = [
            r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"stream":true}"#,
            r#"{"stream_options":{"include_usage":false,"other":[1,2]},"stream":true}"#,
            r#"{"stream_options":null}"#,
            "{}",
        ];
        for body in bodies {
            let a: Value = serde_json::from_slice(&splice(body.as_bytes()).unwrap()).unwrap();
            let b: Value = serde_json::from_slice(&via_value(body.as_bytes()).unwrap()).unwrap();
            assert_eq!(a, b, "{body}");
            assert_eq!(a["stream_options"]["include_usage"], Value::Bool(true));
        }
    }

    #[test]
    fn falls_back_to_value_when_unsure() {
        // An escaped key that spells stream_options: only a real parser can tell.
        let body = br#"{"stream\u005foptions":{"include_usage":false},"model":"m"}"#;
        assert!(splice(body).is_none());
        let out: Value = serde_json::from_slice(&set_include_usage(body).unwrap()).unwrap();
        assert_eq!(out["stream_options"]["include_usage"], Value::Bool(true));
        assert_eq!(out["model"], "m");

        // stream_options of the wrong type is replaced by an object.
        let body = br#"{"stream_options":"yes"}"#;
        assert!(splice(body).is_none());
        let out = set_include_usage(body).unwrap();
        assert_eq!(out, br#"{"stream_options":{"include_usage":true}}"#);
    }

    #[test]
    fn invalid_bodies_are_specific_errors() {
        for (body, want) in [
            (&b"[1,2]"[..], "not a JSON object"),
            (b"{\"a\":", "not valid JSON"),
            (b"{\"a\":1} x", "not valid JSON"),
            (b"", "not valid JSON"),
        ] {
            let err = set_include_usage(body).unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
    }
}
