//! agentgateway's `urlRewrite`, `backendAuth`, `requestRedirect` and `directResponse`
//! policies, the same
//! config through tollgate's own proxy and through an Envoy that tollgate configures
//! over ADS: the upstream gets the rewritten host and path (query kept) and the
//! provider key instead of the client's token; a redirect carries the rewritten URL;
//! a `directResponse` route answers alone.

use crate::support::client::{self, Req};
use crate::support::envoy::Envoy;
use crate::support::free_port;
use crate::support::tollgate::Tollgate;
use crate::support::upstream::MockUpstream;
use crate::xds::first_reply_to;

fn config(listen: u16, upstream: u16, ext_proc: Option<u16>) -> String {
    let xds = ext_proc.map_or(String::new(), |p| {
        format!("extProc: {{ address: \"127.0.0.1:{p}\" }}\nxds: {{}}\n")
    });
    format!(
        r#"{xds}binds:
- port: {listen}
  listeners:
  - routes:
    - name: fixed
      matches: [ {{ path: {{ exact: /fixed }} }} ]
      policies: {{ directResponse: {{ status: 418, body: "short and stout" }} }}
    - name: moved
      matches: [ {{ path: {{ pathPrefix: /old }} }} ]
      policies:
        requestRedirect: {{ scheme: https, authority: {{ host: new.example }}, path: {{ prefix: /v2 }}, status: 301 }}
    - name: provider
      matches: [ {{ path: {{ pathPrefix: /api }} }} ]
      policies:
        urlRewrite:
          authority: {{ full: provider.test }}
          path: {{ prefix: /compatible-mode/v1 }}
        backendAuth: {{ key: sk-provider-key }}
      backends: [ {{ host: "127.0.0.1:{upstream}" }} ]
"#
    )
}

async fn check(listen: u16, upstream: &MockUpstream, surface: &str) {
    let id = format!("rewrite-{surface}");
    let reply = client::must(
        listen,
        Req::get("/api/models?limit=2")
            .header("authorization", "Bearer client-token")
            .header("x-test-id", &id),
    )
    .await;
    assert_eq!(reply.status, 200, "{surface}: {}", reply.text());
    let seen = upstream.request(&id);
    assert_eq!(seen.path, "/compatible-mode/v1/models?limit=2", "{surface}");
    assert_eq!(
        seen.header("host").as_deref(),
        Some("provider.test"),
        "{surface}"
    );
    assert_eq!(
        seen.header("authorization").as_deref(),
        Some("Bearer sk-provider-key"),
        "{surface}"
    );
    let moved = client::must(listen, Req::get("/old/page?q=1").header("host", "gw.local")).await;
    assert_eq!(moved.status, 301, "{surface}: {}", moved.text());
    assert_eq!(
        moved.header("location"),
        Some("https://new.example/v2/page?q=1"),
        "{surface}"
    );
    let fixed = client::must(listen, Req::get("/fixed")).await;
    assert_eq!(fixed.status, 418, "{surface}");
    assert_eq!(fixed.text(), "short and stout", "{surface}");
}

#[tokio::test]
async fn rewrites_and_backend_keys_through_the_proxy() {
    let upstream = MockUpstream::start().await;
    let listen = free_port();
    let tollgate = Tollgate::start(&config(listen, upstream.port, None)).await;
    check(listen, &upstream, "proxy").await;
    assert!(!tollgate.log().contains("sk-provider-key"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrites_and_backend_keys_through_an_ads_envoy() {
    let upstream = MockUpstream::start().await;
    let (listen, ext_proc) = (free_port(), free_port());
    let tollgate = Tollgate::start(&config(listen, upstream.port, Some(ext_proc))).await;
    let _envoy = Envoy::start_ads("rewrite", ext_proc, false).await;
    first_reply_to(listen, Req::get("/api/warm")).await;
    check(listen, &upstream, "envoy").await;
    assert!(!tollgate.log().contains("sk-provider-key"));
}
