//! The ext_proc filter tollgate serves Envoy allows the header mutations the config's
//! policies make: a `requestHeaderModifier` that rewrites `host` re-routes the request
//! behind an ADS Envoy exactly as it does in tollgate's own proxy (Envoy drops such a
//! mutation unless the filter's `mutation_rules` allow routing headers).

use crate::support::client::{self, Req};
use crate::support::envoy::Envoy;
use crate::support::free_port;
use crate::support::tollgate::Tollgate;
use crate::support::upstream::MockUpstream;
use crate::xds::first_reply_to;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_rewrite_reroutes_behind_an_ads_envoy() {
    let (a, b) = (MockUpstream::start().await, MockUpstream::start().await);
    let (ext_proc, listen) = (free_port(), free_port());
    let yaml = format!(
        r#"extProc: {{ address: "127.0.0.1:{ext_proc}" }}
xds: {{}}
binds:
- port: {listen}
  listeners:
  - hostnames: [a.test]
    routes:
    - name: to-b
      policies: {{ requestHeaderModifier: {{ set: {{ host: b.test }} }} }}
      backends: [ {{ host: "127.0.0.1:{}" }} ]
  - hostnames: [b.test]
    routes:
    - name: b
      backends: [ {{ host: "127.0.0.1:{}" }} ]
"#,
        a.port, b.port
    );
    let _tollgate = Tollgate::start(&yaml).await;
    let envoy = Envoy::start_ads("routing", ext_proc, false).await;
    first_reply_to(listen, Req::get("/b").header("host", "b.test")).await;

    let reply = client::must(
        listen,
        Req::get("/rewritten")
            .header("host", "a.test")
            .header("x-test-id", "rewritten"),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let seen = b.request("rewritten");
    assert_eq!(seen.header("host").as_deref(), Some("b.test"));
    assert!(
        a.requests().is_empty(),
        "the host mutation was applied, not dropped"
    );
    let dump = envoy.config_dump().await.to_string();
    assert!(dump.contains("\"allow_all_routing\":true"), "{dump}");
}
