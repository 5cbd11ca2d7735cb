//! Bounded buffers through the standalone proxy, against a hostile mock upstream: a gzip
//! SSE bomb (2 GiB from ~2 MB on the wire) on an accounted route reaches the client as
//! sent and uncounted; on a guarded route it ends with an error event after a bounded
//! number of bytes, in both failure modes; a 20 MiB SSE line ends a fail-closed guarded
//! stream and passes a fail-open one through byte for byte; a gzip JSON bomb gets 502.
//! Each time tollgate's peak memory stays small, the limit is counted in
//! `tollgate_buffer_limit_exceeded_total`, and the next request is served.

use std::time::{Duration, Instant};

use crate::support::client::{self, Reply, Req};
use crate::support::hostile;
use crate::support::tollgate::Tollgate;
use crate::support::upstream::MockUpstream;
use crate::support::{free_port, metric};

/// Ports of the three routes: accounted only, guarded fail open, guarded fail closed.
struct Routes {
    accounted: u16,
    open: u16,
    closed: u16,
}

async fn start(upstream: &MockUpstream) -> (Tollgate, Routes) {
    let routes = Routes {
        accounted: free_port(),
        open: free_port(),
        closed: free_port(),
    };
    let up = upstream.port;
    let bind = |port: u16, name: &str, guard: Option<&str>| {
        let guard = guard.map_or(String::new(), |mode| {
            format!(
                "\n        promptGuard:\n          failureMode: {mode}\n          response:\n            rules:\n            - {{ name: pii, builtins: [email], action: mask }}"
            )
        });
        format!(
            "- port: {port}\n  listeners:\n  - routes:\n    - name: {name}\n      backends: [ {{ host: \"127.0.0.1:{up}\" }} ]\n      policies:\n        tokenAccounting: {{}}{guard}\n"
        )
    };
    let yaml = format!(
        "binds:\n{}{}{}",
        bind(routes.accounted, "accounted", None),
        bind(routes.open, "open", Some("failOpen")),
        bind(routes.closed, "closed", Some("failClosed")),
    );
    (Tollgate::start(&yaml).await, routes)
}

fn hostile(kind: &str) -> Req {
    Req::post(
        "/v1/chat/completions",
        r#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
    )
    .header("content-type", "application/json")
    .header("x-mock-hostile", kind)
}

/// tollgate's peak resident memory, from `/proc`.
fn peak_rss_mib(tollgate: &Tollgate) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", tollgate.pid())).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status");
    kib / 1024
}

async fn limit_count(tollgate: &Tollgate, route: &str, processor: &str, limit: &str) -> f64 {
    let m = tollgate.metrics().await;
    let prefix = format!(
        "tollgate_buffer_limit_exceeded_total{{route=\"{route}\",processor=\"{processor}\",limit=\"{limit}\"}}"
    );
    metric(&m, &prefix).unwrap_or(0.0)
}

/// A normal request on `port` is served after the hostile one.
async fn still_serving(port: u16) {
    let reply = client::must(
        port,
        Req::post(
            "/v1/chat/completions",
            r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#,
        )
        .header("content-type", "application/json"),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.text().contains("usage"));
}

fn last_event(reply: &Reply) -> serde_json::Value {
    let text = reply.text();
    let data = text
        .trim_end()
        .rsplit("\n\n")
        .next()
        .and_then(|e| e.strip_prefix("data: "))
        .unwrap_or_else(|| panic!("no last event in {} bytes", text.len()));
    serde_json::from_str(data).unwrap_or_else(|e| panic!("{e}: {data}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_sse_bombs_are_passed_as_sent_or_ended_bounded() {
    let upstream = MockUpstream::start().await;
    let (tollgate, routes) = start(&upstream).await;
    let bomb = hostile::sse_bomb(2048);

    // Accounted only: the client gets the upstream's bytes, accounting stops early.
    let started = Instant::now();
    let reply = client::must(routes.accounted, hostile("sse-gzip-bomb")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-encoding"), Some("gzip"));
    assert!(
        reply.body == bomb,
        "{} bytes, not as sent",
        reply.body.len()
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let n = limit_count(
        &tollgate,
        "accounted",
        "token_accounting",
        "decompression_ratio",
    )
    .await;
    assert_eq!(n, 1.0);
    still_serving(routes.accounted).await;

    // Guarded: decoded for the guard, so the stream ends after a bounded number of bytes
    // with an error event, whatever the failure mode.
    for (port, route) in [(routes.open, "open"), (routes.closed, "closed")] {
        let reply = client::must(port, hostile("sse-gzip-bomb")).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("content-encoding"), None, "{route}");
        assert!(
            reply.body.len() < 3 << 20,
            "{route}: {} bytes",
            reply.body.len()
        );
        let last = last_event(&reply);
        assert_eq!(last["error"]["code"], "upstream_error", "{route}: {last}");
        let n = limit_count(&tollgate, route, "prompt_guard", "decompression_ratio").await;
        assert_eq!(n, 1.0, "{route}");
        still_serving(port).await;
    }
    let peak = peak_rss_mib(&tollgate);
    assert!(peak < 300, "tollgate peaked at {peak} MiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_sse_line_follows_the_guards_failure_mode() {
    let upstream = MockUpstream::start().await;
    let (tollgate, routes) = start(&upstream).await;
    let (first, rest) = hostile::long_line(20);

    let reply = client::must(routes.closed, hostile("sse-long-line")).await;
    assert!(reply.body.len() < 64 * 1024, "{} bytes", reply.body.len());
    let text = reply.text();
    assert!(text.contains("Hello") && !text.contains("xxxx"), "{text}");
    let last = last_event(&reply);
    assert_eq!(last["error"]["code"], "upstream_error", "{last}");
    assert_eq!(
        limit_count(&tollgate, "closed", "prompt_guard", "sse_line").await,
        1.0
    );
    still_serving(routes.closed).await;

    let reply = client::must(routes.open, hostile("sse-long-line")).await;
    let text = reply.text();
    assert!(text.contains("Hello"));
    assert!(
        text.ends_with(&rest),
        "the rest passes as the upstream sent it"
    );
    assert!(text.len() < first.len() + rest.len() + 256);
    assert_eq!(
        limit_count(&tollgate, "open", "prompt_guard", "sse_line").await,
        1.0
    );
    still_serving(routes.open).await;

    // Accounting alone does not rewrite this stream (the client did not ask for usage,
    // so tollgate re-emits it): the rest passes as sent there too.
    let reply = client::must(routes.accounted, hostile("sse-long-line")).await;
    assert!(reply.text().ends_with(&rest));
    let n = limit_count(&tollgate, "accounted", "token_accounting", "sse_line").await;
    assert_eq!(n, 1.0);
    let peak = peak_rss_mib(&tollgate);
    assert!(peak < 300, "tollgate peaked at {peak} MiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_json_bomb_on_a_guarded_route_gets_502() {
    let upstream = MockUpstream::start().await;
    let (tollgate, routes) = start(&upstream).await;
    let req = Req::post(
        "/v1/chat/completions",
        r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#,
    )
    .header("content-type", "application/json")
    .header("x-mock-hostile", "json-gzip-bomb")
    .header("x-mock-bomb-mib", "1024");
    for (port, route) in [(routes.open, "open"), (routes.closed, "closed")] {
        let reply = client::must(port, req.clone()).await;
        assert_eq!(reply.status, 502, "{route}: {}", reply.text());
        assert_eq!(
            reply.json()["error"]["code"],
            "upstream_error",
            "{}",
            reply.text()
        );
        let n = limit_count(&tollgate, route, "prompt_guard", "decompression_ratio").await;
        assert_eq!(n, 1.0, "{route}");
        still_serving(port).await;
    }
    let peak = peak_rss_mib(&tollgate);
    assert!(peak < 300, "tollgate peaked at {peak} MiB");
}
