//! [`Scanner`]: a rule set compiled once, and the scan that finds every finding of a text.
//!
//! A scan collects *candidates* from the three engines (built-ins, user regexes, keyword
//! lists), then resolves overlaps leftmost-longest: the candidate that starts first wins;
//! of those starting together the longer one; of equal spans the rule listed first
//! (built-ins in [`Builtin`] order, then regexes, then keyword lists). Leftmost-longest is
//! chosen over "longest anywhere" because a decision at a position depends only on
//! candidates starting at or before it, which is what lets the stream masker decide a
//! prefix of the text before the rest has arrived.

use std::collections::HashSet;

use super::builtin::Detectors;
use super::keywords::Keywords;
use super::mask::{mask, mask_bytes};
use super::normalize::Normalized;
use super::rules::{Builtin, RuleSet};
use super::user_regex::UserRegexes;
use super::GuardError;

/// A rule's index in its scanner; also its tie-break priority (lower wins).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleId(pub u32);

/// One match: `text[start..end]` (byte offsets, on char boundaries) matched `rule`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Finding {
    pub rule: RuleId,
    pub start: usize,
    pub end: usize,
}

impl Finding {
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

/// What kind of rule produced a finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleKind {
    Builtin(Builtin),
    Regex,
    Keywords,
}

/// A compiled rule's identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    pub kind: RuleKind,
    pub placeholder: String,
}

/// A rule set compiled for scanning. Cheap to share (`Send + Sync`); scans allocate only
/// the findings.
#[derive(Debug)]
pub struct Scanner {
    rules: Vec<Rule>,
    builtins: Detectors,
    regexes: Option<UserRegexes>,
    keywords: Option<Keywords>,
}

// === impl Scanner ===

impl Scanner {
    /// Compiles a rule set: validates names, compiles regexes and the keyword automaton.
    pub fn new(set: &RuleSet) -> Result<Scanner, GuardError> {
        let mut rules = Vec::new();
        let mut names = HashSet::new();
        let mut builtins: Vec<Builtin> = set.builtins.clone();
        builtins.sort();
        builtins.dedup();
        let mut enabled = Vec::new();
        for b in builtins {
            names.insert(b.name().to_string());
            enabled.push((b, next_id(&rules)));
            rules.push(Rule {
                name: b.name().to_string(),
                kind: RuleKind::Builtin(b),
                placeholder: b.default_placeholder().to_string(),
            });
        }
        let mut user_rule = |name: &str, kind: RuleKind| -> Result<RuleId, GuardError> {
            if name.is_empty() {
                return Err(GuardError::EmptyName);
            }
            if !names.insert(name.to_string()) || Builtin::from_name(name).is_some() {
                return Err(GuardError::DuplicateName(name.to_string()));
            }
            let id = next_id(&rules);
            rules.push(Rule {
                name: name.to_string(),
                kind,
                placeholder: format!("<{}>", name.to_uppercase()),
            });
            Ok(id)
        };
        let mut regex_ids = Vec::new();
        for r in &set.regexes {
            regex_ids.push(user_rule(&r.name, RuleKind::Regex)?);
        }
        let mut keyword_ids = Vec::new();
        for k in &set.keywords {
            keyword_ids.push(user_rule(&k.name, RuleKind::Keywords)?);
        }
        for (name, text) in &set.placeholders {
            let rule = rules
                .iter_mut()
                .find(|r| &r.name == name)
                .ok_or_else(|| GuardError::UnknownPlaceholderRule(name.clone()))?;
            rule.placeholder = text.clone();
        }
        if set.limits.private_key_max_len < 64 || set.limits.jwt_max_len < 64 {
            return Err(GuardError::Limits(format!(
                "privateKeyMaxLen and jwtMaxLen must be at least 64 (got {} and {})",
                set.limits.private_key_max_len, set.limits.jwt_max_len
            )));
        }
        Ok(Scanner {
            builtins: Detectors::new(&enabled, &set.limits),
            regexes: UserRegexes::new(&set.regexes, &regex_ids)?,
            keywords: Keywords::new(&set.keywords, &keyword_ids)?,
            rules,
        })
    }

    /// Every finding in `text`, sorted and non-overlapping.
    pub fn scan(&self, text: &str) -> Vec<Finding> {
        let mut out = Vec::new();
        self.scan_into(text, &mut out);
        out
    }

    /// [`scan`](Self::scan) into a reused vector (cleared first). The detectors read
    /// the text normalized (`normalize.rs`: invisible characters dropped, NFKC, syntax
    /// characters to ASCII); findings are offsets into `text` itself.
    pub fn scan_into(&self, text: &str, out: &mut Vec<Finding>) {
        if text.is_ascii() {
            return self.scan_raw_into(text, out);
        }
        let n = Normalized::of(text);
        self.scan_raw_into(&n.text, out);
        if !n.is_identity() {
            for f in out.iter_mut() {
                *f = n.to_original(f);
            }
            resolve(out); // two findings inside one expanded character become one
        }
    }

    /// [`scan`](Self::scan) of the text exactly as given, without normalizing it (the
    /// benches compare the two).
    pub fn scan_raw_into(&self, text: &str, out: &mut Vec<Finding>) {
        out.clear();
        self.candidates(text, 0, None, out);
        resolve(out);
    }

    /// Scans bytes that may not be valid UTF-8: each valid stretch is scanned on its own
    /// (offsets are into `bytes`); invalid sequences match nothing and separate entities.
    pub fn scan_bytes(&self, bytes: &[u8]) -> Vec<Finding> {
        let mut out = Vec::new();
        let mut piece = Vec::new();
        let mut base = 0;
        for chunk in bytes.utf8_chunks() {
            let valid = chunk.valid();
            if !valid.is_empty() {
                self.scan_into(valid, &mut piece);
                out.extend(piece.iter().map(|f| Finding {
                    start: f.start + base,
                    end: f.end + base,
                    ..*f
                }));
            }
            base += valid.len() + chunk.invalid().len();
        }
        out
    }

    /// `text` with every finding replaced by its rule's placeholder.
    pub fn mask(&self, text: &str) -> String {
        mask(text, &self.scan(text), |r| self.placeholder(r))
    }

    /// [`mask`](Self::mask) for bytes that may not be valid UTF-8; invalid sequences are
    /// copied through unchanged.
    pub fn mask_bytes(&self, bytes: &[u8]) -> Vec<u8> {
        mask_bytes(bytes, &self.scan_bytes(bytes), |r| self.placeholder(r))
    }

    /// All rules, indexed by [`RuleId`].
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn rule(&self, id: RuleId) -> &Rule {
        &self.rules[id.0 as usize]
    }

    pub fn rule_id(&self, name: &str) -> Option<RuleId> {
        self.rules
            .iter()
            .position(|r| r.name == name)
            .map(|i| RuleId(i as u32))
    }

    pub fn placeholder(&self, id: RuleId) -> &str {
        &self.rules[id.0 as usize].placeholder
    }

    /// Candidates starting at or after `min_start`, unresolved, appended to `out`.
    /// `regex_from[i]`, when given, is where user regex `i` resumes its search (its
    /// previous match ended there); the stream masker keeps these.
    pub(crate) fn candidates(
        &self,
        text: &str,
        min_start: usize,
        regex_from: Option<&[usize]>,
        out: &mut Vec<Finding>,
    ) {
        self.builtins.scan(text.as_bytes(), min_start, out);
        if let Some(r) = &self.regexes {
            r.scan(text, min_start, regex_from, out);
        }
        if let Some(k) = &self.keywords {
            k.scan(text, min_start, out);
        }
    }

    /// The earliest offset in `text` (at or after `lo`, on a char boundary) where a match
    /// could still start or change if more text were appended. Everything before it is
    /// decided. See [`StreamMasker`](super::StreamMasker).
    pub(crate) fn hold_from(&self, text: &str, lo: usize) -> usize {
        let mut hold = self.builtins.hold_from(text.as_bytes(), lo);
        if let Some(r) = &self.regexes {
            hold = hold.min(text.len().saturating_sub(r.max_len() + 4));
        }
        if let Some(k) = &self.keywords {
            hold = hold.min(text.len().saturating_sub(k.max_len() + 4));
        }
        floor_char_boundary(text, hold.max(lo))
    }

    /// Which user regex (index into the rule set's `regexes`) a rule is, if any.
    pub(crate) fn regex_index(&self, id: RuleId) -> Option<usize> {
        self.regexes.as_ref().and_then(|r| r.index_of(id))
    }

    #[cfg(test)]
    pub(crate) fn builtins_for_tests(&self) -> &Detectors {
        &self.builtins
    }

    pub(crate) fn regex_count(&self) -> usize {
        self.regexes.as_ref().map_or(0, |r| r.len())
    }
}

fn next_id(rules: &[Rule]) -> RuleId {
    RuleId(rules.len() as u32)
}

/// Leftmost-longest resolution in place: sorts candidates and keeps the non-overlapping
/// winners (see the module doc). Empty candidates are dropped.
pub(crate) fn resolve(cands: &mut Vec<Finding>) {
    cands.sort_unstable_by_key(|f| (f.start, std::cmp::Reverse(f.end), f.rule));
    let mut taken_to = 0;
    let mut first = true;
    cands.retain(|f| {
        let keep = !f.is_empty() && (first || f.start >= taken_to);
        if keep {
            taken_to = f.end;
            first = false;
        }
        keep
    });
}

/// The largest char boundary `<= at`.
pub(crate) fn floor_char_boundary(text: &str, mut at: usize) -> usize {
    if at >= text.len() {
        return text.len();
    }
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::{KeywordList, RegexRule};

    fn f(rule: u32, start: usize, end: usize) -> Finding {
        Finding {
            rule: RuleId(rule),
            start,
            end,
        }
    }

    #[test]
    fn resolve_is_leftmost_then_longest_then_priority() {
        let mut c = vec![
            f(2, 5, 9),
            f(1, 0, 4),
            f(0, 0, 4),
            f(3, 3, 12),
            f(4, 12, 13),
        ];
        resolve(&mut c);
        assert_eq!(c, vec![f(0, 0, 4), f(2, 5, 9), f(4, 12, 13)]);
        let mut c = vec![f(1, 0, 3), f(0, 0, 6), f(2, 4, 8), f(3, 6, 8)];
        resolve(&mut c);
        assert_eq!(c, vec![f(0, 0, 6), f(3, 6, 8)]);
    }

    #[test]
    fn rule_names_must_be_unique_and_known() {
        let dup = RuleSet::all_builtins().with_regex(RegexRule::new("email", "x"));
        assert!(matches!(Scanner::new(&dup), Err(GuardError::DuplicateName(n)) if n == "email"));
        let dup = RuleSet::new()
            .with_regex(RegexRule::new("ticket", "T-\\d+"))
            .with_keywords(KeywordList::new("ticket", ["a"]));
        assert!(matches!(
            Scanner::new(&dup),
            Err(GuardError::DuplicateName(_))
        ));
        let unknown = RuleSet::new().with_placeholder("email", "[x]");
        let err = Scanner::new(&unknown).unwrap_err().to_string();
        assert!(err.contains("email"), "{err}");
        let bad = RuleSet::new().with_regex(RegexRule::new("bad", "(unclosed"));
        let err = Scanner::new(&bad).unwrap_err().to_string();
        assert!(err.starts_with("rule `bad`: invalid regex"), "{err}");
    }

    #[test]
    fn placeholders_default_and_override() {
        let set = RuleSet::new()
            .with_builtin(Builtin::Email)
            .with_builtin(Builtin::Email)
            .with_regex(RegexRule::new("employee_id", r"\bEMP-\d{6}\b"))
            .with_placeholder("email", "[email]");
        let s = Scanner::new(&set).unwrap();
        assert_eq!(s.rules().len(), 2, "duplicate built-ins collapse");
        assert_eq!(
            s.mask("mail a.b@example.com about EMP-123456"),
            "mail [email] about <EMPLOYEE_ID>"
        );
        assert_eq!(
            s.rule(s.rule_id("employee_id").unwrap()).kind,
            RuleKind::Regex
        );
    }

    #[test]
    fn invalid_utf8_is_skipped_not_a_panic() {
        let s = Scanner::new(&RuleSet::all_builtins()).unwrap();
        let mut bytes = b"mail bob@example.com \xff\xfe card ".to_vec();
        bytes.extend_from_slice(b"4111 1111 1111 1111\xc3 and \xe2\x82 ok");
        let found = s.scan_bytes(&bytes);
        assert_eq!(found.len(), 2);
        assert_eq!(&bytes[found[0].start..found[0].end], b"bob@example.com");
        assert_eq!(&bytes[found[1].start..found[1].end], b"4111 1111 1111 1111");
        let masked = s.mask_bytes(&bytes);
        assert!(masked.starts_with(b"mail <EMAIL> \xff\xfe card <CREDIT_CARD>\xc3 and \xe2\x82"));
        // Every lone byte value, and truncated sequences, never panic.
        let all: Vec<u8> = (0..=255u8)
            .chain(b"a@b.co\xf0\x9f".iter().copied())
            .collect();
        let _ = s.mask_bytes(&all);
        let _ = s.mask_bytes(b"\xf0\x9f\x98");
    }
}
