//! Token limits driven through an `Exchange` with a local store: the estimate is charged
//! before the request goes upstream, the real usage trued up afterwards, and a request
//! over the limit answered 429 in the API's own format with OpenAI's rate-limit headers.

use std::sync::Arc;

use crate::pipeline::testing::{build_error, exchange_on, receive, send};
use crate::pipeline::{Adapter, Exchange, LocalReply, Outcome, Pipeline};
use crate::services::LimiterSpec;

fn pipeline(limits: &str) -> Arc<Pipeline> {
    let yaml = format!(
        r#"
llm:
  prices: {{ "gpt-4o*": {{ input: 2.5, output: 10 }} }}
binds:
- port: 1
  listeners:
  - routes:
    - name: llm
      policies:
        tokenAccounting: {{}}
        tokenLimit:
          limits:
{limits}
"#
    );
    crate::pipeline::testing::pipeline(&yaml)
}

/// A `POST path` exchange on the route `llm`.
fn exchange(p: &Arc<Pipeline>, path: &str) -> Exchange {
    exchange_on(p, "llm", Adapter::Proxy, "POST", path)
}

const CHAT: &[u8] = br#"{"model":"gpt-4o","messages":[{"role":"user","content":"What is the capital of France?"}]}"#;

/// Runs one exchange; `Ok(())` when it went upstream, `Err(reply)` when denied.
async fn run(
    p: &Arc<Pipeline>,
    path: &str,
    key: &str,
    body: &[u8],
    response: &str,
) -> Result<(), LocalReply> {
    let mut ex = exchange(p, path);
    if let Err(reply) = send(&mut ex, &[("x-api-key", key)], body).await {
        ex.finish(Outcome::LocalReply {
            status: reply.status.as_u16(),
        });
        return Err(reply);
    }
    let _ = receive(&mut ex, "application/json", &[response.as_bytes()]).await;
    ex.finish(Outcome::Completed { status: 200 });
    Ok(())
}

async fn settled(p: &Arc<Pipeline>) {
    p.services
        .limiter(&LimiterSpec::Local)
        .unwrap()
        .drain()
        .await;
}

fn openai_usage(prompt: u64, completion: u64) -> String {
    format!(
        r#"{{"id":"x","object":"chat.completion","model":"gpt-4o","choices":[{{"index":0,"message":{{"role":"assistant","content":"Paris"}},"finish_reason":"stop"}}],"usage":{{"prompt_tokens":{prompt},"completion_tokens":{completion},"total_tokens":{}}}}}"#,
        prompt + completion
    )
}

#[tokio::test]
async fn usage_is_trued_up_and_the_next_request_is_denied_with_openai_headers() {
    let p = pipeline(
        r#"          - { name: per-key, key: 'request.headers["x-api-key"]', tokensPerMinute: 1000 }"#,
    );
    // The estimate (a few tokens) fits; the real usage (900) is charged afterwards.
    run(
        &p,
        "/v1/chat/completions",
        "k1",
        CHAT,
        &openai_usage(600, 300),
    )
    .await
    .unwrap();
    settled(&p).await;
    run(
        &p,
        "/v1/chat/completions",
        "k1",
        CHAT,
        &openai_usage(50, 40),
    )
    .await
    .unwrap();
    settled(&p).await;
    // 990 of 1000 spent: the next estimate (> 10) does not fit.
    let reply = run(&p, "/v1/chat/completions", "k1", CHAT, "")
        .await
        .unwrap_err();
    assert_eq!(reply.status, 429);
    let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("per-key"),
        "{body}"
    );
    let h = &reply.headers;
    assert_eq!(h["x-ratelimit-limit-tokens"], "1000");
    let remaining: u64 = h["x-ratelimit-remaining-tokens"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(remaining <= 10, "{remaining}");
    let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // Another key has its own bucket.
    run(&p, "/v1/chat/completions", "k2", CHAT, &openai_usage(5, 5))
        .await
        .unwrap();
    let m = p.metrics.encode();
    assert!(m.contains(r#"tollgate_token_limit_decisions_total{route="llm",limit="per-key",decision="denied"} 1"#), "{m}");
}

#[tokio::test]
async fn an_over_estimate_is_refunded() {
    // A budget of 110: each request's estimate (23) passes, and its real usage (20) is what
    // stays charged, so five requests fit where charging estimates alone would not.
    let p = pipeline(r#"          - { name: day, tokenBudget: { amount: 110, period: day } }"#);
    let long_prompt = format!(
        r#"{{"model":"gpt-4o","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "word ".repeat(15)
    );
    for _ in 0..5 {
        run(
            &p,
            "/v1/chat/completions",
            "k",
            long_prompt.as_bytes(),
            &openai_usage(10, 10),
        )
        .await
        .unwrap();
        settled(&p).await;
    }
    let reply = run(&p, "/v1/chat/completions", "k", long_prompt.as_bytes(), "")
        .await
        .unwrap_err();
    assert_eq!(reply.status, 429);
    assert!(reply.headers.get("retry-after").is_some());
}

#[tokio::test]
async fn anthropic_routes_get_anthropic_shaped_429s() {
    let p = pipeline(r#"          - { name: tiny, tokensPerMinute: 1 }"#);
    let body = br#"{"model":"claude-x","max_tokens":10,"messages":[{"role":"user","content":"hello there, how are you"}]}"#;
    let reply = run(&p, "/v1/messages", "k", body, "").await.unwrap_err();
    assert_eq!(reply.status, 429);
    let v: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["error"]["type"], "rate_limit_error", "{v}");
    assert!(
        reply.headers.get("retry-after").is_none(),
        "larger than the limit: never passes"
    );
}

#[tokio::test]
async fn a_denial_refunds_the_rules_already_reserved() {
    let p = pipeline(
        r#"          - { name: generous, tokensPerMinute: 100000 }
          - { name: strict, model: gpt-4o, tokenBudget: { amount: 5, period: day } }"#,
    );
    let reply = run(&p, "/v1/chat/completions", "k", CHAT, "")
        .await
        .unwrap_err();
    assert!(String::from_utf8_lossy(&reply.body).contains("strict"));
    settled(&p).await;
    // The generous bucket was refunded: its remaining equals its capacity again.
    let limiter = p.services.limiter(&LimiterSpec::Local).unwrap();
    let rule_key = format!("tollgate:tl:llm:generous:{}", crate::limits::hash_key(""));
    let limit = crate::limits::Limit::per(100000, std::time::Duration::from_secs(60)).unwrap();
    let admission = limiter
        .reserve(rule_key, &limit, 1, std::time::SystemTime::now())
        .await
        .unwrap();
    match admission {
        crate::limits::Admission::Allowed(r) => {
            assert!(r.decision().remaining >= 99_998, "{:?}", r.decision())
        }
        crate::limits::Admission::Denied(d) => panic!("{d:?}"),
    }
}

#[tokio::test]
async fn money_budgets_count_dollars() {
    // $0.01 per day; gpt-4o output costs $10 per million: 1000 output tokens = $0.01.
    let p = pipeline(r#"          - { name: spend, costBudget: { amount: 0.01, period: day } }"#);
    run(
        &p,
        "/v1/chat/completions",
        "k",
        CHAT,
        &openai_usage(0, 1000),
    )
    .await
    .unwrap();
    settled(&p).await;
    let reply = run(&p, "/v1/chat/completions", "k", CHAT, "")
        .await
        .unwrap_err();
    assert_eq!(reply.status, 429);
    assert!(String::from_utf8_lossy(&reply.body).contains("USD per day"));
    let m = p.metrics.encode();
    assert!(m.contains("tollgate_llm_cost_usd_total"), "{m}");
}

#[test]
fn limits_need_accounting_and_redis_config() {
    let yaml = "binds:\n- port: 1\n  listeners:\n  - routes:\n    - policies:\n        tokenLimit:\n          limits: [ { name: a, tokensPerMinute: 5 } ]\n";
    let err = build_error(yaml);
    assert!(
        err.starts_with(
            "binds[0].listeners[0].routes[0].policies.tokenLimit: tokenLimit needs tokenAccounting"
        ),
        "{err}"
    );
    let yaml = "binds:\n- port: 1\n  listeners:\n  - routes:\n    - policies:\n        tokenAccounting: {}\n        tokenLimit:\n          store: redis\n          limits: [ { name: a, tokensPerMinute: 5 } ]\n";
    let err = build_error(yaml);
    assert!(err.starts_with("binds[0].listeners[0].routes[0].policies.tokenLimit.store: store: redis needs llm.redis"), "{err}");
    let yaml = "binds:\n- port: 1\n  listeners:\n  - routes:\n    - policies:\n        tokenAccounting: {}\n        tokenLimit:\n          limits: [ { name: a, key: 'request.headers[', tokensPerMinute: 5 } ]\n";
    let err = build_error(yaml);
    assert!(
        err.starts_with(
            "binds[0].listeners[0].routes[0].policies.tokenLimit.limits[0].key: invalid CEL"
        ),
        "{err}"
    );
    let yaml = "binds:\n- port: 1\n  listeners:\n  - routes:\n    - policies:\n        tokenAccounting: {}\n        tokenLimit:\n          limits: [ { name: a, tokensPerMinute: 5, count: input, enforce: midStream } ]\n";
    let err = build_error(yaml);
    assert!(
        err.starts_with(
            "binds[0].listeners[0].routes[0].policies.tokenLimit.limits[0].enforce: midStream limits a completion's output"
        ),
        "{err}"
    );
}

#[tokio::test]
async fn keys_can_be_jwt_claims_envoy_verified() {
    let p = pipeline(r#"          - { name: per-user, key: 'jwt.sub', tokensPerMinute: 1 }"#);
    // No verified claims: the rule does not apply.
    run(&p, "/v1/chat/completions", "k", CHAT, &openai_usage(5, 5))
        .await
        .unwrap();
    // With claims (as the ext_proc adapter sets them from jwt_authn metadata): it bites.
    let mut ex = exchange(&p, "/v1/chat/completions");
    ex.cx.jwt = Some(serde_json::json!({"sub": "alice"}));
    let Err(reply) = send(&mut ex, &[("x-api-key", "k")], CHAT).await else {
        panic!("a 1-token bucket cannot take the prompt")
    };
    assert_eq!(reply.status, 429);
}

#[tokio::test]
async fn a_shared_counter_budget_is_charged_under_its_shared_key() {
    let p = pipeline(
        r#"          - { name: team, key: 'request.headers["x-api-key"]', tokenBudget: { amount: 100000, period: day }, counter: team-budget }"#,
    );
    let _ = run(&p, "/v1/chat/completions", "k", CHAT, "").await;
    settled(&p).await;
    let limiter = p.services.limiter(&LimiterSpec::Local).unwrap();
    let key = crate::limits::shared_counter_key("team-budget", crate::limits::Period::Day, "k");
    let limit = crate::limits::Limit::budget(100000, crate::limits::Period::Day).unwrap();
    let admission = limiter
        .reserve(key, &limit, 1, std::time::SystemTime::now())
        .await
        .unwrap();
    let remaining = admission.decision().remaining;
    assert!(
        remaining < 99_999,
        "the LLM call was charged to the shared counter: {remaining}"
    );
}
