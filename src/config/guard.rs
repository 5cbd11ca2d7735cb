//! Configuration of the `promptGuard` policy: rules on the request (the prompt) and on the
//! response (JSON and streamed completions), each with a detector and an action.
//!
//! Shapes only; compiling rules (regexes, keyword automata, CEL) and checking that each
//! rule has exactly one detector happens in `processors/prompt_guard/rules.rs`, with the
//! field path of every problem.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::FailureMode;

/// Guards on LLM prompts and completions: built-in PII and secret detectors, user
/// regexes, keyword lists and CEL conditions, each rule rejecting, masking or auditing
/// what it finds. Applies to OpenAI (chat completions, completions, embeddings,
/// responses) and Anthropic (messages) requests; other paths pass untouched.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PromptGuardPolicy {
    /// Rules checked on the request body before it goes upstream: every prompt text
    /// (system, developer, user, assistant, tool results, Anthropic blocks, Responses
    /// input and instructions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<GuardSide>,
    /// Rules checked on the completion before the client sees it: message text of a
    /// JSON response, and the text deltas of a streamed one (masked even when an entity
    /// is split across events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<GuardSide>,
    /// What happens when the guard cannot check a body (larger than its limit, an
    /// undecodable response encoding): `failClosed` (default; 413 for a request, 502 for
    /// a response) or `failOpen` (the body passes unchecked, with a warning).
    #[serde(default)]
    pub failure_mode: FailureMode,
    /// Largest request body checked, in bytes. Default 8 MiB.
    #[serde(default = "default_max_bytes")]
    pub max_request_bytes: usize,
    /// Largest JSON (non-streamed) response body checked, in bytes. Default 8 MiB.
    /// Streamed responses are checked event by event and have no such limit.
    #[serde(default = "default_max_bytes")]
    pub max_response_bytes: usize,
}

fn default_max_bytes() -> usize {
    8 * 1024 * 1024
}

/// The rules of one side, and an external guard service.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GuardSide {
    /// The rules, each with a unique name. Findings of `reject` and `mask` rules are
    /// found in one pass (overlaps resolve leftmost-longest); `audit` rules are scanned
    /// separately, so an audit rule never hides a finding that must be acted on.
    #[serde(default)]
    pub rules: Vec<GuardRule>,
    /// A guard service speaking the webhook protocol of agentgateway and kgateway,
    /// asked after the rules (it sees their masks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<GuardWebhook>,
    /// Request side only: an OpenAI-compatible moderation endpoint, asked after the
    /// rules and the webhook with the prompt texts; a flagged prompt is rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moderation: Option<GuardModeration>,
}

/// An OpenAI-moderation-compatible guard: tollgate POSTs `{"model","input":[texts]}` to
/// `url` and rejects the request when a result is `flagged` (or, with `categories`,
/// when one of those categories is true).
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GuardModeration {
    /// The endpoint, e.g. `https://api.openai.com/v1/moderations`.
    pub url: String,
    /// The `model` sent. Default `omni-moderation-latest`.
    #[serde(default = "default_moderation_model")]
    pub model: String,
    /// Sent as `Authorization: Bearer …` (write `${OPENAI_API_KEY}`; hidden in `/config`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    /// Reject only when one of these categories is flagged (e.g. `violence`,
    /// `self-harm/intent`). Default: any flagged result.
    #[serde(default)]
    pub categories: Vec<String>,
    /// The status of the rejection. Default 403.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The rejection message. Default `request flagged by moderation: <categories>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Time allowed for the call. Default `5s`.
    #[serde(default = "default_moderation_timeout")]
    pub timeout: super::Duration,
    /// When the endpoint fails: `failClosed` (default, 503) or `failOpen`.
    #[serde(default)]
    pub failure_mode: FailureMode,
}

fn default_moderation_model() -> String {
    "omni-moderation-latest".to_string()
}

fn default_moderation_timeout() -> super::Duration {
    super::Duration::from_secs(5)
}

/// A guardrail webhook: tollgate POSTs `{"body":{"messages":[{"role","content"}]}}` to
/// `<url>/request` (the prompt) or `{"body":{"choices":[{"message":{"role","content"}}]}}`
/// to `<url>/response` (a JSON completion), and the service answers
/// `{"action":{...}}`: `{}` or `{"reason"}` to pass, `{"body":{...same shape, texts
/// masked...}}` to mask, `{"body":"message","status_code":403}` to reject. Streamed
/// completions are checked by the rules only (the webhook needs the whole text).
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GuardWebhook {
    /// Base URL of the service, `http://` or `https://` (public CA roots).
    pub url: String,
    /// Time allowed for the whole call. Default `2s`.
    #[serde(default = "default_webhook_timeout")]
    pub timeout: super::Duration,
    /// When the service cannot be reached, times out or answers something else than
    /// the protocol: `failClosed` (default) answers 503, `failOpen` lets the exchange
    /// go on as the rules left it.
    #[serde(default)]
    pub failure_mode: FailureMode,
}

fn default_webhook_timeout() -> super::Duration {
    super::Duration::from_secs(2)
}

/// One rule: a name, exactly one detector (`builtins`, `regex`, `keywords` or `cel`) and
/// an action.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GuardRule {
    /// The rule's name, used in metrics (`rule` label), logs and default placeholders.
    /// Unique within its side.
    pub name: String,
    /// Built-in detectors by name: `email`, `phone`, `ssn`, `credit_card` (Luhn-checked),
    /// `iban` (mod-97 checked), `ipv4`, `ipv6`, and the secrets `private_key`,
    /// `anthropic_api_key`, `openai_api_key`, `aws_access_key_id`, `github_token`,
    /// `gitlab_token`, `slack_token`, `jwt`. A detector may appear in only one rule per
    /// side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builtins: Option<Vec<String>>,
    /// A regular expression (Rust `regex` syntax: linear time, no look-around or
    /// backreferences). Every match is a finding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    /// For `regex`: the longest match expected, in bytes (default 256, at most 65536).
    /// A streamed response holds back this much text to catch a match split across
    /// events; a longer match may reach the client partly unmasked in a stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_len: Option<usize>,
    /// A keyword list: every occurrence of any word is a finding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keywords: Option<KeywordsConfig>,
    /// Request side only: a CEL condition over `llm.model`, `llm.prompt` (all prompt text
    /// joined with newlines), `request.headers` (lower-case names), `request.path` and
    /// `request.method`, and `jwt` (the verified claims Envoy's `jwt_authn` passes on,
    /// null otherwise), e.g. `llm.model == "gpt-4o" && request.headers["x-team"] !=
    /// "research"`. The rule fires when it is true; an expression that fails to evaluate
    /// (a missing header) does not fire. Only `reject` and `audit` apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cel: Option<String>,
    /// What a finding does (required): `reject` answers the request itself — on the
    /// request side before anything goes upstream, mid-stream with an error event —
    /// `mask` replaces each finding with the placeholder, `audit` lets it pass and only
    /// counts it (metric and log line with the rule name, never the value).
    pub action: GuardAction,
    /// For `reject`: the HTTP status. Default 403.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// For `reject`: the error message, in the API's error format (OpenAI or Anthropic).
    /// Default `request blocked by prompt guard rule <name>` (`response …` on the
    /// response side).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// For `mask`: the text that replaces each finding. Default: the detector's own
    /// (`<EMAIL>`, `<PHONE>`, `<SSN>`, `<CREDIT_CARD>`, `<IBAN>`, `<IP_ADDRESS>`,
    /// `<SECRET>`), or `<NAME>` (the rule name upper-cased) for regexes and keywords.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placeholder: Option<String>,
}

/// A keyword list.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KeywordsConfig {
    /// The words (or phrases).
    pub words: Vec<String>,
    /// Match only when not preceded or followed by a letter, digit or `_`, so `ass`
    /// does not match in `class`. Default true.
    #[serde(default = "yes")]
    pub whole_word: bool,
    /// Match ASCII letters regardless of case. Default true.
    #[serde(default = "yes")]
    pub case_insensitive: bool,
}

fn yes() -> bool {
    true
}

/// What a rule does with a finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum GuardAction {
    /// Refuse: the request is answered with an error (403 by default) and never goes
    /// upstream; a response is ended with an error (an error event mid-stream).
    Reject,
    /// Replace each finding with a placeholder and go on.
    Mask,
    /// Let it pass; count it in `tollgate_guard_findings_total` and log the rule name.
    Audit,
}

impl GuardAction {
    pub fn as_str(self) -> &'static str {
        match self {
            GuardAction::Reject => "reject",
            GuardAction::Mask => "mask",
            GuardAction::Audit => "audit",
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::parse_str;

    #[test]
    fn prompt_guard_parses_and_rejects_unknown_fields() {
        let yaml = r#"
binds:
- port: 1
  listeners:
  - routes:
    - policies:
        promptGuard:
          request:
            rules:
            - { name: pii, builtins: [email, phone], action: mask }
            - { name: words, keywords: { words: [nda], wholeWord: false }, action: reject }
            - { name: model, cel: 'llm.model == "x"', action: audit }
          response:
            rules:
            - { name: ticket, regex: 'T-\d+', maxLen: 16, action: mask, placeholder: "[T]" }
"#;
        let loaded = parse_str(yaml).unwrap();
        let g = loaded.config.binds[0].listeners[0].routes[0]
            .policies
            .prompt_guard
            .clone()
            .unwrap();
        let req = g.request.unwrap();
        assert_eq!(req.rules.len(), 3);
        assert_eq!(req.rules[1].action, super::GuardAction::Reject);
        assert!(!req.rules[1].keywords.as_ref().unwrap().whole_word);
        assert!(req.rules[1].keywords.as_ref().unwrap().case_insensitive);
        assert_eq!(g.response.unwrap().rules[0].max_len, Some(16));
        let err = parse_str(&yaml.replace("maxLen: 16", "maxLength: 16"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                "binds[0].listeners[0].routes[0].policies.promptGuard.response.rules[0]"
            ),
            "{err}"
        );
    }
}
