//! What a guard looks for: the built-in detectors and their stable names, user regex
//! rules, keyword lists, and the limits that bound the longest match (which the streaming
//! masker needs to know how much to hold back).

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use super::GuardError;

/// A built-in detector. The order of the variants is the tie-break priority when two
/// findings start and end at the same place (first wins): the more specific first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Builtin {
    /// `private_key`: a PEM block from `-----BEGIN <label>PRIVATE KEY-----` to the
    /// matching `-----END <label>PRIVATE KEY-----`, at most [`Limits::private_key_max_len`]
    /// bytes. An unterminated block is not reported.
    PrivateKey,
    /// `anthropic_api_key`: `sk-ant-` followed by 20–255 of `[A-Za-z0-9_-]` with a digit.
    AnthropicApiKey,
    /// `openai_api_key`: `sk-` (also `sk-proj-`, `sk-svcacct-`, `sk-admin-`) followed by
    /// 20–255 of `[A-Za-z0-9_-]` containing a digit and a letter; not `sk-ant-`.
    OpenaiApiKey,
    /// `aws_access_key_id`: `AKIA` or `ASIA` followed by exactly 16 of `[A-Z0-9]`.
    AwsAccessKeyId,
    /// `github_token`: `ghp_`/`gho_`/`ghu_`/`ghs_`/`ghr_` + 36–251 alphanumerics, or
    /// `github_pat_` + 40–251 of `[A-Za-z0-9_]`.
    GithubToken,
    /// `gitlab_token`: `glpat-` followed by 20–255 of `[A-Za-z0-9_-]` (inner dots allowed).
    GitlabToken,
    /// `slack_token`: `xoxa-`/`xoxb-`/`xoxp-`/`xoxr-` followed by 10–255 of
    /// `[A-Za-z0-9-]` containing a digit.
    SlackToken,
    /// `jwt`: three base64url segments (the signature may be empty) whose header decodes to
    /// a JSON object with a string `"alg"`; the header starts `{"` or `{ "` (`eyJ`/`eyA`).
    /// At most [`Limits::jwt_max_len`] bytes.
    Jwt,
    /// `iban`: country code, two check digits and the BBAN, compact or in groups of four;
    /// the country must be in the length table and the whole must pass ISO 7064 mod-97.
    Iban,
    /// `credit_card`: Visa, Mastercard (51–55 and 2221–2720), Amex, Discover, JCB and
    /// Diners numbers of the brand's length, unbroken or grouped by one space or dash
    /// (first group of four), and Luhn-valid.
    CreditCard,
    /// `ssn`: a US SSN `AAA-GG-SSSS` (dashes or spaces); nine unbroken digits only when
    /// `ssn`, `ss#` or `social security` appears in the 32 bytes before. Area 000, 666 and
    /// 900–999, group 00 and serial 0000 are rejected.
    Ssn,
    /// `phone`: E.164 (`+` then 8–15 digits, optionally grouped) and formatted NANP
    /// numbers; see `builtin/phone.rs` for the rules that reject look-alikes.
    Phone,
    /// `ipv6`: an IPv6 address in any textual form `std` parses (compressed, embedded
    /// IPv4), not glued to other words; `::` alone is not reported.
    Ipv6,
    /// `ipv4`: four decimal octets 0–255 without leading zeros, not part of a longer dotted
    /// number (`1.2.3.4.5`) or glued to a word (`v1.2.3.4`).
    Ipv4,
    /// `email`: `local@domain.tld`; addresses in a URL's authority (`https://user@host`)
    /// are logins, not emails, and are not reported. See `builtin/email.rs`.
    Email,
}

impl Builtin {
    /// Every built-in, in priority order.
    pub const ALL: [Builtin; 15] = [
        Builtin::PrivateKey,
        Builtin::AnthropicApiKey,
        Builtin::OpenaiApiKey,
        Builtin::AwsAccessKeyId,
        Builtin::GithubToken,
        Builtin::GitlabToken,
        Builtin::SlackToken,
        Builtin::Jwt,
        Builtin::Iban,
        Builtin::CreditCard,
        Builtin::Ssn,
        Builtin::Phone,
        Builtin::Ipv6,
        Builtin::Ipv4,
        Builtin::Email,
    ];

    /// The stable name used in config, metrics and logs.
    pub const fn name(self) -> &'static str {
        match self {
            Builtin::PrivateKey => "private_key",
            Builtin::AnthropicApiKey => "anthropic_api_key",
            Builtin::OpenaiApiKey => "openai_api_key",
            Builtin::AwsAccessKeyId => "aws_access_key_id",
            Builtin::GithubToken => "github_token",
            Builtin::GitlabToken => "gitlab_token",
            Builtin::SlackToken => "slack_token",
            Builtin::Jwt => "jwt",
            Builtin::Iban => "iban",
            Builtin::CreditCard => "credit_card",
            Builtin::Ssn => "ssn",
            Builtin::Phone => "phone",
            Builtin::Ipv6 => "ipv6",
            Builtin::Ipv4 => "ipv4",
            Builtin::Email => "email",
        }
    }

    /// The placeholder [`mask`](super::mask) uses unless the rule set overrides it.
    pub const fn default_placeholder(self) -> &'static str {
        match self {
            Builtin::Email => "<EMAIL>",
            Builtin::Phone => "<PHONE>",
            Builtin::Ssn => "<SSN>",
            Builtin::CreditCard => "<CREDIT_CARD>",
            Builtin::Iban => "<IBAN>",
            Builtin::Ipv4 | Builtin::Ipv6 => "<IP_ADDRESS>",
            _ => "<SECRET>",
        }
    }

    /// Credentials rather than personal data.
    pub const fn is_secret(self) -> bool {
        (self as usize) <= (Builtin::Jwt as usize)
    }

    /// The built-in with this stable name.
    pub fn from_name(name: &str) -> Option<Builtin> {
        Builtin::ALL.into_iter().find(|b| b.name() == name)
    }
}

impl fmt::Display for Builtin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Builtin {
    type Err = GuardError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Builtin::from_name(name).ok_or_else(|| GuardError::UnknownBuiltin {
            name: name.to_string(),
            known: Builtin::ALL.map(Builtin::name).join(", "),
        })
    }
}

/// Bounds on the longest matches of the unbounded built-ins. Longer blocks and tokens are
/// not reported, in whole texts and in streams alike, so the streaming masker never holds
/// back more than these.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest PEM private-key block, BEGIN line to END line. Default 8 KiB (an RSA-4096
    /// key is about 3.3 KiB).
    pub private_key_max_len: usize,
    /// Longest JWT. Default 8 KiB.
    pub jwt_max_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            private_key_max_len: 8 * 1024,
            jwt_max_len: 8 * 1024,
        }
    }
}

/// A user regex rule. Patterns use the `regex` crate's syntax (linear time, no
/// backreferences or lookaround).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegexRule {
    /// Rule name, reported in findings; the default placeholder is `<NAME>` upper-cased.
    pub name: String,
    pub pattern: String,
    /// The longest match this rule is expected to produce, in bytes (default 256, at
    /// most 64 KiB). The streaming masker holds back this much text; a longer match is
    /// still reported in whole texts but a stream may emit part of it unmasked.
    pub max_len: usize,
}

impl RegexRule {
    /// A rule with the default `max_len` of 256 bytes.
    pub fn new(name: impl Into<String>, pattern: impl Into<String>) -> Self {
        RegexRule {
            name: name.into(),
            pattern: pattern.into(),
            max_len: 256,
        }
    }

    /// Sets `max_len`.
    pub fn max_len(mut self, max_len: usize) -> Self {
        self.max_len = max_len;
        self
    }
}

/// A keyword list: every occurrence of any word is a finding named after the list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeywordList {
    pub name: String,
    pub words: Vec<String>,
    /// Match ASCII letters regardless of case (default true; other letters match exactly).
    pub case_insensitive: bool,
    /// Only match when not preceded or followed by a letter, digit or `_` (Unicode-aware;
    /// default true), so `ass` does not match in `class`.
    pub whole_word: bool,
}

impl KeywordList {
    /// A case-insensitive, whole-word list.
    pub fn new<I, S>(name: impl Into<String>, words: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        KeywordList {
            name: name.into(),
            words: words.into_iter().map(Into::into).collect(),
            case_insensitive: true,
            whole_word: true,
        }
    }

    pub fn case_insensitive(mut self, yes: bool) -> Self {
        self.case_insensitive = yes;
        self
    }

    pub fn whole_word(mut self, yes: bool) -> Self {
        self.whole_word = yes;
        self
    }
}

/// Everything a [`Scanner`](super::Scanner) is compiled from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleSet {
    pub builtins: Vec<Builtin>,
    pub regexes: Vec<RegexRule>,
    pub keywords: Vec<KeywordList>,
    /// Placeholder overrides by rule name (built-in or user rule).
    pub placeholders: HashMap<String, String>,
    pub limits: Limits,
}

impl RuleSet {
    /// An empty rule set.
    pub fn new() -> Self {
        RuleSet::default()
    }

    /// Every built-in detector and nothing else.
    pub fn all_builtins() -> Self {
        RuleSet {
            builtins: Builtin::ALL.to_vec(),
            ..RuleSet::default()
        }
    }

    pub fn with_builtin(mut self, builtin: Builtin) -> Self {
        self.builtins.push(builtin);
        self
    }

    /// Adds built-ins by their stable names; an unknown name is an error listing the
    /// known ones.
    pub fn with_builtin_names<I, S>(mut self, names: I) -> Result<Self, GuardError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for name in names {
            self.builtins.push(name.as_ref().parse()?);
        }
        Ok(self)
    }

    pub fn with_regex(mut self, rule: RegexRule) -> Self {
        self.regexes.push(rule);
        self
    }

    pub fn with_keywords(mut self, list: KeywordList) -> Self {
        self.keywords.push(list);
        self
    }

    pub fn with_placeholder(mut self, rule: impl Into<String>, text: impl Into<String>) -> Self {
        self.placeholders.insert(rule.into(), text.into());
        self
    }

    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_list_the_known_ones() {
        for b in Builtin::ALL {
            assert_eq!(b.name().parse::<Builtin>().unwrap(), b);
        }
        let err = "emial".parse::<Builtin>().unwrap_err().to_string();
        assert!(
            err.contains("`emial`") && err.contains("credit_card"),
            "{err}"
        );
    }

    #[test]
    fn secrets_are_the_credentials() {
        let secrets: Vec<_> = Builtin::ALL.into_iter().filter(|b| b.is_secret()).collect();
        assert_eq!(secrets.len(), 8);
        assert!(!Builtin::Iban.is_secret() && Builtin::Jwt.is_secret());
        assert_eq!(Builtin::Jwt.default_placeholder(), "<SECRET>");
    }
}
