//! The 429 a denied request gets: the error body in the API's own format (OpenAI or
//! Anthropic), `retry-after`, and the `x-ratelimit-*-tokens` headers as OpenAI sends them.

use std::time::Duration;

use http::{HeaderName, HeaderValue, StatusCode};

use super::rule::Rule;
use crate::limits::Decision;
use crate::llm::Api;
use crate::pipeline::LocalReply;

/// The reply for a request `rule` denied.
pub fn too_many(api: Api, rule: &Rule, decision: &Decision, requested: u64) -> LocalReply {
    let (limit, remaining, requested) = if rule.is_money() {
        (
            format!("${:.6}", decision.limit as f64 / 1e6),
            format!("${:.6}", decision.remaining as f64 / 1e6),
            format!("${:.6}", requested as f64 / 1e6),
        )
    } else {
        (
            decision.limit.to_string(),
            decision.remaining.to_string(),
            requested.to_string(),
        )
    };
    let wait = match decision.retry_after {
        Some(d) => format!(" Please try again in {}.", openai_duration(d)),
        None => " The request is larger than the limit and cannot pass.".to_string(),
    };
    let message = format!(
        "Rate limit reached for {} (limit {}): Limit {limit}, Remaining {remaining}, Requested {requested}.{wait}",
        rule.unit, rule.name
    );
    let status = StatusCode::TOO_MANY_REQUESTS;
    let mut reply = LocalReply::error(status, "rate_limit_exceeded", &message);
    reply.body = api.error_body(429, "rate_limit_exceeded", &message).into();
    reply.details = format!("token_limit_{}", rule.name);
    let h = &mut reply.headers;
    if let Some(after) = decision.retry_after {
        // Whole seconds, rounded up, as HTTP wants.
        let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
        h.insert(http::header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    }
    if !rule.is_money() {
        let mut set = |name: &'static str, value: String| {
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.insert(HeaderName::from_static(name), v);
            }
        };
        set("x-ratelimit-limit-tokens", decision.limit.to_string());
        set(
            "x-ratelimit-remaining-tokens",
            decision.remaining.to_string(),
        );
        set(
            "x-ratelimit-reset-tokens",
            openai_duration(decision.reset_after),
        );
    }
    reply
}

/// A duration the way OpenAI writes it in `x-ratelimit-reset-*`: `6m0s`, `1.5s`, `120ms`.
pub fn openai_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    // Round to tenths of a second first, then split: 59.96 s is "1m0s", not "60.0s".
    let tenths = (d.as_millis() + 50) / 100;
    let (h, rest) = (tenths / 36_000, tenths % 36_000);
    let (m, t) = (rest / 600, rest % 600);
    let s = if t % 10 == 0 {
        format!("{}s", t / 10)
    } else {
        format!("{}.{}s", t / 10, t % 10)
    };
    match (h, m) {
        (0, 0) => s,
        (0, m) => format!("{m}m{s}"),
        (h, m) => format!("{h}h{m}m{s}"),
    }
}

#[cfg(test)]
mod tests {
    use super::openai_duration;
    use std::time::Duration;

    #[test]
    fn durations_as_openai_writes_them() {
        assert_eq!(openai_duration(Duration::from_millis(120)), "120ms");
        assert_eq!(openai_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(openai_duration(Duration::from_secs(360)), "6m0s");
        assert_eq!(openai_duration(Duration::from_secs(3661)), "1h1m1s");
        assert_eq!(openai_duration(Duration::from_millis(59_960)), "1m0s");
        assert_eq!(openai_duration(Duration::from_millis(119_970)), "2m0s");
        assert_eq!(openai_duration(Duration::from_millis(3_599_990)), "1h0m0s");
    }
}
