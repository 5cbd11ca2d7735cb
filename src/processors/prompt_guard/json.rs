//! Rewriting string values inside a JSON document in place: every byte outside the
//! replaced strings (key order, spacing, number spelling) stays as it was, which a parse
//! into `serde_json::Value` and back would not keep.
//!
//! A small iterative tokenizer (no recursion, so nesting depth cannot overflow the
//! stack) walks the document, tracks the path of each value (`messages[2].content`) and
//! asks a callback for each string value (keys are never offered) whether to replace it.

use std::borrow::Cow;

use memchr::memchr2;

/// One step of a value's path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seg<'a> {
    Key(Cow<'a, str>),
    Index(usize),
}

impl Seg<'_> {
    pub fn key(&self) -> Option<&str> {
        match self {
            Seg::Key(k) => Some(k),
            Seg::Index(_) => None,
        }
    }
}

/// The document is not JSON (at byte `0`).
#[derive(Debug, thiserror::Error)]
#[error("malformed JSON at byte {0}")]
pub struct Malformed(pub usize);

enum Frame {
    Object,
    Array(usize),
}

#[derive(Clone, Copy, PartialEq)]
enum State {
    Value,
    ObjectStart,
    Key,
    ArrayStart,
    After,
}

/// Calls `replace(path, text)` for every string value of `json` (text unescaped) and
/// returns the document with the strings it answered `Some` for replaced (re-escaped),
/// or `None` when it answered `None` for all of them.
pub fn rewrite_strings<F>(json: &[u8], mut replace: F) -> Result<Option<Vec<u8>>, Malformed>
where
    F: FnMut(&[Seg<'_>], &str) -> Option<String>,
{
    rewrite(json, None, |path, token| Ok(replace(path, &token.text()?)))
}

/// [`rewrite_strings`] for a document already known to be valid JSON text (an SSE
/// event's data that parsed): `replace` gets each string value's path and its token,
/// and unescapes only the ones it looks at ([`StrToken::text`]) — the path is usually
/// enough to decide.
pub fn rewrite_str_values<F>(json: &str, mut replace: F) -> Result<Option<Vec<u8>>, Malformed>
where
    F: FnMut(&[Seg<'_>], StrToken<'_>) -> Option<String>,
{
    rewrite(json.as_bytes(), Some(json), |path, token| {
        Ok(replace(path, token))
    })
}

/// One string token of a document, quotes included.
#[derive(Clone, Copy)]
pub struct StrToken<'a> {
    json: &'a [u8],
    text: Option<&'a str>,
    start: usize,
    end: usize,
}

impl<'a> StrToken<'a> {
    /// The string's text, unescaped.
    pub fn text(&self) -> Result<Cow<'a, str>, Malformed> {
        unescape(self.json, self.text, self.start, self.end)
    }
}

/// The tokenizer behind both: `text` is `json` as a `str` when it is known to be UTF-8;
/// the first error `replace` returns ends the walk.
fn rewrite<F>(json: &[u8], text: Option<&str>, mut replace: F) -> Result<Option<Vec<u8>>, Malformed>
where
    F: FnMut(&[Seg<'_>], StrToken<'_>) -> Result<Option<String>, Malformed>,
{
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    let mut path: Vec<Seg<'_>> = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut state = State::Value;
    let mut pos = 0;
    loop {
        pos = skip_ws(json, pos);
        if state == State::After && stack.is_empty() {
            return if pos == json.len() {
                Ok(out.map(|mut o| {
                    o.extend_from_slice(&json[copied..]);
                    o
                }))
            } else {
                Err(Malformed(pos))
            };
        }
        let &c = json.get(pos).ok_or(Malformed(pos))?;
        match state {
            State::Value => match c {
                b'{' => {
                    pos += 1;
                    stack.push(Frame::Object);
                    state = State::ObjectStart;
                }
                b'[' => {
                    pos += 1;
                    stack.push(Frame::Array(0));
                    path.push(Seg::Index(0));
                    state = State::ArrayStart;
                }
                b'"' => {
                    let end = string_end(json, pos)?;
                    let token = StrToken {
                        json,
                        text,
                        start: pos,
                        end,
                    };
                    if let Some(new) = replace(&path, token)? {
                        let o = out.get_or_insert_with(|| Vec::with_capacity(json.len()));
                        o.extend_from_slice(&json[copied..pos]);
                        serde_json::to_writer(&mut *o, &new).expect("writing to a Vec");
                        copied = end;
                    }
                    pos = end;
                    state = State::After;
                }
                _ => {
                    let start = pos;
                    while pos < json.len()
                        && !matches!(json[pos], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
                    {
                        pos += 1;
                    }
                    if pos == start {
                        return Err(Malformed(pos));
                    }
                    state = State::After;
                }
            },
            State::ObjectStart if c == b'}' => {
                pos += 1;
                stack.pop();
                state = State::After;
            }
            State::ObjectStart | State::Key => {
                if c != b'"' {
                    return Err(Malformed(pos));
                }
                let end = string_end(json, pos)?;
                let key = unescape(json, text, pos, end)?;
                pos = skip_ws(json, end);
                if json.get(pos) != Some(&b':') {
                    return Err(Malformed(pos));
                }
                pos += 1;
                path.push(Seg::Key(key));
                state = State::Value;
            }
            State::ArrayStart if c == b']' => {
                pos += 1;
                stack.pop();
                path.pop();
                state = State::After;
            }
            State::ArrayStart => state = State::Value,
            State::After => match (stack.last_mut(), c) {
                (Some(Frame::Object), b',') => {
                    pos += 1;
                    path.pop();
                    state = State::Key;
                }
                (Some(Frame::Object), b'}') => {
                    pos += 1;
                    path.pop();
                    stack.pop();
                }
                (Some(Frame::Array(i)), b',') => {
                    pos += 1;
                    *i += 1;
                    *path.last_mut().expect("an array pushed its index") = Seg::Index(*i);
                    state = State::Value;
                }
                (Some(Frame::Array(_)), b']') => {
                    pos += 1;
                    path.pop();
                    stack.pop();
                }
                _ => return Err(Malformed(pos)),
            },
        }
    }
}

fn skip_ws(json: &[u8], mut pos: usize) -> usize {
    while pos < json.len() && matches!(json[pos], b' ' | b'\t' | b'\n' | b'\r') {
        pos += 1;
    }
    pos
}

/// The offset just past the closing quote of the string starting at `start`.
fn string_end(json: &[u8], start: usize) -> Result<usize, Malformed> {
    let mut pos = start + 1;
    loop {
        let i = memchr2(b'"', b'\\', &json[pos..]).ok_or(Malformed(start))?;
        pos += i;
        if json[pos] == b'"' {
            return Ok(pos + 1);
        }
        pos += 2; // a backslash and the character it escapes
        if pos > json.len() {
            return Err(Malformed(start));
        }
    }
}

/// The text of the string token `json[start..end]` (quotes included); `text` is `json`
/// as a `str` when it is known to be UTF-8 (quotes are ASCII, so the token's inside
/// slices at character boundaries).
fn unescape<'a>(
    json: &'a [u8],
    text: Option<&'a str>,
    start: usize,
    end: usize,
) -> Result<Cow<'a, str>, Malformed> {
    let inner = &json[start + 1..end - 1];
    if memchr::memchr(b'\\', inner).is_none() {
        return match text {
            Some(text) => Ok(Cow::Borrowed(&text[start + 1..end - 1])),
            None => std::str::from_utf8(inner)
                .map(Cow::Borrowed)
                .map_err(|_| Malformed(start)),
        };
    }
    serde_json::from_slice::<String>(&json[start..end])
        .map(Cow::Owned)
        .map_err(|_| Malformed(start))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(json: &str) -> Vec<String> {
        let mut seen = Vec::new();
        let out = rewrite_strings(json.as_bytes(), |path, text| {
            let p: Vec<String> = path
                .iter()
                .map(|s| match s {
                    Seg::Key(k) => k.to_string(),
                    Seg::Index(i) => i.to_string(),
                })
                .collect();
            seen.push(format!("{}={text}", p.join(".")));
            None
        })
        .unwrap();
        assert!(out.is_none());
        seen
    }

    #[test]
    fn visits_every_string_value_with_its_path() {
        let json = r#" {"model":"m","n":[1, 2.5e3,true,null],"messages":[{"role":"user","content":"hi \"you\""},{"content":[{"type":"text","text":"x"}],"e":{},"f":[]}],"s":"\u00e9"} "#;
        assert_eq!(
            paths(json),
            [
                "model=m",
                "messages.0.role=user",
                "messages.0.content=hi \"you\"",
                "messages.1.content.0.type=text",
                "messages.1.content.0.text=x",
                "s=é"
            ]
        );
        assert_eq!(paths(r#""top""#), ["=top"]);
        assert_eq!(
            paths(r#"[["a"],[],["b","c"]]"#),
            ["0.0=a", "2.0=b", "2.1=c"]
        );
    }

    #[test]
    fn replaces_only_what_is_asked_and_keeps_every_other_byte() {
        let json = "{ \"a\" : \"mail x@y.z\",\n  \"b\": [\"keep\", \"x@y.z\"], \"k\": 1.50 }";
        let out = rewrite_strings(json.as_bytes(), |_, text| {
            text.contains('@')
                .then(|| text.replace("x@y.z", "<EMAIL> \"q\""))
        })
        .unwrap()
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{ \"a\" : \"mail <EMAIL> \\\"q\\\"\",\n  \"b\": [\"keep\", \"<EMAIL> \\\"q\\\"\"], \"k\": 1.50 }"
        );
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        let bad: [&[u8]; 11] = [
            b"",
            b"{",
            b"{\"a\"}",
            b"{\"a\":}",
            b"[1,",
            b"\"unterminated",
            b"\"ends in backslash\\",
            b"{\"a\":1}x",
            b"{\"a\":\"\\ud800\"}",
            b"\"\xff\"",
            b"}",
        ];
        for bad in bad {
            let r = rewrite_strings(bad, |_, _| None);
            assert!(r.is_err(), "{:?} gave {r:?}", String::from_utf8_lossy(bad));
        }
        // Deep nesting is iterative.
        let deep = "[".repeat(100_000) + &"]".repeat(100_000);
        assert!(rewrite_strings(deep.as_bytes(), |_, _| None)
            .unwrap()
            .is_none());
    }
}
