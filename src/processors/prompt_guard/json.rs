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
    let mut w = Walk {
        json,
        text,
        out: None,
        copied: 0,
        path: Vec::new(),
        stack: Vec::new(),
        pos: 0,
    };
    let mut state = State::Value;
    loop {
        w.pos = skip_ws(json, w.pos);
        if state == State::After && w.stack.is_empty() {
            return w.finish();
        }
        let &c = json.get(w.pos).ok_or(Malformed(w.pos))?;
        state = match state {
            State::Value => w.value(c, &mut replace)?,
            State::ObjectStart if c == b'}' => {
                w.pos += 1;
                w.stack.pop();
                State::After
            }
            State::ObjectStart | State::Key => w.key(c)?,
            State::ArrayStart if c == b']' => {
                w.pos += 1;
                w.stack.pop();
                w.path.pop();
                State::After
            }
            State::ArrayStart => State::Value,
            State::After => w.after(c)?,
        };
    }
}

/// Where the tokenizer is: the document, the rewritten copy (once a string was
/// replaced) and how much of the document it holds, the path and the open containers.
struct Walk<'a> {
    json: &'a [u8],
    text: Option<&'a str>,
    out: Option<Vec<u8>>,
    copied: usize,
    path: Vec<Seg<'a>>,
    stack: Vec<Frame>,
    pos: usize,
}

impl<'a> Walk<'a> {
    /// The whole document was read: the rewritten copy, if any string was replaced.
    fn finish(self) -> Result<Option<Vec<u8>>, Malformed> {
        if self.pos != self.json.len() {
            return Err(Malformed(self.pos));
        }
        Ok(self.out.map(|mut o| {
            o.extend_from_slice(&self.json[self.copied..]);
            o
        }))
    }

    /// A value starting with `c`: a container opens, a string is offered to `replace`,
    /// anything else (number, literal) is skipped.
    fn value<F>(&mut self, c: u8, replace: &mut F) -> Result<State, Malformed>
    where
        F: FnMut(&[Seg<'_>], StrToken<'_>) -> Result<Option<String>, Malformed>,
    {
        let (json, pos) = (self.json, self.pos);
        match c {
            b'{' => {
                self.pos += 1;
                self.stack.push(Frame::Object);
                Ok(State::ObjectStart)
            }
            b'[' => {
                self.pos += 1;
                self.stack.push(Frame::Array(0));
                self.path.push(Seg::Index(0));
                Ok(State::ArrayStart)
            }
            b'"' => {
                let end = string_end(json, pos)?;
                let token = StrToken {
                    json,
                    text: self.text,
                    start: pos,
                    end,
                };
                if let Some(new) = replace(&self.path, token)? {
                    let o = self
                        .out
                        .get_or_insert_with(|| Vec::with_capacity(json.len()));
                    o.extend_from_slice(&json[self.copied..pos]);
                    serde_json::to_writer(&mut *o, &new).expect("writing to a Vec");
                    self.copied = end;
                }
                self.pos = end;
                Ok(State::After)
            }
            _ => {
                while self.pos < json.len()
                    && !matches!(
                        json[self.pos],
                        b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'
                    )
                {
                    self.pos += 1;
                }
                if self.pos == pos {
                    return Err(Malformed(pos));
                }
                Ok(State::After)
            }
        }
    }

    /// An object's key (starting with `c`) and its colon.
    fn key(&mut self, c: u8) -> Result<State, Malformed> {
        if c != b'"' {
            return Err(Malformed(self.pos));
        }
        let end = string_end(self.json, self.pos)?;
        let key = unescape(self.json, self.text, self.pos, end)?;
        self.pos = skip_ws(self.json, end);
        if self.json.get(self.pos) != Some(&b':') {
            return Err(Malformed(self.pos));
        }
        self.pos += 1;
        self.path.push(Seg::Key(key));
        Ok(State::Value)
    }

    /// After a value: a comma or the end of the container holding it.
    fn after(&mut self, c: u8) -> Result<State, Malformed> {
        let state = match (self.stack.last_mut(), c) {
            (Some(Frame::Object), b',') => {
                self.path.pop();
                State::Key
            }
            (Some(Frame::Array(i)), b',') => {
                *i += 1;
                *self.path.last_mut().expect("an array pushed its index") = Seg::Index(*i);
                State::Value
            }
            (Some(Frame::Object), b'}') | (Some(Frame::Array(_)), b']') => {
                self.path.pop();
                self.stack.pop();
                State::After
            }
            _ => return Err(Malformed(self.pos)),
        };
        self.pos += 1;
        Ok(state)
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
