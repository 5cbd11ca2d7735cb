//! The built-in detectors and the single byte-level pass that drives them.
//!
//! Why not one big regex: a regex alternation reports the leftmost-first match per
//! position, so a candidate that then fails its validator (a Luhn-invalid number, an SSN
//! in a forbidden range) hides any other entity starting there, and the rules that make
//! these detectors precise — "not preceded by a digit and the same separator", "header
//! decodes to JSON with `alg`", "not in a URL's authority" — are context checks a regex
//! cannot express. (Speed is not the reason: an unvalidated alternation of comparable
//! patterns in ASCII mode runs at about the same rate, see `benches/guard.rs`.) Instead
//! every detector has a cheap *trigger* and a bounded local parser:
//!
//! | trigger byte | detectors |
//! |---|---|
//! | first digit of a digit run | `credit_card`, `ssn`, `phone` (NANP), `ipv4`, `iban` (two capitals before) |
//! | `+`, `(` | `phone` (E.164, `(415) …`) |
//! | `@` | `email` (parses back and forth from the `@`) |
//! | `:` | `ipv6` (from the first colon of an address) |
//! | first capital of a run | `aws_access_key_id` (`AKIA`/`ASIA`), `jwt` (`eyJ`/`eyA`) |
//! | `_`, `-` | `github_token` (`ghp_`, `github_pat_`), `gitlab_token`, `slack_token`, `openai_api_key`, `anthropic_api_key`, `private_key` (`-----BEGIN `) |
//!
//! Lower-case letters, spaces, most punctuation and non-ASCII text — nearly all of prose —
//! trigger nothing and are skipped eight bytes at a time. Each trigger runs parsers that
//! read a bounded number of bytes (the longest entity), so a scan is linear in the text
//! whatever its content.
//!
//! Every candidate depends only on the bytes from a fixed distance before it
//! ([`LEFT_CONTEXT`]) to its end plus a few bytes after, never on where the scan started,
//! and its trigger lies at or after its start. So a scan may start at any offset and
//! finds exactly the candidates starting there or later, reading (not scanning) the
//! bytes before for context: each detector's left checks reject a trigger that is not
//! the first of its run. That is what lets the stream masker scan only the new text.

mod card;
mod email;
mod hold;
mod iban;
mod ip;
mod jwt;
mod pem;
mod phone;
mod ssn;
mod text;
mod tokens;

use super::rules::{Builtin, Limits};
use super::scanner::{Finding, RuleId};

/// How far before a candidate's start any detector looks (the email URL-authority check
/// is the farthest). The stream masker keeps this much already-emitted text.
pub(crate) const LEFT_CONTEXT: usize = 128;

const T_DIGIT: u8 = 1;
const T_UPPER: u8 = 2;
const T_AT: u8 = 3;
const T_COLON: u8 = 4;
const T_DASH: u8 = 5;
const T_UNDERSCORE: u8 = 6;
const T_PLUS: u8 = 7;
const T_PAREN: u8 = 8;

/// The enabled built-ins, compiled into a trigger table.
#[derive(Debug)]
pub(crate) struct Detectors {
    ids: [Option<RuleId>; Builtin::ALL.len()],
    table: [u8; 256],
    limits: Limits,
}

/// The first byte at or after `i` that the table marks (or `s.len()`). Eight bytes at a
/// time while none is in `0x28..=0x5F`, the range every trigger byte lies in (digits,
/// capitals, `( + - : @ _`); lower-case letters, spaces and UTF-8 are outside it, so prose
/// mostly goes by a word at a time.
#[inline(always)]
fn skip_quiet(s: &[u8], mut i: usize, t: &[u8; 256]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    loop {
        while let Some(word) = s.get(i..i + 8) {
            let x = u64::from_le_bytes(word.try_into().expect("eight bytes"));
            // Per byte, high bit set iff 0x27 < byte < 0x60 (bytes >= 0x80 excluded).
            let low = x & (ONES * 0x7f);
            let hit = (ONES * (0x7f + 0x60) - low) & !x & (low + ONES * (0x7f - 0x27));
            if hit & (ONES * 0x80) != 0 {
                break;
            }
            i += 8;
        }
        let stop = s.len().min(i + 8);
        while i < stop {
            if t[s[i] as usize] != 0 {
                return i;
            }
            i += 1;
        }
        if i >= s.len() {
            return i;
        }
    }
}

/// Where detectors put candidates.
struct Sink<'a> {
    ids: &'a [Option<RuleId>; Builtin::ALL.len()],
    min_start: usize,
    out: &'a mut Vec<Finding>,
}

impl Sink<'_> {
    fn on(&self, b: Builtin) -> bool {
        self.ids[b as usize].is_some()
    }

    fn push(&mut self, b: Builtin, span: Option<(usize, usize)>) {
        if let (Some(rule), Some((start, end))) = (self.ids[b as usize], span) {
            if start >= self.min_start {
                self.out.push(Finding { rule, start, end });
            }
        }
    }
}

// === impl Detectors ===

impl Detectors {
    pub(crate) fn new(enabled: &[(Builtin, RuleId)], limits: &Limits) -> Self {
        let mut ids = [None; Builtin::ALL.len()];
        for &(b, id) in enabled {
            ids[b as usize] = Some(id);
        }
        let on = |bs: &[Builtin]| bs.iter().any(|&b| ids[b as usize].is_some());
        let mut table = [0u8; 256];
        let mut set = |bytes: &[u8], t: u8| bytes.iter().for_each(|&c| table[c as usize] = t);
        use Builtin::*;
        if on(&[CreditCard, Ssn, Phone, Ipv4, Iban]) {
            set(b"0123456789", T_DIGIT);
        }
        if on(&[AwsAccessKeyId, Jwt]) {
            set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", T_UPPER);
        }
        if on(&[Email]) {
            set(b"@", T_AT);
        }
        if on(&[Ipv6]) {
            set(b":", T_COLON);
        }
        if on(&[
            PrivateKey,
            GitlabToken,
            SlackToken,
            OpenaiApiKey,
            AnthropicApiKey,
        ]) {
            set(b"-", T_DASH);
        }
        if on(&[GithubToken]) {
            set(b"_", T_UNDERSCORE);
        }
        if on(&[Phone]) {
            set(b"+", T_PLUS);
            set(b"(", T_PAREN);
        }
        Detectors {
            ids,
            table,
            limits: limits.clone(),
        }
    }

    /// Appends the candidates in `s` that start at or after `min_start`, scanning from
    /// there (see the module doc for why that finds them all).
    pub(crate) fn scan(&self, s: &[u8], min_start: usize, out: &mut Vec<Finding>) {
        if self.ids.iter().all(Option::is_none) {
            return;
        }
        let mut sink = Sink {
            ids: &self.ids,
            min_start,
            out,
        };
        let mut pem_memo = pem::Memo::default();
        let t = &self.table;
        let n = s.len();
        let mut i = min_start;
        while i < n {
            i = skip_quiet(s, i, t);
            if i >= n {
                break;
            }
            i = match t[s[i] as usize] {
                0 => i + 1,
                T_DIGIT => self.on_digits(s, i, &mut sink),
                T_UPPER => self.on_upper(s, i, &mut sink),
                T_AT => {
                    sink.push(Builtin::Email, email::find(s, i));
                    i + 1
                }
                T_COLON => {
                    sink.push(Builtin::Ipv6, ip::ipv6(s, i));
                    i + 1
                }
                T_DASH => self.on_dash(s, i, &mut sink, &mut pem_memo),
                T_UNDERSCORE => {
                    sink.push(Builtin::GithubToken, tokens::github(s, i));
                    i + 1
                }
                T_PLUS => {
                    sink.push(Builtin::Phone, phone::e164(s, i));
                    i + 1
                }
                _ => {
                    sink.push(Builtin::Phone, phone::nanp_paren(s, i));
                    i + 1
                }
            };
        }
    }

    /// At the first digit of a run (the scan skips the rest of the run).
    fn on_digits(&self, s: &[u8], i: usize, sink: &mut Sink) -> usize {
        let run_end = text::run_end(s, i, usize::MAX, |c| c.is_ascii_digit());
        if sink.on(Builtin::Iban) {
            sink.push(Builtin::Iban, iban::find(s, i));
        }
        if sink.on(Builtin::CreditCard) {
            sink.push(Builtin::CreditCard, card::find(s, i));
        }
        if sink.on(Builtin::Ssn) {
            sink.push(Builtin::Ssn, ssn::find(s, i));
        }
        if sink.on(Builtin::Phone) {
            sink.push(Builtin::Phone, phone::nanp(s, i));
        }
        if sink.on(Builtin::Ipv4) {
            sink.push(Builtin::Ipv4, ip::ipv4(s, i));
        }
        run_end
    }

    /// At the first capital of a run.
    fn on_upper(&self, s: &[u8], i: usize, sink: &mut Sink) -> usize {
        if sink.on(Builtin::AwsAccessKeyId) {
            sink.push(Builtin::AwsAccessKeyId, tokens::aws(s, i));
        }
        if sink.on(Builtin::Jwt) {
            sink.push(Builtin::Jwt, jwt::find(s, i, self.limits.jwt_max_len));
        }
        text::run_end(s, i, usize::MAX, |c| c.is_ascii_uppercase())
    }

    /// At the first dash of a run.
    fn on_dash(&self, s: &[u8], i: usize, sink: &mut Sink, memo: &mut pem::Memo) -> usize {
        let end = text::run_end(s, i, usize::MAX, |c| c == b'-');
        if end - i == 5 && sink.on(Builtin::PrivateKey) {
            let max = self.limits.private_key_max_len;
            sink.push(Builtin::PrivateKey, pem::find(s, i, max, memo));
        } else if end - i == 1 {
            sink.push(Builtin::GitlabToken, tokens::gitlab(s, i));
            sink.push(Builtin::SlackToken, tokens::slack(s, i));
            if let Some((key, span)) = tokens::sk(s, i) {
                sink.push(key, Some(span));
            }
        }
        end
    }

    /// See [`hold::hold_from`].
    pub(crate) fn hold_from(&self, s: &[u8], lo: usize) -> usize {
        hold::hold_from(s, lo, &|b| self.ids[b as usize].is_some(), &self.limits)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use crate::guard::{Builtin, RuleSet, Scanner};

    /// A short (not real) PEM private key.
    pub(crate) const KEY: &str = "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\nKUpRKfFLfRYC9AIKjbJTWit+CqvjWYzvQwECAwEAAQJAIJLixBy2qpFoS4DSmoEm\n-----END RSA PRIVATE KEY-----";

    #[test]
    fn the_quiet_skip_stops_at_every_trigger_byte_and_only_there() {
        let all = Scanner::new(&RuleSet::all_builtins()).unwrap();
        let t = &all.builtins_for_tests().table;
        for b in 0..=255u8 {
            for at in [0, 3, 7, 8, 13, 20] {
                let mut s = b"the quick brown fox jumps".to_vec();
                s[at] = b;
                let want = if t[b as usize] != 0 { at } else { s.len() };
                assert_eq!(super::skip_quiet(&s, 0, t), want, "byte {b:#x} at {at}");
            }
        }
    }

    /// The texts one built-in finds in `text`, scanning with that detector alone.
    pub(crate) fn found<'t>(name: &str, text: &'t str) -> Vec<&'t str> {
        let b: Builtin = name.parse().unwrap();
        let scanner = Scanner::new(&RuleSet::new().with_builtin(b)).unwrap();
        scanner
            .scan(text)
            .iter()
            .map(|f| &text[f.start..f.end])
            .collect()
    }
}
