//! `tokenLimit`: token buckets and period budgets (in tokens or in dollars) per key,
//! enforced before the spend.
//!
//! When it runs (after `tokenAccounting`, which parses the request and estimates it):
//! - request headers: keep what key expressions may read (`request.*`).
//! - request body: for each rule that applies, reserve the prompt estimate on the rule's
//!   key; the first rule over its limit answers 429 in the API's own error format, with
//!   `retry-after` and OpenAI's `x-ratelimit-*-tokens` headers (the reservations already
//!   made are refunded).
//! - request body, for a streamed completion: the limits enforced mid-stream
//!   (`enforce: midStream`) hand `streamBudget` (`cx.stream_budget`) their keys, so it
//!   can draw the output from them as it streams and end the stream when one runs out.
//! - on_complete: true up each reservation with the real usage (refunding an
//!   over-estimate); an exchange that ended early is charged for what was delivered.

mod reply;
mod rule;

use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;

use crate::config::{ConfigError, FailureMode, LimitStoreKind, TokenLimitPolicy};
use crate::expr::RequestVars;
use crate::limits::{Admission, Reservation, StreamBudget};
use crate::pipeline::{
    Body, Ctx, Flow, Headers, Outcome, Processor, ProcessorError, ProcessorFactory,
};
use crate::pricing::Prices;
use crate::services::{LimiterSpec, Services};

use rule::Rule;

/// Factory of the `tokenLimit` policy of one route.
pub struct TokenLimitFactory {
    shared: Arc<Shared>,
}

struct Shared {
    rules: Vec<Rule>,
    spec: LimiterSpec,
    /// What a store failure does: from `llm.redis.failureMode` (local never fails).
    store_failure: FailureMode,
    services: Arc<Services>,
}

impl TokenLimitFactory {
    pub fn new(
        policy: &TokenLimitPolicy,
        config: &crate::config::Config,
        services: &Arc<Services>,
        prices: &Prices,
        path: &str,
    ) -> Result<Self, ConfigError> {
        let (spec, store_failure) = match policy.store {
            LimitStoreKind::Local => (LimiterSpec::Local, FailureMode::FailOpen),
            LimitStoreKind::Redis => {
                let redis = config.llm.redis.as_ref().ok_or_else(|| {
                    ConfigError::field(
                        format!("{path}.store"),
                        "store: redis needs llm.redis (url) at the top level",
                    )
                })?;
                (
                    LimiterSpec::redis(&redis.url, redis.failure_mode),
                    redis.failure_mode,
                )
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
            .map(|(i, r)| {
                Rule::new(
                    r,
                    prices,
                    &config.limits.cel,
                    &format!("{path}.limits[{i}]"),
                )
            })
            .collect::<Result<_, _>>()?;
        Ok(TokenLimitFactory {
            shared: Arc::new(Shared {
                rules,
                spec,
                store_failure,
                services: services.clone(),
            }),
        })
    }
}

impl ProcessorFactory for TokenLimitFactory {
    fn name(&self) -> &'static str {
        "token_limit"
    }

    /// Only a store failure is an error here; its mode is the store's.
    fn failure_mode(&self) -> FailureMode {
        self.shared.store_failure
    }

    fn new_processor(&self, _cx: &Ctx) -> Option<Box<dyn Processor>> {
        Some(Box::new(TokenLimit {
            shared: self.shared.clone(),
            request: RequestVars::default(),
            held: Vec::new(),
        }))
    }
}

struct TokenLimit {
    shared: Arc<Shared>,
    request: RequestVars,
    /// Granted reservations, with the rule each belongs to.
    held: Vec<(usize, Reservation)>,
}

#[async_trait]
impl Processor for TokenLimit {
    async fn on_request_headers(
        &mut self,
        cx: &mut Ctx,
        headers: &mut Headers,
    ) -> Result<Flow, ProcessorError> {
        self.request = RequestVars::from_head(&cx.request, headers.map());
        Ok(Flow::Continue)
    }

    fn request_body_mode(&self) -> crate::pipeline::BodyMode {
        // The body itself is read by tokenAccounting; this phase is where the estimate
        // is known. Stream is the weakest mode that reaches it.
        crate::pipeline::BodyMode::Stream
    }

    async fn on_request_body(
        &mut self,
        cx: &mut Ctx,
        body: &mut Body,
    ) -> Result<Flow, ProcessorError> {
        if !body.end_of_stream() || !self.held.is_empty() {
            return Ok(Flow::Continue);
        }
        let Some(facts) = cx.llm.as_mut() else {
            return Ok(Flow::Continue); // not an LLM request tokenAccounting understood
        };
        let limiter = self
            .shared
            .services
            .limiter(&self.shared.spec)
            .map_err(|e| ProcessorError::unavailable(format!("token limit store: {e}")))?;
        let route = cx.route.clone().unwrap_or_default();
        let now = SystemTime::now();
        let mut stream_budget: Option<Box<StreamBudget>> = None;
        for (i, rule) in self.shared.rules.iter().enumerate() {
            let Some(key) = rule.key(&route, &self.request, cx.jwt.as_ref(), facts) else {
                continue;
            };
            let Some(estimate) = rule.estimate(facts) else {
                continue;
            };
            let admission = limiter
                .reserve(key.clone(), &rule.limit, estimate, now)
                .await
                .map_err(|e| {
                    ProcessorError::unavailable(format!("token limit {}: {e}", rule.name))
                })?;
            rule.count_decision(&self.shared.services.metrics, &route, &admission);
            match admission {
                Admission::Allowed(r) => {
                    self.held.push((i, r));
                    if rule.mid_stream && facts.request.stream {
                        match rule.output_unit_cost(facts) {
                            Some(cost) => {
                                let budget = stream_budget.get_or_insert_with(Default::default);
                                budget.add(limiter.clone(), key, rule.limit.clone(), cost);
                            }
                            None => {
                                tracing::warn!(limit = %rule.name, "no price for the model: not enforced mid-stream")
                            }
                        }
                    }
                }
                Admission::Denied(decision) => {
                    // Dropping the reservations made so far refunds them (nothing was
                    // recorded as delivered).
                    self.held.clear();
                    return Ok(Flow::Respond(reply::too_many(
                        facts.api, rule, &decision, estimate,
                    )));
                }
            }
        }
        // The prompt goes upstream now: an exchange abandoned from here on is charged it.
        for (_, r) in &mut self.held {
            let reserved = r.reserved();
            r.set_delivered(reserved);
        }
        cx.stream_budget = stream_budget;
        Ok(Flow::Continue)
    }

    fn on_complete(&mut self, cx: &mut Ctx, _outcome: &Outcome) {
        let usage = cx.llm.as_ref().and_then(|f| Some((f, f.usage?)));
        for (i, reservation) in self.held.drain(..) {
            let rule = &self.shared.rules[i];
            match usage {
                Some((facts, usage)) => {
                    let actual = rule.actual(facts, &usage);
                    reservation.settle_in_background(actual);
                }
                // No usage at all: the request never reached the upstream.
                None => reservation.settle_in_background(0),
            }
        }
    }
}

#[cfg(test)]
mod tests;
