//! Admin endpoints, hot reload and graceful shutdown.

use std::time::Duration;

use crate::support::client::{self, Req};
use crate::support::envoy::{Envoy, ListenerSpec, Mode};
use crate::support::scenario::{self, Ports};
use crate::support::tollgate::Tollgate;
use crate::support::upstream::MockUpstream;
use crate::support::{self, metric};

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

fn versioned(ports: Ports, upstream: u16, version: &str) -> String {
    format!(
        r#"extProc: {{ address: "127.0.0.1:{ext_proc}" }}
binds:
- port: {proxy}
  listeners:
  - routes:
    - name: versioned
      policies:
        responseHeaderModifier: {{ set: {{ x-config-version: {version} }} }}
      backends: [ {{ host: "127.0.0.1:{upstream}" }} ]
"#,
        ext_proc = ports.ext_proc,
        proxy = ports.proxy,
    )
}

/// The value of `x-config-version` on an answer through `port`.
async fn version(port: u16) -> Option<String> {
    let reply = client::get(port, "/").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.header("x-config-version").map(str::to_string)
}

/// An edit of the file reaches both adapters; a broken file is rejected, logged and
/// counted, and the previous config keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_applies_edits_and_rejects_broken_files() {
    let upstream = MockUpstream::start().await;
    let ports = Ports::free();
    let tollgate = Tollgate::start(&versioned(ports, upstream.port, "v1")).await;
    let envoy = Envoy::start(&[ListenerSpec::new(
        ports.ext_proc,
        upstream.port,
        Mode::Streamed,
    )])
    .await;
    let adapters = [ports.proxy, envoy.port(0)];
    for port in adapters {
        assert_eq!(version(port).await.as_deref(), Some("v1"));
    }

    tollgate.rewrite_config(&versioned(ports, upstream.port, "v2"));
    for port in adapters {
        support::eventually(
            "the edited header value",
            Duration::from_secs(5),
            || async { (version(port).await.as_deref() == Some("v2")).then_some(()) },
        )
        .await;
    }
    let success = r#"tollgate_config_reloads_total{result="success"}"#;
    let failure = r#"tollgate_config_reloads_total{result="failure"}"#;
    let metrics = tollgate.metrics().await;
    assert_eq!(metric(&metrics, success), Some(1.0), "{metrics}");

    let broken = format!(
        "{}bogusField: true\n",
        versioned(ports, upstream.port, "v3")
    );
    tollgate.rewrite_config(&broken);
    let metrics = support::eventually("a failed reload", Duration::from_secs(5), || async {
        let m = tollgate.metrics().await;
        (metric(&m, failure) == Some(1.0)).then_some(m)
    })
    .await;
    assert_eq!(metric(&metrics, success), Some(1.0), "{metrics}");
    let log = tollgate.log();
    let rejected = log
        .lines()
        .find(|l| l.contains("config reload rejected"))
        .unwrap_or_else(|| panic!("no rejection logged:\n{log}"));
    assert!(
        rejected.contains("bogusField"),
        "the log names the bad field: {rejected}"
    );
    for port in adapters {
        assert_eq!(
            version(port).await.as_deref(),
            Some("v2"),
            "the old config keeps serving"
        );
    }
    assert_eq!(tollgate.admin("/readyz").await.unwrap().status, 200);
}

/// SIGTERM during a stream: readiness goes off (503), new proxy connections are
/// refused, the stream finishes, and the process exits 0 within the grace period.
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
    // The admin server outlives the drain, so probes see readiness turn false.
    support::eventually("readiness off", Duration::from_secs(3), || async {
        let r = tollgate
            .admin("/readyz")
            .await
            .expect("admin answers while draining");
        (r.status != 200).then(|| assert_eq!(r.status, 503))
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

/// SIGTERM while an SSE answer streams through Envoy with every chunk going through
/// tollgate (static STREAMED mode, no mode override): the ext_proc stream is not cut,
/// and tollgate exits 0 once it is done, within the grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_ext_proc_streams() {
    const EVENTS: u32 = 8;
    let upstream = MockUpstream::start().await;
    let ports = Ports::free();
    let mut tollgate = Tollgate::start(&scenario::config(ports, upstream.port, false)).await;
    let envoy = Envoy::start(&[ListenerSpec::new(
        ports.ext_proc,
        upstream.port,
        Mode::Streamed,
    )])
    .await;
    let mut stream = client::open(
        envoy.port(0),
        scenario::sse_request("drain-ext-proc", EVENTS, 250),
    )
    .await
    .unwrap();
    assert_eq!(stream.status, 200);
    let first = stream.next_event().await.unwrap().expect("a first event");

    let signalled = std::time::Instant::now();
    tollgate.terminate();
    support::eventually("readiness off", Duration::from_secs(3), || async {
        let r = tollgate
            .admin("/readyz")
            .await
            .expect("admin answers while draining");
        (r.status != 200).then(|| assert_eq!(r.status, 503))
    })
    .await;

    let mut events = vec![first];
    events.extend(stream.all_events().await.expect("the stream completes"));
    assert_eq!(events.len(), EVENTS as usize + 1);
    assert_eq!(events.last().unwrap().data, "[DONE]");
    assert_eq!(envoy.ext_proc_counter(0, "streams_failed").await, 0);
    assert_eq!(envoy.ext_proc_counter(0, "failure_mode_allowed").await, 0);

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

/// The ext_proc port answers `grpc.health.v1` for `""`, `liveness`, `readiness` and the
/// ExternalProcessor service (what Envoy's gRPC health checks and Kubernetes probe), and
/// NOT_FOUND for other names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_health_on_the_ext_proc_port() {
    use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
    let ext_proc = support::free_port();
    let yaml = format!("extProc: {{ address: \"127.0.0.1:{ext_proc}\" }}\n");
    let _tollgate = Tollgate::start(&yaml).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{ext_proc}"))
        .unwrap()
        .connect()
        .await
        .expect("connecting to the ext_proc port");
    support::assert_serving(
        channel.clone(),
        &[
            "",
            "liveness",
            "readiness",
            "envoy.service.ext_proc.v3.ExternalProcessor",
        ],
    )
    .await;
    let mut client = HealthClient::new(channel);
    let unknown = client
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
}

/// The endpoint picker's conventional layout: ext_proc over TLS with a certificate made
/// at start (a gateway encrypts without verifying), gRPC health in plaintext on its own
/// port for Kubernetes probes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_signed_ext_proc_and_a_plaintext_health_port() {
    use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
    let ext_proc = support::free_port();
    let health = support::free_port();
    let yaml = format!(
        "extProc: {{ address: \"127.0.0.1:{ext_proc}\", selfSignedTls: true, healthAddress: \"127.0.0.1:{health}\" }}\n"
    );
    let tollgate = Tollgate::start(&yaml).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{health}"))
        .unwrap()
        .connect()
        .await
        .expect("connecting to the health port");
    support::assert_serving(channel, &["", "liveness", "readiness"]).await;
    let cert = support::tls::peer_certificate(("127.0.0.1", ext_proc), "localhost").await;
    assert!(!cert.is_empty(), "ext_proc answers TLS with a certificate");
    // Plaintext h2c on the TLS port fails.
    let plain = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{ext_proc}"))
        .unwrap()
        .connect()
        .await;
    let refused = match plain {
        Err(_) => true,
        Ok(ch) => HealthClient::new(ch)
            .check(HealthCheckRequest::default())
            .await
            .is_err(),
    };
    assert!(refused, "the ext_proc port speaks TLS only");
    drop(tollgate);
}
