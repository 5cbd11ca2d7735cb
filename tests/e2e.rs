//! End-to-end tests with real processes: the `tollgate` binary, a real Envoy 1.40 (see
//! `scripts/test`, which installs it), a mock upstream and a client on loopback sockets.
//! Every test picks its own ephemeral ports and temp dirs, so tests run in parallel.
//! Nothing waits on a fixed sleep: readiness, logs and metrics are polled.
//!
//! - `envoy`: Envoy → tollgate ext_proc → upstream in BUFFERED, STREAMED and
//!   FULL_DUPLEX_STREAMED, with tollgate's `modeOverride` on and off; SSE; route names;
//!   failure modes.
//! - `proxy`: the standalone proxy: header policies, SSE, error replies.
//! - `parity`: one scenario through both adapters gives the same exchange.
//! - `lifecycle`: admin endpoints, hot reload, graceful shutdown.
//! - `cli`: `validate` on examples and bad files, `envoy --mode validate` on deploy/envoy.

mod support;

use std::time::Duration;

use support::client::{self, Req};
use support::scenario::{self, Ports};
use support::tollgate::Tollgate;
use support::upstream::MockUpstream;

/// Streams `events` SSE events `interval_ms` apart through `port` and asserts they reach
/// the client one by one: each event arrives before the upstream sends the next.
/// Returns the events' data.
async fn assert_sse_one_by_one(port: u16, upstream: &MockUpstream, id: &str) -> Vec<String> {
    const EVENTS: u32 = 6;
    let mut stream = client::open(port, scenario::sse_request(id, EVENTS, 150))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stream.status, 200);
    assert_eq!(
        stream
            .headers
            .get("content-type")
            .map(|v| v.to_str().unwrap()),
        Some("text/event-stream")
    );
    assert_eq!(
        stream
            .headers
            .get("x-tollgate")
            .map(|v| v.to_str().unwrap()),
        Some("1"),
        "the response policy applies to streams too"
    );
    let events = stream.all_events().await.unwrap_or_else(|e| panic!("{e}"));
    let data: Vec<String> = events.iter().map(|e| e.data.clone()).collect();
    assert_eq!(events.len(), EVENTS as usize + 1, "{data:#?}");
    for (i, d) in data.iter().take(EVENTS as usize).enumerate() {
        let v: serde_json::Value = serde_json::from_str(d).unwrap();
        assert_eq!(v["choices"][0]["delta"]["content"], format!("token{i} "));
    }
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let sent = upstream.sse_sent(id);
    assert_eq!(sent.len(), events.len());
    for i in 0..EVENTS as usize {
        assert!(
            events[i].at < sent[i + 1],
            "event {i} reached the client {:?} after the upstream sent event {} (held back, not streamed)",
            events[i].at - sent[i + 1],
            i + 1
        );
    }
    data
}

/// The value of the first metric line starting with `prefix` (name and labels).
fn metric(metrics: &str, prefix: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

mod envoy {
    use super::*;
    use support::envoy::{Envoy, ListenerSpec, Mode};

    /// The header scenario through Envoy in `mode`; with `mode_override` off tollgate
    /// follows Envoy's static mode, so the bodies really flow through it.
    async fn header_policies(mode: Mode, mode_override: bool) {
        let upstream = MockUpstream::start().await;
        let ports = Ports::free();
        let tollgate =
            Tollgate::start(&scenario::config(ports, upstream.port, mode_override)).await;
        let envoy = Envoy::start(&[ListenerSpec::new(ports.ext_proc, upstream.port, mode)]).await;

        let id = format!("{mode:?}-override-{mode_override}");
        let req = scenario::chat_request(&id);
        let reply = client::must(envoy.port(0), req.clone()).await;
        scenario::assert_client_response(&reply, &req);
        scenario::assert_upstream_request(&upstream.request(&id), &req);

        // Envoy itself saw the mutated request and response headers.
        let entry = envoy.access_log_entry(&id).await;
        assert_eq!(entry["code"], 200, "{entry}");
        assert_eq!(entry["req_x_set"], "set-value", "{entry}");
        assert_eq!(entry["resp_x_tollgate"], "1", "{entry}");

        // Which messages went through tollgate: with mode_override the header-only route
        // asks Envoy for no bodies (impossible in FULL_DUPLEX_STREAMED); without it,
        // every body chunk does a round trip.
        let sent = envoy.ext_proc_counter(0, "stream_msgs_sent").await;
        let received = envoy.ext_proc_counter(0, "stream_msgs_received").await;
        let bodies_flow = !mode_override || mode == Mode::FullDuplex;
        match (bodies_flow, mode) {
            (false, _) => assert_eq!(sent, 2, "only the two header messages"),
            (true, Mode::Buffered) => assert_eq!(sent, 4, "headers and one whole body each way"),
            // STREAMED / FULL_DUPLEX: one message per chunk, however Envoy cut the body.
            (true, _) => assert!(
                sent >= 4,
                "the bodies went through tollgate: {sent} messages"
            ),
        }
        assert!(received >= 2, "tollgate answered: {received} of {sent}");
        assert_eq!(envoy.ext_proc_counter(0, "streams_started").await, 1);
        for zero in [
            "streams_failed",
            "spurious_msgs_received",
            "message_timeouts",
            "rejected_header_mutations",
        ] {
            assert_eq!(envoy.ext_proc_counter(0, zero).await, 0, "{zero}");
        }

        let metrics = support::eventually(
            "the ext_proc request metric",
            Duration::from_secs(5),
            || async {
                let m = tollgate.metrics().await;
                m.contains(
                    r#"tollgate_requests_total{route="chat",adapter="ext_proc",status="200""#,
                )
                .then_some(m)
            },
        )
        .await;
        assert!(
            metric(&metrics, "tollgate_ext_proc_streams_total").unwrap_or(0.0) >= 1.0,
            "{metrics}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn buffered_with_mode_override() {
        header_policies(Mode::Buffered, true).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn buffered_static_mode() {
        header_policies(Mode::Buffered, false).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn streamed_with_mode_override() {
        header_policies(Mode::Streamed, true).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn streamed_static_mode() {
        header_policies(Mode::Streamed, false).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn full_duplex_with_mode_override() {
        header_policies(Mode::FullDuplex, true).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn full_duplex_static_mode() {
        header_policies(Mode::FullDuplex, false).await;
    }

    /// SSE through Envoy with every response chunk going through tollgate.
    async fn sse(mode: Mode) {
        let upstream = MockUpstream::start().await;
        let ports = Ports::free();
        let _tollgate = Tollgate::start(&scenario::config(ports, upstream.port, false)).await;
        let envoy = Envoy::start(&[ListenerSpec::new(ports.ext_proc, upstream.port, mode)]).await;
        assert_sse_one_by_one(envoy.port(0), &upstream, &format!("sse-{mode:?}")).await;
        let sent = envoy.ext_proc_counter(0, "stream_msgs_sent").await;
        assert!(
            sent >= 2 + 7,
            "every SSE event went through tollgate: {sent} messages"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sse_streamed() {
        sse(Mode::Streamed).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sse_full_duplex() {
        sse(Mode::FullDuplex).await;
    }

    /// Envoy's route name (the `xds.route_name` attribute) picks the tollgate route of
    /// the same name, whatever that route's matches say; without it, matches decide.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn route_name_from_envoy_selects_the_route() {
        let upstream = MockUpstream::start().await;
        let ports = Ports::free();
        let _tollgate = Tollgate::start(&scenario::config(ports, upstream.port, true)).await;
        let envoy = Envoy::start(&[
            ListenerSpec::new(ports.ext_proc, upstream.port, Mode::Streamed)
                .route_name("named_by_envoy"),
            ListenerSpec::new(ports.ext_proc, upstream.port, Mode::Streamed),
        ])
        .await;
        let named = client::get(envoy.port(0), "/anything").await;
        assert_eq!(named.status, 200);
        assert_eq!(named.header("x-tollgate-route"), Some("named_by_envoy"));
        let matched = client::get(envoy.port(1), "/anything").await;
        assert_eq!(matched.header("x-tollgate-route"), Some("fallback"));
        let req = scenario::chat_request("route-by-match");
        let chat = client::must(envoy.port(1), req.clone()).await;
        scenario::assert_client_response(&chat, &req);
    }

    /// tollgate down: `failure_mode_allow: true` passes traffic unprocessed, `false`
    /// answers 5xx.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failure_mode_when_tollgate_is_down() {
        let upstream = MockUpstream::start().await;
        let ports = Ports::free();
        let mut tollgate = Tollgate::start(&scenario::config(ports, upstream.port, true)).await;
        let envoy = Envoy::start(&[
            ListenerSpec::new(ports.ext_proc, upstream.port, Mode::Streamed)
                .failure_mode_allow(true),
            ListenerSpec::new(ports.ext_proc, upstream.port, Mode::Streamed)
                .failure_mode_allow(false),
        ])
        .await;
        for listener in 0..2 {
            let req = scenario::chat_request(&format!("up-{listener}"));
            let reply = client::must(envoy.port(listener), req.clone()).await;
            scenario::assert_client_response(&reply, &req);
        }

        tollgate.kill();

        let open = client::must(envoy.port(0), scenario::chat_request("down-open")).await;
        assert_eq!(open.status, 200, "fail open: {}", open.text());
        assert_eq!(open.header("x-tollgate"), None, "not processed");
        let seen = upstream.request("down-open");
        assert_eq!(seen.header("x-set"), None);
        assert_eq!(seen.header_all("x-drop"), ["please"]);
        assert!(envoy.ext_proc_counter(0, "failure_mode_allowed").await >= 1);

        let closed = client::must(envoy.port(1), scenario::chat_request("down-closed")).await;
        assert!(
            (500..600).contains(&closed.status),
            "fail closed: {} {}",
            closed.status,
            closed.text()
        );
        assert!(
            upstream
                .requests()
                .iter()
                .all(|r| r.header("x-test-id").as_deref() != Some("down-closed")),
            "a fail-closed request must not reach the upstream"
        );
    }
}

mod proxy {
    use super::*;

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
"#
        );
        (Tollgate::start(&yaml).await, proxy)
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
        let (_tollgate, port) = failing(&upstream).await;
        assert_error(
            &client::get(port, "/down").await,
            503,
            "upstream_unavailable",
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn upstream_too_slow_is_504() {
        let upstream = MockUpstream::start().await;
        let (_tollgate, port) = failing(&upstream).await;
        let started = std::time::Instant::now();
        let reply = client::must(port, Req::get("/slow").header("x-mock-delay-ms", "3000")).await;
        let took = started.elapsed();
        assert_error(&reply, 504, "upstream_timeout");
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_millis(2500),
            "the route's 300ms timeout fired after {took:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn upstream_broken_is_502() {
        let upstream = MockUpstream::start().await;
        let (_tollgate, port) = failing(&upstream).await;
        assert_error(&client::get(port, "/broken").await, 502, "upstream_error");
    }
}

mod parity {
    use super::*;
    use support::envoy::{Envoy, ListenerSpec, Mode};

    const REQUEST_HEADERS: &[&str] = &["x-set", "x-overwrite", "x-multi", "x-drop", "x-test-id"];
    const RESPONSE_HEADERS: &[&str] = &[
        "x-tollgate",
        "x-tollgate-route",
        "x-resp-multi",
        "x-upstream-secret",
        "x-upstream",
        "content-type",
    ];

    /// The same request through Envoy (each mode, bodies through tollgate) and through
    /// the proxy: the upstream gets the same request and the client the same response.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn envoy_and_proxy_give_the_same_exchange() {
        let upstream = MockUpstream::start().await;
        let ports = Ports::free();
        let _tollgate = Tollgate::start(&scenario::config(ports, upstream.port, false)).await;
        let modes = [Mode::Buffered, Mode::Streamed, Mode::FullDuplex];
        let specs: Vec<_> = modes
            .iter()
            .map(|m| ListenerSpec::new(ports.ext_proc, upstream.port, *m))
            .collect();
        let envoy = Envoy::start(&specs).await;

        // The same x-test-id on every run, so it is compared too; runs are sequential.
        let req = scenario::chat_request("parity");
        let by_proxy = client::must(ports.proxy, req.clone()).await;
        let proxied = upstream.requests().pop().expect("the proxied request");
        scenario::assert_client_response(&by_proxy, &req);
        scenario::assert_upstream_request(&proxied, &req);

        for (i, mode) in modes.iter().enumerate() {
            let by_envoy = client::must(envoy.port(i), req.clone()).await;
            let seen = upstream
                .requests()
                .pop()
                .expect("the request through Envoy");
            assert_eq!(seen.method, proxied.method, "{mode:?}");
            assert_eq!(seen.path, proxied.path, "{mode:?}");
            assert!(seen.body == proxied.body, "{mode:?}: request bodies differ");
            for h in REQUEST_HEADERS {
                assert_eq!(
                    scenario::flat(seen.header_all(h)),
                    scenario::flat(proxied.header_all(h)),
                    "{mode:?}: upstream request header {h}"
                );
            }
            assert_eq!(by_envoy.status, by_proxy.status, "{mode:?}");
            assert_eq!(
                by_envoy.body, by_proxy.body,
                "{mode:?}: response bodies differ"
            );
            for h in RESPONSE_HEADERS {
                assert_eq!(
                    scenario::flat(by_envoy.header_all(h)),
                    scenario::flat(by_proxy.header_all(h)),
                    "{mode:?}: response header {h}"
                );
            }
        }

        // A stream gives the same events both ways.
        let streamed = assert_sse_one_by_one(ports.proxy, &upstream, "parity-sse-proxy").await;
        let through_envoy =
            assert_sse_one_by_one(envoy.port(1), &upstream, "parity-sse-envoy").await;
        assert_eq!(streamed, through_envoy);
    }
}

mod lifecycle {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn admin_endpoints() {
        let upstream = MockUpstream::start().await;
        let proxy = support::free_port();
        let yaml = format!(
            r#"binds:
- port: {proxy}
  listeners:
  - routes:
    - name: chat
      policies:
        requestHeaderModifier:
          set:
            Authorization: "Bearer sk-literal-e2e"
            x-upstream-team: "${{TOLLGATE_E2E_SECRET}}"
            x-visible: plain-value
      backends: [ {{ host: "127.0.0.1:{up}" }} ]
"#,
            up = upstream.port
        );
        let tollgate =
            Tollgate::start_with_env(&yaml, &[("TOLLGATE_E2E_SECRET", "s3cr3t-from-env")]).await;

        let health = tollgate.admin("/healthz").await.unwrap();
        assert_eq!((health.status, health.text().trim()), (200, "ok"));
        assert_eq!(tollgate.admin("/readyz").await.unwrap().status, 200);
        assert_eq!(tollgate.admin("/nope").await.unwrap().status, 404);

        let reply = client::must(proxy, Req::get("/v1/models").header("x-test-id", "admin")).await;
        assert_eq!(reply.status, 200);
        let seen = upstream.request("admin");
        assert_eq!(
            seen.header("authorization").as_deref(),
            Some("Bearer sk-literal-e2e")
        );
        assert_eq!(
            seen.header("x-upstream-team").as_deref(),
            Some("s3cr3t-from-env")
        );

        let metrics = support::eventually("the request metric", Duration::from_secs(5), || async {
            let m = tollgate.metrics().await;
            m.contains(r#"tollgate_requests_total{route="chat",adapter="proxy",status="200""#)
                .then_some(m)
        })
        .await;
        let count = metric(
            &metrics,
            r#"tollgate_requests_total{route="chat",adapter="proxy",status="200""#,
        );
        assert_eq!(count, Some(1.0), "{metrics}");
        assert!(
            metrics.contains("tollgate_request_duration_seconds"),
            "{metrics}"
        );

        let config = tollgate.admin("/config").await.unwrap();
        assert_eq!(config.status, 200);
        assert_eq!(config.header("content-type"), Some("application/json"));
        let text = config.text();
        assert!(
            !text.contains("sk-literal-e2e"),
            "Authorization value leaked: {text}"
        );
        assert!(
            !text.contains("s3cr3t-from-env"),
            "${{ENV}} value leaked: {text}"
        );
        let set = &config.json()["binds"][0]["listeners"][0]["routes"][0]["policies"]
            ["requestHeaderModifier"]["set"];
        assert_eq!(set["Authorization"], "<redacted>", "{set}");
        assert_eq!(set["x-upstream-team"], "<redacted>", "{set}");
        assert_eq!(set["x-visible"], "plain-value", "{set}");
    }

    fn versioned(proxy: u16, upstream: u16, version: &str) -> String {
        format!(
            r#"binds:
- port: {proxy}
  listeners:
  - routes:
    - name: versioned
      policies:
        responseHeaderModifier: {{ set: {{ x-config-version: {version} }} }}
      backends: [ {{ host: "127.0.0.1:{upstream}" }} ]
"#
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hot_reload_applies_edits_and_rejects_broken_files() {
        let upstream = MockUpstream::start().await;
        let proxy = support::free_port();
        let tollgate = Tollgate::start(&versioned(proxy, upstream.port, "v1")).await;
        let version = || async {
            client::get(proxy, "/")
                .await
                .header("x-config-version")
                .map(str::to_string)
        };
        assert_eq!(version().await.as_deref(), Some("v1"));

        tollgate.rewrite_config(&versioned(proxy, upstream.port, "v2"));
        support::eventually(
            "the edited header value",
            Duration::from_secs(5),
            || async { (version().await.as_deref() == Some("v2")).then_some(()) },
        )
        .await;
        let metrics = tollgate.metrics().await;
        assert_eq!(
            metric(
                &metrics,
                r#"tollgate_config_reloads_total{result="success"}"#
            ),
            Some(1.0),
            "{metrics}"
        );

        let broken = format!(
            "{}bogusField: true\n",
            versioned(proxy, upstream.port, "v3")
        );
        tollgate.rewrite_config(&broken);
        let metrics = support::eventually("a failed reload", Duration::from_secs(5), || async {
            let m = tollgate.metrics().await;
            metric(&m, r#"tollgate_config_reloads_total{result="failure"}"#)
                .is_some_and(|v| v == 1.0)
                .then_some(m)
        })
        .await;
        assert_eq!(
            metric(
                &metrics,
                r#"tollgate_config_reloads_total{result="success"}"#
            ),
            Some(1.0)
        );
        let log = tollgate.log();
        let rejected = log
            .lines()
            .find(|l| l.contains("config reload rejected"))
            .unwrap_or_else(|| panic!("no rejection logged:\n{log}"));
        assert!(
            rejected.contains("bogusField"),
            "the log names the bad field: {rejected}"
        );
        assert_eq!(
            version().await.as_deref(),
            Some("v2"),
            "the old config keeps serving"
        );
        assert_eq!(tollgate.admin("/readyz").await.unwrap().status, 200);
    }

    /// SIGTERM during a stream: readiness goes off, new connections are refused, the
    /// stream finishes, and the process exits 0 within the grace period.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn graceful_shutdown_finishes_streams() {
        const EVENTS: u32 = 8;
        let upstream = MockUpstream::start().await;
        let ports = Ports::free();
        let mut tollgate = Tollgate::start(&scenario::config(ports, upstream.port, true)).await;
        let mut stream = client::open(ports.proxy, scenario::sse_request("drain", EVENTS, 250))
            .await
            .unwrap();
        assert_eq!(stream.status, 200);
        let first = stream.next_event().await.unwrap().expect("a first event");

        let signalled = std::time::Instant::now();
        tollgate.terminate();
        support::eventually("readiness off", Duration::from_secs(3), || async {
            match tollgate.admin("/readyz").await {
                Ok(r) if r.status == 200 => None,
                Ok(r) => {
                    assert_eq!(r.status, 503);
                    Some(())
                }
                Err(_) => Some(()), // the admin server already closed
            }
        })
        .await;
        support::eventually("the proxy port closed", Duration::from_secs(3), || async {
            tokio::net::TcpStream::connect(("127.0.0.1", ports.proxy))
                .await
                .err()
                .map(|_| ())
        })
        .await;

        let mut events = vec![first];
        events.extend(stream.all_events().await.expect("the stream completes"));
        assert_eq!(events.len(), EVENTS as usize + 1);
        assert_eq!(events.last().unwrap().data, "[DONE]");

        let status = tollgate
            .wait_exit(Duration::from_secs(7))
            .await
            .unwrap_or_else(|| panic!("still running 7 s after SIGTERM:\n{}", tollgate.log()));
        let took = signalled.elapsed();
        assert!(
            status.success(),
            "exit status {status}:\n{}",
            tollgate.log()
        );
        assert!(
            took < Duration::from_secs(5),
            "exit took {took:?}, past the 5s grace period"
        );
    }
}

mod cli {
    use std::process::Command;

    use super::support::{envoy, repo_root, tollgate};

    fn yaml_files(dir: &str) -> Vec<std::path::PathBuf> {
        let mut files: Vec<_> = std::fs::read_dir(repo_root().join(dir))
            .unwrap_or_else(|e| panic!("reading {dir}: {e}"))
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
            .collect();
        files.sort();
        assert!(!files.is_empty(), "no YAML files in {dir}");
        files
    }

    fn validate(path: &std::path::Path) -> std::process::Output {
        Command::new(tollgate::binary())
            .args(["validate", "-c"])
            .arg(path)
            // Examples take credentials from the environment.
            .env("UPSTREAM_API_KEY", "sk-example")
            .output()
            .expect("running tollgate validate")
    }

    #[test]
    fn examples_are_valid() {
        for file in yaml_files("examples") {
            let out = validate(&file);
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{}: {}{stdout}",
                file.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(stdout.trim(), format!("{}: ok", file.display()));
        }
    }

    #[test]
    fn validate_names_the_bad_field() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            (
                "binds:\n- port: 8080\n  listeners:\n  - routes:\n    - matches:\n      - path: { regex: \"/v1/(\" }\n",
                "binds[0].listeners[0].routes[0].matches[0].path.regex: invalid regex",
            ),
            (
                "binds:\n- port: 8080\n  listeners:\n  - routes:\n    - policies:\n        requestHeaderModifier: { sett: { a: b } }\n",
                "binds[0].listeners[0].routes[0].policies.requestHeaderModifier.sett: unknown field `sett`",
            ),
        ];
        for (i, (yaml, expected)) in cases.iter().enumerate() {
            let path = dir.path().join(format!("bad{i}.yaml"));
            std::fs::write(&path, yaml).unwrap();
            let out = validate(&path);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{stderr}");
            assert!(
                stderr.contains(expected),
                "expected {expected:?} in: {stderr}"
            );
        }
    }

    #[test]
    fn deploy_envoy_configs_pass_envoy_validate() {
        for file in yaml_files("deploy/envoy") {
            let (ok, output) = envoy::validate(&file);
            assert!(ok, "{}:\n{output}", file.display());
        }
    }

    #[test]
    fn schema_and_version() {
        let out = Command::new(tollgate::binary())
            .arg("schema")
            .output()
            .unwrap();
        assert!(out.status.success());
        let schema: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("schema is JSON");
        assert!(schema["properties"]["binds"].is_object(), "{schema}");
        assert!(schema["properties"]["extProc"].is_object(), "{schema}");
        let out = Command::new(tollgate::binary())
            .arg("version")
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("tollgate {}", env!("CARGO_PKG_VERSION"))
        );
    }
}
