//! No credential reaches a log line or `/config`: tollgate runs with a guard webhook
//! and a moderation endpoint whose URLs carry keys in their query strings (both down,
//! so their failures are logged with the URL), a Redis URL with a password (down, so
//! the limits log it is unavailable), and an `x-goog-api-key` header policy. Every log
//! line (at debug level, text and JSON alike) and the `/config` dump are searched for
//! every secret value.

use std::time::Duration;

use crate::support::client::{self, Req};
use crate::support::scenario;
use crate::support::tollgate::Tollgate;
use crate::support::upstream::MockUpstream;
use crate::support::{eventually, free_port};

const HOOK_KEY: &str = "hook-key-5ecret";
const MODERATION_KEY: &str = "moderation-key-5ecret";
const REDIS_PASSWORD: &str = "redis-pa55word";
const GOOG_KEY: &str = "AIzaGoogKey5ecret";
const SECRETS: [&str; 4] = [HOOK_KEY, MODERATION_KEY, REDIS_PASSWORD, GOOG_KEY];

fn config(format: &str, proxy: u16, upstream: u16) -> String {
    let (hook, moderation, redis) = (free_port(), free_port(), free_port());
    format!(
        r#"logging: {{ format: {format}, level: debug }}
llm:
  redis: {{ url: "redis://:{REDIS_PASSWORD}@127.0.0.1:{redis}/0", failureMode: failOpen }}
binds:
- port: {proxy}
  listeners:
  - routes:
    - name: llm
      policies:
        requestHeaderModifier:
          set: {{ x-goog-api-key: {GOOG_KEY} }}
        tokenAccounting: {{}}
        tokenLimit:
          store: redis
          limits:
          - {{ name: per-key, key: 'request.headers["x-api-key"]', tokensPerMinute: 100000 }}
        promptGuard:
          request:
            webhook: {{ url: "http://127.0.0.1:{hook}/guard?key={HOOK_KEY}&team=e2e", failureMode: failOpen }}
            moderation: {{ url: "http://127.0.0.1:{moderation}/v1/moderations?api_key={MODERATION_KEY}", failureMode: failOpen }}
      backends: [ {{ host: "127.0.0.1:{upstream}" }} ]
"#
    )
}

async fn no_secret_anywhere(format: &str) {
    let upstream = MockUpstream::start().await;
    let proxy = free_port();
    let tollgate = Tollgate::start(&config(format, proxy, upstream.port)).await;
    let id = format!("secrets-{format}");
    let reply = client::must(
        proxy,
        Req::post("/v1/chat/completions", scenario::chat_body(false))
            .header("x-test-id", &id)
            .header("x-api-key", "team-a"),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    // The header policy worked: the upstream got the key tollgate never shows.
    assert_eq!(
        upstream.request(&id).header("x-goog-api-key").as_deref(),
        Some(GOOG_KEY)
    );

    // The warnings happened, with the URLs in them redacted.
    let log = eventually("the three warnings", Duration::from_secs(10), || async {
        let log = tollgate.log();
        let hook = log.contains("/guard?key=<redacted>");
        let moderation = log.contains("/v1/moderations?api_key=<redacted>");
        let redis = log.contains("redis unavailable");
        (hook && moderation && redis).then_some(log)
    })
    .await;
    assert!(log.contains("&team=e2e"), "other parameters stay: {log}");

    let dump = tollgate.admin("/config").await.unwrap().text();
    for secret in SECRETS {
        for (n, line) in log.lines().enumerate() {
            assert!(!line.contains(secret), "{secret} in log line {n}: {line}");
        }
        assert!(!dump.contains(secret), "{secret} in /config: {dump}");
    }
    assert!(dump.contains("redis://<redacted>@127.0.0.1:"), "{dump}");
    assert!(dump.contains("key=<redacted>&team=e2e"), "{dump}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_text_logs_or_config() {
    no_secret_anywhere("text").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_json_logs() {
    no_secret_anywhere("json").await;
}
