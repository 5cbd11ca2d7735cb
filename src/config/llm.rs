//! Configuration of the LLM policies — `tokenAccounting` and `tokenLimit` on a route —
//! and of the top-level `llm` section they share (price table, Redis).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::FailureMode;

/// Shared LLM settings.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LlmConfig {
    /// Prices per model, in US dollars per million tokens, for money budgets and the
    /// `tollgate_llm_cost_usd` metric. Keys are model names; a key ending in `*` matches
    /// by prefix (`gpt-4o*`). The longest match wins.
    #[serde(default)]
    pub prices: BTreeMap<String, ModelPrice>,
    /// The Redis that `tokenLimit` policies with `store: redis` share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisConfig>,
}

/// A model's price in US dollars per million tokens.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ModelPrice {
    /// Input (prompt) tokens not served from a cache.
    pub input: f64,
    /// Output (completion) tokens, reasoning included.
    pub output: f64,
    /// Input tokens read from the provider's prompt cache. Default: the input price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input: Option<f64>,
    /// Input tokens written to the provider's prompt cache. Default: the input price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_creation_input: Option<f64>,
}

/// Where shared limit counters live.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RedisConfig {
    /// `redis://host:port/db` (credentials may come from `${ENV}`).
    pub url: String,
    /// When Redis cannot be reached: `failOpen` (default) lets requests through and
    /// keeps the charges locally until Redis is back; `failClosed` answers 503.
    #[serde(default = "fail_open")]
    pub failure_mode: FailureMode,
}

fn fail_open() -> FailureMode {
    FailureMode::FailOpen
}

/// Count tokens of OpenAI- and Anthropic-style requests and responses (JSON and SSE)
/// and export them: GenAI metrics, Envoy dynamic metadata, the access log.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TokenAccountingPolicy {
    /// For streamed chat / completions requests, ask the upstream for usage
    /// (`stream_options.include_usage: true`) and remove the extra usage-only chunk from
    /// what the client receives when the client had not asked for it (an explicit
    /// `include_usage: false` included). Default true.
    #[serde(default = "yes")]
    pub include_usage: bool,
    /// Entries written to Envoy dynamic metadata namespace `io.envoy.ai_gateway`, with
    /// Envoy AI Gateway's cost types, so its rate-limit configs work unchanged.
    #[serde(default)]
    pub metadata: Vec<MetadataCost>,
    /// Add the usage to non-streamed responses as headers (`x-tollgate-input-tokens`,
    /// `-output-tokens`, `-total-tokens`, `-cached-input-tokens`, `-reasoning-tokens`,
    /// and `x-tollgate-cost-usd` when priced). The response body is then buffered so the
    /// headers can follow it (in ext_proc mode this needs `allow_mode_override`). A
    /// stream's headers leave before its usage exists: streams carry none. Default false.
    #[serde(default)]
    pub response_headers: bool,
    /// Largest request body parsed, in bytes. Default 8 MiB; larger requests get 413
    /// (never passed uncounted, which would also let them past token limits). Malformed
    /// request JSON gets 400, in the API's own error format.
    #[serde(default = "default_max_request_bytes")]
    pub max_request_bytes: usize,
}

fn yes() -> bool {
    true
}

fn default_max_request_bytes() -> usize {
    8 * 1024 * 1024
}

/// One dynamic metadata entry.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MetadataCost {
    /// The key under `io.envoy.ai_gateway`, e.g. `llm_total_token`.
    pub key: String,
    /// What to write.
    #[serde(rename = "type")]
    pub kind: CostType,
    /// For `type: CEL`: an expression over `model`, `backend`, `route_name`,
    /// `input_tokens`, `cached_input_tokens`, `cache_creation_input_tokens`,
    /// `output_tokens`, `reasoning_tokens`, `total_tokens` (unsigned integers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cel: Option<String>,
}

/// Envoy AI Gateway's cost types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum CostType {
    InputToken,
    CachedInputToken,
    CacheCreationInputToken,
    OutputToken,
    ReasoningToken,
    TotalToken,
    #[serde(rename = "CEL")]
    Cel,
}

/// Token limits and budgets, checked before the request goes upstream: the prompt
/// estimate is charged first, the real usage trued up when the response ends (refunds
/// included), and an abandoned stream is charged for what was delivered.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TokenLimitPolicy {
    /// Where counters live: `local` (this process, default) or `redis` (shared by every
    /// replica; needs `llm.redis`).
    #[serde(default)]
    pub store: LimitStoreKind,
    /// The limits; a request must fit every one that applies to it.
    pub limits: Vec<LimitRule>,
}

impl TokenLimitPolicy {
    /// Some limit is enforced mid-stream.
    pub fn has_mid_stream(&self) -> bool {
        self.limits
            .iter()
            .any(|l| l.enforce == Enforcement::MidStream)
    }
}

/// Where a limit's counters live.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum LimitStoreKind {
    #[default]
    Local,
    Redis,
}

/// One limit.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LimitRule {
    /// Name for metrics, logs and counter keys.
    pub name: String,
    /// CEL expression giving the key counters are kept per, over `request` (`method`,
    /// `path`, `host`, `headers`), `llm.model`, `route` and `jwt` (the claims Envoy's
    /// `jwt_authn` filter verified and forwarded; null otherwise); e.g.
    /// `request.headers["x-api-key"]` or `jwt.sub`. A rule whose key is empty or fails to evaluate
    /// does not apply. Default: one counter for the whole route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Only for this model (exact name). Default: every model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// What is limited.
    #[serde(flatten)]
    pub amount: LimitAmount,
    /// Which tokens count: `total` (default), `input` or `output`. Money budgets always
    /// count the cost of all tokens.
    #[serde(default)]
    pub count: TokenCount,
    /// A `tokenBudget` drawn from a counter shared by name with other rules, on any
    /// route, `mcpToolLimit` rules included (one user's LLM tokens and tool calls on
    /// one budget): the counter is per name, period and key. `A-Z a-z 0-9 _ -`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counter: Option<String>,
    /// When the limit is enforced: `admission` (default: a request is let in if its
    /// prompt estimate fits, and charged its real usage afterwards), or `midStream`
    /// (also while a streamed completion runs: its output is drawn from the limit as it
    /// streams, and the stream ends cleanly with `finish_reason: "length"` when the
    /// limit has nothing left).
    #[serde(default, skip_serializing_if = "Enforcement::is_admission")]
    pub enforce: Enforcement,
}

/// When a limit is enforced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Enforcement {
    #[default]
    Admission,
    MidStream,
}

impl Enforcement {
    fn is_admission(&self) -> bool {
        *self == Enforcement::Admission
    }
}

/// A rate or a budget.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum LimitAmount {
    /// A token bucket: this many tokens per minute, refilled continuously.
    TokensPerMinute(u64),
    /// A token bucket: this many tokens per hour, refilled continuously.
    TokensPerHour(u64),
    /// A budget of tokens per calendar period (UTC).
    TokenBudget(Budget<u64>),
    /// A budget of US dollars per calendar period (UTC), priced with `llm.prices`.
    CostBudget(Budget<f64>),
}

/// An amount per period.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Budget<T> {
    pub amount: T,
    pub period: Period,
}

/// A calendar period, aligned to UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Period {
    Minute,
    Hour,
    Day,
    Month,
}

/// Which tokens a limit counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum TokenCount {
    #[default]
    Total,
    Input,
    Output,
}

impl Period {
    /// The limits engine's window of this period.
    pub fn window(self) -> crate::limits::Period {
        match self {
            Period::Minute => crate::limits::Period::Minute,
            Period::Hour => crate::limits::Period::Hour,
            Period::Day => crate::limits::Period::Day,
            Period::Month => crate::limits::Period::Month,
        }
    }

    /// `minute`, `hour`, `day` or `month`.
    pub fn name(self) -> &'static str {
        match self {
            Period::Minute => "minute",
            Period::Hour => "hour",
            Period::Day => "day",
            Period::Month => "month",
        }
    }
}

/// A shared counter's name (`counter:`): `A-Z a-z 0-9 _ -`, not empty; else an error
/// at `path`.
pub fn check_counter_name(name: &str, path: &str) -> Result<(), super::ConfigError> {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(super::ConfigError::field(
            path,
            format!("{name:?}: use A-Z a-z 0-9 _ -"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use crate::config::parse_str;

    const YAML: &str = r#"
llm:
  prices: { "gpt-4o*": { input: 2.5, output: 10, cachedInput: 1.25 } }
  redis: { url: "redis://127.0.0.1:6379" }
binds:
- port: 1
  listeners:
  - routes:
    - policies:
        tokenAccounting:
          metadata:
          - { key: llm_total_token, type: TotalToken }
          - { key: llm_cost, type: CEL, cel: "input_tokens + output_tokens * 2u" }
        tokenLimit:
          store: redis
          limits:
          - { name: per-key, key: 'request.headers["x-api-key"]', tokensPerMinute: 1000 }
          - { name: daily, tokenBudget: { amount: 100000, period: day }, count: output }
          - { name: spend, costBudget: { amount: 5.0, period: month } }
"#;

    #[test]
    fn llm_policies_parse() {
        let loaded = parse_str(YAML).unwrap();
        let p = &loaded.config.binds[0].listeners[0].routes[0].policies;
        let limit = p.token_limit.as_ref().unwrap();
        assert_eq!(limit.limits.len(), 3);
        assert!(matches!(
            limit.limits[0].amount,
            super::LimitAmount::TokensPerMinute(1000)
        ));
        assert_eq!(limit.limits[1].count, super::TokenCount::Output);
        assert_eq!(
            p.token_accounting.as_ref().unwrap().metadata[1].kind,
            super::CostType::Cel
        );
        assert_eq!(loaded.config.llm.prices["gpt-4o*"].cached_input, Some(1.25));
    }

    #[test]
    fn a_limit_without_an_amount_names_its_path() {
        let err = parse_str(
            "binds:\n- port: 1\n  listeners:\n  - routes:\n    - policies:\n        tokenLimit:\n          limits:\n          - { name: x, tokensPerDay: 5 }\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("binds[0].listeners[0].routes[0].policies.tokenLimit.limits[0]"),
            "{err}"
        );
    }
}
