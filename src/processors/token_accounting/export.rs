//! Exporting one exchange's usage: the GenAI metrics, the cost counter, Envoy dynamic
//! metadata in `io.envoy.ai_gateway` (Envoy AI Gateway's cost types, so its rate-limit
//! configs work unchanged), and `cx.llm` for the access log and `tokenLimit`.

use std::sync::Arc;
use std::time::Instant;

use crate::config::{ConfigError, CostType, TokenAccountingPolicy};
use crate::expr::{Expression, Vars};
use crate::llm::{Api, Usage};
use crate::metrics::{DurationLabels, GenAiLabels, Metrics, TokenLabels, UsageInvalidLabels};
use crate::pipeline::Ctx;
use crate::pricing::Prices;
use crate::services::Services;

use super::response::ResponseState;

/// Envoy AI Gateway's dynamic metadata namespace.
pub const NAMESPACE: &str = "io.envoy.ai_gateway";

struct Entry {
    key: String,
    kind: CostType,
    cel: Option<Expression>,
}

/// Exports usage for one route's policy.
pub struct Exporter {
    metrics: Arc<Metrics>,
    prices: Prices,
    entries: Vec<Entry>,
}

impl Exporter {
    pub fn new(
        policy: &TokenAccountingPolicy,
        services: &Arc<Services>,
        prices: &Prices,
        cel_limits: &crate::config::CelLimits,
        path: &str,
    ) -> Result<Self, ConfigError> {
        let mut entries = Vec::new();
        for (i, m) in policy.metadata.iter().enumerate() {
            let field = format!("{path}.metadata[{i}]");
            if m.key.is_empty() {
                return Err(ConfigError::field(format!("{field}.key"), "empty key"));
            }
            let cel = match (m.kind, &m.cel) {
                (CostType::Cel, Some(src)) => Some(Expression::compile(
                    src,
                    &format!("{field}.cel"),
                    cel_limits,
                )?),
                (CostType::Cel, None) => {
                    return Err(ConfigError::field(
                        format!("{field}.cel"),
                        "type CEL needs a cel expression",
                    ))
                }
                (_, Some(_)) => {
                    return Err(ConfigError::field(
                        format!("{field}.cel"),
                        "only type CEL takes an expression",
                    ))
                }
                (_, None) => None,
            };
            entries.push(Entry {
                key: m.key.clone(),
                kind: m.kind,
                cel,
            });
        }
        Ok(Exporter {
            metrics: services.metrics.clone(),
            prices: prices.clone(),
            entries,
        })
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Exports the exchange. `complete`: the response ended normally.
    pub fn export(
        &self,
        cx: &mut Ctx,
        api: Api,
        started: Instant,
        response: Option<&ResponseState>,
        complete: bool,
    ) {
        let route = cx.route.clone().unwrap_or_default();
        let status = cx.response_status;
        let provider = cx.provider_of(api);
        if cx.llm.is_none() {
            return; // the request was never parsed (answered before its body)
        }
        let reported = self.reported_usage(response, &route, &cx.request_id);
        let Some(facts) = cx.llm.as_mut() else {
            return;
        };
        let usage = reported.unwrap_or_else(|| {
            // No (believable) usage from the upstream: what was estimated and delivered.
            let output = response.map_or(0, |r| r.content_events);
            let input = facts.estimated_input_tokens();
            Usage {
                input_tokens: input,
                output_tokens: output,
                total_tokens: input.saturating_add(output),
                ..Usage::default()
            }
        });
        let request_model = facts.request.model.clone().unwrap_or_default();
        let response_model = response
            .and_then(|r| r.tracker.model().map(str::to_string))
            .unwrap_or_else(|| request_model.clone());
        let g = &self.metrics.gen_ai;
        let labels = GenAiLabels {
            gen_ai_operation_name: api.operation(),
            gen_ai_provider_name: provider.as_str(),
            gen_ai_request_model: g.model(&request_model),
            gen_ai_response_model: g.model(&response_model),
            route: route.clone(),
        };
        self.observe_tokens(&labels, &usage);
        let error_type = match (complete, status) {
            (true, Some(s)) if (200..300).contains(&s) => String::new(),
            (_, Some(s)) if !(200..300).contains(&s) => s.to_string(),
            _ => "incomplete".to_string(),
        };
        g.request_duration
            .get_or_create(&DurationLabels {
                common: labels.clone(),
                error_type,
            })
            .observe(started.elapsed().as_secs_f64());
        if let Some(ttft) =
            response.and_then(|r| self.observe_token_times(&labels, started, r, &usage))
        {
            facts.time_to_first_token = Some(ttft);
        }
        if let Some(cost) = self.prices.cost(&response_model, &usage) {
            g.cost_usd.get_or_create(&labels).inc_by(cost);
            facts.cost_usd = Some(cost);
        }
        facts.usage = Some(usage);
        facts.usage_reported = reported.is_some();
        facts.response_model = Some(response_model.clone());
        facts.completion = response.and_then(|r| r.completion.as_ref().map(|c| c.texts()));
        let values: Vec<(String, u64)> = self
            .entries
            .iter()
            .filter_map(|e| {
                Some((
                    e.key.clone(),
                    self.value(e, &usage, &response_model, &route, cx)?,
                ))
            })
            .collect();
        for (key, value) in values {
            cx.set_metadata(NAMESPACE, &key, serde_json::json!(value));
        }
    }

    /// The usage the upstream reported, when it passed validation (a failure is logged
    /// and counted).
    fn reported_usage(
        &self,
        response: Option<&ResponseState>,
        route: &str,
        request_id: &str,
    ) -> Option<Usage> {
        if let Some(why) = response.and_then(|r| r.tracker.usage_invalid()) {
            tracing::warn!(
                request_id,
                reason = why.as_str(),
                "upstream usage failed validation; usage estimated"
            );
            self.metrics
                .buffers
                .usage_invalid
                .get_or_create(&UsageInvalidLabels {
                    route: route.to_string(),
                    reason: why.as_str(),
                })
                .inc();
        }
        response.and_then(|r| r.tracker.usage())
    }

    /// Token usage by type: input and output always, the others when there were any.
    fn observe_tokens(&self, labels: &GenAiLabels, usage: &Usage) {
        for (kind, n, always) in [
            ("input", usage.input_tokens, true),
            ("output", usage.output_tokens, true),
            ("cached_input", usage.cached_input_tokens, false),
            (
                "cache_creation_input",
                usage.cache_creation_input_tokens,
                false,
            ),
            ("reasoning", usage.reasoning_tokens, false),
        ] {
            if always || n > 0 {
                self.metrics
                    .gen_ai
                    .token_usage
                    .get_or_create(&TokenLabels {
                        common: labels.clone(),
                        gen_ai_token_type: kind,
                    })
                    .observe(n as f64);
            }
        }
    }

    /// The time to first token and per output token, when tokens came; the first.
    fn observe_token_times(
        &self,
        labels: &GenAiLabels,
        started: Instant,
        r: &ResponseState,
        usage: &Usage,
    ) -> Option<std::time::Duration> {
        let g = &self.metrics.gen_ai;
        let first = r.first_token?;
        let ttft = first.duration_since(started);
        g.time_to_first_token
            .get_or_create(labels)
            .observe(ttft.as_secs_f64());
        if let (Some(last), true) = (r.last_token, usage.output_tokens > 1) {
            let per_token =
                last.duration_since(first).as_secs_f64() / (usage.output_tokens - 1) as f64;
            g.time_per_output_token
                .get_or_create(labels)
                .observe(per_token);
        }
        Some(ttft)
    }

    fn value(&self, e: &Entry, u: &Usage, model: &str, route: &str, cx: &Ctx) -> Option<u64> {
        Some(match e.kind {
            CostType::InputToken => u.input_tokens,
            CostType::CachedInputToken => u.cached_input_tokens,
            CostType::CacheCreationInputToken => u.cache_creation_input_tokens,
            CostType::OutputToken => u.output_tokens,
            CostType::ReasoningToken => u.reasoning_tokens,
            CostType::TotalToken => u.total_tokens,
            CostType::Cel => {
                let vars = Vars::default()
                    .with("model", model)
                    .with("backend", cx.request.authority.as_str())
                    .with("route_name", route)
                    .with("input_tokens", u.input_tokens)
                    .with("cached_input_tokens", u.cached_input_tokens)
                    .with("cache_creation_input_tokens", u.cache_creation_input_tokens)
                    .with("output_tokens", u.output_tokens)
                    .with("reasoning_tokens", u.reasoning_tokens)
                    .with("total_tokens", u.total_tokens);
                match e.cel.as_ref()?.eval_number(&vars) {
                    Ok(n) if n >= 0.0 => n.round() as u64,
                    Ok(_) => 0,
                    Err(err) => {
                        tracing::warn!(key = %e.key, error = %err, "metadata expression failed");
                        return None;
                    }
                }
            }
        })
    }
}

/// The usage as `x-tollgate-*` response headers, for a response whose body was held
/// back (see `cx.late_response_headers`).
pub fn usage_headers(cx: &mut Ctx) {
    let Some(facts) = cx.llm.as_ref() else { return };
    let Some(u) = facts.usage else { return };
    let mut add = |name: &'static str, value: String| {
        if let Ok(v) = http::HeaderValue::from_str(&value) {
            cx.late_response_headers
                .push((http::HeaderName::from_static(name), v));
        }
    };
    let cost = facts.cost_usd;
    add("x-tollgate-input-tokens", u.input_tokens.to_string());
    add("x-tollgate-output-tokens", u.output_tokens.to_string());
    add("x-tollgate-total-tokens", u.total_tokens.to_string());
    add(
        "x-tollgate-cached-input-tokens",
        u.cached_input_tokens.to_string(),
    );
    add(
        "x-tollgate-reasoning-tokens",
        u.reasoning_tokens.to_string(),
    );
    if let Some(c) = cost {
        add("x-tollgate-cost-usd", format!("{c:.6}"));
    }
}
