//! The `extProc` policy: tollgate calling an external ext_proc server for each request,
//! as Envoy's ext_proc filter would — an independent Python server (grpcio, Envoy's API
//! stubs from `xds-protos`) and tollgate's own ext_proc server — through the proxy and
//! through Envoy: header and body mutations both ways, immediate responses, a server
//! that closes its stream, a slow server (504), and an unreachable one with `failOpen`
//! (traffic flows) and `failClosed` (500).

use crate::support::client::{self, Req};
use crate::support::envoy::{Envoy, ListenerSpec, Mode};
use crate::support::free_port;
use crate::support::py_server::PyServer;
use crate::support::scenario::Ports;
use crate::support::tollgate::Tollgate;
use crate::support::upstream::MockUpstream;

/// tollgate's own ext_proc server, as the external one: it adds headers both ways and
/// answers `/inner/deny` itself.
fn inner_config(ext_proc: u16) -> String {
    format!(
        r#"extProc: {{ address: "127.0.0.1:{ext_proc}" }}
binds:
- port: {port}
  listeners:
  - routes:
    - name: deny
      matches: [ {{ path: {{ pathPrefix: /inner/deny }} }} ]
      policies: {{ directResponse: {{ status: 418, body: "inner says no" }} }}
    - name: all
      policies:
        requestHeaderModifier: {{ set: {{ x-inner: "yes" }} }}
        responseHeaderModifier: {{ set: {{ x-inner-response: "yes" }} }}
"#,
        port = free_port(),
    )
}

fn outer_config(ports: Ports, upstream: u16, py: u16, inner: u16) -> String {
    let dead = free_port();
    format!(
        r#"extProc: {{ address: "127.0.0.1:{ext_proc}" }}
binds:
- port: {proxy}
  listeners:
  - routes:
    - name: open
      matches: [ {{ path: {{ pathPrefix: /open }} }} ]
      policies: {{ extProc: {{ host: "127.0.0.1:{dead}", failureMode: failOpen }} }}
      backends: [ {{ host: "127.0.0.1:{upstream}" }} ]
    - name: closed
      matches: [ {{ path: {{ pathPrefix: /closed }} }} ]
      policies: {{ extProc: {{ host: "127.0.0.1:{dead}" }} }}
      backends: [ {{ host: "127.0.0.1:{upstream}" }} ]
    - name: slow
      matches: [ {{ path: {{ pathPrefix: /py-slow }} }} ]
      policies: {{ extProc: {{ host: "127.0.0.1:{py}", timeout: 300ms }} }}
      backends: [ {{ host: "127.0.0.1:{upstream}" }} ]
    - name: inner
      matches: [ {{ path: {{ pathPrefix: /inner }} }} ]
      policies: {{ extProc: {{ host: "127.0.0.1:{inner}" }} }}
      backends: [ {{ host: "127.0.0.1:{upstream}" }} ]
    - name: py
      policies:
        extProc:
          host: "127.0.0.1:{py}"
          timeout: 2s
          processingMode: {{ requestBodyMode: buffered, responseBodyMode: buffered }}
      backends: [ {{ host: "127.0.0.1:{upstream}" }} ]
"#,
        ext_proc = ports.ext_proc,
        proxy = ports.proxy,
    )
}

async fn against_external_servers(envoy_mode: Option<Mode>) {
    let upstream = MockUpstream::start().await;
    let py = PyServer::start("ext_proc_server.py", &[]).await;
    let inner_port = free_port();
    let _inner = Tollgate::start(&inner_config(inner_port)).await;
    let ports = Ports::free();
    let _outer = Tollgate::start(&outer_config(ports, upstream.port, py.port(), inner_port)).await;
    let envoy = match envoy_mode {
        Some(m) => Some(Envoy::start(&[ListenerSpec::new(ports.ext_proc, upstream.port, m)]).await),
        None => None,
    };
    let port = envoy.as_ref().map_or(ports.proxy, |e| e.port(0));

    mutations_both_ways(port, &upstream).await;
    immediate_responses(port, &upstream).await;
    failures(port).await;
}

/// The Python server's header and body mutations, on the request and the response.
async fn mutations_both_ways(port: u16, upstream: &MockUpstream) {
    let req = Req::post("/py/echo", r#"{"note":"secret"}"#)
        .header("x-remove-me", "1")
        .header("x-test-id", "py-echo");
    let reply = client::must(port, req).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-py-response"), Some("1"));
    assert!(
        reply.text().contains("\"P0ST\""),
        "response body mutated: {}",
        reply.text()
    );
    let seen = upstream.request("py-echo");
    assert_eq!(seen.header("x-py-seen").as_deref(), Some("1"));
    assert!(
        seen.header("x-remove-me").is_none(),
        "removed by the server"
    );
    assert_eq!(seen.body, r#"{"note":"[py]"}"#, "request body mutated");

    let reply = client::must(port, Req::get("/inner/x").header("x-test-id", "inner")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("x-inner-response"),
        Some("yes"),
        "tollgate's own server"
    );
    assert_eq!(
        upstream.request("inner").header("x-inner").as_deref(),
        Some("yes")
    );

    // A server that closes its stream is done: the request goes on untouched.
    let reply = client::must(port, Req::get("/py-close/x").header("x-test-id", "closed")).await;
    assert_eq!(reply.status, 200);
    assert!(upstream.request("closed").header("x-py-seen").is_none());
}

/// Immediate responses from either server answer the client; nothing goes upstream.
async fn immediate_responses(port: u16, upstream: &MockUpstream) {
    let before = upstream.requests().len();
    let reply = client::must(port, Req::get("/py-deny")).await;
    assert_eq!(reply.status, 403);
    assert_eq!(reply.text(), "denied by python");
    assert_eq!(reply.header("x-denied-by"), Some("python"));
    let reply = client::must(port, Req::get("/inner/deny")).await;
    assert_eq!(reply.status, 418);
    assert_eq!(reply.text(), "inner says no");
    assert_eq!(
        upstream.requests().len(),
        before,
        "nothing reached the upstream"
    );
}

/// A slow server times out (504, fail closed); an unreachable one fails closed with a
/// 500, or lets the request through with `failOpen`.
async fn failures(port: u16) {
    assert_eq!(client::must(port, Req::get("/py-slow")).await.status, 504);
    assert_eq!(client::must(port, Req::get("/closed/x")).await.status, 500);
    let reply = client::must(port, Req::get("/open/x")).await;
    assert_eq!(reply.status, 200, "fail open: {}", reply.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_processors_through_the_proxy() {
    against_external_servers(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_processors_through_envoy() {
    against_external_servers(Some(Mode::FullDuplex)).await;
}
