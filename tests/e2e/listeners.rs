//! Connection bounds on every listener (`limits.connections`), with short timeouts so
//! the tests stay quick: silent, slow-header and idle connections are closed on the
//! proxy and the admin server; a stalled request body gets a 408; the connection limit
//! refuses politely, keeps the admin server reachable and recovers; running out of file
//! descriptors backs the accept loop off with a short log; `--workers` sizes the
//! runtime.

use std::time::Duration;

use crate::support::client::{self, Req};
use crate::support::raw;
use crate::support::tollgate::Tollgate;
use crate::support::upstream::MockUpstream;
use crate::support::{eventually, free_port, metric};

/// A proxy bind with a passthrough route (`/`) and a buffering one (`/v1/chat/
/// completions`, token accounting), under `limits` (a flow mapping).
fn config(proxy: u16, upstream: u16, limits: &str) -> String {
    format!(
        r#"logging: {{ format: json }}
limits:
  connections: {limits}
binds:
- port: {proxy}
  listeners:
  - routes:
    - name: chat
      matches: [ {{ path: {{ exact: /v1/chat/completions }} }} ]
      policies: {{ tokenAccounting: {{}} }}
      backends: [ {{ host: "127.0.0.1:{upstream}" }} ]
    - name: plain
      backends: [ {{ host: "127.0.0.1:{upstream}" }} ]
"#
    )
}

const SHORT: &str =
    "{ firstByteTimeout: 400ms, headerReadTimeout: 400ms, idleTimeout: 700ms, bodyProgressTimeout: 400ms }";

async fn timeouts(tollgate: &Tollgate, listener: &str, kind: &str) -> f64 {
    let prefix =
        format!("tollgate_connection_timeouts_total{{listener=\"{listener}\",timeout=\"{kind}\"}}");
    metric(&tollgate.metrics().await, &prefix).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_slow_and_idle_connections_are_closed() {
    let upstream = MockUpstream::start().await;
    let proxy = free_port();
    let tollgate = Tollgate::start(&config(proxy, upstream.port, SHORT)).await;
    let listener = format!("proxy:{proxy}");

    // Silent: closed on the first-byte timeout, on the proxy and on the admin server.
    for port in [proxy, tollgate.admin_port] {
        let mut silent = raw::connect(port).await;
        let (got, took) = raw::read_to_close(&mut silent).await;
        assert!(got.is_empty(), "{got}");
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(3),
            "{took:?}"
        );
    }
    assert!(timeouts(&tollgate, &listener, "first_byte").await >= 1.0);
    assert!(timeouts(&tollgate, "admin", "first_byte").await >= 1.0);

    // Headers sent a byte every 100 ms: the trickle does not keep the connection alive.
    let mut slow = raw::connect(proxy).await;
    let trickle = async {
        for b in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
            if tokio::io::AsyncWriteExt::write_all(&mut slow, &[*b])
                .await
                .is_err()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the slow headers were still accepted after 5 s");
    };
    tokio::time::timeout(Duration::from_secs(6), trickle)
        .await
        .unwrap();
    assert!(timeouts(&tollgate, &listener, "header_read").await >= 1.0);

    // Kept alive after a response: closed once idle for 700 ms, not before.
    let mut kept = raw::connect(proxy).await;
    raw::write(&mut kept, b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let (head, _) = raw::read_response(&mut kept).await;
    assert_eq!(raw::status(&head), 200, "{head}");
    let (got, took) = raw::read_to_close(&mut kept).await;
    assert!(got.is_empty(), "{got}");
    assert!(
        took >= Duration::from_millis(600) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert!(timeouts(&tollgate, &listener, "idle").await >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_request_body_gets_408() {
    let upstream = MockUpstream::start().await;
    let proxy = free_port();
    let tollgate = Tollgate::start(&config(proxy, upstream.port, SHORT)).await;
    // Passthrough (streamed to the upstream as it comes) and buffered (token accounting).
    for path in ["/plain", "/v1/chat/completions"] {
        let mut stalled = raw::connect(proxy).await;
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: 100\r\n\r\n{{\"model\":"
        );
        raw::write(&mut stalled, head.as_bytes()).await;
        let (response, took) = raw::read_to_close(&mut stalled).await;
        assert_eq!(raw::status(&response), 408, "{path}: {response}");
        let body = raw::json_body(&response);
        assert_eq!(body["error"]["type"], "request_timeout", "{body}");
        assert_eq!(body["error"]["code"], 408, "{body}");
        assert!(took < Duration::from_secs(3), "{path}: {took:?}");
    }
    let listener = format!("proxy:{proxy}");
    assert!(timeouts(&tollgate, &listener, "body_progress").await >= 2.0);
    let access = tollgate.log();
    assert!(
        access.contains("\"status\":408") || access.contains("status=408"),
        "{access}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_limit_refuses_politely_keeps_admin_up_and_recovers() {
    let upstream = MockUpstream::start().await;
    let proxy = free_port();
    let limits = "{ maxConnections: 3, firstByteTimeout: 30s, headerReadTimeout: 30s }";
    let tollgate = Tollgate::start(&config(proxy, upstream.port, limits)).await;
    let active = format!("tollgate_connections_active{{listener=\"proxy:{proxy}\"}}");
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(raw::connect(proxy).await);
    }
    eventually("3 connections held", Duration::from_secs(5), || async {
        (metric(&tollgate.metrics().await, &active) == Some(3.0)).then_some(())
    })
    .await;

    let mut refused = raw::connect(proxy).await;
    let (response, _) = raw::read_to_close(&mut refused).await;
    assert_eq!(raw::status(&response), 503, "{response}");
    assert!(response.contains("retry-after: 1"), "{response}");
    assert_eq!(raw::json_body(&response)["error"]["type"], "overloaded");
    // The admin server has its own limit: probes still answer.
    assert_eq!(tollgate.admin("/healthz").await.unwrap().status, 200);
    let refused_metric =
        format!("tollgate_connections_refused_total{{listener=\"proxy:{proxy}\"}}");
    assert_eq!(
        metric(&tollgate.metrics().await, &refused_metric),
        Some(1.0)
    );

    held.pop();
    eventually("a place freed", Duration::from_secs(5), || async {
        (metric(&tollgate.metrics().await, &active) == Some(2.0)).then_some(())
    })
    .await;
    let reply = client::must(proxy, Req::get("/again")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_file_descriptors_the_accept_loop_backs_off_and_logs_little() {
    let upstream = MockUpstream::start().await;
    let proxy = free_port();
    let limits = "{ maxConnections: 1000, firstByteTimeout: 60s }";
    // 64 descriptors: the runtime, the listeners and the log take some; the sockets
    // below take the rest, and every further accept fails with EMFILE.
    let tollgate = Tollgate::start_with_args(
        &config(proxy, upstream.port, limits),
        &[],
        &["prlimit", "--nofile=64:64", "--"],
    )
    .await;
    let mut sockets = Vec::new();
    for _ in 0..120 {
        sockets.push(raw::connect(proxy).await);
    }
    let errors = format!("tollgate_accept_errors_total{{listener=\"proxy:{proxy}\"}}");
    // Two seconds at EMFILE: a spinning loop would log thousands of lines.
    tokio::time::sleep(Duration::from_secs(2)).await;
    drop(sockets);
    let healthz = eventually(
        "/healthz after the sockets closed",
        Duration::from_secs(5),
        || async {
            tollgate
                .admin("/healthz")
                .await
                .ok()
                .filter(|r| r.status == 200)
        },
    )
    .await;
    assert_eq!(healthz.text(), "ok\n");
    let failed = metric(&tollgate.metrics().await, &errors).unwrap_or(0.0);
    // The proxy serves again (its upstream connect may still meet EMFILE for a moment
    // while the backlog of closed sockets drains).
    eventually(
        "the proxy serving again",
        Duration::from_secs(5),
        || async {
            client::send(proxy, Req::get("/after"))
                .await
                .ok()
                .filter(|r| r.status == 200)
        },
    )
    .await;
    let log = tollgate.log();
    let warnings = log.lines().filter(|l| l.contains("accept failed")).count();
    // Seconds at EMFILE on two listeners: a handful of lines, not thousands.
    assert!(
        (1..=10).contains(&warnings),
        "{warnings} accept warnings:\n{log}"
    );
    // Backed off, yet more errors than lines: the rest were counted, not logged.
    assert!(
        failed > warnings as f64,
        "{failed} errors, {warnings} lines:\n{log}"
    );
    assert!(failed < 100.0, "{failed} accept errors in ~2 s: no backoff");
    assert!(log.contains("accepting again"), "{log}");
}

/// The `workers` field of the "tollgate ready" log line.
fn workers_logged(tollgate: &Tollgate) -> u64 {
    let log = tollgate.log();
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message"] == "tollgate ready")
        .and_then(|v| v["workers"].as_u64())
        .unwrap_or_else(|| panic!("no ready line with workers:\n{log}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_come_from_the_flag_or_the_config() {
    let upstream = MockUpstream::start().await;
    let proxy = free_port();
    let yaml = format!(
        "runtime: {{ workers: 3 }}\n{}",
        config(proxy, upstream.port, "{}")
    );
    let from_config = Tollgate::start(&yaml).await;
    assert_eq!(workers_logged(&from_config), 3);
    drop(from_config);
    let proxy = free_port();
    let yaml = format!(
        "runtime: {{ workers: 3 }}\n{}",
        config(proxy, upstream.port, "{}")
    );
    let from_flag = Tollgate::start_with_args(&yaml, &["--workers", "1"], &[]).await;
    assert_eq!(workers_logged(&from_flag), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http2_connection_is_closed_gracefully() {
    use http_body_util::{BodyExt, Empty};
    let upstream = MockUpstream::start().await;
    let proxy = free_port();
    let tollgate = Tollgate::start(&config(proxy, upstream.port, SHORT)).await;
    let io = hyper_util::rt::TokioIo::new(raw::connect(proxy).await);
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
            .await
            .expect("h2c handshake");
    let conn = tokio::spawn(conn);
    let req = http::Request::get(format!("http://127.0.0.1:{proxy}/h2"))
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.expect("an h2 response");
    assert_eq!(resp.status(), 200);
    resp.into_body().collect().await.expect("the body");
    let idle_from = std::time::Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(5), conn).await;
    let took = idle_from.elapsed();
    ended
        .expect("closed within 5 s")
        .unwrap()
        .expect("a graceful close (GOAWAY), not an error");
    assert!(took >= Duration::from_millis(600), "{took:?}");
    let listener = format!("proxy:{proxy}");
    assert!(timeouts(&tollgate, &listener, "idle").await >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ext_proc_holds_connections_beyond_its_limit_in_the_backlog() {
    use tonic::transport::{Channel, Endpoint};
    let upstream = MockUpstream::start().await;
    let (proxy, ext) = (free_port(), free_port());
    let yaml = format!(
        "extProc: {{ address: \"127.0.0.1:{ext}\" }}\n{}",
        config(proxy, upstream.port, "{ maxConnections: 1 }")
    );
    let tollgate = Tollgate::start(&yaml).await;
    let endpoint = Endpoint::from_shared(format!("http://127.0.0.1:{ext}")).unwrap();
    let first: Channel = endpoint.connect().await.expect("the first connection");
    crate::support::assert_serving(first.clone(), &[""]).await;
    let second = endpoint.connect_lazy();
    let mut waiting = tokio::spawn(crate::support::assert_serving(second, &[""]));
    assert!(
        tokio::time::timeout(Duration::from_millis(800), &mut waiting)
            .await
            .is_err(),
        "a second connection was served beyond maxConnections: 1"
    );
    let active = "tollgate_connections_active{listener=\"ext_proc\"}";
    assert_eq!(metric(&tollgate.metrics().await, active), Some(1.0));
    drop(first);
    tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("served once the first connection closed")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_bind_bounds_silent_and_slow_handshakes_and_closes_beyond_its_limit() {
    let upstream = MockUpstream::start().await;
    let proxy = free_port();
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let limits = "{ maxConnections: 2, firstByteTimeout: 400ms, headerReadTimeout: 400ms }";
    let yaml = config(proxy, upstream.port, limits).replace(
        &format!("- port: {proxy}\n"),
        &format!(
            "- port: {proxy}\n  tls: {{ certFile: {}, keyFile: {} }}\n",
            cert.display(),
            key.display()
        ),
    );
    let _tollgate = Tollgate::start(&yaml).await;

    // A working TLS exchange first.
    let config = crate::support::tls::insecure_client_config(vec![b"http/1.1".to_vec()]);
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector
        .connect(name, raw::connect(proxy).await)
        .await
        .expect("TLS handshake");
    tokio::io::AsyncWriteExt::write_all(
        &mut tls,
        b"GET /tls HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut response = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut tls, &mut response)
        .await
        .ok();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");

    // Silent, and a handshake that stops after its first bytes: both closed.
    let mut silent = raw::connect(proxy).await;
    let mut stalled = raw::connect(proxy).await;
    raw::write(&mut stalled, b"\x16\x03\x01\x02").await;
    for conn in [&mut silent, &mut stalled] {
        let (got, took) = raw::read_to_close(conn).await;
        assert!(got.is_empty(), "{got}");
        assert!(took < Duration::from_secs(3), "{took:?}");
    }

    // At the limit (2 held), a TLS bind closes a new connection without a word.
    let held = [raw::connect(proxy).await, raw::connect(proxy).await];
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut refused = raw::connect(proxy).await;
    let (got, took) = raw::read_to_close(&mut refused).await;
    assert!(got.is_empty(), "{got}");
    assert!(
        took < Duration::from_millis(300),
        "closed at once, not on a timeout: {took:?}"
    );
    drop(held);
}
