//! Envoy → tollgate ext_proc → upstream: the header scenario in BUFFERED, STREAMED and
//! FULL_DUPLEX_STREAMED with `modeOverride` on and off, SSE, Envoy's route name, and
//! Envoy's failure mode when tollgate is down, and ext_proc over a Unix domain socket.

use std::time::Duration;

use crate::support::client;
use crate::support::envoy::{Envoy, ListenerSpec, Mode};
use crate::support::scenario::{self, Ports};
use crate::support::tollgate::Tollgate;
use crate::support::upstream::MockUpstream;
use crate::support::{self, assert_sse_one_by_one, metric};

/// The header scenario through Envoy in `mode`; with `mode_override` off tollgate
/// follows Envoy's static mode, so the bodies really flow through it.
async fn header_policies(mode: Mode, mode_override: bool) {
    let upstream = MockUpstream::start().await;
    let ports = Ports::free();
    let tollgate = Tollgate::start(&scenario::config(ports, upstream.port, mode_override)).await;
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
            m.contains(r#"tollgate_requests_total{route="chat",adapter="ext_proc",status="200""#)
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
        ListenerSpec::new(ports.ext_proc, upstream.port, Mode::Streamed).failure_mode_allow(true),
        ListenerSpec::new(ports.ext_proc, upstream.port, Mode::Streamed).failure_mode_allow(false),
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

/// ext_proc over a Unix domain socket, as a sidecar beside Envoy serves it: the header
/// scenario end to end, and Envoy's connection counted under the listener's limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ext_proc_over_a_unix_socket() {
    let upstream = MockUpstream::start().await;
    let ports = Ports::free();
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("ext_proc.sock");
    let tcp = format!("127.0.0.1:{}", ports.ext_proc);
    let yaml = scenario::config(ports, upstream.port, true)
        .replace(&tcp, &format!("unix:{}", socket.display()));
    assert!(!yaml.contains(&tcp), "{yaml}");
    let tollgate = Tollgate::start(&yaml).await;
    let spec = ListenerSpec::new(ports.ext_proc, upstream.port, Mode::Buffered);
    let envoy = Envoy::start_over_unix(&[spec], &socket).await;

    let req = scenario::chat_request("over-unix");
    let reply = client::must(envoy.port(0), req.clone()).await;
    scenario::assert_client_response(&reply, &req);
    scenario::assert_upstream_request(&upstream.request("over-unix"), &req);
    assert_eq!(envoy.ext_proc_counter(0, "streams_started").await, 1);
    assert_eq!(envoy.ext_proc_counter(0, "streams_failed").await, 0);
    let metrics = tollgate.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            r#"tollgate_connections_active{listener="ext_proc"}"#
        ),
        Some(1.0),
        "{metrics}"
    );
}
