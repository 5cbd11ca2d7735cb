//! Text as the detectors read it: Unicode-normalized, with a map back to the original
//! bytes, so a finding in the normalized text masks exactly the original characters
//! that produced it.
//!
//! Each character is, in order:
//! - dropped when it is invisible (a format character, category Cf, or another
//!   default-ignorable code point: zero-width spaces and joiners, soft hyphens,
//!   bidi controls, variation selectors, tags): `sk-ab\u{200B}cd` reads `sk-abcd`;
//! - replaced by its NFKC form (`unicode-normalization`): fullwidth `＠` and `１`, the
//!   small `﹫`, ligatures, no-break and other spaces read as their ASCII forms;
//! - then, for the detectors' syntax characters NFKC leaves alone, mapped to the ASCII
//!   one: the ideographic full stop `。` to `.`, Unicode hyphens, dashes and the minus
//!   sign to `-`, the decimal digits of other scripts to `0`–`9`.
//!
//! Characters are normalized one at a time (NFKC of each character, not composition
//! across characters): every normalized byte then comes from exactly one original
//! character, and a text split anywhere between characters normalizes to the same
//! pieces, which keeps the stream masker equal to the whole-text scan. No detector reads
//! combining marks, so nothing is lost by not composing them.
//!
//! ASCII text is never copied: it is its own normal form (the scanner checks
//! `is_ascii` first).

mod chars;

use super::scanner::Finding;

/// How a stretch of normalized text maps to the original.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    /// Offsets of the stretch in the normalized and the original text.
    norm: usize,
    orig: usize,
    norm_len: usize,
    orig_len: usize,
    /// Byte for byte the same (a run of unchanged characters); otherwise one original
    /// character, replaced (or dropped when `norm_len` is 0).
    same: bool,
}

/// A normalized text and its map to the original (both relative to where it starts).
#[derive(Clone, Debug, Default)]
pub struct Normalized {
    pub text: String,
    orig_len: usize,
    spans: Vec<Span>,
}

impl Normalized {
    /// The normalized form of `text`.
    pub fn of(text: &str) -> Normalized {
        let mut n = Normalized::default();
        n.push(text);
        n
    }

    /// Appends the normalized form of `piece` (original text that follows what was
    /// pushed before).
    pub fn push(&mut self, piece: &str) {
        if piece.is_ascii() {
            self.push_same(piece);
            return;
        }
        let mut run = 0;
        let mut produced = String::new();
        // ASCII is its own normal form: jump from one non-ASCII character to the next.
        let bytes = piece.as_bytes();
        let mut next = 0;
        while let Some(skip) = bytes[next..].iter().position(|&b| !b.is_ascii()) {
            let i = next + skip;
            let c = piece[i..].chars().next().expect("a character starts here");
            next = i + c.len_utf8();
            produced.clear();
            chars::normalize_char(c, &mut produced);
            if produced == piece[i..i + c.len_utf8()] {
                continue; // unchanged: stays in the run
            }
            self.push_same(&piece[run..i]);
            self.spans.push(Span {
                norm: self.text.len(),
                orig: self.orig_len,
                norm_len: produced.len(),
                orig_len: c.len_utf8(),
                same: false,
            });
            self.text.push_str(&produced);
            self.orig_len += c.len_utf8();
            run = i + c.len_utf8();
        }
        self.push_same(&piece[run..]);
    }

    fn push_same(&mut self, s: &str) {
        if s.is_empty() {
            return;
        }
        match self.spans.last_mut() {
            Some(last) if last.same => {
                last.norm_len += s.len();
                last.orig_len += s.len();
            }
            _ => self.spans.push(Span {
                norm: self.text.len(),
                orig: self.orig_len,
                norm_len: s.len(),
                orig_len: s.len(),
                same: true,
            }),
        }
        self.text.push_str(s);
        self.orig_len += s.len();
    }

    /// Length of the original text.
    #[cfg(test)]
    pub fn orig_len(&self) -> usize {
        self.orig_len
    }

    /// Whether the normalized text is the original, byte for byte.
    pub fn is_identity(&self) -> bool {
        self.spans.iter().all(|s| s.same)
    }

    /// The span holding normalized byte `n` (`n < text.len()`).
    fn span_of(&self, n: usize) -> &Span {
        let i = self
            .spans
            .partition_point(|s| s.norm + s.norm_len <= n || s.norm_len == 0 && s.norm <= n);
        &self.spans[i]
    }

    /// Original offset where the character behind normalized byte `n` starts; the
    /// original length for `n` at the end. Invisible characters before it fall before.
    pub fn start(&self, n: usize) -> usize {
        if n >= self.text.len() {
            return self.orig_len;
        }
        let s = self.span_of(n);
        if s.same {
            s.orig + (n - s.norm)
        } else {
            s.orig
        }
    }

    /// Original offset where the character behind normalized byte `e - 1` ends (`e > 0`).
    pub fn end(&self, e: usize) -> usize {
        let s = self.span_of(e - 1);
        if s.same {
            s.orig + (e - s.norm)
        } else {
            s.orig + s.orig_len
        }
    }

    /// `f` in original offsets.
    pub fn to_original(&self, f: &Finding) -> Finding {
        Finding {
            start: self.start(f.start),
            end: self.end(f.end),
            ..*f
        }
    }

    /// The largest normalized offset `<= n` where a character of the original starts
    /// (never inside what one original character became).
    pub fn floor_boundary(&self, n: usize) -> usize {
        if n >= self.text.len() {
            return self.text.len();
        }
        let s = self.span_of(n);
        if s.same {
            n
        } else {
            s.norm
        }
    }

    /// Drops the first `n` normalized bytes (`n` from [`floor_boundary`]) and the
    /// original text behind them; returns how many original bytes went.
    ///
    /// [`floor_boundary`]: Self::floor_boundary
    pub fn drain(&mut self, n: usize) -> usize {
        let orig = self.start(n);
        self.text.drain(..n);
        self.spans.retain_mut(|s| {
            if s.orig + s.orig_len <= orig {
                return false;
            }
            if s.same && s.orig < orig {
                let cut = orig - s.orig;
                s.orig_len -= cut;
                s.norm_len -= cut;
                s.orig = orig;
                s.norm += cut;
            }
            s.orig -= orig;
            s.norm -= n;
            true
        });
        self.orig_len -= orig;
        orig
    }
}

#[cfg(test)]
mod tests;
