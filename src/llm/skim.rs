//! A validating JSON reader that visits only the fields its caller asks for, without
//! building a document: the caller walks objects and arrays with closures, reads the
//! strings and integers it wants and skips every other value.
//!
//! It is for hot paths that read a few fields of many small documents (one SSE event
//! each). Its rule is to never disagree with `serde_json::Value`: every reader returns
//! `None` for text `serde_json` would refuse, and also where agreeing would take more
//! code than the case is worth (nesting deeper than [`MAX_DEPTH`], a `\u` escape it
//! does not decode itself, a float to range-check) — so `None` means "read this with
//! `serde_json` instead", and a caller falls back to its `Value` reading.

use std::borrow::Cow;

/// Nesting beyond this is left to `serde_json` (whose own limit is 128).
pub const MAX_DEPTH: u32 = 100;

/// A position in one JSON text.
pub struct Skim<'a> {
    text: &'a str,
    pos: usize,
    depth: u32,
}

impl<'a> Skim<'a> {
    pub fn new(text: &'a str) -> Self {
        Skim {
            text,
            pos: 0,
            depth: 0,
        }
    }

    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    /// The first byte of the next value (whitespace skipped), to choose a reader by.
    #[inline]
    pub fn peek(&mut self) -> Option<u8> {
        let b = self.bytes();
        loop {
            match b.get(self.pos) {
                Some(b' ' | b'\t' | b'\n' | b'\r') => self.pos += 1,
                other => return other.copied(),
            }
        }
    }

    #[inline]
    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.pos += 1)
    }

    /// After the top value: only whitespace may follow.
    pub fn finish(mut self) -> Option<()> {
        self.peek().is_none().then_some(())
    }

    /// Reads an object, calling `field(self, key)` for each member; `field` must read or
    /// skip the member's value. Keys come unescaped, in document order, duplicates
    /// included.
    pub fn object<F>(&mut self, mut field: F) -> Option<()>
    where
        F: FnMut(&mut Self, Cow<'a, str>) -> Option<()>,
    {
        self.expect(b'{')?;
        self.enter()?;
        if self.peek()? == b'}' {
            self.pos += 1;
        } else {
            loop {
                if self.peek()? != b'"' {
                    return None;
                }
                let key = self.string()?;
                self.expect(b':')?;
                field(self, key)?;
                match self.peek()? {
                    b',' => self.pos += 1,
                    b'}' => {
                        self.pos += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        self.depth -= 1;
        Some(())
    }

    /// Reads an array, calling `item(self, position)` for each element; `item` must read
    /// or skip it.
    pub fn array<F>(&mut self, mut item: F) -> Option<()>
    where
        F: FnMut(&mut Self, usize) -> Option<()>,
    {
        self.expect(b'[')?;
        self.enter()?;
        if self.peek()? == b']' {
            self.pos += 1;
        } else {
            let mut i = 0;
            loop {
                item(self, i)?;
                i += 1;
                match self.peek()? {
                    b',' => self.pos += 1,
                    b']' => {
                        self.pos += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        self.depth -= 1;
        Some(())
    }

    fn enter(&mut self) -> Option<()> {
        self.depth += 1;
        (self.depth <= MAX_DEPTH).then_some(())
    }

    /// Skips one value of any kind, checking it.
    pub fn skip(&mut self) -> Option<()> {
        match self.peek()? {
            b'{' => self.object(|s, _| s.skip()),
            b'[' => self.array(|s, _| s.skip()),
            b'"' => self.string_token().map(drop),
            b't' => self.literal("true"),
            b'f' => self.literal("false"),
            b'n' => self.literal("null"),
            _ => self.number().map(drop),
        }
    }

    fn literal(&mut self, word: &str) -> Option<()> {
        self.text[self.pos..]
            .starts_with(word)
            .then(|| self.pos += word.len())
    }

    /// Reads a string value or key, unescaped (borrowed when it has no escapes).
    pub fn string(&mut self) -> Option<Cow<'a, str>> {
        let (start, end, escaped) = self.string_token()?;
        if !escaped {
            return Some(Cow::Borrowed(&self.text[start + 1..end - 1]));
        }
        serde_json::from_str::<String>(&self.text[start..end])
            .ok()
            .map(Cow::Owned)
    }

    /// The bounds of the string token at the cursor (quotes included) and whether it has
    /// escapes; a `\u` escape is checked by `serde_json` (surrogate pairs).
    fn string_token(&mut self) -> Option<(usize, usize, bool)> {
        self.expect(b'"')?;
        let b = self.bytes();
        let start = self.pos - 1;
        let mut escaped = false;
        let mut unicode = false;
        let mut i = self.pos;
        loop {
            i = plain_run(b, i);
            while b
                .get(i)
                .is_some_and(|&c| c != b'"' && c != b'\\' && c >= 0x20)
            {
                i += 1;
            }
            match *b.get(i)? {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    match *b.get(i + 1)? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                        b'u' => unicode = true,
                        _ => return None,
                    }
                    i += 2;
                }
                _ => return None, // a control character
            }
        }
        self.pos = i + 1;
        if unicode {
            serde_json::from_str::<Cow<str>>(&self.text[start..self.pos]).ok()?;
        }
        Some((start, self.pos, escaped))
    }

    /// Reads a number; `Some(Some(n))` for an integer `serde_json` reads as a `u64`.
    pub fn number(&mut self) -> Option<Option<u64>> {
        self.peek()?;
        let b = self.bytes();
        let start = self.pos;
        let mut i = start + usize::from(b[start] == b'-');
        let int_start = i;
        i += count_digits(&b[i..]);
        let int_digits = i - int_start;
        if int_digits == 0 || (int_digits > 1 && b[int_start] == b'0') {
            return None;
        }
        let mut plain = true;
        if b.get(i) == Some(&b'.') {
            plain = false;
            let n = count_digits(&b[i + 1..]);
            if n == 0 {
                return None;
            }
            i += 1 + n;
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            plain = false;
            i += 1;
            i += usize::from(matches!(b.get(i), Some(b'+' | b'-')));
            let n = count_digits(&b[i..]);
            if n == 0 {
                return None;
            }
            i += n;
        }
        self.pos = i;
        let token = &self.text[start..i];
        if plain && int_start == start {
            // Digits only: a u64, or past u64::MAX a float serde_json checks for range.
            if let Ok(n) = token.parse::<u64>() {
                return Some(Some(n));
            }
        } else if plain && int_digits <= 18 {
            return Some(None); // a negative integer that fits an i64
        }
        serde_json::from_str::<serde_json::Number>(token).ok()?;
        Some(None)
    }

    /// Reads the value as a `u64` when it is one (as `Value::as_u64` would), skipping any
    /// other value.
    pub fn u64_or_skip(&mut self) -> Option<Option<u64>> {
        match self.peek()? {
            b'0'..=b'9' | b'-' => self.number(),
            _ => self.skip().map(|()| None),
        }
    }

    /// Reads the value as a string when it is one, skipping any other value.
    pub fn str_or_skip(&mut self) -> Option<Option<Cow<'a, str>>> {
        match self.peek()? {
            b'"' => self.string().map(Some),
            _ => self.skip().map(|()| None),
        }
    }

    /// Skips the value; whether it was anything but `null`.
    pub fn skip_non_null(&mut self) -> Option<bool> {
        let null = self.peek()? == b'n';
        self.skip()?;
        Some(!null)
    }
}

/// The offset of the first byte from `i` that needs a look in a string (a quote, a
/// backslash or a control character), eight bytes at a time; the input's last few bytes
/// are left to the caller.
#[inline]
fn plain_run(b: &[u8], mut i: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // The lowest byte flagged by each test is exact (borrows only run upwards).
    let zero_bytes = |w: u64| w.wrapping_sub(ONES) & !w & HIGH;
    while let Some(word) = b.get(i..i + 8) {
        let w = u64::from_le_bytes(word.try_into().expect("eight bytes"));
        let flagged = (w.wrapping_sub(ONES * 0x20) & !w & HIGH)
            | zero_bytes(w ^ (ONES * u64::from(b'"')))
            | zero_bytes(w ^ (ONES * u64::from(b'\\')));
        if flagged != 0 {
            return i + (flagged.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    i
}

fn count_digits(b: &[u8]) -> usize {
    b.iter().take_while(|c| c.is_ascii_digit()).count()
}

#[cfg(test)]
mod tests;
