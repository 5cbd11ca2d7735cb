//! Tool-call limits (`mcpToolLimit`): before a `tools/call` goes to its target, each
//! rule that applies reserves the call's cost on its key's counter (a bucket of calls,
//! a budget of calls, or a budget of tokens that `tokenLimit` rules may share through a
//! named `counter`). The first rule over its limit refuses the call; the reservations
//! already made are refunded. A call the target did not take (it failed, or refused the
//! session) is refunded too.
//!
//! A refusal is a JSON-RPC error on a 200 (`-32000`, with `data.retryAfterSeconds`),
//! which the SDKs raise to the caller while the session goes on.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use crate::config::{
    check_counter_name, Config, ConfigError, LimitStoreKind, McpToolLimitPolicy, ToolLimitAmount,
    ToolLimitRule,
};
use crate::expr::{Expression, Vars};
use crate::limits::{hash_key, shared_counter_key, Admission, Limit, Period, Reservation};
use crate::metrics::{LimitLabels, McpMetrics};
use crate::services::{LimiterSpec, Services};

/// One call, as the rules see it.
#[derive(Clone, Copy, Debug)]
pub struct ToolCall<'a> {
    /// The name the client called (`weather__forecast`).
    pub name: &'a str,
    pub target: &'a str,
    /// The tool's name at its target.
    pub tool: &'a str,
    pub jwt: Option<&'a Value>,
}

/// Why a call is not let through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A rule's limit is reached.
    Limited {
        message: String,
        retry_after: Option<Duration>,
    },
    /// The shared store failed and is configured to fail closed.
    Unavailable(String),
}

/// The compiled `mcpToolLimit` of a route.
pub struct ToolLimits {
    route: String,
    rules: Vec<Rule>,
    spec: LimiterSpec,
    services: Arc<Services>,
    metrics: McpMetrics,
}

struct Rule {
    name: String,
    key: Option<Expression>,
    tools: Vec<String>,
    limit: Limit,
    /// Units one call takes: 1 call, or `tokensPerCall` tokens.
    cost: u64,
    /// `calls per minute`, `tokens per day`, … for messages.
    unit: String,
    counter: Option<(String, Period)>,
}

impl std::fmt::Debug for ToolLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.rules.iter().map(|r| r.name.as_str()).collect();
        f.debug_struct("ToolLimits")
            .field("rules", &names)
            .finish_non_exhaustive()
    }
}

impl ToolLimits {
    /// Compiles the policy at `path` (`….policies.mcpToolLimit`) for `route`.
    pub fn compile(
        policy: &McpToolLimitPolicy,
        path: &str,
        route: &str,
        config: &Config,
        services: &Arc<Services>,
    ) -> Result<Self, ConfigError> {
        let spec = match policy.store {
            LimitStoreKind::Local => LimiterSpec::Local,
            LimitStoreKind::Redis => {
                let redis = config.llm.redis.as_ref().ok_or_else(|| {
                    ConfigError::field(
                        format!("{path}.store"),
                        "store: redis needs llm.redis (url) at the top level",
                    )
                })?;
                LimiterSpec::redis(&redis.url, redis.failure_mode)
            }
        };
        if policy.limits.is_empty() {
            return Err(ConfigError::field(
                format!("{path}.limits"),
                "no limits given",
            ));
        }
        let rules = policy
            .limits
            .iter()
            .enumerate()
            .map(|(i, r)| Rule::new(r, &config.limits.cel, &format!("{path}.limits[{i}]")))
            .collect::<Result<_, _>>()?;
        Ok(ToolLimits {
            route: route.to_string(),
            rules,
            spec,
            services: services.clone(),
            metrics: services.metrics.mcp.clone(),
        })
    }

    /// Reserves `call` on every rule that applies; the reservations, to be marked
    /// delivered when the target takes the call (dropped unmarked, they refund).
    pub async fn admit(&self, call: ToolCall<'_>) -> Result<Vec<Reservation>, Refusal> {
        let limiter = self
            .services
            .limiter(&self.spec)
            .map_err(|e| Refusal::Unavailable(format!("tool call limit store: {e}")))?;
        let now = SystemTime::now();
        let mut held = Vec::new();
        for rule in &self.rules {
            let Some(key) = rule.key(&self.route, call) else {
                continue;
            };
            let admission = limiter
                .reserve(key, &rule.limit, rule.cost, now)
                .await
                .map_err(|e| Refusal::Unavailable(format!("tool call limit {}: {e}", rule.name)))?;
            let decision = if matches!(admission, Admission::Allowed(_)) {
                "allowed"
            } else {
                "denied"
            };
            self.metrics
                .limit_decisions
                .get_or_create(&LimitLabels {
                    route: self.route.clone(),
                    limit: rule.name.clone(),
                    decision,
                })
                .inc();
            match admission {
                Admission::Allowed(r) => held.push(r),
                Admission::Denied(d) => {
                    let wait = match d.retry_after {
                        Some(after) => format!("; retry in {}s", after.as_secs().max(1)),
                        None => "; a call costs more than the whole limit".to_string(),
                    };
                    let message = format!(
                        "tool call limit {:?} reached ({} {}, {} left){wait}",
                        rule.name, d.limit, rule.unit, d.remaining
                    );
                    return Err(Refusal::Limited {
                        message,
                        retry_after: d.retry_after,
                    });
                }
            }
        }
        Ok(held)
    }

    #[cfg(test)]
    pub fn metrics_for_tests(&self) -> &McpMetrics {
        &self.metrics
    }

    /// Gives `held` back now: the target did not take the call.
    pub async fn refund(held: Vec<Reservation>) {
        let now = SystemTime::now();
        for r in held {
            if let Err(e) = r.settle(0, now).await {
                tracing::warn!(error = %e, "tool call limit refund failed");
            }
        }
    }

    /// Marks `held` as used by a call the target took (they settle when dropped).
    pub fn delivered(held: &mut [Reservation]) {
        for r in held {
            let reserved = r.reserved();
            r.set_delivered(reserved);
        }
    }
}

/// The JSON-RPC error data of a refusal.
pub fn refusal_data(retry_after: Option<Duration>) -> Value {
    match retry_after {
        Some(d) => json!({ "retryAfterSeconds": d.as_secs_f64().ceil() as u64 }),
        None => json!({}),
    }
}

impl Rule {
    fn new(
        r: &ToolLimitRule,
        cel: &crate::config::CelLimits,
        path: &str,
    ) -> Result<Rule, ConfigError> {
        if r.name.is_empty() {
            return Err(ConfigError::field(format!("{path}.name"), "empty name"));
        }
        let invalid = |e: crate::limits::LimitError| ConfigError::field(path, e.to_string());
        let minute = Duration::from_secs(60);
        let (limit, unit, tokens) = match &r.amount {
            ToolLimitAmount::CallsPerMinute(n) => {
                (Limit::per(*n, minute), "calls per minute".into(), false)
            }
            ToolLimitAmount::CallsPerHour(n) => {
                (Limit::per(*n, minute * 60), "calls per hour".into(), false)
            }
            ToolLimitAmount::CallBudget(b) => (
                Limit::budget(b.amount, period(b.period)),
                format!("calls per {}", period_name(b.period)),
                false,
            ),
            ToolLimitAmount::TokenBudget(b) => (
                Limit::budget(b.amount, period(b.period)),
                format!("tokens per {}", period_name(b.period)),
                true,
            ),
        };
        let limit = limit.map_err(invalid)?;
        if !tokens && (r.tokens_per_call.is_some() || r.counter.is_some()) {
            let field = if r.counter.is_some() {
                "counter"
            } else {
                "tokensPerCall"
            };
            return Err(ConfigError::field(
                format!("{path}.{field}"),
                "needs a tokenBudget",
            ));
        }
        let cost = r.tokens_per_call.unwrap_or(1);
        if cost == 0 {
            return Err(ConfigError::field(
                format!("{path}.tokensPerCall"),
                "must be at least 1",
            ));
        }
        let counter = match (&r.counter, &r.amount) {
            (Some(name), ToolLimitAmount::TokenBudget(b)) => {
                check_counter_name(name, &format!("{path}.counter"))?;
                Some((name.clone(), period(b.period)))
            }
            _ => None,
        };
        let key = match &r.key {
            Some(src) => Some(Expression::compile(src, &format!("{path}.key"), cel)?),
            None => None,
        };
        Ok(Rule {
            name: r.name.clone(),
            key,
            tools: r.tools.clone(),
            limit,
            cost,
            unit,
            counter,
        })
    }

    /// The counter key for `call`, or `None` when the rule does not apply to it.
    fn key(&self, route: &str, call: ToolCall<'_>) -> Option<String> {
        if !self.tools.is_empty() && !self.tools.iter().any(|t| t == call.name) {
            return None;
        }
        let subject = match &self.key {
            None => String::new(),
            Some(expr) => {
                let empty = Value::Object(serde_json::Map::new());
                let vars = Vars::default()
                    .with("jwt", call.jwt.unwrap_or(&empty))
                    .with(
                        "mcp",
                        json!({"target": call.target, "tool": {"name": call.tool}}),
                    )
                    .with("route", route);
                match expr.eval_string(&vars) {
                    Ok(Some(v)) => v,
                    Ok(None) => return None,
                    Err(e) => {
                        tracing::debug!(rule = %self.name, error = %e, "tool limit key did not evaluate; rule skipped");
                        return None;
                    }
                }
            }
        };
        if let Some((counter, period)) = &self.counter {
            return Some(shared_counter_key(counter, *period, &subject));
        }
        Some(format!(
            "tollgate:mcp:{route}:{}:{}",
            self.name,
            hash_key(&subject)
        ))
    }
}

fn period(p: crate::config::Period) -> Period {
    p.window()
}

fn period_name(p: crate::config::Period) -> &'static str {
    p.name()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(yaml: &str) -> Result<ToolLimits, ConfigError> {
        let policy: McpToolLimitPolicy = serde_yaml::from_str(yaml).unwrap();
        let services = Services::new();
        ToolLimits::compile(&policy, "p", "tools", &Config::default(), &services)
    }

    fn error(yaml: &str) -> String {
        compile(yaml).unwrap_err().to_string()
    }

    #[test]
    fn a_shared_counter_is_the_one_token_limits_use() {
        let limits = compile(
            "limits:\n- {name: team, key: jwt.team, tokenBudget: {amount: 1000, period: day}, tokensPerCall: 50, counter: team-budget}\n",
        )
        .unwrap();
        let jwt = json!({"team": "red"});
        let call = ToolCall {
            name: "a__echo",
            target: "a",
            tool: "echo",
            jwt: Some(&jwt),
        };
        let rule = &limits.rules[0];
        assert_eq!(rule.cost, 50);
        assert_eq!(
            rule.key("tools", call),
            Some(shared_counter_key("team-budget", Period::Day, "red"))
        );
    }

    #[test]
    fn config_errors_name_their_field() {
        let cases = [
            ("limits: []\n", "p.limits: no limits given"),
            (
                "limits:\n- {name: a, callsPerMinute: 5, tokensPerCall: 3}\n",
                "p.limits[0].tokensPerCall: needs a tokenBudget",
            ),
            (
                "limits:\n- {name: a, callsPerMinute: 5, counter: x}\n",
                "p.limits[0].counter: needs a tokenBudget",
            ),
            (
                "limits:\n- {name: a, tokenBudget: {amount: 9, period: day}, counter: 'a b'}\n",
                "p.limits[0].counter: \"a b\": use A-Z a-z 0-9 _ -",
            ),
            (
                "limits:\n- {name: a, tokenBudget: {amount: 9, period: day}, tokensPerCall: 0}\n",
                "p.limits[0].tokensPerCall: must be at least 1",
            ),
            (
                "store: redis\nlimits:\n- {name: a, callsPerMinute: 5}\n",
                "p.store: store: redis needs llm.redis (url) at the top level",
            ),
            (
                "limits:\n- {name: a, callsPerMinute: 5, key: 'jwt.'}\n",
                "p.limits[0].key: invalid CEL expression",
            ),
        ];
        for (yaml, want) in cases {
            let got = error(yaml);
            assert!(got.starts_with(want), "{yaml}: {got}");
        }
    }
}
