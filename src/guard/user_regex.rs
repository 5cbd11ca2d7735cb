//! User regex rules: a `RegexSet` pass says which rules match at all (one linear pass for
//! all of them); only those are then searched for positions. Empty matches are ignored.

use regex::{Regex, RegexSet};

use super::rules::RegexRule;
use super::scanner::{Finding, RuleId};
use super::GuardError;

/// The largest `max_len` a regex rule may declare.
const MAX_LEN_LIMIT: usize = 64 * 1024;

#[derive(Debug)]
pub(crate) struct UserRegexes {
    set: RegexSet,
    each: Vec<Regex>,
    ids: Vec<RuleId>,
    max_len: usize,
}

impl UserRegexes {
    /// `None` when there are no regex rules.
    pub(crate) fn new(rules: &[RegexRule], ids: &[RuleId]) -> Result<Option<Self>, GuardError> {
        if rules.is_empty() {
            return Ok(None);
        }
        let mut each = Vec::with_capacity(rules.len());
        for r in rules {
            if r.max_len == 0 || r.max_len > MAX_LEN_LIMIT {
                return Err(GuardError::MaxLen {
                    rule: r.name.clone(),
                    max_len: r.max_len,
                    limit: MAX_LEN_LIMIT,
                });
            }
            each.push(Regex::new(&r.pattern).map_err(|e| GuardError::Regex {
                rule: r.name.clone(),
                source: Box::new(e),
            })?);
        }
        let set =
            RegexSet::new(rules.iter().map(|r| &r.pattern)).map_err(|e| GuardError::Regex {
                rule: rules[0].name.clone(),
                source: Box::new(e),
            })?;
        Ok(Some(UserRegexes {
            set,
            each,
            ids: ids.to_vec(),
            max_len: rules.iter().map(|r| r.max_len).max().unwrap_or(0),
        }))
    }

    pub(crate) fn max_len(&self) -> usize {
        self.max_len
    }

    pub(crate) fn len(&self) -> usize {
        self.each.len()
    }

    pub(crate) fn index_of(&self, id: RuleId) -> Option<usize> {
        self.ids.iter().position(|&i| i == id)
    }

    /// Matches starting at or after `min_start` (and, per rule, at or after `from[i]`).
    pub(crate) fn scan(
        &self,
        text: &str,
        min_start: usize,
        from: Option<&[usize]>,
        out: &mut Vec<Finding>,
    ) {
        let start_of = |i: usize| from.map_or(min_start, |f| f[i].max(min_start));
        let lowest = (0..self.each.len())
            .map(start_of)
            .min()
            .unwrap_or(min_start);
        if lowest > text.len() {
            return;
        }
        for i in self.set.matches_at(text, lowest).iter() {
            let re = &self.each[i];
            let mut at = start_of(i);
            while at <= text.len() {
                let Some(m) = re.find_at(text, at) else { break };
                if m.is_empty() {
                    // Step over one character so an empty match cannot loop forever.
                    at = m.end() + text[m.end()..].chars().next().map_or(1, char::len_utf8);
                    continue;
                }
                out.push(Finding {
                    rule: self.ids[i],
                    start: m.start(),
                    end: m.end(),
                });
                at = m.end();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::guard::{RegexRule, RuleSet, Scanner};

    #[test]
    fn only_matching_rules_are_searched_and_empty_matches_are_ignored() {
        let set = RuleSet::new()
            .with_regex(RegexRule::new("ticket", r"\bTCK-\d{4,8}\b"))
            .with_regex(RegexRule::new("maybe", r"x*"))
            .with_regex(RegexRule::new("codename", r"(?i)\bproject\s+\w+"));
        let s = Scanner::new(&set).unwrap();
        assert_eq!(
            s.mask("see TCK-1234 and TCK-12, Project  Falcon; ñxxñ"),
            "see <TICKET> and TCK-12, <CODENAME>; ñ<MAYBE>ñ"
        );
    }

    #[test]
    fn max_len_is_bounded() {
        let set = RuleSet::new().with_regex(RegexRule::new("r", "a").max_len(0));
        let err = Scanner::new(&set).unwrap_err().to_string();
        assert!(err.contains("`r`: maxLen 0"), "{err}");
    }
}
