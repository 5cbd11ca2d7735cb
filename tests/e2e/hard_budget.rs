//! Budgets enforced mid-stream (`tokenLimit` with `enforce: midStream`), with the
//! official SDKs, through the proxy and through Envoy (FULL_DUPLEX_STREAMED): a stream
//! that crosses its budget ends cleanly (`finish_reason: "length"`, Anthropic's
//! `max_tokens`) and parses; the output tokens it reports are exactly those of the text
//! delivered; the budget is charged exactly that (the next request's 429 says what is
//! left), and the next request is refused.

use serde_json::{json, Value};

use crate::support::envoy::{Envoy, ListenerSpec, Mode};
use crate::support::llm;
use crate::support::scenario::Ports;
use crate::support::tollgate::Tollgate;
use crate::support::upstream::MockUpstream;

const BUDGET: u64 = 150;

fn config(ports: Ports, upstream: u16) -> String {
    let limit = format!(
        "tokenLimit:\n          limits:\n          - {{ name: daily, key: 'request.headers[\"x-tenant\"]', tokenBudget: {{ amount: {BUDGET}, period: day }}, enforce: midStream }}"
    );
    format!(
        r#"extProc:
  address: "127.0.0.1:{ext_proc}"
logging: {{ format: json }}
binds:
- port: {proxy}
  listeners:
  - routes:
    - name: chat
      matches: [ {{ path: {{ pathPrefix: /v1/chat/completions }} }} ]
      policies:
        tokenAccounting: {{}}
        {limit}
      backends: [ {{ host: "127.0.0.1:{upstream}" }} ]
    - name: messages
      matches: [ {{ path: {{ pathPrefix: /v1/messages }} }} ]
      policies:
        tokenAccounting: {{}}
        {limit}
      backends: [ {{ host: "127.0.0.1:{upstream}" }} ]
"#,
        ext_proc = ports.ext_proc,
        proxy = ports.proxy,
    )
}

/// Output tokens of the first `events` mock events, counted as tollgate counts them.
fn tokens_of_events(model: &str, events: usize) -> u64 {
    let encoding = tollgate::llm::Encoding::for_model(model);
    (0..events)
        .map(|i| encoding.count(&format!("token{i} ")).max(1))
        .sum()
}

fn headers(tenant: &str) -> Value {
    json!({"x-tenant": tenant, "x-mock-events": "200", "x-mock-interval-ms": "2", "x-mock-input-tokens": "20"})
}

async fn crossing_the_budget(envoy_mode: Option<Mode>, tag: &str) {
    let upstream = MockUpstream::start().await;
    let ports = Ports::free();
    let tollgate = Tollgate::start(&config(ports, upstream.port)).await;
    let envoy = match envoy_mode {
        Some(m) => Some(Envoy::start(&[ListenerSpec::new(ports.ext_proc, upstream.port, m)]).await),
        None => None,
    };
    let base = format!(
        "http://127.0.0.1:{}",
        envoy.as_ref().map_or(ports.proxy, |e| e.port(0))
    );
    let (chat_tenant, msg_tenant) = (format!("{tag}-chat"), format!("{tag}-msg"));
    let model = "gpt-4o-mini";
    let openai = llm::run_sdk(
        "openai_client.py",
        vec![
            json!({"base_url": format!("{base}/v1"), "model": model, "stream": true, "include_usage": true, "headers": headers(&chat_tenant)}),
            json!({"base_url": format!("{base}/v1"), "model": model, "headers": headers(&chat_tenant)}),
        ],
    )
    .await;
    let (cut, next) = (&openai[0], &openai[1]);
    assert!(
        cut.get("exception").is_none() && cut.get("error").is_none(),
        "{cut}"
    );
    assert_eq!(cut["finish_reason"], "length", "{cut}");
    let text = cut["text"].as_str().unwrap();
    let events = text.matches("token").count();
    assert!(
        events > 5 && events < 200,
        "cut mid-way: {events} events: {text}"
    );
    let delivered = tokens_of_events(model, events);
    let usage = &cut["usage"];
    assert_eq!(
        usage["completion_tokens"], delivered,
        "the output delivered: {usage}"
    );
    let prompt = usage["prompt_tokens"].as_u64().unwrap();
    assert!(
        prompt + delivered <= BUDGET,
        "never past the budget: {usage}"
    );
    // Charged exactly that: the refusal says what is left.
    let err = &next["error"];
    assert_eq!(err["status"], 429, "{next}");
    let remaining = err["headers"]["x-ratelimit-remaining-tokens"]
        .as_str()
        .unwrap();
    assert_eq!(
        remaining.parse::<u64>().unwrap(),
        BUDGET - prompt - delivered,
        "{next}"
    );
    let line = llm::access_line(&tollgate, model).await;
    assert_eq!(
        llm::number(&line["llm.output_tokens"]),
        Some(delivered as f64),
        "{line}"
    );

    let claude = "claude-sonnet-4-5";
    let anthropic = llm::run_sdk(
        "anthropic_client.py",
        vec![
            json!({"base_url": base, "model": claude, "stream": true, "headers": headers(&msg_tenant)}),
            json!({"base_url": base, "model": claude, "headers": headers(&msg_tenant)}),
        ],
    )
    .await;
    let (cut, next) = (&anthropic[0], &anthropic[1]);
    assert!(
        cut.get("exception").is_none() && cut.get("error").is_none(),
        "{cut}"
    );
    assert_eq!(cut["stop_reason"], "max_tokens", "{cut}");
    let events = cut["text"].as_str().unwrap().matches("token").count();
    assert!(events > 5 && events < 200, "cut mid-way: {events} events");
    let delivered = tokens_of_events(claude, events);
    assert_eq!(cut["usage"]["output_tokens"], delivered, "{cut}");
    assert_eq!(
        cut["usage"]["input_tokens"], 20,
        "the upstream's own input count"
    );
    assert!(20 + delivered <= BUDGET);
    let err = &next["error"];
    assert_eq!(err["status"], 429, "{next}");
    let remaining = err["headers"]["x-ratelimit-remaining-tokens"]
        .as_str()
        .unwrap();
    assert_eq!(
        remaining.parse::<u64>().unwrap(),
        BUDGET - 20 - delivered,
        "{next}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_crossing_its_budget_ends_cleanly_through_the_proxy() {
    crossing_the_budget(None, "proxy").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_crossing_its_budget_ends_cleanly_through_envoy() {
    crossing_the_budget(Some(Mode::FullDuplex), "duplex").await;
}
