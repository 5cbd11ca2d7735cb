//! Token limits end to end: real tollgate processes, a real Envoy, a real `redis-server`
//! and the mock upstream (whose chat completion always reports prompt 12, completion 3,
//! total 15 tokens).
//!
//! - a burst over a small `tokensPerMinute` limit gets 429 — OpenAI-shaped on chat
//!   routes, Anthropic-shaped on `/v1/messages`, with `retry-after` and OpenAI's
//!   `x-ratelimit-*-tokens` headers — through the standalone proxy and through Envoy,
//!   the denial read by the official `openai` SDK as its RateLimitError;
//! - two tollgates sharing one Redis enforce one limit;
//! - Redis killed mid-test: `failOpen` keeps serving and replays the charges it could
//!   not write once Redis is back; `failClosed` answers 503 until then;
//! - `tollgate validate` on `store: redis` without `llm.redis`, and the example.
//!
//! Every request sends the same prompt, whose estimate (5 text tokens, 4 for the one
//! message, 3 priming the reply: 12) equals the mock's `prompt_tokens`. So a limit that
//! counts `input` tokens is exact at reservation time (the true-up has nothing to do),
//! and a limit that counts `total` tokens reserves 12 and trues up to 15 in the
//! background — which the Redis tests watch land in Redis.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::client::{self, Reply, Req};
use crate::support::envoy::{Envoy, ListenerSpec, Mode};
use crate::support::redis::{RedisServer, MISSING};
use crate::support::tollgate::{self, Tollgate};
use crate::support::upstream::MockUpstream;
use crate::support::{eventually, free_port, metric, repo_root};

/// 5 tokens of text in o200k_base (gpt-4o*) and cl100k_base (everything else).
const PROMPT: &str = "one two three four five";
/// The estimate of a chat request with `PROMPT` as its one user message.
const ESTIMATE: u64 = 12;
/// What the mock upstream reports for every chat completion.
const TOTAL: f64 = 15.0;

// --- requests and helpers -------------------------------------------------------------

fn chat(key: &str, id: &str) -> Req {
    let body = serde_json::json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": PROMPT}],
    });
    Req::post("/v1/chat/completions", body.to_string())
        .header("x-api-key", key)
        .header("x-test-id", id)
}

fn anthropic(key: &str, id: &str) -> Req {
    let body = serde_json::json!({
        "model": "claude-3-5-haiku-latest",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": PROMPT}],
    });
    Req::post("/v1/messages", body.to_string())
        .header("x-api-key", key)
        .header("anthropic-version", "2023-06-01")
        .header("x-test-id", id)
}

/// A tollgate config: one route `llm` (everything under `/v1`) to the mock upstream,
/// with `tokenAccounting` and a `tokenLimit` of one rule `per-key` keyed by `x-api-key`.
/// `top` is prepended (`llm:` section, `extProc:`), `store` is `local` or `redis`,
/// `amount` the rule's amount and count (`tokensPerMinute: 36, count: input`).
fn config(top: &str, proxy: u16, upstream: u16, store: &str, amount: &str) -> String {
    format!(
        r#"{top}
logging: {{ format: json }}
upstream: {{ connectTimeout: 1s, requestTimeout: 10s }}
binds:
- port: {proxy}
  listeners:
  - name: e2e
    routes:
    - name: llm
      matches:
      - path: {{ pathPrefix: /v1 }}
      policies:
        tokenAccounting: {{}}
        tokenLimit:
          store: {store}
          limits:
          - {{ name: per-key, key: 'request.headers["x-api-key"]', {amount} }}
      backends: [ {{ host: "127.0.0.1:{upstream}" }} ]
"#
    )
}

fn redis_section(redis: &RedisServer, failure_mode: &str) -> String {
    format!(
        "llm:\n  redis: {{ url: \"{}\", failureMode: {failure_mode} }}",
        redis.url()
    )
}

/// How many requests with `x-test-id: id` reached the upstream.
fn reached(upstream: &MockUpstream, id: &str) -> usize {
    upstream
        .requests()
        .iter()
        .filter(|r| r.header("x-test-id").as_deref() == Some(id))
        .count()
}

async fn ok(port: u16, req: Req) {
    let id = req.headers.iter().find(|(n, _)| n == "x-test-id").cloned();
    let reply = client::must(port, req).await;
    assert_eq!(reply.status, 200, "{id:?}: {}", reply.text());
    assert_eq!(
        reply.json()["usage"]["total_tokens"],
        15,
        "{}",
        reply.text()
    );
}

/// `x-ratelimit-reset-tokens` as OpenAI writes it (`1m0s`, `59.4s`, `120ms`).
fn openai_duration(text: &str) -> Duration {
    if let Some(ms) = text.strip_suffix("ms") {
        return Duration::from_millis(ms.parse().expect("milliseconds"));
    }
    let mut secs = 0.0;
    let mut number = String::new();
    for c in text.chars() {
        match c {
            'h' | 'm' | 's' => {
                let n: f64 = number.parse().unwrap_or_else(|_| panic!("{text:?}"));
                secs += n * match c {
                    'h' => 3600.0,
                    'm' => 60.0,
                    _ => 1.0,
                };
                number.clear();
            }
            _ => number.push(c),
        }
    }
    assert!(number.is_empty(), "{text:?}");
    Duration::from_secs_f64(secs)
}

/// The rate-limit headers of a 429, by lower-case name.
struct Limited {
    limit: u64,
    remaining: u64,
    reset: Duration,
    retry_after: u64,
}

impl Limited {
    fn from(headers: &BTreeMap<String, String>) -> Limited {
        let get = |name: &str| {
            headers
                .get(name)
                .unwrap_or_else(|| panic!("no {name} in {headers:#?}"))
                .clone()
        };
        let int = |name: &str| {
            get(name)
                .parse::<u64>()
                .unwrap_or_else(|e| panic!("{name}: {e}"))
        };
        Limited {
            limit: int("x-ratelimit-limit-tokens"),
            remaining: int("x-ratelimit-remaining-tokens"),
            reset: openai_duration(&get("x-ratelimit-reset-tokens")),
            retry_after: int("retry-after"),
        }
    }

    fn of(reply: &Reply) -> Limited {
        let headers = reply
            .headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_string()))
            .collect();
        Limited::from(&headers)
    }

    /// The denial's message says what the headers say: `Limit L, Remaining R,
    /// Requested 12. Please try again in D.`, D written to a tenth of a second where
    /// `retry-after` is the same wait rounded up to whole seconds.
    fn assert_message(&self, message: &serde_json::Value, unit: &str) {
        let message = message.as_str().unwrap_or_else(|| panic!("{message}"));
        let head = format!(
            "Rate limit reached for {unit} (limit per-key): Limit {}, Remaining {}, Requested {ESTIMATE}. Please try again in ",
            self.limit, self.remaining
        );
        let wait = message
            .strip_prefix(&head)
            .and_then(|rest| rest.strip_suffix('.'))
            .unwrap_or_else(|| panic!("{message:?} is not {head:?}…"));
        let wait = openai_duration(wait).as_secs_f64();
        let (low, high) = ((wait - 0.05).ceil() as u64, (wait + 0.05).ceil() as u64);
        assert!(
            (low..=high).contains(&self.retry_after),
            "retry-after {} for {message:?}",
            self.retry_after
        );
    }

    /// The headers of a bucket of `capacity` per `period` that was full `elapsed` ago
    /// (at most) and has had exactly `capacity` taken since, denying a reservation of
    /// `ESTIMATE`: it holds what refilled, `capacity * elapsed / period`.
    fn assert_drained(&self, capacity: u64, period: Duration, elapsed: Duration) {
        let rate = capacity as f64 / period.as_secs_f64();
        let refilled = rate * elapsed.as_secs_f64();
        assert_eq!(self.limit, capacity);
        assert!(
            self.remaining as f64 <= refilled.floor(),
            "remaining {} > refill {refilled}",
            self.remaining
        );
        // retry-after: until ESTIMATE is back, whole seconds rounded up.
        let longest = (ESTIMATE as f64 / rate).ceil() as u64;
        let shortest = ((ESTIMATE as f64 - refilled) / rate).ceil().max(1.0) as u64;
        assert!(
            (shortest..=longest).contains(&self.retry_after),
            "retry-after {} not in {shortest}..={longest}",
            self.retry_after
        );
        // reset: until the bucket is full (written to a tenth of a second).
        let full = period.as_secs_f64();
        let reset = self.reset.as_secs_f64();
        assert!(
            reset <= full + 0.05 && reset >= full - elapsed.as_secs_f64() - 0.05,
            "reset {reset} s not within {elapsed:?} of {full} s"
        );
    }
}

/// Runs `tests/sdk/openai_client.py` (the official `openai` SDK) against `base_url`.
async fn openai_sdk(base_url: String, args: Vec<String>) -> serde_json::Value {
    let python = repo_root().join(".venv/bin/python");
    assert!(
        python.exists(),
        "no {}: run scripts/test (or scripts/install-test-deps)",
        python.display()
    );
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(repo_root().join("tests/sdk/openai_client.py"))
            .arg("--base-url")
            .arg(base_url)
            .args(args)
            .output()
            .expect("running the openai SDK")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "openai SDK: {}\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("SDK output ({e}): {stdout}"))
}

// --- 429 through both adapters ----------------------------------------------------------

/// Through `port` (the proxy or Envoy): three requests of key `<name>-a` spend the 36
/// tokens per minute; the fourth, through the openai SDK, is its RateLimitError; the
/// fifth and a `/v1/messages` request of the same key are denied too (OpenAI and
/// Anthropic shapes); key `<name>-b` still passes.
async fn burst(name: &str, port: u16, upstream: &MockUpstream) {
    let key = format!("{name}-a");
    let started = Instant::now();
    for i in 0..3 {
        ok(port, chat(&key, &format!("{name}-pass-{i}"))).await;
    }

    let denied_id = format!("{name}-sdk-denied");
    let sdk = openai_sdk(
        format!("http://127.0.0.1:{port}/v1"),
        vec![
            "--prompt".into(),
            PROMPT.into(),
            "--header".into(),
            format!("x-api-key={key}"),
            "--header".into(),
            format!("x-test-id={denied_id}"),
        ],
    )
    .await;
    let elapsed = started.elapsed();
    let error = &sdk["error"];
    assert_eq!(error["status"], 429, "{sdk}");
    // The SDK hands over the `error` object of the body.
    assert_eq!(error["body"]["code"], "rate_limit_exceeded", "{sdk}");
    assert_eq!(error["body"]["type"], "rate_limit_error", "{sdk}");
    let headers: BTreeMap<String, String> =
        serde_json::from_value(error["headers"].clone()).expect("headers as strings");
    assert_eq!(
        headers.get("content-type").map(String::as_str),
        Some("application/json")
    );
    let limited = Limited::from(&headers);
    limited.assert_drained(36, Duration::from_secs(60), elapsed);
    limited.assert_message(&error["body"]["message"], "tokens per minute");
    assert_eq!(
        reached(upstream, &denied_id),
        0,
        "a denied request went upstream"
    );

    // Denied again without the SDK: the whole OpenAI error body.
    let again = client::must(port, chat(&key, &format!("{name}-denied"))).await;
    let elapsed = started.elapsed();
    assert_eq!(again.status, 429, "{}", again.text());
    let body = again.json();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded", "{body}");
    assert_eq!(body["error"]["type"], "rate_limit_error", "{body}");
    assert_eq!(body["error"]["param"], serde_json::Value::Null, "{body}");
    let limited = Limited::of(&again);
    limited.assert_drained(36, Duration::from_secs(60), elapsed);
    limited.assert_message(&body["error"]["message"], "tokens per minute");

    // The same key on an Anthropic route: the same bucket, Anthropic's error shape.
    let messages = client::must(port, anthropic(&key, &format!("{name}-messages"))).await;
    let elapsed = started.elapsed();
    assert_eq!(messages.status, 429, "{}", messages.text());
    let body = messages.json();
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], "rate_limit_error", "{body}");
    assert!(body.get("code").is_none() && body["error"].get("code").is_none());
    let limited = Limited::of(&messages);
    limited.assert_drained(36, Duration::from_secs(60), elapsed);
    limited.assert_message(&body["error"]["message"], "tokens per minute");
    for id in ["denied", "messages"] {
        assert_eq!(reached(upstream, &format!("{name}-{id}")), 0, "{id}");
    }

    // Another key has its own bucket.
    ok(port, chat(&format!("{name}-b"), &format!("{name}-other"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_over_the_limit_gets_429_through_the_proxy_and_envoy() {
    let upstream = MockUpstream::start().await;
    let (proxy, ext_proc) = (free_port(), free_port());
    let yaml = config(
        &format!("extProc: {{ address: \"127.0.0.1:{ext_proc}\" }}"),
        proxy,
        upstream.port,
        "local",
        "tokensPerMinute: 36, count: input",
    );
    let tollgate = Tollgate::start(&yaml).await;
    let envoy = Envoy::start(&[ListenerSpec::new(ext_proc, upstream.port, Mode::Streamed)]).await;

    burst("proxy", proxy, &upstream).await;
    burst("envoy", envoy.port(0), &upstream).await;

    // Envoy answered the denial itself (tollgate's ImmediateResponse), not the upstream.
    assert_eq!(envoy.access_log_entry("envoy-denied").await["code"], 429);
    assert_eq!(envoy.access_log_entry("envoy-messages").await["code"], 429);
    assert_eq!(envoy.ext_proc_counter(0, "streams_failed").await, 0);

    // Per adapter: 3 + 1 (the other key) allowed, 3 denied.
    let m = tollgate.metrics().await;
    let decisions = |d: &str| {
        metric(
            &m,
            &format!(
                r#"tollgate_token_limit_decisions_total{{route="llm",limit="per-key",decision="{d}"}}"#
            ),
        )
    };
    assert_eq!(decisions("allowed"), Some(8.0), "{m}");
    assert_eq!(decisions("denied"), Some(6.0), "{m}");
}

// --- Redis ----------------------------------------------------------------------------

/// The bucket of rule `per-key` in Redis (tests use one key at a time) and its level.
async fn bucket(redis: &RedisServer) -> Option<(String, f64)> {
    let keys = redis.keys("tollgate:tl:llm:per-key:*").await;
    assert!(keys.len() <= 1, "one key per test: {keys:?}");
    let key = keys.into_iter().next()?;
    let level = redis.hash(&key).await.get("level")?.parse().ok()?;
    Some((key, level))
}

/// Waits until the `per-key` bucket in Redis (capacity 45 per hour) shows exactly
/// `spent` tokens taken (true-ups included), and returns its key.
async fn wait_spent(redis: &RedisServer, spent: f64) -> String {
    // 45 tokens per hour refill 0.0125 per second: nothing a test's seconds round away.
    let (key, level) = eventually(
        &format!("{spent} tokens spent in Redis"),
        Duration::from_secs(10),
        || async {
            bucket(redis)
                .await
                .filter(|(_, level)| 45.0 - level > spent - 0.5)
        },
    )
    .await;
    let taken = 45.0 - level;
    assert!(
        (spent - 0.2..=spent + 1e-9).contains(&taken),
        "{taken} tokens taken in Redis, expected {spent}"
    );
    key
}

async fn denied(port: u16, req: Req) -> Reply {
    let reply = client::must(port, req).await;
    assert_eq!(reply.status, 429, "{}", reply.text());
    assert_eq!(reply.json()["error"]["code"], "rate_limit_exceeded");
    reply
}

/// Two tollgates on one Redis, 45 tokens per hour (three requests of 15) for a key:
/// requests alternating between them pass until the shared budget is spent, then both
/// deny — instance B denies its own second request, which it alone would have passed;
/// a concurrent burst through both passes exactly 3 in all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_limit_through_redis() {
    let redis = RedisServer::start();
    let upstream = MockUpstream::start().await;
    let (proxy_a, proxy_b) = (free_port(), free_port());
    let top = redis_section(&redis, "failClosed");
    let amount = "tokensPerHour: 45";
    let _a = Tollgate::start(&config(&top, proxy_a, upstream.port, "redis", amount)).await;
    let _b = Tollgate::start(&config(&top, proxy_b, upstream.port, "redis", amount)).await;

    // Each request reserves its estimate (12) and trues up to the real 15 when it ends:
    // wait for that to reach Redis before the next one, so the arithmetic is exact.
    let started = Instant::now();
    ok(proxy_a, chat("shared", "shared-1-a")).await;
    let key = wait_spent(&redis, TOTAL).await;
    ok(proxy_b, chat("shared", "shared-2-b")).await;
    wait_spent(&redis, 2.0 * TOTAL).await;
    ok(proxy_a, chat("shared", "shared-3-a")).await;
    wait_spent(&redis, 3.0 * TOTAL).await;

    // 45 of 45 spent: B (one request of its own so far) and A both deny.
    let reply = denied(proxy_b, chat("shared", "shared-4-b")).await;
    let limited = Limited::of(&reply);
    limited.assert_drained(45, Duration::from_secs(3600), started.elapsed());
    limited.assert_message(&reply.json()["error"]["message"], "tokens per hour");
    denied(proxy_a, chat("shared", "shared-5-a")).await;
    assert_eq!(reached(&upstream, "shared-4-b"), 0);
    assert_eq!(reached(&upstream, "shared-5-a"), 0);
    // A denial changes nothing.
    assert_eq!(bucket(&redis).await.map(|(k, _)| k), Some(key.clone()));
    wait_spent(&redis, 3.0 * TOTAL).await;

    // Alone, an instance passes a key's second request: B with a key of its own.
    redis_flush(&redis).await;
    ok(proxy_b, chat("b-only", "b-only-1")).await;
    wait_spent(&redis, TOTAL).await;
    ok(proxy_b, chat("b-only", "b-only-2")).await;
    wait_spent(&redis, 2.0 * TOTAL).await;

    // A concurrent burst of 8 for one key, 4 through each instance: exactly 3 pass.
    // Whatever the interleaving of reservations (12) and true-ups (+3): after two
    // passes at least 15 is left (enough for 12), after three at most 9 (not enough).
    // Alone, each instance would have passed 3 of its 4.
    redis_flush(&redis).await;
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let port = if i % 2 == 0 { proxy_a } else { proxy_b };
            tokio::spawn(client::must(port, chat("burst", &format!("burst-{i}"))))
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        let reply = task.await.unwrap();
        if reply.status == 429 {
            assert_eq!(reply.json()["error"]["code"], "rate_limit_exceeded");
        }
        statuses.push(reply.status);
    }
    let passed = statuses.iter().filter(|s| **s == 200).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((passed, limited), (3, 5), "{statuses:?}");
    let upstream_saw = (0..8)
        .filter(|i| reached(&upstream, &format!("burst-{i}")) == 1)
        .count();
    assert_eq!(upstream_saw, 3);
    wait_spent(&redis, 3.0 * TOTAL).await;
}

async fn redis_flush(redis: &RedisServer) {
    let mut conn = redis.connection().await;
    let () = ::redis::cmd("FLUSHALL")
        .query_async(&mut conn)
        .await
        .expect("FLUSHALL");
}

/// `failOpen`: Redis killed mid-test, requests keep passing (even past the limit) and
/// their charges go to the pending ledger; once Redis is back on the same port (empty),
/// the ledger is replayed — every token charged while it was down is in Redis, and the
/// limit bites on the next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_fail_open_keeps_serving_and_replays_the_charges() {
    let mut redis = RedisServer::start();
    let upstream = MockUpstream::start().await;
    let proxy = free_port();
    let yaml = config(
        &redis_section(&redis, "failOpen"),
        proxy,
        upstream.port,
        "redis",
        "tokensPerHour: 45",
    );
    let tollgate = Tollgate::start(&yaml).await;
    ok(proxy, chat("k", "open-before")).await;
    wait_spent(&redis, TOTAL).await;

    redis.kill();
    // Four requests: with Redis up the last would be denied (45 per hour, 15 each).
    for i in 0..4 {
        ok(proxy, chat("k", &format!("open-down-{i}"))).await;
        assert_eq!(reached(&upstream, &format!("open-down-{i}")), 1);
    }

    // Back, empty (no persistence): the ledger's 4 × 15 land in Redis; nothing else
    // is sent meanwhile.
    let restarted = Instant::now();
    redis.restart();
    wait_spent(&redis, 4.0 * TOTAL).await;
    let reply = denied(proxy, chat("k", "open-after")).await;
    let limited = Limited::of(&reply);
    assert_eq!(limited.limit, 45);
    assert_eq!(limited.remaining, 0, "in debt: 45 - 60");
    // 27 tokens short (-15 → 12) at 0.0125 per second: 2160 s, less what refilled
    // since the replay.
    let (rate, since) = (45.0 / 3600.0, restarted.elapsed().as_secs_f64());
    let retry = limited.retry_after as f64;
    assert!(
        ((27.0 / rate - since).ceil()..=27.0 / rate).contains(&retry),
        "retry-after {retry}, {since} s after the restart"
    );
    limited.assert_message(&reply.json()["error"]["message"], "tokens per hour");
    assert_eq!(reached(&upstream, "open-after"), 0);
    assert!(!tollgate.log().contains("panicked"), "{}", tollgate.log());
}

/// `failClosed`: Redis killed mid-test, requests get 503 with a JSON error body and do
/// not reach the upstream; once Redis is back they pass again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_fail_closed_answers_503_until_it_is_back() {
    let mut redis = RedisServer::start();
    let upstream = MockUpstream::start().await;
    let proxy = free_port();
    let yaml = config(
        &redis_section(&redis, "failClosed"),
        proxy,
        upstream.port,
        "redis",
        "tokensPerHour: 45",
    );
    let tollgate = Tollgate::start(&yaml).await;
    ok(proxy, chat("k", "closed-before")).await;
    wait_spent(&redis, TOTAL).await;

    redis.kill();
    for i in 0..2 {
        let id = format!("closed-down-{i}");
        let reply = client::must(proxy, chat("k", &id)).await;
        assert_eq!(reply.status, 503, "{}", reply.text());
        assert_eq!(reply.header("content-type"), Some("application/json"));
        let body = reply.json();
        // OpenAI's error shape (the route speaks OpenAI), without internal detail.
        assert_eq!(body["error"]["type"], "server_error", "{body}");
        assert_eq!(
            body["error"]["message"], "policy token_limit is unavailable",
            "{body}"
        );
        assert_eq!(reached(&upstream, &id), 0, "fail closed went upstream");
    }

    redis.restart();
    let mut attempt = 0;
    eventually(
        "a request passing once Redis is back",
        Duration::from_secs(10),
        || {
            attempt += 1;
            let id = format!("closed-back-{attempt}");
            async move {
                let reply = client::must(proxy, chat("k", &id)).await;
                match reply.status {
                    200 => Some(()),
                    503 => None,
                    other => panic!("{other} while Redis comes back: {}", reply.text()),
                }
            }
        },
    )
    .await;
    // Redis came back empty: the one request that passed is all it holds.
    wait_spent(&redis, TOTAL).await;
    assert!(!tollgate.log().contains("panicked"), "{}", tollgate.log());
}

/// Without `redis-server` the Redis tests fail (never skip), saying how to install it.
#[test]
fn a_missing_redis_server_fails_the_test() {
    let panic = std::panic::catch_unwind(|| {
        RedisServer::start_binary("redis-server-that-is-not-installed")
    })
    .map(|_| "started")
    .expect_err("a missing binary must fail");
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied());
    assert_eq!(message, Some(MISSING));
    assert_eq!(
        MISSING,
        "redis-server not found: apt-get install -y redis-server"
    );
}

// --- validate -------------------------------------------------------------------------

fn validate(path: &std::path::Path) -> std::process::Output {
    Command::new(tollgate::binary())
        .args(["validate", "-c"])
        .arg(path)
        .output()
        .expect("running tollgate validate")
}

#[test]
fn validate_rejects_store_redis_without_llm_redis() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-redis.yaml");
    let yaml = config("", 8080, 8000, "redis", "tokensPerMinute: 1000");
    std::fs::write(&path, &yaml).unwrap();
    let out = validate(&path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "binds[0].listeners[0].routes[0].policies.tokenLimit.store: store: redis needs llm.redis"
        ),
        "{stderr}"
    );

    // With `llm.redis` it validates, and nothing has to listen there.
    let dead = free_port();
    let with = format!("llm:\n  redis: {{ url: \"redis://127.0.0.1:{dead}/0\" }}\n{yaml}");
    std::fs::write(&path, with).unwrap();
    let out = validate(&path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_token_limits_example_uses_redis_and_validates() {
    let path = repo_root().join("examples/token-limits.yaml");
    let text = std::fs::read_to_string(&path).expect("examples/token-limits.yaml");
    assert!(
        text.contains("store: redis"),
        "the example shows the shared store"
    );
    let out = validate(&path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
