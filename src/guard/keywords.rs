//! Keyword lists: one Aho-Corasick automaton over every word of every list, searched once.
//!
//! The automaton is ASCII-case-insensitive if any list is; matches of case-sensitive lists
//! are then checked byte for byte. Overlapping iteration reports every occurrence, so a
//! match that fails its whole-word check never hides a shorter one that passes.

use aho_corasick::{AhoCorasick, MatchKind};

use super::rules::KeywordList;
use super::scanner::{Finding, RuleId};
use super::GuardError;

#[derive(Debug)]
struct Word {
    rule: RuleId,
    case_insensitive: bool,
    whole_word: bool,
    text: Box<[u8]>,
}

#[derive(Debug)]
pub(crate) struct Keywords {
    ac: AhoCorasick,
    words: Vec<Word>,
    max_len: usize,
}

impl Keywords {
    /// `None` when there are no lists.
    pub(crate) fn new(lists: &[KeywordList], ids: &[RuleId]) -> Result<Option<Self>, GuardError> {
        if lists.is_empty() {
            return Ok(None);
        }
        let mut words = Vec::new();
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
                words.push(Word {
                    rule,
                    case_insensitive: list.case_insensitive,
                    whole_word: list.whole_word,
                    text: w.as_bytes().into(),
                });
            }
        }
        let ac = AhoCorasick::builder()
            .match_kind(MatchKind::Standard)
            .ascii_case_insensitive(words.iter().any(|w| w.case_insensitive))
            .build(words.iter().map(|w| &w.text))
            .map_err(|e| GuardError::Keywords {
                rule: lists[0].name.clone(),
                problem: e.to_string(),
            })?;
        let max_len = words.iter().map(|w| w.text.len()).max().unwrap_or(0);
        Ok(Some(Keywords { ac, words, max_len }))
    }

    pub(crate) fn max_len(&self) -> usize {
        self.max_len
    }

    pub(crate) fn scan(&self, text: &str, min_start: usize, out: &mut Vec<Finding>) {
        let bytes = text.as_bytes();
        for m in self.ac.find_overlapping_iter(text) {
            let (start, end) = (m.start(), m.end());
            if start < min_start {
                continue;
            }
            let w = &self.words[m.pattern().as_usize()];
            if !w.case_insensitive && bytes[start..end] != *w.text {
                continue;
            }
            // An ASCII-case-insensitive match of a UTF-8 word is on char boundaries, but a
            // word could still start or end inside a character of the text: skip those.
            if !text.is_char_boundary(start) || !text.is_char_boundary(end) {
                continue;
            }
            if w.whole_word && (word_before(text, start) || word_after(text, end)) {
                continue;
            }
            out.push(Finding {
                rule: w.rule,
                start,
                end,
            });
        }
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
        assert_eq!(masked(vec![l], "«café»"), "«<K>»");
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
