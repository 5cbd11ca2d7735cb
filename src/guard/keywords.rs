//! Keyword lists: every word of every list in Aho-Corasick automata, searched once.
//!
//! Case-sensitive words go into one automaton searched over the text; case-insensitive
//! words, lower-cased, into another searched over an ASCII-lower-cased copy of the text
//! (same offsets). That keeps both automata's literal prefilters fast: an automaton
//! built with `ascii_case_insensitive` runs at a fraction of the speed. Overlapping
//! iteration reports every occurrence, so a match that fails its whole-word check never
//! hides a shorter one that passes.

use aho_corasick::{AhoCorasick, MatchKind};

use super::rules::KeywordList;
use super::scanner::{Finding, RuleId};
use super::GuardError;

#[derive(Debug)]
struct Word {
    rule: RuleId,
    whole_word: bool,
}

/// One automaton and, per pattern, what it stands for.
#[derive(Debug)]
struct Set {
    ac: AhoCorasick,
    words: Vec<Word>,
}

#[derive(Debug)]
pub(crate) struct Keywords {
    exact: Option<Set>,
    folded: Option<Set>,
    max_len: usize,
}

impl Keywords {
    /// `None` when there are no lists.
    pub(crate) fn new(lists: &[KeywordList], ids: &[RuleId]) -> Result<Option<Self>, GuardError> {
        if lists.is_empty() {
            return Ok(None);
        }
        let (mut exact, mut folded) = ((Vec::new(), Vec::new()), (Vec::new(), Vec::new()));
        let mut max_len = 0;
        for (list, &rule) in lists.iter().zip(ids) {
            let problem = |p: &str| GuardError::Keywords {
                rule: list.name.clone(),
                problem: p.to_string(),
            };
            if list.words.is_empty() {
                return Err(problem("no words"));
            }
            for w in &list.words {
                if w.is_empty() {
                    return Err(problem("empty word"));
                }
                max_len = max_len.max(w.len());
                let word = Word {
                    rule,
                    whole_word: list.whole_word,
                };
                let (patterns, words) = if list.case_insensitive {
                    (&mut folded.0, &mut folded.1)
                } else {
                    (&mut exact.0, &mut exact.1)
                };
                patterns.push(if list.case_insensitive {
                    w.to_ascii_lowercase()
                } else {
                    w.clone()
                });
                words.push(word);
            }
        }
        let build =
            |(patterns, words): (Vec<String>, Vec<Word>)| -> Result<Option<Set>, GuardError> {
                if patterns.is_empty() {
                    return Ok(None);
                }
                let ac = AhoCorasick::builder()
                    .match_kind(MatchKind::Standard)
                    .build(&patterns)
                    .map_err(|e| GuardError::Keywords {
                        rule: lists[0].name.clone(),
                        problem: e.to_string(),
                    })?;
                Ok(Some(Set { ac, words }))
            };
        Ok(Some(Keywords {
            exact: build(exact)?,
            folded: build(folded)?,
            max_len,
        }))
    }

    pub(crate) fn max_len(&self) -> usize {
        self.max_len
    }

    /// Matches starting at or after `min_start`.
    pub(crate) fn scan(&self, text: &str, min_start: usize, out: &mut Vec<Finding>) {
        let from = min_start.min(text.len());
        if let Some(set) = &self.exact {
            set.scan(text, &text.as_bytes()[from..], from, out);
        }
        if let Some(set) = &self.folded {
            set.scan(
                text,
                &text.as_bytes()[from..].to_ascii_lowercase(),
                from,
                out,
            );
        }
    }
}

impl Set {
    /// `haystack` is `text[shift..]`, maybe lower-cased.
    fn scan(&self, text: &str, haystack: &[u8], shift: usize, out: &mut Vec<Finding>) {
        for m in self.ac.find_overlapping_iter(haystack) {
            let (start, end) = (m.start() + shift, m.end() + shift);
            self.check(text, m.pattern().as_usize(), start, end, out);
        }
    }

    fn check(&self, text: &str, pattern: usize, start: usize, end: usize, out: &mut Vec<Finding>) {
        let w = &self.words[pattern];
        // A word is on char boundaries of itself, but could match from inside a character
        // of the text (a word starting with a continuation byte): skip those.
        if !text.is_char_boundary(start) || !text.is_char_boundary(end) {
            return;
        }
        if w.whole_word && (word_before(text, start) || word_after(text, end)) {
            return;
        }
        out.push(Finding {
            rule: w.rule,
            start,
            end,
        });
    }
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn word_before(text: &str, at: usize) -> bool {
    text[..at].chars().next_back().is_some_and(is_word_char)
}

fn word_after(text: &str, at: usize) -> bool {
    text[at..].chars().next().is_some_and(is_word_char)
}

#[cfg(test)]
mod tests {
    use crate::guard::{KeywordList, RuleSet, Scanner};

    fn masked(lists: Vec<KeywordList>, text: &str) -> String {
        let mut set = RuleSet::new();
        set.keywords = lists;
        Scanner::new(&set).unwrap().mask(text)
    }

    #[test]
    fn whole_word_and_case_options() {
        let l = || KeywordList::new("bad", ["Project Falcon", "ass"]);
        assert_eq!(
            masked(vec![l()], "about project falcon: ASS, class, assess"),
            "about <BAD>: <BAD>, class, assess"
        );
        assert_eq!(
            masked(
                vec![l().case_insensitive(false)],
                "project falcon vs Project Falcon"
            ),
            "project falcon vs <BAD>"
        );
        assert_eq!(
            masked(vec![l().whole_word(false)], "class assess"),
            "cl<BAD> <BAD>ess"
        );
    }

    #[test]
    fn unicode_neighbours_count_as_word_characters() {
        let l = KeywordList::new("k", ["café"]);
        assert_eq!(
            masked(vec![l.clone()], "un café, décafé, cafés"),
            "un <K>, décafé, cafés"
        );
        assert_eq!(masked(vec![l.clone()], "«café»"), "«<K>»");
        // Case folding is ASCII-only: `É` is not `é`.
        assert_eq!(masked(vec![l], "CAFé CAFÉ"), "<K> CAFÉ");
    }

    #[test]
    fn a_failed_whole_word_match_does_not_hide_a_shorter_one() {
        let lists = vec![
            KeywordList::new("long", ["secret project"]).case_insensitive(false),
            KeywordList::new("short", ["secret"]),
        ];
        assert_eq!(masked(lists.clone(), "Secret projects"), "<SHORT> projects");
        assert_eq!(masked(lists, "secret project!"), "<LONG>!");
    }

    #[test]
    fn empty_lists_and_words_are_errors() {
        let mut set = RuleSet::new().with_keywords(KeywordList::new("k", Vec::<String>::new()));
        assert!(Scanner::new(&set)
            .unwrap_err()
            .to_string()
            .contains("`k`: no words"));
        set.keywords = vec![KeywordList::new("k", ["a", ""])];
        assert!(Scanner::new(&set)
            .unwrap_err()
            .to_string()
            .contains("empty word"));
    }
}
