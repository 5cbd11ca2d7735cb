//! Model rewrite on the wire: the request's top-level `"model"` value is replaced in
//! place (every other byte kept), and the response names the model the client asked
//! for again — in a JSON body or in every SSE event — by a streaming replacement of
//! `"model":"<target>"` (with or without a space after the colon). The replacement
//! holds back only a chunk tail that could still become a match, so streamed events
//! are never delayed.

use std::ops::Range;

/// The request body with its top-level `"model"` string set to `model`; `None` when the
/// body has no top-level string `"model"`.
pub fn set_model(body: &[u8], model: &str) -> Option<Vec<u8>> {
    let span = top_level_string(body, b"model")?;
    let value = serde_json::to_string(model).ok()?;
    let mut out = Vec::with_capacity(body.len() + value.len());
    out.extend_from_slice(&body[..span.start]);
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(&body[span.end..]);
    Some(out)
}

/// Whether the JSON string `quoted` (quotes included) is `key`, escapes decoded: a
/// client may write `"mod\u0065l"`, which every JSON parser reads as `model`.
fn key_is(quoted: &[u8], key: &[u8]) -> bool {
    let raw = &quoted[1..quoted.len() - 1];
    if !raw.contains(&b'\\') {
        return raw == key;
    }
    serde_json::from_slice::<String>(quoted).is_ok_and(|k| k.as_bytes() == key)
}

/// The byte span (quotes included) of the string value of `key` in the top-level JSON
/// object of `body`.
fn top_level_string(body: &[u8], key: &[u8]) -> Option<Range<usize>> {
    let mut depth = 0usize;
    let mut i = 0;
    // After a top-level key that matched, the next string at depth 1 is its value.
    let mut want_value = false;
    let mut expect_key = false;
    while i < body.len() {
        match body[i] {
            b'{' | b'[' => {
                depth += 1;
                expect_key = depth == 1 && body[i] == b'{';
                if want_value {
                    return None;
                }
                i += 1;
            }
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                i += 1;
            }
            b',' => {
                expect_key = depth == 1;
                i += 1;
            }
            b'"' => {
                let end = string_end(body, i)?;
                if depth == 1 {
                    if want_value {
                        return Some(i..end);
                    }
                    if expect_key {
                        want_value = key_is(&body[i..end], key);
                        expect_key = false;
                    }
                }
                i = end;
            }
            b' ' | b'\t' | b'\r' | b'\n' | b':' => i += 1,
            _ => {
                if want_value && depth == 1 {
                    return None;
                }
                i += 1;
            }
        }
    }
    None
}

/// The index just past the closing quote of the string starting at `start`.
fn string_end(body: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < body.len() {
        match body[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// Streams a response, writing the client's model name back over the target's.
#[derive(Debug)]
pub struct ModelWriteBack {
    patterns: [Vec<u8>; 2],
    replacements: [Vec<u8>; 2],
    carry: Vec<u8>,
}

impl ModelWriteBack {
    pub fn new(target: &str, original: &str) -> Self {
        let quoted = |m: &str| serde_json::to_string(m).unwrap_or_default();
        let (t, o) = (quoted(target), quoted(original));
        ModelWriteBack {
            patterns: [
                format!("\"model\":{t}").into_bytes(),
                format!("\"model\": {t}").into_bytes(),
            ],
            replacements: [
                format!("\"model\":{o}").into_bytes(),
                format!("\"model\": {o}").into_bytes(),
            ],
            carry: Vec::new(),
        }
    }

    /// The bytes to send for `chunk`; at the end of the stream everything held goes.
    pub fn push(&mut self, chunk: &[u8], end_of_stream: bool) -> Vec<u8> {
        let mut input = std::mem::take(&mut self.carry);
        input.extend_from_slice(chunk);
        let mut out = Vec::with_capacity(input.len());
        let mut i = 0;
        'scan: while i < input.len() {
            if input[i] == b'"' {
                for (p, r) in self.patterns.iter().zip(&self.replacements) {
                    if input[i..].starts_with(p) {
                        out.extend_from_slice(r);
                        i += p.len();
                        continue 'scan;
                    }
                }
                if !end_of_stream && self.patterns.iter().any(|p| p.starts_with(&input[i..])) {
                    self.carry = input[i..].to_vec();
                    return out;
                }
            }
            out.push(input[i]);
            i += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_only_the_top_level_model() {
        let body = br#"{"messages":[{"role":"user","content":"\"model\": x","model":"inner"}], "model" : "m", "n":1}"#;
        let out = set_model(body, "m-v2").unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"messages":[{"role":"user","content":"\"model\": x","model":"inner"}], "model" : "m-v2", "n":1}"#
        );
        assert_eq!(set_model(br#"{"model":1}"#, "x"), None);
        assert_eq!(set_model(br#"{"messages":[]}"#, "x"), None);
        assert_eq!(set_model(br#"{"a":{"model":"x"}}"#, "y"), None);
        let escaped = set_model(br#"{"model":"a\"b"}"#, "q\"").unwrap();
        assert_eq!(escaped, br#"{"model":"q\""}"#);
    }

    #[test]
    fn an_escaped_key_is_still_the_model() {
        // Found by the json_rewrite fuzz target: parsers read `mod\u0065l` as `model`.
        let out = set_model(br#"{"mod\u0065l":"x","mgdel":"m"}"#, "y").unwrap();
        assert_eq!(out, br#"{"mod\u0065l":"y","mgdel":"m"}"#);
        assert_eq!(set_model(br#"{"mod\u0065":"x"}"#, "y"), None);
    }

    #[test]
    fn writes_the_model_back_across_every_split() {
        let stream = "data: {\"id\":\"1\",\"model\":\"m-v2\",\"choices\":[]}\n\n\
                      data: {\"id\":\"1\",\"model\": \"m-v2\",\"choices\":[]}\n\ndata: [DONE]\n\n";
        let want = stream.replace("m-v2", "m");
        for cut in 0..stream.len() {
            for cut2 in cut..stream.len() {
                let mut w = ModelWriteBack::new("m-v2", "m");
                let b = stream.as_bytes();
                let mut out = w.push(&b[..cut], false);
                out.extend(w.push(&b[cut..cut2], false));
                out.extend(w.push(&b[cut2..], true));
                assert_eq!(String::from_utf8(out).unwrap(), want, "cuts {cut} {cut2}");
            }
        }
    }

    #[test]
    fn holds_back_nothing_that_cannot_match() {
        let mut w = ModelWriteBack::new("m-v2", "m");
        assert_eq!(
            w.push(b"data: {\"x\":1}\n\n", false),
            b"data: {\"x\":1}\n\n"
        );
        assert_eq!(w.push(b"{\"mod", false), b"{");
        assert_eq!(w.push(b"el\":\"other\"}", false), b"\"model\":\"other\"}");
    }
}
