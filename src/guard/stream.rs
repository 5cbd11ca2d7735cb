//! [`StreamMasker`]: masking a stream of text deltas (e.g. the content of successive SSE
//! events) so that no finding reaches the client unmasked, even when it is split across
//! deltas, while holding back as little text as possible.

use std::ops::Deref;
use std::sync::Arc;

use super::builtin::LEFT_CONTEXT;
use super::normalize::Normalized;
use super::scanner::{floor_char_boundary, resolve, Finding, Scanner};

/// Masks a text that arrives in pieces. The concatenation of everything [`push`] and
/// [`finish`] return equals [`Scanner::mask`] of the whole text, however it was split.
///
/// **The hold-back rule.** After each push the masker finds the earliest offset at which
/// a match could still start, or still change, once more text arrives (the *hold
/// point*), and emits everything before it, masked; the rest is held. For the built-ins
/// the hold point is where the trailing run of a detector family's alphabet begins — a
/// partly received card number, email or token — capped at that family's longest match
/// (48 bytes for numbers, 264 for emails, the JWT limit for tokens), or an open
/// `-----BEGIN … PRIVATE KEY-----` block up to the private-key limit. A user regex holds
/// back its `max_len`, a keyword list its longest word; both plus 4 bytes for the
/// character after. A finding that starts before the hold point but ends after it is
/// complete and emitted whole. Prose typically holds back only its last word.
///
/// **Cost per push.** Only the held text and the new delta are scanned, so a push costs
/// O(held + delta) whatever was streamed before. The masker also keeps the last 128 bytes
/// of emitted text, which the detectors read (not scan) as left context: a URL's
/// `scheme://` before an email, `SSN` before nine digits, word boundaries. The
/// resolution rule — leftmost-longest, which decides each position from candidates
/// starting at or before it — is what makes a decided prefix final.
///
/// **Normalization.** Each delta is normalized as it arrives (`normalize.rs`: one
/// character at a time, so pieces normalize exactly as the whole text does); the masker
/// scans and holds back in normalized text and emits the *original* characters, through
/// the same map the whole-text scan uses.
///
/// Findings are reported by [`take_findings`](Self::take_findings) with offsets into the
/// unmasked stream.
///
/// [`push`]: Self::push
/// [`finish`]: Self::finish
pub struct StreamMasker<S: Deref<Target = Scanner> = Arc<Scanner>> {
    scanner: S,
    /// The held text, normalized, preceded by up to `LEFT_CONTEXT` bytes of emitted
    /// text; it maps back to `orig`.
    norm: Normalized,
    /// The same text as received.
    orig: String,
    /// Normalized-stream offset of `norm.text[0]`.
    base: usize,
    /// Normalized-stream offset of the first byte not yet emitted.
    emitted: usize,
    /// Stream offset of `orig[0]`, and of the first original byte not yet emitted.
    orig_base: usize,
    orig_emitted: usize,
    /// Per user regex, the stream offset its search resumes at.
    regex_resume: Vec<usize>,
    findings: Vec<Finding>,
    scratch: Vec<Finding>,
    regex_scratch: Vec<usize>,
}

// === impl StreamMasker ===

impl<S: Deref<Target = Scanner>> StreamMasker<S> {
    pub fn new(scanner: S) -> Self {
        let regexes = scanner.regex_count();
        StreamMasker {
            scanner,
            norm: Normalized::default(),
            orig: String::new(),
            base: 0,
            emitted: 0,
            orig_base: 0,
            orig_emitted: 0,
            regex_resume: vec![0; regexes],
            findings: Vec::new(),
            scratch: Vec::new(),
            regex_scratch: Vec::new(),
        }
    }

    /// Takes the next delta; returns the text that is safe to emit now (maybe empty).
    pub fn push(&mut self, delta: &str) -> String {
        let mut out = String::new();
        self.push_into(delta, &mut out);
        out
    }

    /// [`push`](Self::push), appending to `out`.
    pub fn push_into(&mut self, delta: &str, out: &mut String) {
        self.orig.push_str(delta);
        self.norm.push(delta);
        self.advance(out, false);
    }

    /// Ends the stream: returns the held text, masked.
    pub fn finish(&mut self) -> String {
        let mut out = String::new();
        self.finish_into(&mut out);
        out
    }

    /// [`finish`](Self::finish), appending to `out`.
    pub fn finish_into(&mut self, out: &mut String) {
        self.advance(out, true);
        // Original text that normalizes to nothing (format characters such as U+034F)
        // after the last normalized byte goes out as it came.
        let at = self.orig_emitted - self.orig_base;
        out.push_str(&self.orig[at..]);
        self.orig_emitted = self.orig_base + self.orig.len();
    }

    /// Bytes received but not yet emitted.
    pub fn held(&self) -> usize {
        self.orig_base + self.orig.len() - self.orig_emitted
    }

    /// The findings emitted since the last call, with offsets into the unmasked stream.
    pub fn take_findings(&mut self) -> Vec<Finding> {
        std::mem::take(&mut self.findings)
    }

    pub fn scanner(&self) -> &Scanner {
        &self.scanner
    }

    fn advance(&mut self, out: &mut String, end_of_stream: bool) {
        let lo = self.emitted - self.base;
        let text = &self.norm.text;
        let hold = if end_of_stream {
            text.len()
        } else {
            self.scanner.hold_from(text, lo)
        };
        if hold == lo {
            return;
        }
        self.regex_scratch.clear();
        let base = self.base;
        self.regex_scratch
            .extend(self.regex_resume.iter().map(|&r| r.max(base) - base));
        self.scratch.clear();
        let from = (!self.regex_scratch.is_empty()).then_some(&self.regex_scratch[..]);
        self.scanner.candidates(text, lo, from, &mut self.scratch);
        // Where each regex resumes depends on its matches before the cut, chosen or not.
        let regex_ends: Vec<(usize, Finding)> = if from.is_some() {
            self.scratch
                .iter()
                .filter_map(|f| self.scanner.regex_index(f.rule).map(|r| (r, *f)))
                .collect()
        } else {
            Vec::new()
        };
        resolve(&mut self.scratch);
        // A finding that starts before the hold point is decided; emit it whole.
        let cut = self
            .scratch
            .iter()
            .filter(|f| f.start < hold)
            .map(|f| f.end)
            .fold(hold, usize::max);
        let orig_base = self.orig_base;
        let mut at = self.orig_emitted - orig_base;
        for f in self.scratch.iter().filter(|f| f.start < cut) {
            let o = self.norm.to_original(f);
            if o.start < at {
                continue; // inside the character an earlier finding covered
            }
            out.push_str(&self.orig[at..o.start]);
            out.push_str(self.scanner.placeholder(f.rule));
            at = o.end;
            self.findings.push(Finding {
                start: o.start + orig_base,
                end: o.end + orig_base,
                ..*f
            });
        }
        // A finding may end inside the expansion of one original character (NFKC `⒑`
        // is `10.`); it took that whole character, so the cut is past it too.
        let orig_cut = self.norm.start(cut).max(at);
        out.push_str(&self.orig[at..orig_cut]);
        self.orig_emitted = orig_base + orig_cut;
        for (r, f) in regex_ends {
            if f.start < cut {
                self.regex_resume[r] = self.regex_resume[r].max(base + f.end);
            }
        }
        self.emitted = base + cut;
        let keep = floor_char_boundary(&self.norm.text, cut.saturating_sub(LEFT_CONTEXT));
        let keep = self.norm.floor_boundary(keep);
        if keep > 0 {
            let gone = self.norm.drain(keep);
            self.orig.drain(..gone);
            self.base += keep;
            self.orig_base += gone;
        }
    }
}

#[cfg(test)]
mod tests;
