//! A JSON request body read while it is still arriving: [`PartialJson`] follows the
//! structure of the bytes pushed so far (strings, containers, the top-level keys) without
//! building anything, so that a reader can
//! - learn the top-level `"model"` as soon as its value has passed, wherever it sits in
//!   the body (the OpenAI and Anthropic SDKs put it after `messages`), and
//! - [`close`](PartialJson::close) the prefix it holds into a complete JSON text — the
//!   open string cut at a character boundary and closed, a half-read key, number or
//!   literal dropped, the open containers closed — that the ordinary parsers read.
//!   The prompt text of the closed prefix is a prefix of the whole body's prompt text
//!   whenever the body lists its prompt in order (Chat Completions `messages`,
//!   Completions `prompt`).
//! - tell which top-level members have been read whole ([`has_value`](PartialJson::has_value)):
//!   an API whose prompt starts with a member that may come anywhere (Anthropic's
//!   `system`, Responses' `instructions`) has a final prompt start only once it passed.
//!
//! The scan costs one pass over each byte, and inside strings it jumps from quote to
//! backslash with `memchr`. It never fails a body: bytes that are not JSON it can follow
//! (or nesting deeper than [`MAX_DEPTH`]) stop it, and [`PartialJson::lost`] says so —
//! the reader then waits for the whole body and parses it as usual.

/// Deepest nesting followed (`serde_json`'s own limit).
pub const MAX_DEPTH: usize = 128;
/// Longest `model` value captured (longer ones are not taken).
pub const MAX_MODEL_BYTES: usize = 1024;
/// Longest top-level key remembered (longer ones are followed, not remembered).
pub const MAX_KEY_BYTES: usize = 32;
/// Most top-level members remembered as read whole.
pub const MAX_KEYS: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Object,
    Array,
}

/// What an open container waits for next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// A key or `}` (just after `{`), or a value or `]` (just after `[`).
    First,
    Key,
    Colon,
    Value,
    /// `,` or the closing bracket.
    Next,
}

#[derive(Clone, Copy, Debug)]
struct Frame {
    kind: Kind,
    expect: Expect,
    /// Offset just after the container's last complete member, or after its bracket:
    /// a prefix cut there and closed is valid JSON.
    safe: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lex {
    /// Between tokens.
    Structure,
    /// Inside a string (`key`: an object key); `escape`: just after a backslash;
    /// `unicode`: hex digits of a `\u` escape still to come.
    String {
        key: bool,
        escape: bool,
        unicode: u8,
    },
    /// Inside a number or a literal (`true`, `false`, `null`).
    Scalar,
    /// The top-level value ended.
    Done,
    /// Not JSON this scan follows.
    Lost,
}

/// The structure of a JSON body read so far.
#[derive(Debug)]
pub struct PartialJson {
    /// Bytes pushed so far.
    len: usize,
    stack: Vec<Frame>,
    lex: Lex,
    /// Offset where the string being read opened (its quote).
    string_start: usize,
    /// The top-level key being read, or the one whose value is being read (raw bytes).
    key: Vec<u8>,
    key_overflow: bool,
    /// The raw bytes of the top-level `"model"` string value being read.
    model_raw: Option<Vec<u8>>,
    model: Option<String>,
    /// The top-level keys whose values have been read whole (raw bytes, at most
    /// [`MAX_KEYS`] of at most [`MAX_KEY_BYTES`]).
    read_keys: Vec<Vec<u8>>,
}

impl Default for PartialJson {
    fn default() -> Self {
        Self::new()
    }
}

// === impl PartialJson ===

impl PartialJson {
    pub fn new() -> Self {
        PartialJson {
            len: 0,
            stack: Vec::new(),
            lex: Lex::Structure,
            string_start: 0,
            key: Vec::new(),
            key_overflow: false,
            model_raw: None,
            model: None,
            read_keys: Vec::new(),
        }
    }

    /// Bytes pushed so far.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The top-level `"model"` string, once its value has been read whole.
    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    /// Whether the top-level member `key` (written without escapes) has been read whole.
    pub fn has_value(&self, key: &str) -> bool {
        self.read_keys.iter().any(|k| k == key.as_bytes())
    }

    /// The bytes are not JSON this scan can follow: only the whole body tells more.
    pub fn lost(&self) -> bool {
        self.lex == Lex::Lost
    }

    /// The top-level value is complete.
    pub fn done(&self) -> bool {
        self.lex == Lex::Done
    }

    /// Follows the next bytes of the body.
    pub fn push(&mut self, bytes: &[u8]) {
        let mut i = 0;
        while i < bytes.len() {
            i = match self.lex {
                Lex::Lost => break,
                Lex::String { .. } => self.in_string(bytes, i),
                Lex::Scalar => self.in_scalar(bytes, i),
                Lex::Structure | Lex::Done => self.structure(bytes[i], i),
            };
        }
        self.len += bytes.len();
    }

    /// `prefix` (the bytes pushed so far, or their first part up to [`len`](Self::len))
    /// cut and closed into a complete JSON text; `None` when nothing of it can be kept
    /// (no container opened yet) or the scan is lost.
    pub fn close(&self, prefix: &[u8]) -> Option<Vec<u8>> {
        if prefix.len() != self.len || self.lost() {
            return None;
        }
        if self.done() {
            return Some(prefix.to_vec());
        }
        let top = self.stack.last()?;
        let mut out = match self.lex {
            Lex::String {
                key: false,
                escape,
                unicode,
            } => {
                let mut cut = prefix.len();
                if escape {
                    cut -= 1;
                } else if unicode > 0 {
                    // Back to the backslash of the `\u` escape.
                    cut -= 2 + (4 - unicode as usize);
                }
                let cut = char_boundary(prefix, cut, self.string_start + 1);
                let cut = before_lone_surrogate(prefix, cut, self.string_start + 1);
                let mut out = prefix[..cut].to_vec();
                out.push(b'"');
                out
            }
            _ => prefix[..top.safe].to_vec(),
        };
        for frame in self.stack.iter().rev() {
            out.push(match frame.kind {
                Kind::Object => b'}',
                Kind::Array => b']',
            });
        }
        Some(out)
    }

    // --- the scan ---

    /// One byte between tokens at offset `i` of this push; the next offset.
    fn structure(&mut self, b: u8, i: usize) -> usize {
        let at = self.len + i;
        match b {
            b' ' | b'\t' | b'\n' | b'\r' => {}
            _ if self.lex == Lex::Done => self.lex = Lex::Lost,
            b'{' | b'[' => self.open(b, at),
            b'}' | b']' => self.close_container(b, at),
            b'"' => self.open_string(at),
            b':' => self.expect(Expect::Colon, Expect::Value),
            b',' => self.comma(),
            b'-' | b'0'..=b'9' | b't' | b'f' | b'n' => {
                if self.value_allowed() {
                    self.lex = Lex::Scalar;
                } else {
                    self.lex = Lex::Lost;
                }
            }
            _ => self.lex = Lex::Lost,
        }
        i + 1
    }

    fn value_allowed(&self) -> bool {
        match self.stack.last() {
            None => true,
            Some(f) => matches!(
                (f.kind, f.expect),
                (Kind::Object, Expect::Value) | (Kind::Array, Expect::First | Expect::Value)
            ),
        }
    }

    fn open(&mut self, b: u8, at: usize) {
        if !self.value_allowed() || self.stack.len() >= MAX_DEPTH {
            self.lex = Lex::Lost;
            return;
        }
        let kind = if b == b'{' { Kind::Object } else { Kind::Array };
        self.stack.push(Frame {
            kind,
            expect: Expect::First,
            safe: at + 1,
        });
    }

    fn close_container(&mut self, b: u8, at: usize) {
        let Some(frame) = self.stack.last() else {
            self.lex = Lex::Lost;
            return;
        };
        let matches = matches!((frame.kind, b), (Kind::Object, b'}') | (Kind::Array, b']'));
        if !matches || !matches!(frame.expect, Expect::First | Expect::Next) {
            self.lex = Lex::Lost;
            return;
        }
        self.stack.pop();
        self.value_complete(at + 1);
    }

    fn open_string(&mut self, at: usize) {
        let key = match self.stack.last() {
            Some(f) if f.kind == Kind::Object => match f.expect {
                Expect::First | Expect::Key => true,
                Expect::Value => false,
                _ => {
                    self.lex = Lex::Lost;
                    return;
                }
            },
            _ if self.value_allowed() => false,
            _ => {
                self.lex = Lex::Lost;
                return;
            }
        };
        let top_level = self.stack.len() == 1;
        if key && top_level {
            self.key.clear();
            self.key_overflow = false;
        }
        if !key && top_level && self.key == b"model" && self.model.is_none() {
            self.model_raw = Some(Vec::new());
        }
        self.string_start = at;
        self.lex = Lex::String {
            key,
            escape: false,
            unicode: 0,
        };
    }

    fn in_string(&mut self, bytes: &[u8], start: usize) -> usize {
        let Lex::String {
            key,
            mut escape,
            mut unicode,
        } = self.lex
        else {
            unreachable!("called inside strings only")
        };
        let mut i = start;
        while i < bytes.len() {
            if unicode > 0 {
                if !bytes[i].is_ascii_hexdigit() {
                    self.lex = Lex::Lost;
                    return bytes.len();
                }
                unicode -= 1;
                i += 1;
                continue;
            }
            if escape {
                match bytes[i] {
                    b'u' => unicode = 4,
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                    _ => {
                        self.lex = Lex::Lost;
                        return bytes.len();
                    }
                }
                escape = false;
                i += 1;
                continue;
            }
            match memchr::memchr2(b'"', b'\\', &bytes[i..]) {
                None => {
                    self.capture(key, &bytes[start..]);
                    self.lex = Lex::String {
                        key,
                        escape,
                        unicode,
                    };
                    return bytes.len();
                }
                Some(n) if bytes[i + n] == b'\\' => {
                    escape = true;
                    i += n + 1;
                }
                Some(n) => {
                    self.capture(key, &bytes[start..i + n]);
                    self.string_closed(key, self.len + i + n + 1);
                    return i + n + 1;
                }
            }
        }
        self.capture(key, &bytes[start..]);
        self.lex = Lex::String {
            key,
            escape,
            unicode,
        };
        bytes.len()
    }

    /// Keeps the raw bytes of a top-level key, or of the `model` value.
    fn capture(&mut self, key: bool, raw: &[u8]) {
        if self.stack.len() != 1 {
            return;
        }
        if key {
            if self.key.len() + raw.len() > MAX_KEY_BYTES {
                self.key_overflow = true;
            } else {
                self.key.extend_from_slice(raw);
            }
        } else if let Some(m) = self.model_raw.as_mut() {
            if m.len() + raw.len() > MAX_MODEL_BYTES {
                self.model_raw = None;
            } else {
                m.extend_from_slice(raw);
            }
        }
    }

    fn string_closed(&mut self, key: bool, end: usize) {
        self.lex = Lex::Structure;
        if key {
            if self.key_overflow {
                self.key.clear();
            }
            self.expect(Expect::Key, Expect::Colon);
            return;
        }
        if let Some(raw) = self.model_raw.take() {
            self.model = decode_string(&raw);
        }
        self.value_complete(end);
    }

    fn in_scalar(&mut self, bytes: &[u8], start: usize) -> usize {
        let rest = &bytes[start..];
        match rest
            .iter()
            .position(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'-' | b'+' | b'.')))
        {
            None => bytes.len(),
            Some(n) => {
                self.lex = Lex::Structure;
                self.value_complete(self.len + start + n);
                start + n
            }
        }
    }

    /// A value ended at offset `end`.
    fn value_complete(&mut self, end: usize) {
        if self.stack.len() == 1
            && !self.key.is_empty()
            && self.read_keys.len() < MAX_KEYS
            && !self.read_keys.contains(&self.key)
        {
            self.read_keys.push(self.key.clone());
        }
        match self.stack.last_mut() {
            None => self.lex = Lex::Done,
            Some(frame) => {
                frame.expect = Expect::Next;
                frame.safe = end;
            }
        }
    }

    fn expect(&mut self, now: Expect, next: Expect) {
        let Some(frame) = self.stack.last_mut() else {
            self.lex = Lex::Lost;
            return;
        };
        let ok = frame.expect == now
            || (now == Expect::Key && frame.kind == Kind::Object && frame.expect == Expect::First);
        if ok {
            frame.expect = next;
        } else {
            self.lex = Lex::Lost;
        }
    }

    fn comma(&mut self) {
        match self.stack.last_mut() {
            Some(frame) if frame.expect == Expect::Next => {
                frame.expect = match frame.kind {
                    Kind::Object => Expect::Key,
                    Kind::Array => Expect::Value,
                };
            }
            _ => self.lex = Lex::Lost,
        }
    }
}

/// `cut`, or the start of the character it would split (never below `floor`).
fn char_boundary(bytes: &[u8], cut: usize, floor: usize) -> usize {
    let kept = &bytes[..cut];
    let Some(lead) = kept.iter().rposition(|b| (b & 0xC0) != 0x80) else {
        return cut;
    };
    let need = match kept[lead] {
        b if b >= 0xF0 => 4,
        b if b >= 0xE0 => 3,
        b if b >= 0xC0 => 2,
        _ => 1,
    };
    if lead >= floor && kept.len() - lead < need {
        lead
    } else {
        cut
    }
}

/// `cut`, or the start of a `\uD800`–`\uDBFF` escape ending there (half of a
/// surrogate pair, whose other half was cut off: JSON parsers refuse it alone).
fn before_lone_surrogate(bytes: &[u8], cut: usize, floor: usize) -> usize {
    let Some(start) = cut.checked_sub(6).filter(|s| *s >= floor) else {
        return cut;
    };
    let tail = &bytes[start..cut];
    let high = tail.starts_with(b"\\u")
        && matches!(tail[2], b'd' | b'D')
        && matches!(tail[3], b'8' | b'9' | b'a' | b'b' | b'A' | b'B');
    // The backslash starts an escape only after an even run of backslashes.
    let run = bytes[floor..start]
        .iter()
        .rev()
        .take_while(|b| **b == b'\\')
        .count();
    if high && run % 2 == 0 {
        start
    } else {
        cut
    }
}

/// A JSON string's raw contents (between the quotes) decoded.
fn decode_string(raw: &[u8]) -> Option<String> {
    if !raw.contains(&b'\\') {
        return std::str::from_utf8(raw).ok().map(str::to_owned);
    }
    let mut quoted = Vec::with_capacity(raw.len() + 2);
    quoted.push(b'"');
    quoted.extend_from_slice(raw);
    quoted.push(b'"');
    serde_json::from_slice(&quoted).ok()
}

#[cfg(test)]
mod tests;
