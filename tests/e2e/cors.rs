//! The `cors` policy through both transports: Envoy's ext_proc and the standalone proxy
//! answer preflights themselves (never forwarded), and put the CORS headers on the
//! responses to allowed origins only.

use crate::support::client::{self, Req};
use crate::support::envoy::{Envoy, ListenerSpec, Mode};
use crate::support::free_port;
use crate::support::tollgate::Tollgate;
use crate::support::upstream::MockUpstream;

const APP: &str = "https://app.example.com";
const EVIL: &str = "https://evil.example.com";

/// A browser's preflight for a POST to the chat path from `origin`.
fn preflight(origin: &str, id: &str) -> Req {
    Req {
        method: "OPTIONS".into(),
        ..Req::get("/v1/chat/completions")
    }
    .header("origin", origin)
    .header("access-control-request-method", "POST")
    .header("x-test-id", id)
}

/// A GET of the models list from `origin`.
fn models_from(origin: &str, id: &str) -> Req {
    Req::get("/v1/models")
        .header("origin", origin)
        .header("x-test-id", id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflights_are_answered_and_allowed_origins_get_cors_headers() {
    let upstream = MockUpstream::start().await;
    let (ext_proc, proxy) = (free_port(), free_port());
    let _tollgate = Tollgate::start(&format!(
        r#"extProc: {{ address: "127.0.0.1:{ext_proc}" }}
binds:
- port: {proxy}
  listeners:
  - routes:
    - name: api
      policies:
        cors:
          allowOrigins: ["https://app.example.com"]
          allowMethods: [GET, POST]
          allowHeaders: [content-type, authorization]
          allowCredentials: true
          maxAge: 1h
      backends: [ {{ host: "127.0.0.1:{up}" }} ]
"#,
        up = upstream.port
    ))
    .await;
    let envoy = Envoy::start(&[ListenerSpec::new(ext_proc, upstream.port, Mode::Streamed)]).await;

    for (surface, port) in [("proxy", proxy), ("envoy", envoy.port(0))] {
        let id = format!("preflight-{surface}");
        let ask = preflight(APP, &id).header("access-control-request-headers", "content-type");
        let reply = client::must(port, ask).await;
        assert_eq!(reply.status, 200, "{surface}: {}", reply.text());
        assert_eq!(
            reply.header("access-control-allow-origin"),
            Some("https://app.example.com"),
            "{surface}"
        );
        assert_eq!(
            reply.header("access-control-allow-methods"),
            Some("GET, POST"),
            "{surface}"
        );
        assert_eq!(
            reply.header("access-control-allow-headers"),
            Some("content-type, authorization"),
            "{surface}"
        );
        assert_eq!(
            reply.header("access-control-max-age"),
            Some("3600"),
            "{surface}"
        );
        assert_eq!(
            reply.header("access-control-allow-credentials"),
            Some("true"),
            "{surface}"
        );

        let refused = format!("refused-{surface}");
        let reply = client::must(port, preflight(EVIL, &refused)).await;
        assert_eq!(reply.status, 200, "{surface}");
        assert_eq!(
            reply.header("access-control-allow-origin"),
            None,
            "{surface}"
        );

        let get = format!("get-{surface}");
        let reply = client::must(port, models_from(APP, &get)).await;
        assert_eq!(reply.status, 200, "{surface}");
        assert_eq!(
            reply.header("access-control-allow-origin"),
            Some("https://app.example.com"),
            "{surface}"
        );
        assert_eq!(
            reply.header("access-control-allow-credentials"),
            Some("true"),
            "{surface}"
        );
        assert!(
            reply.header("vary").is_some_and(|v| v.contains("origin")),
            "{surface}"
        );

        let other = format!("other-{surface}");
        let reply = client::must(port, models_from(EVIL, &other)).await;
        assert_eq!(reply.status, 200, "{surface}");
        assert_eq!(
            reply.header("access-control-allow-origin"),
            None,
            "{surface}"
        );

        let seen: Vec<String> = upstream
            .requests()
            .iter()
            .filter_map(|r| r.header("x-test-id"))
            .collect();
        assert!(
            seen.contains(&get) && seen.contains(&other),
            "{surface}: {seen:?}"
        );
        assert!(
            !seen.contains(&id) && !seen.contains(&refused),
            "{surface}: preflights never forwarded: {seen:?}"
        );
    }
}
