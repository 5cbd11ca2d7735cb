//! The guard engine: finds PII, secrets and forbidden content in text and masks it, both
//! for a whole text (a prompt) and for a stream of deltas (a streamed completion).
//!
//! Pure and synchronous: no I/O, no config parsing, no actions. The prompt-guard processor
//! decides what a finding means (reject, mask, audit); this module only answers *where*.
//!
//! - [`RuleSet`] says what to look for: built-in detectors by name ([`Builtin`]), user
//!   regexes ([`RegexRule`]) and keyword lists ([`KeywordList`]).
//! - [`Scanner`] is compiled once from a rule set and finds all [`Finding`]s of a text in
//!   one forward pass per engine: the built-ins share one byte-level pass (`builtin.rs`
//!   says why it is not a regex); all user regexes share one pass of their alternation,
//!   and only a text it matches is searched rule by rule (`user_regex.rs` says why not a
//!   `RegexSet`); keyword lists share one Aho-Corasick pass (two if both case-sensitive
//!   and -insensitive lists exist). Every engine is linear in the text; validators (Luhn,
//!   mod-97, SSN ranges, JWT header) only run on candidates.
//! - [`mask`] replaces findings with placeholders such as `<EMAIL>`.
//! - [`StreamMasker`] masks a stream of deltas so that the concatenated output equals
//!   `mask(whole text)`, holding back only what a match in progress could still need.
//!
//! Findings are byte ranges; their text never leaves this module except through the
//! caller's hands, so it cannot end up in logs or metric labels by accident.

mod builtin;
mod keywords;
mod mask;
mod normalize;
mod rules;
mod scanner;
mod stream;
mod user_regex;

#[cfg(test)]
mod hostile_tests;
#[cfg(test)]
mod quality;
#[cfg(test)]
mod quality_tests;

pub use mask::{mask, mask_bytes};
pub use rules::{Builtin, KeywordList, Limits, RegexRule, RuleSet};
pub use scanner::{Finding, Rule, RuleId, RuleKind, Scanner};
pub use stream::StreamMasker;

/// Why a rule set does not compile into a [`Scanner`].
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error("unknown built-in detector `{name}` (known: {known})")]
    UnknownBuiltin { name: String, known: String },
    #[error("rule `{rule}`: invalid regex: {source}")]
    Regex {
        rule: String,
        #[source]
        source: Box<regex::Error>,
    },
    #[error("rule `{rule}`: maxLen {max_len} is out of range 1..={limit}")]
    MaxLen {
        rule: String,
        max_len: usize,
        limit: usize,
    },
    #[error("keyword list `{rule}`: {problem}")]
    Keywords { rule: String, problem: String },
    #[error("rule name `{0}` is used twice (built-in names are taken)")]
    DuplicateName(String),
    #[error("rule name must not be empty")]
    EmptyName,
    #[error("placeholder for `{0}`: no such rule in this rule set")]
    UnknownPlaceholderRule(String),
    #[error("limits: {0}")]
    Limits(String),
}
