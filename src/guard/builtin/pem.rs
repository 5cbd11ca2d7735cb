//! `private_key`: PEM private-key blocks.
//!
//! From `-----BEGIN <label>-----`, where the label is capitals, digits and spaces ending
//! in `PRIVATE KEY` (`RSA PRIVATE KEY`, `EC PRIVATE KEY`, `OPENSSH PRIVATE KEY`,
//! `ENCRYPTED PRIVATE KEY`, `PRIVATE KEY`, …), to the end of the first
//! `-----END <same label>-----` within [`Limits::private_key_max_len`] bytes of the start.
//! Certificates and public keys are not secrets and are not reported; a block without
//! its END line within the limit is not reported either (a stream holds it back until
//! the END arrives or the limit is passed).
//!
//! [`Limits::private_key_max_len`]: crate::guard::Limits

use std::sync::LazyLock;

use memchr::memmem::Finder;

use super::text::run_end;

const BEGIN: &[u8] = b"-----BEGIN ";
const END: &[u8] = b"-----END ";
const DASHES: &[u8] = b"-----";
const LABEL_MAX: usize = 64;

// Built once: a `memmem::find` call builds its searcher every time, which dominates
// when BEGIN lines are frequent.
static FIND_END: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(END));
static FIND_BEGIN: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"-----BEGIN"));

/// Every `-----END ` found so far in one scan, so each is searched for once however many
/// BEGIN lines look past it (BEGIN lines are visited in order).
#[derive(Default)]
pub(super) struct Memo {
    ends: Vec<usize>,
    /// All END lines starting before this are in `ends`.
    searched_to: usize,
}

impl Memo {
    /// The END lines starting in `from..to`.
    fn ends_in(&mut self, s: &[u8], from: usize, to: usize) -> &[usize] {
        while self.searched_to < to {
            match FIND_END.find(&s[self.searched_to..]) {
                Some(k) => {
                    self.ends.push(self.searched_to + k);
                    self.searched_to += k + 1;
                }
                None => self.searched_to = s.len().max(to),
            }
        }
        let lo = self.ends.partition_point(|&e| e < from);
        let hi = self.ends.partition_point(|&e| e < to);
        &self.ends[lo..hi]
    }
}

/// What the text at a `-----BEGIN` can still become.
pub(super) enum Block {
    /// Not a private-key BEGIN line (another label, or malformed).
    NotKey,
    /// A private-key block that has no END yet within the limit (or whose BEGIN line is
    /// cut off by the end of the text).
    Open,
    /// A complete block ending here.
    Closed(usize),
}

/// The block whose BEGIN line starts at `i` (the first of five dashes).
pub(super) fn block(s: &[u8], i: usize, max_len: usize, memo: &mut Memo) -> Block {
    let rest = &s[i..];
    if rest.len() < BEGIN.len() {
        return if BEGIN.starts_with(rest) {
            Block::Open
        } else {
            Block::NotKey
        };
    }
    if !rest.starts_with(BEGIN) {
        return Block::NotKey;
    }
    let label_start = i + BEGIN.len();
    let is_label = |c: u8| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b' ';
    let label_end = run_end(s, label_start, LABEL_MAX, is_label);
    if label_end - label_start > LABEL_MAX {
        return Block::NotKey;
    }
    let after = &s[label_end..];
    if after.len() < DASHES.len() && DASHES.starts_with(after) {
        return Block::Open;
    }
    let label = &s[label_start..label_end];
    if !label.ends_with(b"PRIVATE KEY") || !after.starts_with(DASHES) {
        return Block::NotKey;
    }
    // The END line must close within the limit.
    let limit = s.len().min(i.saturating_add(max_len));
    let close_len = END.len() + label.len() + DASHES.len();
    let body = label_end + DASHES.len();
    let last_start = (limit + 1).saturating_sub(close_len).max(body);
    for &e in memo.ends_in(s, body, last_start) {
        let tail = &s[e + END.len()..e + close_len];
        if tail.starts_with(label) && tail.ends_with(DASHES) {
            return Block::Closed(e + close_len);
        }
    }
    Block::Open
}

/// The private key starting at the dash run at `i` (exactly five dashes).
pub(super) fn find(s: &[u8], i: usize, max_len: usize, memo: &mut Memo) -> Option<(usize, usize)> {
    if i > 0 && s[i - 1] == b'-' {
        return None;
    }
    match block(s, i, max_len, memo) {
        Block::Closed(end) => Some((i, end)),
        _ => None,
    }
}

/// Where a stream must hold back from for a private key in progress: the first BEGIN
/// line at or after `lo` (and within `max_len` of the end) whose block is still open, or
/// a partial `-----BEGIN ` at the very end. `s.len()` when none.
pub(super) fn hold(s: &[u8], lo: usize, max_len: usize) -> usize {
    let floor = lo.max(s.len().saturating_sub(max_len));
    let mut memo = Memo::default();
    let mut from = floor;
    while let Some(k) = FIND_BEGIN.find(&s[from..]) {
        let b = from + k;
        let five = b == 0 || s[b - 1] != b'-';
        if five && matches!(block(s, b, max_len, &mut memo), Block::Open) {
            return b;
        }
        from = b + 1;
    }
    // A BEGIN line that has not fully arrived: the longest suffix that is a prefix of it.
    let tail_from = s.len().saturating_sub(BEGIN.len() - 1).max(floor);
    (tail_from..s.len())
        .find(|&k| BEGIN.starts_with(&s[k..]))
        .unwrap_or(s.len())
}

#[cfg(test)]
mod tests {
    use super::hold;
    use crate::guard::builtin::tests::{found, KEY};

    #[test]
    fn blocks() {
        assert_eq!(found("private_key", &format!("key:\n{KEY}\nthanks")), [KEY]);
        let openssh = KEY.replace("RSA", "OPENSSH");
        assert_eq!(found("private_key", &openssh), [openssh.as_str()]);
        let pkcs8 = KEY.replace("RSA ", "");
        assert_eq!(
            found("private_key", &format!("«{pkcs8}»")),
            [pkcs8.as_str()]
        );
    }

    #[test]
    fn not_private_keys() {
        let cert = KEY.replace("RSA PRIVATE KEY", "CERTIFICATE");
        let public = KEY.replace("RSA PRIVATE KEY", "PUBLIC KEY");
        let mismatched = KEY.replacen("RSA PRIVATE KEY", "EC PRIVATE KEY", 1);
        let unterminated = KEY.replace("-----END", "");
        let six = format!("-{KEY}");
        for text in [&cert, &public, &mismatched, &unterminated, &six] {
            assert_eq!(found("private_key", text), Vec::<&str>::new(), "{text}");
        }
        let big = KEY.replace("\nKUpR", &format!("\n{}\nKUpR", "A".repeat(9000)));
        assert_eq!(found("private_key", &big), Vec::<&str>::new());
    }

    #[test]
    fn the_limit_is_exact() {
        let k = KEY.as_bytes();
        let find = |max| super::find(k, 0, max, &mut super::Memo::default());
        assert_eq!(find(k.len()), Some((0, k.len())));
        assert_eq!(find(k.len() - 1), None);
    }

    #[test]
    fn many_begins_without_an_end_are_linear_and_find_the_closed_one() {
        let begins = "-----BEGIN RSA PRIVATE KEY-----\n".repeat(5000);
        assert_eq!(found("private_key", &begins), Vec::<&str>::new());
        let text = format!("{begins}{KEY}");
        assert_eq!(found("private_key", &text).len(), 1);
    }

    #[test]
    fn hold_points() {
        let k = KEY.as_bytes();
        assert_eq!(
            hold(k, 0, 8192),
            k.len() - 5,
            "closed: only the dashes, a BEGIN may follow"
        );
        assert_eq!(hold(&k[..k.len() - 3], 0, 8192), 0, "END not complete");
        assert_eq!(hold(b"text -----BEGIN RSA PRI", 0, 8192), 5);
        assert_eq!(hold(b"text -----BEG", 0, 8192), 5);
        assert_eq!(hold(b"text --", 0, 8192), 5);
        let cert = b"text -----BEGIN CERTIFICATE-----\nMII";
        assert_eq!(hold(cert, 0, 8192), cert.len());
        let open = b"a -----BEGIN RSA PRIVATE KEY-----\nMII";
        assert_eq!(hold(open, 0, 64), 2);
        assert_eq!(
            hold(open, 0, 30),
            open.len(),
            "cannot close within the limit"
        );
        assert_eq!(hold(open, 3, 64), open.len(), "before lo: already decided");
    }
}
