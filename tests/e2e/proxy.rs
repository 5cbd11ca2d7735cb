//! The standalone proxy: the header scenario, SSE, and its error replies: upstream
//! failures (whose bodies never name the upstream), malformed request bodies (400) and
//! clients that reset mid-body (`client_gone`).

use std::time::Duration;

use crate::support::client::{self, Req};
use crate::support::raw;
use crate::support::scenario::{self, Ports};
use crate::support::tollgate::Tollgate;
use crate::support::upstream::MockUpstream;
use crate::support::{self, assert_sse_one_by_one};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_policies() {
    let upstream = MockUpstream::start().await;
    let ports = Ports::free();
    let tollgate = Tollgate::start(&scenario::config(ports, upstream.port, true)).await;
    let req = scenario::chat_request("proxy-headers");
    let reply = client::must(ports.proxy, req.clone()).await;
    scenario::assert_client_response(&reply, &req);
    let seen = upstream.request("proxy-headers");
    scenario::assert_upstream_request(&seen, &req);
    assert_eq!(seen.header("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    let other = client::get(ports.proxy, "/health").await;
    assert_eq!(other.header("x-tollgate-route"), Some("fallback"));
    assert_eq!(
        other.header("x-upstream-secret"),
        Some("internal"),
        "only chat removes it"
    );
    let line = support::eventually("a JSON access line", Duration::from_secs(5), || async {
        tollgate
            .log()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["target"] == "tollgate::access")
    })
    .await;
    assert!(line.to_string().contains("chat"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_streams_events_one_by_one() {
    let upstream = MockUpstream::start().await;
    let ports = Ports::free();
    let _tollgate = Tollgate::start(&scenario::config(ports, upstream.port, true)).await;
    assert_sse_one_by_one(ports.proxy, &upstream, "proxy-sse").await;
}

/// A tollgate whose routes each lead to one kind of upstream failure; nothing else
/// matches.
async fn failing(upstream: &MockUpstream) -> (Tollgate, u16) {
    let (tollgate, proxy, _) = failing_with_dead(upstream).await;
    (tollgate, proxy)
}

/// `failing`, and the port of the dead upstream.
async fn failing_with_dead(upstream: &MockUpstream) -> (Tollgate, u16, u16) {
    let proxy = support::free_port();
    let dead = support::free_port();
    let up = upstream.port;
    let yaml = format!(
        r#"upstream: {{ connectTimeout: 1s, requestTimeout: 10s }}
binds:
- port: {proxy}
  listeners:
  - routes:
    - name: down
      matches: [ {{ path: {{ exact: /down }} }} ]
      backends: [ {{ host: "127.0.0.1:{dead}" }} ]
    - name: slow
      matches: [ {{ path: {{ exact: /slow }} }} ]
      policies: {{ timeout: 300ms }}
      backends: [ {{ host: "127.0.0.1:{up}" }} ]
    - name: broken
      matches: [ {{ path: {{ exact: /broken }} }} ]
      backends: [ {{ host: "127.0.0.1:{up}" }} ]
    - name: echo
      matches: [ {{ path: {{ exact: /echo }} }} ]
      backends: [ {{ host: "127.0.0.1:{up}" }} ]
    - name: chat
      matches: [ {{ path: {{ exact: /v1/chat/completions }} }} ]
      policies: {{ tokenAccounting: {{}} }}
      backends: [ {{ host: "127.0.0.1:{up}" }} ]
logging: {{ format: json }}
"#
    );
    (Tollgate::start(&yaml).await, proxy, dead)
}

/// An upstream failure's reply names no upstream (the log does).
fn assert_no_address(reply: &client::Reply, tollgate: &Tollgate, port: u16) {
    let body = reply.text();
    assert!(
        !body.contains("127.0.0.1") && !body.contains(&port.to_string()),
        "{body}"
    );
    let log = tollgate.log();
    assert!(log.contains(&format!("127.0.0.1:{port}")), "{log}");
}

fn assert_error(reply: &client::Reply, status: u16, kind: &str) {
    assert_eq!(reply.status, status, "{}", reply.text());
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let body = reply.json();
    assert_eq!(body["error"]["type"], kind, "{body}");
    assert_eq!(body["error"]["code"], status, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_route_is_404() {
    let upstream = MockUpstream::start().await;
    let (_tollgate, port) = failing(&upstream).await;
    assert_error(&client::get(port, "/nowhere").await, 404, "route_not_found");
    assert!(upstream.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_down_is_503() {
    let upstream = MockUpstream::start().await;
    let (tollgate, port, dead) = failing_with_dead(&upstream).await;
    let reply = client::get(port, "/down").await;
    assert_error(&reply, 503, "upstream_unavailable");
    assert_no_address(&reply, &tollgate, dead);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_too_slow_is_504() {
    let upstream = MockUpstream::start().await;
    let (tollgate, port) = failing(&upstream).await;
    let started = std::time::Instant::now();
    let reply = client::must(port, Req::get("/slow").header("x-mock-delay-ms", "3000")).await;
    let took = started.elapsed();
    assert_error(&reply, 504, "upstream_timeout");
    assert_no_address(&reply, &tollgate, upstream.port);
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(2500),
        "the route's 300ms timeout fired after {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_broken_is_502() {
    let upstream = MockUpstream::start().await;
    let (tollgate, port) = failing(&upstream).await;
    let reply = client::get(port, "/broken").await;
    assert_error(&reply, 502, "upstream_error");
    assert_no_address(&reply, &tollgate, upstream.port);
}

/// Both ways a request body reaches the upstream: streamed as it comes (`/echo`, no
/// policy) and collected first (`/v1/chat/completions`, token accounting).
const BODY_PATHS: [&str; 2] = ["/echo", "/v1/chat/completions"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_chunked_body_is_400() {
    let upstream = MockUpstream::start().await;
    let (tollgate, port) = failing(&upstream).await;
    for path in BODY_PATHS {
        let mut conn = raw::connect(port).await;
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Transfer-Encoding: chunked\r\n\r\n5\r\n{{\"a\":\r\nZZ-not-a-size\r\n"
        );
        raw::write(&mut conn, request.as_bytes()).await;
        let (response, _) = raw::read_to_close(&mut conn).await;
        assert_eq!(raw::status(&response), 400, "{path}: {response}");
        let body = raw::json_body(&response);
        assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
        assert_eq!(body["error"]["code"], 400, "{body}");
    }
    let log = tollgate.log();
    assert!(!log.contains("upstream call failed"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_reset_mid_body_is_client_gone() {
    let upstream = MockUpstream::start().await;
    let (tollgate, port) = failing(&upstream).await;
    for path in BODY_PATHS {
        let mut conn = raw::connect(port).await;
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: 1000\r\n\r\n{{\"model\":\"m\","
        );
        raw::write(&mut conn, request.as_bytes()).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        // Linger 0: closing sends a reset, as a killed client's kernel would (and a
        // zero linger never blocks the drop, which is why tokio deprecated the setter).
        #[allow(deprecated)]
        conn.set_linger(Some(Duration::ZERO)).unwrap();
        drop(conn);
    }
    let access = support::eventually("two access lines", Duration::from_secs(5), || async {
        let lines: Vec<serde_json::Value> = tollgate
            .log()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["target"] == "tollgate::access")
            .collect();
        (lines.len() >= 2).then_some(lines)
    })
    .await;
    for line in &access {
        assert_eq!(line["outcome"], "client_gone", "{line}");
    }
}
