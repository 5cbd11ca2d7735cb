//! One compiled limit rule: which requests it applies to, the counter key, the limit,
//! and how a request is measured against it (tokens of a kind, or dollars).

use crate::config::{ConfigError, Enforcement, LimitAmount, LimitRule, TokenCount};
use crate::expr::{Expression, RequestVars, Vars};
use crate::limits::{hash_key, micro_dollars, shared_counter_key, Admission, Limit, Period};
use crate::llm::Usage;
use crate::metrics::{LimitLabels, Metrics};
use crate::pipeline::LlmFacts;
use crate::pricing::Prices;

/// A limit rule ready to apply.
pub struct Rule {
    pub name: String,
    key: Option<Expression>,
    model: Option<String>,
    pub limit: Limit,
    count: TokenCount,
    /// Money budget: amounts are micro-dollars from this price table.
    prices: Option<Prices>,
    /// Human form of the limit for messages (`tokens per minute`, `USD per day`).
    pub unit: &'static str,
    /// A shared counter (`counter:`) and its budget's period.
    counter: Option<(String, Period)>,
    /// Also enforced while a streamed completion runs (`enforce: midStream`).
    pub mid_stream: bool,
}

impl Rule {
    pub fn new(
        r: &LimitRule,
        prices: &Prices,
        cel: &crate::config::CelLimits,
        path: &str,
    ) -> Result<Rule, ConfigError> {
        if r.name.is_empty() {
            return Err(ConfigError::field(format!("{path}.name"), "empty name"));
        }
        let invalid = |e: crate::limits::LimitError| ConfigError::field(path, e.to_string());
        let (limit, unit, money) = match &r.amount {
            LimitAmount::TokensPerMinute(n) => (
                Limit::per(*n, std::time::Duration::from_secs(60)).map_err(invalid)?,
                "tokens per minute",
                false,
            ),
            LimitAmount::TokensPerHour(n) => (
                Limit::per(*n, std::time::Duration::from_secs(3600)).map_err(invalid)?,
                "tokens per hour",
                false,
            ),
            LimitAmount::TokenBudget(b) => (
                Limit::budget(b.amount, period(b.period)).map_err(invalid)?,
                period_unit(b.period, false),
                false,
            ),
            LimitAmount::CostBudget(b) => {
                if prices.is_empty() {
                    return Err(ConfigError::field(
                        format!("{path}.costBudget"),
                        "a cost budget needs llm.prices",
                    ));
                }
                (
                    Limit::budget(micro_dollars(b.amount), period(b.period)).map_err(invalid)?,
                    period_unit(b.period, true),
                    true,
                )
            }
        };
        let key = match &r.key {
            Some(src) => Some(Expression::compile(src, &format!("{path}.key"), cel)?),
            None => None,
        };
        let counter = match (&r.counter, &r.amount) {
            (None, _) => None,
            (Some(name), LimitAmount::TokenBudget(b)) => {
                crate::config::check_counter_name(name, &format!("{path}.counter"))?;
                Some((name.clone(), period(b.period)))
            }
            (Some(_), _) => {
                return Err(ConfigError::field(
                    format!("{path}.counter"),
                    "a shared counter needs a tokenBudget",
                ))
            }
        };
        let mid_stream = r.enforce == Enforcement::MidStream;
        if mid_stream && r.count == TokenCount::Input && !money {
            return Err(ConfigError::field(
                format!("{path}.enforce"),
                "midStream limits a completion's output: it needs `count: output` or `total`",
            ));
        }
        Ok(Rule {
            mid_stream,
            counter,
            name: r.name.clone(),
            key,
            model: r.model.clone(),
            limit,
            count: r.count,
            prices: money.then(|| prices.clone()),
            unit,
        })
    }

    /// The counter key for this request, or `None` when the rule does not apply.
    pub fn key(
        &self,
        route: &str,
        request: &RequestVars,
        jwt: Option<&serde_json::Value>,
        facts: &LlmFacts,
    ) -> Option<String> {
        let model = facts.request.model.as_deref().unwrap_or("");
        if self.model.as_deref().is_some_and(|m| m != model) {
            return None;
        }
        let subject = match &self.key {
            None => String::new(),
            Some(expr) => {
                let vars = Vars::default()
                    .with("request", request)
                    .with("llm", serde_json::json!({ "model": model }))
                    .with("route", route)
                    .with("jwt", jwt.cloned().unwrap_or(serde_json::Value::Null));
                match expr.eval_string(&vars) {
                    Ok(Some(v)) => v,
                    Ok(None) => return None,
                    Err(e) => {
                        tracing::debug!(rule = %self.name, error = %e, "limit key did not evaluate; rule skipped");
                        return None;
                    }
                }
            }
        };
        if let Some((counter, period)) = &self.counter {
            return Some(shared_counter_key(counter, *period, &subject));
        }
        // Keys are hashed: API keys and user ids never sit in Redis in the clear.
        Some(format!(
            "tollgate:tl:{route}:{}:{}",
            self.name,
            hash_key(&subject)
        ))
    }

    /// What to pre-charge before the response (at least 1, so an exhausted limit denies).
    pub fn estimate(&self, facts: &mut LlmFacts) -> Option<u64> {
        let input = facts.estimated_input_tokens();
        let amount = match (&self.prices, self.count) {
            (Some(prices), _) => {
                let model = facts.request.model.as_deref().unwrap_or("");
                let usage = Usage {
                    input_tokens: input,
                    total_tokens: input,
                    ..Usage::default()
                };
                micro_dollars(prices.cost(model, &usage)?)
            }
            (None, TokenCount::Output) => 0,
            (None, _) => input,
        };
        Some(amount.max(1))
    }

    /// The true amount once usage is known.
    pub fn actual(&self, facts: &LlmFacts, usage: &Usage) -> u64 {
        match (&self.prices, self.count) {
            (Some(prices), _) => {
                let model = facts
                    .response_model
                    .as_deref()
                    .or(facts.request.model.as_deref())
                    .unwrap_or("");
                prices.cost(model, usage).map_or(0, micro_dollars)
            }
            (None, TokenCount::Total) => usage
                .total_tokens
                .max(usage.input_tokens.saturating_add(usage.output_tokens)),
            (None, TokenCount::Input) => usage.input_tokens,
            (None, TokenCount::Output) => usage.output_tokens,
        }
    }

    /// Units of this limit one output token of the request's model costs (1 for
    /// token limits; micro-dollars, rounded up, for money); `None` when the model has
    /// no price.
    pub fn output_unit_cost(&self, facts: &LlmFacts) -> Option<u64> {
        let Some(prices) = &self.prices else {
            return Some(1);
        };
        let model = facts.request.model.as_deref().unwrap_or("");
        let thousand = Usage {
            output_tokens: 1000,
            total_tokens: 1000,
            ..Usage::default()
        };
        Some(
            micro_dollars(prices.cost(model, &thousand)?)
                .div_ceil(1000)
                .max(1),
        )
    }

    pub fn is_money(&self) -> bool {
        self.prices.is_some()
    }

    pub fn count_decision(&self, metrics: &Metrics, route: &str, admission: &Admission) {
        let decision = match admission {
            Admission::Allowed(_) => "allowed",
            Admission::Denied(_) => "denied",
        };
        metrics
            .token_limit_decisions
            .get_or_create(&LimitLabels {
                route: route.to_string(),
                limit: self.name.clone(),
                decision,
            })
            .inc();
    }
}

fn period(p: crate::config::Period) -> Period {
    p.window()
}

fn period_unit(p: crate::config::Period, money: bool) -> &'static str {
    use crate::config::Period::*;
    match (p, money) {
        (Minute, false) => "tokens per minute",
        (Hour, false) => "tokens per hour",
        (Day, false) => "tokens per day",
        (Month, false) => "tokens per month",
        (Minute, true) => "USD per minute",
        (Hour, true) => "USD per hour",
        (Day, true) => "USD per day",
        (Month, true) => "USD per month",
    }
}
