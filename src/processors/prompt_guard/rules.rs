//! One side's rules compiled: the scanners (one for the rules that act — reject and mask —
//! one for audit rules), which config rule each scanner rule belongs to, and the CEL
//! conditions. Every configuration problem names its field path.

use std::collections::HashMap;
use std::sync::Arc;

use http::StatusCode;

use crate::config::{CelLimits, ConfigError, GuardAction, GuardRule, GuardSide};
use crate::expr::Expression;
use crate::guard::{Builtin, KeywordList, RegexRule, RuleId, RuleSet, Scanner};

/// Which side of the exchange a rule set guards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SideKind {
    Request,
    Response,
}

impl SideKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SideKind::Request => "request",
            SideKind::Response => "response",
        }
    }
}

/// A config rule as the processor needs it at run time.
#[derive(Debug)]
pub struct RuleInfo {
    pub name: String,
    pub action: GuardAction,
    /// For `reject`.
    pub status: StatusCode,
    pub message: String,
}

/// A compiled scanner and, per scanner rule, the config rule it belongs to.
#[derive(Debug)]
pub struct Matcher {
    pub scanner: Arc<Scanner>,
    owner: Vec<usize>,
}

impl Matcher {
    /// The config rule (index into [`CompiledSide::rules`]) of a finding's rule.
    pub fn owner(&self, id: RuleId) -> usize {
        self.owner[id.0 as usize]
    }
}

/// One side's rules, compiled.
#[derive(Debug)]
pub struct CompiledSide {
    pub kind: SideKind,
    pub rules: Vec<RuleInfo>,
    /// The `reject` and `mask` rules, found in one pass.
    pub enforce: Option<Matcher>,
    /// The `audit` rules, scanned on their own so that they never hide an enforcing
    /// finding (overlaps resolve leftmost-longest within a scanner).
    pub audit: Option<Matcher>,
    /// CEL conditions (request side only), with their rule index.
    pub cel: Vec<(usize, Expression)>,
    /// The guard service asked after the rules.
    pub webhook: Option<super::webhook::Webhook>,
    /// The moderation endpoint asked last (request side only).
    pub moderation: Option<super::moderation::Moderation>,
}

impl CompiledSide {
    /// Compiles `side`; `path` is its field path (`….promptGuard.request`).
    pub fn new(
        side: &GuardSide,
        kind: SideKind,
        cel_limits: &CelLimits,
        path: &str,
    ) -> Result<Self, ConfigError> {
        if side.rules.is_empty() && side.webhook.is_none() && side.moderation.is_none() {
            return Err(ConfigError::field(
                format!("{path}.rules"),
                "no rules given (and no webhook or moderation)",
            ));
        }
        if side.moderation.is_some() && kind == SideKind::Response {
            return Err(ConfigError::field(
                format!("{path}.moderation"),
                "moderation applies to the request side only",
            ));
        }
        let moderation = side
            .moderation
            .as_ref()
            .map(|m| super::moderation::Moderation::new(m, &format!("{path}.moderation")))
            .transpose()?;
        let webhook = side
            .webhook
            .as_ref()
            .map(|w| super::webhook::Webhook::new(w, &format!("{path}.webhook")))
            .transpose()?;
        let mut rules = Vec::new();
        let mut names: HashMap<&str, usize> = HashMap::new();
        let mut sets = [Builder::default(), Builder::default()];
        let mut cel = Vec::new();
        for (i, r) in side.rules.iter().enumerate() {
            let rpath = format!("{path}.rules[{i}]");
            rules.push(check_rule(r, kind, &rpath)?);
            if let Some(first) = names.insert(r.name.as_str(), i) {
                return Err(ConfigError::field(
                    format!("{rpath}.name"),
                    format!("rule name {:?} is already used by rules[{first}]", r.name),
                ));
            }
            if let Some(src) = &r.cel {
                cel.push((
                    i,
                    Expression::compile(src, &format!("{rpath}.cel"), cel_limits)?,
                ));
                continue;
            }
            let set = &mut sets[usize::from(r.action == GuardAction::Audit)];
            set.add(r, i, &rpath)?;
        }
        let [enforce, audit] = sets;
        Ok(CompiledSide {
            kind,
            rules,
            enforce: enforce.build(path)?,
            audit: audit.build(path)?,
            cel,
            webhook,
            moderation,
        })
    }

    /// The config rule at `index`.
    pub fn rule(&self, index: usize) -> &RuleInfo {
        &self.rules[index]
    }
}

/// Validates what serde cannot: exactly one detector, options that fit the action.
fn check_rule(r: &GuardRule, kind: SideKind, rpath: &str) -> Result<RuleInfo, ConfigError> {
    if r.name.trim().is_empty() {
        return Err(ConfigError::field(format!("{rpath}.name"), "empty name"));
    }
    let given: Vec<&str> = [
        ("builtins", r.builtins.is_some()),
        ("regex", r.regex.is_some()),
        ("keywords", r.keywords.is_some()),
        ("cel", r.cel.is_some()),
    ]
    .into_iter()
    .filter_map(|(n, set)| set.then_some(n))
    .collect();
    if given.len() != 1 {
        return Err(ConfigError::field(
            rpath,
            format!(
                "give exactly one of builtins, regex, keywords or cel (found {})",
                if given.is_empty() {
                    "none".to_string()
                } else {
                    given.join(", ")
                }
            ),
        ));
    }
    if r.cel.is_some() {
        if kind == SideKind::Response {
            return Err(ConfigError::field(
                format!("{rpath}.cel"),
                "cel rules apply to the request side only",
            ));
        }
        if r.action == GuardAction::Mask {
            return Err(ConfigError::field(
                format!("{rpath}.action"),
                "a cel rule has nothing to mask; use reject or audit",
            ));
        }
    }
    if r.max_len.is_some() && r.regex.is_none() {
        return Err(ConfigError::field(
            format!("{rpath}.maxLen"),
            "maxLen applies to regex rules only",
        ));
    }
    let only_for = |field: &str, set: bool, action: GuardAction| {
        if set && r.action != action {
            Err(ConfigError::field(
                format!("{rpath}.{field}"),
                format!("{field} applies to action {} only", action.as_str()),
            ))
        } else {
            Ok(())
        }
    };
    only_for("status", r.status.is_some(), GuardAction::Reject)?;
    only_for("message", r.message.is_some(), GuardAction::Reject)?;
    only_for("placeholder", r.placeholder.is_some(), GuardAction::Mask)?;
    let status = match r.status {
        None => StatusCode::FORBIDDEN,
        Some(s) => StatusCode::from_u16(s)
            .ok()
            .filter(|s| s.is_client_error() || s.is_server_error())
            .ok_or_else(|| {
                ConfigError::field(
                    format!("{rpath}.status"),
                    format!("{s} is not an error status (400-599)"),
                )
            })?,
    };
    Ok(RuleInfo {
        name: r.name.clone(),
        action: r.action,
        status,
        message: r.message.clone().unwrap_or_else(|| {
            format!("{} blocked by prompt guard rule {}", kind.as_str(), r.name)
        }),
    })
}

/// Collects the rules of one scanner.
#[derive(Default)]
struct Builder {
    set: RuleSet,
    /// Engine rule name → config rule index.
    owners: HashMap<String, usize>,
    /// Built-in → the path of the rule that uses it.
    builtin_paths: HashMap<Builtin, String>,
}

impl Builder {
    fn add(&mut self, r: &GuardRule, index: usize, rpath: &str) -> Result<(), ConfigError> {
        if let Some(names) = &r.builtins {
            if names.is_empty() {
                return Err(ConfigError::field(
                    format!("{rpath}.builtins"),
                    "no detectors given",
                ));
            }
            for (j, name) in names.iter().enumerate() {
                let field = format!("{rpath}.builtins[{j}]");
                let b: Builtin = name.parse().map_err(|e: crate::guard::GuardError| {
                    ConfigError::field(&field, e.to_string())
                })?;
                if let Some(first) = self.builtin_paths.insert(b, field.clone()) {
                    return Err(ConfigError::field(
                        field,
                        format!("detector {b} is already used by {first} (one rule per detector and action group)"),
                    ));
                }
                self.set.builtins.push(b);
                self.owners.insert(b.name().to_string(), index);
                if let Some(p) = &r.placeholder {
                    self.set
                        .placeholders
                        .insert(b.name().to_string(), p.clone());
                }
            }
            return Ok(());
        }
        // Regex and keyword rules are named after the config rule in the engine, where
        // built-in names are reserved.
        if Builtin::from_name(&r.name).is_some() {
            return Err(ConfigError::field(
                format!("{rpath}.name"),
                format!(
                    "{:?} is a built-in detector's name; name regex and keyword rules otherwise",
                    r.name
                ),
            ));
        }
        if let Some(pattern) = &r.regex {
            regex::Regex::new(pattern).map_err(|e| {
                ConfigError::field(format!("{rpath}.regex"), format!("invalid regex: {e}"))
            })?;
            let mut rule = RegexRule::new(&r.name, pattern);
            if let Some(max) = r.max_len {
                if max == 0 || max > 64 * 1024 {
                    return Err(ConfigError::field(
                        format!("{rpath}.maxLen"),
                        format!("{max} is out of range 1..=65536"),
                    ));
                }
                rule = rule.max_len(max);
            }
            self.set.regexes.push(rule);
        } else if let Some(k) = &r.keywords {
            if k.words.is_empty() {
                return Err(ConfigError::field(
                    format!("{rpath}.keywords.words"),
                    "no words given",
                ));
            }
            if let Some(j) = k.words.iter().position(|w| w.is_empty()) {
                return Err(ConfigError::field(
                    format!("{rpath}.keywords.words[{j}]"),
                    "empty word",
                ));
            }
            self.set.keywords.push(
                KeywordList::new(&r.name, k.words.iter().cloned())
                    .whole_word(k.whole_word)
                    .case_insensitive(k.case_insensitive),
            );
        }
        if let Some(p) = &r.placeholder {
            self.set.placeholders.insert(r.name.clone(), p.clone());
        }
        self.owners.insert(r.name.clone(), index);
        Ok(())
    }

    fn build(self, path: &str) -> Result<Option<Matcher>, ConfigError> {
        if self.owners.is_empty() {
            return Ok(None);
        }
        let scanner = Scanner::new(&self.set)
            .map_err(|e| ConfigError::field(format!("{path}.rules"), e.to_string()))?;
        let owner = scanner
            .rules()
            .iter()
            .map(|rule| self.owners[&rule.name])
            .collect();
        Ok(Some(Matcher {
            scanner: Arc::new(scanner),
            owner,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GuardSide;

    fn compile(yaml: &str, kind: SideKind) -> Result<CompiledSide, String> {
        let side: GuardSide = serde_yaml::from_str(yaml).unwrap();
        CompiledSide::new(&side, kind, &CelLimits::default(), "p").map_err(|e| e.to_string())
    }

    #[test]
    fn rules_split_into_enforcing_and_audit_scanners() {
        let side = compile(
            r#"
rules:
- { name: pii, builtins: [email, phone], action: mask, placeholder: "<PII>" }
- { name: keys, builtins: [openai_api_key], action: reject, status: 451 }
- { name: codenames, keywords: { words: [bluebird] }, action: audit }
- { name: tickets, regex: 'T-\d{4}', action: audit }
- { name: model, cel: 'llm.model == "x"', action: reject }
"#,
            SideKind::Request,
        )
        .unwrap();
        let enforce = side.enforce.as_ref().unwrap();
        assert_eq!(
            enforce.scanner.mask("mail a@b.co or +1 415 555 0123"),
            "mail <PII> or <PII>"
        );
        let f = enforce.scanner.scan("a@b.co");
        assert_eq!(side.rule(enforce.owner(f[0].rule)).name, "pii");
        let audit = side.audit.as_ref().unwrap();
        let f = audit.scanner.scan("T-1234 bluebird");
        assert_eq!(f.len(), 2);
        assert_eq!(side.rule(audit.owner(f[0].rule)).name, "tickets");
        assert_eq!(side.rule(audit.owner(f[1].rule)).name, "codenames");
        assert_eq!(
            side.rule(1).status,
            StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS
        );
        assert_eq!(
            side.rule(4).message,
            "request blocked by prompt guard rule model"
        );
        assert_eq!(side.cel.len(), 1);
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (
                "rules: [{ name: a, builtins: [emial], action: mask }]",
                "p.rules[0].builtins[0]: unknown built-in detector `emial` (known: private_key",
            ),
            (
                "rules: [{ name: a, regex: '(x', action: mask }]",
                "p.rules[0].regex: invalid regex",
            ),
            (
                "rules: [{ name: a, action: mask }]",
                "p.rules[0]: give exactly one of builtins, regex, keywords or cel (found none)",
            ),
            (
                "rules: [{ name: a, regex: x, cel: 'true', action: reject }]",
                "p.rules[0]: give exactly one of builtins, regex, keywords or cel (found regex, cel)",
            ),
            (
                "rules: [{ name: a, cel: 'true', action: mask }]",
                "p.rules[0].action: a cel rule has nothing to mask",
            ),
            (
                "rules: [{ name: a, regex: x, action: mask, status: 400 }]",
                "p.rules[0].status: status applies to action reject only",
            ),
            (
                "rules: [{ name: a, regex: x, action: reject, status: 200 }]",
                "p.rules[0].status: 200 is not an error status",
            ),
            (
                "rules: [{ name: a, regex: x, action: mask }, { name: a, regex: y, action: mask }]",
                "p.rules[1].name: rule name \"a\" is already used by rules[0]",
            ),
            (
                "rules: [{ name: a, builtins: [email], action: mask }, { name: b, builtins: [email], action: reject }]",
                "p.rules[1].builtins[0]: detector email is already used by p.rules[0].builtins[0]",
            ),
            (
                "rules: [{ name: email, regex: x, action: mask }]",
                "p.rules[0].name: \"email\" is a built-in detector's name",
            ),
            (
                "rules: [{ name: a, keywords: { words: [] }, action: mask }]",
                "p.rules[0].keywords.words: no words given",
            ),
            (
                "rules: [{ name: a, cel: 'llm.model ==', action: reject }]",
                "p.rules[0].cel: invalid CEL expression",
            ),
            (
                "rules: []",
                "p.rules: no rules given (and no webhook or moderation)",
            ),
            (
                "webhook: { url: 'ftp://x' }",
                "p.webhook.url: give an http:// or https:// URL with a host",
            ),
        ];
        for (yaml, want) in cases {
            let err = compile(yaml, SideKind::Request).unwrap_err();
            assert!(err.starts_with(want), "{yaml}\n  got: {err}\n want: {want}");
        }
        let err = compile(
            "rules: [{ name: a, cel: 'true', action: reject }]",
            SideKind::Response,
        )
        .unwrap_err();
        assert!(
            err.starts_with("p.rules[0].cel: cel rules apply to the request side only"),
            "{err}"
        );
    }
}
