//! tollgate as Envoy's control plane: a real Envoy 1.40 with a bootstrap that only
//! points at tollgate's ADS gets its listeners, routes, clusters and endpoints from
//! tollgate's config, and carries LLM traffic through tollgate's ext_proc.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::client::{self, Req};
use crate::support::envoy::Envoy;
use crate::support::tollgate::Tollgate;
use crate::support::upstream::MockUpstream;
use crate::support::{eventually, free_port};
use tokio_stream::StreamExt as _;

/// A config whose one bind (Envoy's listener on `listen`) routes OpenAI-style chat to
/// the upstream on `upstream` with token accounting, the usage also as headers.
pub(crate) fn config(ext_proc: u16, listen: u16, upstream: u16) -> String {
    format!(
        r#"extProc: {{ address: "127.0.0.1:{ext_proc}" }}
xds: {{}}
binds:
- port: {listen}
  listeners:
  - routes:
    - name: openai
      matches: [ {{ path: {{ pathPrefix: /v1/chat/completions }}, method: POST }} ]
      policies:
        tokenAccounting: {{ responseHeaders: true }}
      backends: [ {{ host: "127.0.0.1:{upstream}" }} ]
"#
    )
}

const CHAT: &str = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hello"}]}"#;

/// A chat completion through Envoy's listener on `port`, with the usage the mock
/// upstream reports; the reply once Envoy serves the listener.
pub(crate) async fn chat(port: u16, id: &str) -> client::Reply {
    client::must(
        port,
        Req::post("/v1/chat/completions", CHAT)
            .header("x-test-id", id)
            .header("x-mock-prompt-tokens", "21")
            .header("x-mock-completion-tokens", "8"),
    )
    .await
}

/// Waits until Envoy's listener on `port` answers, and returns that first reply.
pub(crate) async fn first_reply(port: u16) -> client::Reply {
    let warm = Req::post("/v1/chat/completions", CHAT).header("x-test-id", "warm");
    first_reply_to(port, warm).await
}

/// Waits until Envoy's listener on `port` answers `req` with 200, and returns that reply.
pub(crate) async fn first_reply_to(port: u16, req: Req) -> client::Reply {
    eventually(
        "Envoy serving the listener tollgate sent",
        Duration::from_secs(15),
        || {
            let req = req.clone();
            async move {
                client::send(port, req)
                    .await
                    .ok()
                    .filter(|r| r.status == 200)
            }
        },
    )
    .await
}

pub(crate) async fn xds_status(tollgate: &Tollgate) -> serde_json::Value {
    let reply = tollgate.admin("/xds").await.expect("GET /xds");
    assert_eq!(reply.status, 200);
    reply.json()
}

async fn bootstraps_and_carries_token_accounting(delta: bool) {
    let upstream = MockUpstream::start().await;
    let (ext_proc, listen) = (free_port(), free_port());
    let tollgate = Tollgate::start(&config(ext_proc, listen, upstream.port)).await;
    let envoy = Envoy::start_ads("gateway-1", ext_proc, delta).await;
    first_reply(listen).await;

    let reply = chat(listen, "xds-chat").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    // tollgate's ext_proc ran the route's token accounting on Envoy's stream.
    assert_eq!(reply.header("x-tollgate-input-tokens"), Some("21"));
    assert_eq!(reply.header("x-tollgate-output-tokens"), Some("8"));
    assert_eq!(reply.header("x-tollgate-total-tokens"), Some("29"));
    assert_eq!(
        upstream.request("xds-chat").header("x-test-id").as_deref(),
        Some("xds-chat")
    );
    let metrics = tollgate.metrics().await;
    assert!(
        metrics.contains("route=\"openai\"") && metrics.contains("adapter=\"ext_proc\""),
        "the Envoy route's name selected tollgate's route:\n{metrics}"
    );

    // /xds: the node, and every type ACKed at the version sent.
    let status = xds_status(&tollgate).await;
    let stream = &status["streams"][0];
    assert_eq!(stream["node"], "gateway-1");
    assert_eq!(stream["variant"], if delta { "delta" } else { "sotw" });
    let served = &status["served"]["default"];
    for kind in [
        "cluster",
        "endpoint",
        "extension_config",
        "listener",
        "route",
    ] {
        let t = &stream["types"][kind];
        assert_eq!(t["acked_version"], t["sent_version"], "{kind}: {status:#}");
        assert_eq!(
            t["sent_version"], served[kind]["version"],
            "{kind}: {status:#}"
        );
        assert!(t["last_nack"].is_null(), "{kind}: {status:#}");
    }
    assert_eq!(served["listener"]["resources"][0], format!("bind_{listen}"));
    // Envoy holds exactly what tollgate generated.
    let dump = envoy.config_dump().await.to_string();
    assert!(
        dump.contains(&format!("backend_127.0.0.1_{}", upstream.port))
            && dump.contains("tollgate_ext_proc")
            && dump.contains("envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor")
    );
    let variant = if delta { "delta" } else { "sotw" };
    assert!(
        metrics.contains(&format!(
            "tollgate_xds_responses_total{{variant=\"{variant}\",type=\"listener\"}}"
        )),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_bootstraps_from_sotw_ads_and_carries_token_accounting() {
    bootstraps_and_carries_token_accounting(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_bootstraps_from_delta_ads_and_carries_token_accounting() {
    bootstraps_and_carries_token_accounting(true).await;
}

/// Requests sent one after another until `stop`, counting replies that are not 200.
struct Load {
    sent: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<Vec<String>>,
}

impl Load {
    fn start(port: u16) -> Self {
        let (sent, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (s, f, halt) = (sent.clone(), failed.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let mut errors = Vec::new();
            while !halt.load(Ordering::Relaxed) {
                let n = s.fetch_add(1, Ordering::Relaxed);
                match client::send(
                    port,
                    Req::post("/v1/chat/completions", CHAT)
                        .header("x-test-id", &format!("load-{n}")),
                )
                .await
                {
                    Ok(r) if r.status == 200 => {}
                    Ok(r) => {
                        f.fetch_add(1, Ordering::Relaxed);
                        errors.push(format!("{}: {}", r.status, r.text()));
                    }
                    Err(e) => {
                        f.fetch_add(1, Ordering::Relaxed);
                        errors.push(e.to_string());
                    }
                }
            }
            errors
        });
        Load {
            sent,
            failed,
            stop,
            task,
        }
    }

    async fn finish(self) -> (u64, u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let errors = self.task.await.expect("load task");
        (
            self.sent.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            errors,
        )
    }
}

/// A config edit moves the route to another upstream: Envoy follows through EDS, and
/// a request loop running meanwhile sees no failure. The time from the file's write to
/// the first request at the new upstream is printed and bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_edit_moves_a_sotw_envoy_with_no_failed_request() {
    config_edit_under_load(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_edit_moves_a_delta_envoy_with_no_failed_request() {
    config_edit_under_load(true).await;
}

/// The edit moves the route's backend: a new cluster, its endpoints, the route
/// configuration pointing at it; the old cluster stays until the routes have moved.
async fn config_edit_under_load(delta: bool) {
    let (old, new) = (MockUpstream::start().await, MockUpstream::start().await);
    let (ext_proc, listen) = (free_port(), free_port());
    let tollgate = Tollgate::start(&config(ext_proc, listen, old.port)).await;
    let _envoy = Envoy::start_ads("gateway-1", ext_proc, delta).await;
    first_reply(listen).await;

    let load = Load::start(listen);
    eventually(
        "load reaching the old upstream",
        Duration::from_secs(5),
        || async { (old.requests().len() > 20).then_some(()) },
    )
    .await;
    let edited = Instant::now();
    tollgate.rewrite_config(&config(ext_proc, listen, new.port));
    eventually(
        "Envoy sending to the new upstream",
        Duration::from_secs(5),
        || async { (!new.requests().is_empty()).then_some(()) },
    )
    .await;
    let followed = edited.elapsed();
    // Keep the load on a while at the new version.
    let at_switch = new.requests().len();
    eventually(
        "load reaching the new upstream",
        Duration::from_secs(5),
        || async { (new.requests().len() > at_switch + 20).then_some(()) },
    )
    .await;
    let (sent, failed, errors) = load.finish().await;
    eprintln!(
        "config edit → {} Envoy at the new upstream: {followed:?} ({sent} requests, {failed} failed)",
        if delta { "Delta" } else { "SotW" }
    );
    assert_eq!(failed, 0, "failed requests during the switch: {errors:?}");
    // The file watcher applies a write once two polls 0.5 s apart read the same text.
    assert!(followed < Duration::from_millis(1500), "took {followed:?}");
}

/// A route Envoy refuses (a regex RE2 rejects) is NACKed: Envoy keeps serving the last
/// good routes, and the NACK with Envoy's reason is on `/xds` and in the metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nacked_route_keeps_envoy_on_its_last_good_version() {
    let upstream = MockUpstream::start().await;
    let (ext_proc, listen) = (free_port(), free_port());
    let good = config(ext_proc, listen, upstream.port);
    let tollgate = Tollgate::start(&good).await;
    let _envoy = Envoy::start_ads("gateway-1", ext_proc, false).await;
    first_reply(listen).await;
    let before =
        xds_status(&tollgate).await["streams"][0]["types"]["route"]["acked_version"].clone();

    // RE2 allows at most 1000 repetitions; tollgate's regex engine accepts more.
    let bad = good.replace(
        "    - name: openai\n",
        "    - name: refused\n      matches: [ { path: { regex: \"/x{1001}\" } } ]\n      backends: [ { host: \"127.0.0.1:1\" } ]\n    - name: openai\n",
    );
    assert_ne!(bad, good);
    tollgate.rewrite_config(&bad);
    let nack = eventually(
        "the route NACK on /xds",
        Duration::from_secs(10),
        || async {
            let status = xds_status(&tollgate).await;
            let route = status["streams"][0]["types"]["route"].clone();
            (!route["last_nack"].is_null()).then_some(route)
        },
    )
    .await;
    assert_eq!(
        nack["acked_version"], before,
        "the node keeps its last good routes"
    );
    assert_eq!(nack["last_nack"]["kept_version"], before);
    let message = nack["last_nack"]["message"].as_str().unwrap();
    assert!(message.contains("repetition"), "Envoy's reason: {message}");
    let metrics = tollgate.metrics().await;
    assert!(
        metrics.contains("tollgate_xds_nacks_total{variant=\"sotw\",type=\"route\"} 1"),
        "{metrics}"
    );
    // Traffic flows on the last good version.
    let reply = chat(listen, "after-nack").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-tollgate-total-tokens"), Some("29"));

    // Fixing the file moves the node on.
    tollgate.rewrite_config(&good);
    eventually(
        "the node ACKing the fixed routes",
        Duration::from_secs(10),
        || async {
            let status = xds_status(&tollgate).await;
            let route = &status["streams"][0]["types"]["route"];
            (route["acked_version"] == route["sent_version"] && route["sent_version"] == before)
                .then_some(())
        },
    )
    .await;
}

/// Two Envoys with their own node ids get their own binds; one restarted re-syncs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_get_their_own_binds_and_a_restart_resyncs() {
    let upstream = MockUpstream::start().await;
    let (ext_proc, a, b) = (free_port(), free_port(), free_port());
    let yaml = format!(
        r#"extProc: {{ address: "127.0.0.1:{ext_proc}" }}
xds:
  nodes:
    edge-a: {{ binds: [{a}] }}
    edge-b: {{ binds: [{b}] }}
binds:
- port: {a}
  listeners:
  - routes:
    - {{ name: a, backends: [ {{ host: "127.0.0.1:{up}" }} ] }}
- port: {b}
  listeners:
  - routes:
    - {{ name: b, backends: [ {{ host: "127.0.0.1:{up}" }} ] }}
"#,
        up = upstream.port
    );
    let tollgate = Tollgate::start(&yaml).await;
    let envoy_a = Envoy::start_ads("edge-a", ext_proc, false).await;
    let envoy_b = Envoy::start_ads("edge-b", ext_proc, true).await;
    first_reply(a).await;
    first_reply(b).await;
    let listeners = |dump: serde_json::Value| {
        let text = dump.to_string();
        (
            text.contains(&format!("bind_{a}")),
            text.contains(&format!("bind_{b}")),
        )
    };
    assert_eq!(listeners(envoy_a.config_dump().await), (true, false));
    assert_eq!(listeners(envoy_b.config_dump().await), (false, true));

    drop(envoy_a);
    eventually(
        "edge-a's stream gone from /xds",
        Duration::from_secs(10),
        || async {
            let status = xds_status(&tollgate).await;
            (status["streams"].as_array().unwrap().len() == 1).then_some(())
        },
    )
    .await;
    let envoy_a = Envoy::start_ads("edge-a", ext_proc, false).await;
    let reply = client::must(a, Req::get("/anything").header("x-test-id", "restarted")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(listeners(envoy_a.config_dump().await), (true, false));
}

/// Malformed discovery requests end their stream with INVALID_ARGUMENT and a reason;
/// the server keeps serving well-formed ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_discovery_requests_get_clear_errors() {
    use envoy_types::pb::envoy::config::core::v3::Node;
    use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
    use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;

    let upstream = MockUpstream::start().await;
    let (ext_proc, listen) = (free_port(), free_port());
    let tollgate = Tollgate::start(&config(ext_proc, listen, upstream.port)).await;
    let mut client =
        AggregatedDiscoveryServiceClient::connect(format!("http://127.0.0.1:{ext_proc}"))
            .await
            .expect("connecting to ADS");
    let node = Some(Node {
        id: "probe".into(),
        ..Default::default()
    });
    let cluster = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
    let cases = [
        (
            DiscoveryRequest {
                type_url: cluster.into(),
                ..Default::default()
            },
            "carries no node",
        ),
        (
            DiscoveryRequest {
                node: node.clone(),
                type_url: "type.googleapis.com/x.Unknown".into(),
                ..Default::default()
            },
            "unknown type URL",
        ),
        (
            DiscoveryRequest {
                node: node.clone(),
                type_url: cluster.into(),
                resource_names: (0..100_001).map(|i| i.to_string()).collect(),
                ..Default::default()
            },
            "resource names",
        ),
    ];
    for (request, reason) in cases {
        let mut stream = client
            .stream_aggregated_resources(tokio_stream::iter([request]))
            .await
            .expect("the stream opens")
            .into_inner();
        let err = stream
            .message()
            .await
            .expect_err("an error, not a response");
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains(reason), "{reason}: {err:?}");
    }
    // A well-formed request still gets the clusters.
    let ok = DiscoveryRequest {
        node,
        type_url: cluster.into(),
        ..Default::default()
    };
    let mut stream = client
        .stream_aggregated_resources(tokio_stream::iter([ok]).chain(tokio_stream::pending()))
        .await
        .unwrap()
        .into_inner();
    let response = stream.message().await.unwrap().expect("a response");
    assert_eq!(response.resources.len(), 2, "tollgate and the backend");
    let metrics = tollgate.metrics().await;
    assert!(
        metrics.contains("tollgate_xds_streams_rejected_total{variant=\"sotw\"} 3"),
        "{metrics}"
    );

    // Nodes that never ACK and never read, on their own connections: the next config
    // edit still reaches the well-behaved stream (never ACKing, it gets each version).
    let mut stalled = Vec::new();
    for i in 0..20 {
        let mut c =
            AggregatedDiscoveryServiceClient::connect(format!("http://127.0.0.1:{ext_proc}"))
                .await
                .unwrap();
        let request = DiscoveryRequest {
            node: Some(Node {
                id: format!("stalled-{i}"),
                ..Default::default()
            }),
            type_url: cluster.into(),
            ..Default::default()
        };
        let response = c
            .stream_aggregated_resources(
                tokio_stream::iter([request]).chain(tokio_stream::pending()),
            )
            .await
            .unwrap();
        stalled.push((c, response));
    }
    let moved = MockUpstream::start().await;
    tollgate.rewrite_config(&config(ext_proc, listen, moved.port));
    let update = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("the edit reaches the reading stream")
        .unwrap()
        .expect("a response");
    use prost::Message as _;
    let names: Vec<String> = update
        .resources
        .iter()
        .map(|a| {
            envoy_types::pb::envoy::config::cluster::v3::Cluster::decode(a.value.as_slice())
                .unwrap()
                .name
        })
        .collect();
    assert!(
        names.contains(&format!("backend_127.0.0.1_{}", moved.port)),
        "{names:?}"
    );
    let status = xds_status(&tollgate).await;
    assert_eq!(
        status["streams"].as_array().unwrap().len(),
        21,
        "{status:#}"
    );
    drop(stalled);
}

/// The config a control plane serves its sidecars (entry `fleet`): the proxy on
/// `proxy` with a header saying which version it runs, admin on `admin`.
fn served(proxy: u16, admin: u16, upstream: u16, tag: &str) -> String {
    format!(
        r#"admin: {{ address: "127.0.0.1:{admin}" }}
binds:
- port: {proxy}
  listeners:
  - routes:
    - name: served
      policies: {{ responseHeaderModifier: {{ set: {{ x-served: "{tag}" }} }} }}
      backends: [ {{ host: "127.0.0.1:{upstream}" }} ]
"#
    )
}

fn control_plane(grpc: u16, fleet: &str) -> String {
    let indented: String = fleet.lines().map(|l| format!("      {l}\n")).collect();
    format!(
        "extProc: {{ address: \"127.0.0.1:{grpc}\" }}\nxds:\n  configs:\n    fleet:\n{indented}"
    )
}

async fn served_tag(proxy: u16) -> Option<String> {
    let reply = client::send(proxy, Req::get("/v1/models").header("x-test-id", "tag"))
        .await
        .ok()?;
    reply.header("x-served").map(str::to_string)
}

/// A tollgate sidecar (`--from-xds`) runs the config a tollgate control plane serves,
/// follows its edits, NACKs an invalid one (kept on the last good, visible on the
/// control plane's `/xds`), and keeps serving while the control plane restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_follows_a_tollgate_control_plane() {
    let upstream = MockUpstream::start().await;
    let (grpc, proxy, admin) = (free_port(), free_port(), free_port());
    let v1 = control_plane(grpc, &served(proxy, admin, upstream.port, "v1"));
    let cp = Tollgate::start(&v1).await;
    let sidecar =
        Tollgate::start_from_xds(&format!("127.0.0.1:{grpc}"), "fleet", "side-1", admin).await;
    assert_eq!(served_tag(proxy).await.as_deref(), Some("v1"));

    // An edit on the control plane reaches the sidecar.
    cp.rewrite_config(&control_plane(
        grpc,
        &served(proxy, admin, upstream.port, "v2"),
    ));
    eventually("the sidecar on v2", Duration::from_secs(10), || async {
        (served_tag(proxy).await.as_deref() == Some("v2")).then_some(())
    })
    .await;

    // A config the sidecar cannot apply (its admin port is restart-only) is NACKed with
    // the reason; the sidecar keeps v2.
    let moved = served(proxy, free_port(), upstream.port, "v3");
    cp.rewrite_config(&control_plane(grpc, &moved));
    let nack = eventually(
        "the sidecar's NACK on the control plane",
        Duration::from_secs(10),
        || async {
            let status = xds_status(&cp).await;
            let t = status["streams"][0]["types"]["tollgate_config"].clone();
            (!t["last_nack"].is_null()).then_some(t)
        },
    )
    .await;
    let message = nack["last_nack"]["message"].as_str().unwrap();
    assert!(message.contains("admin.address"), "{message}");
    assert_eq!(served_tag(proxy).await.as_deref(), Some("v2"));
    assert_eq!(xds_status(&cp).await["streams"][0]["node"], "side-1");

    // The control plane goes away: the sidecar keeps serving; it comes back with v4:
    // the sidecar reconnects and applies it.
    let v4 = control_plane(grpc, &served(proxy, admin, upstream.port, "v4"));
    drop(cp);
    for _ in 0..5 {
        assert_eq!(
            served_tag(proxy).await.as_deref(),
            Some("v2"),
            "served while the control plane is down"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _cp = Tollgate::start(&v4).await;
    eventually(
        "the sidecar on v4 after the restart",
        Duration::from_secs(15),
        || async { (served_tag(proxy).await.as_deref() == Some("v4")).then_some(()) },
    )
    .await;
    assert!(
        sidecar.log().contains("xDS config server unreachable"),
        "{}",
        sidecar.log()
    );
}

/// A change to the ext_proc filter's settings reaches Envoy over ECDS alone: the
/// listener is not modified (no drain), the filter takes the new config, traffic flows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ext_proc_settings_change_over_ecds_without_a_listener_drain() {
    let upstream = MockUpstream::start().await;
    let (ext_proc, listen) = (free_port(), free_port());
    let before = config(ext_proc, listen, upstream.port);
    let tollgate = Tollgate::start(&before).await;
    let envoy = Envoy::start_ads("gateway-1", ext_proc, true).await;
    first_reply(listen).await;
    let versions = |status: &serde_json::Value| {
        let t = &status["streams"][0]["types"];
        (
            t["listener"]["acked_version"].clone(),
            t["extension_config"]["acked_version"].clone(),
        )
    };
    let (listener, filter) = versions(&xds_status(&tollgate).await);
    let modified = envoy.counter("listener_manager.listener_modified").await;

    tollgate.rewrite_config(&before.replace(
        "xds: {}",
        "xds: { messageTimeout: 3s, maxMessageTimeout: 20s }",
    ));
    eventually(
        "Envoy running the new filter config",
        Duration::from_secs(10),
        || async {
            let dump = envoy.config_dump().await.to_string();
            dump.contains("\"message_timeout\":\"3s\"").then_some(())
        },
    )
    .await;
    let status = xds_status(&tollgate).await;
    let (listener_after, filter_after) = versions(&status);
    assert_eq!(
        listener_after, listener,
        "the listener did not change: {status:#}"
    );
    assert_ne!(filter_after, filter, "the filter config did: {status:#}");
    assert_eq!(
        envoy.counter("listener_manager.listener_modified").await,
        modified
    );
    let reply = chat(listen, "after-ecds").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-tollgate-total-tokens"), Some("29"));
}

/// An endpoint-picker route served over xDS: Envoy forwards each request to the model
/// server tollgate picked (ORIGINAL_DST on the `envoy.lb` metadata), a client's own
/// destination header steers nothing, and a tenant's shared prompt stays on one server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn picker_routes_land_on_the_pick() {
    use crate::support::sim::Sim;
    let sim = Sim::start(3, &["--default-max-tokens", "4"]);
    let endpoints: Vec<String> = sim.addrs.iter().map(|a| a.to_string()).collect();
    let outsider = MockUpstream::start().await;
    let (ext_proc, listen) = (free_port(), free_port());
    let yaml = format!(
        "extProc: {{ address: \"127.0.0.1:{ext_proc}\" }}\nxds: {{}}\nbinds:\n- port: {listen}\n  listeners:\n  - routes:\n    - name: llm\n      policies:\n        endpointPicker: {{ endpoints: {endpoints:?} }}\n"
    );
    let _tollgate = Tollgate::start(&yaml).await;
    let _envoy = Envoy::start_ads("gateway-1", ext_proc, false).await;
    let spoof = format!("127.0.0.1:{}", outsider.port);
    let system = "You are the support assistant of tenant {t}. Answer briefly. ".repeat(4);
    let mut by_tenant: std::collections::HashMap<usize, std::collections::HashSet<String>> =
        Default::default();
    for i in 0..9 {
        let tenant = i % 3;
        let prompt = format!(
            "{} question {i}",
            system.replace("{t}", &tenant.to_string())
        );
        let body =
            serde_json::json!({"model": "m", "messages": [{"role": "user", "content": prompt}]});
        let request = Req::post("/v1/chat/completions", body.to_string())
            .header("content-type", "application/json")
            .header("x-test-id", &format!("pick-{i}"))
            .header("x-gateway-destination-endpoint", &spoof);
        // Only the first waits for Envoy to have the listener; every later one must land.
        let reply = if i == 0 {
            eventually(
                "Envoy serving the picker route",
                Duration::from_secs(15),
                || {
                    let request = request.clone();
                    async move {
                        client::send(listen, request)
                            .await
                            .ok()
                            .filter(|r| r.status == 200)
                    }
                },
            )
            .await
        } else {
            client::must(listen, request).await
        };
        assert_eq!(reply.status, 200, "{}", reply.text());
        let served = reply
            .header("x-sim-endpoint")
            .expect("a model server answered")
            .to_string();
        assert!(
            endpoints.contains(&served),
            "{served} is in the pool {endpoints:?}"
        );
        by_tenant.entry(tenant).or_default().insert(served);
    }
    assert!(
        outsider.requests().is_empty(),
        "the spoofed destination was not used"
    );
    for (tenant, servers) in &by_tenant {
        assert_eq!(
            servers.len(),
            1,
            "tenant {tenant} stays where its prefix is cached: {servers:?}"
        );
    }
}

/// TLS on both sides, as Envoy takes it from tollgate: the bind's certificate on Envoy's
/// listener, and a backend by name over TLS verified against a CA file with its name
/// checked (a STRICT_DNS cluster). The backend here is a TLS bind of a second tollgate
/// in front of the mock upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listeners_and_tls_backends_by_name() {
    let upstream = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = crate::support::tls::localhost_cert(dir.path());
    let tls_backend = free_port();
    let _backend = crate::support::tls::tls_front(tls_backend, &cert, &key, upstream.port).await;
    let (ext_proc, listen) = (free_port(), free_port());
    let tollgate = Tollgate::start(&format!(
        r#"extProc: {{ address: "127.0.0.1:{ext_proc}" }}
xds: {{}}
binds:
- port: {listen}
  tls: {{ certFile: {c}, keyFile: {k} }}
  listeners:
  - routes:
    - name: loose
      matches: [ {{ path: {{ pathPrefix: /loose }} }} ]
      backends: [ {{ host: "127.0.0.1:{tls_backend}", tls: {{ insecure: true }} }} ]
    - name: secure
      backends: [ {{ host: "localhost:{tls_backend}", tls: {{ caFile: {c} }} }} ]
"#,
        c = cert.display(),
        k = key.display(),
    ))
    .await;
    let _envoy = Envoy::start_ads("gateway-1", ext_proc, false).await;

    let config = crate::support::tls::insecure_client_config(vec![b"http/1.1".to_vec()]);
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    // `/loose` goes to the same server by address, `insecure`: the certificate names
    // `localhost`, not 127.0.0.1, and Envoy does not check it.
    for (path, id) in [("/secure", "tls"), ("/loose", "tls-insecure")] {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nx-test-id: {id}\r\nConnection: close\r\n\r\n"
        );
        let response = eventually(
            "a TLS exchange through Envoy",
            Duration::from_secs(15),
            || {
                let (connector, request) = (connector.clone(), request.clone());
                async move {
                    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", listen))
                        .await
                        .ok()?;
                    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
                    let mut tls = connector.connect(name, tcp).await.ok()?;
                    tokio::io::AsyncWriteExt::write_all(&mut tls, request.as_bytes())
                        .await
                        .ok()?;
                    let mut out = String::new();
                    let _ = tokio::io::AsyncReadExt::read_to_string(&mut tls, &mut out).await;
                    out.starts_with("HTTP/1.1 200").then_some(out)
                }
            },
        )
        .await;
        assert!(response.starts_with("HTTP/1.1 200"), "{path}: {response}");
        assert_eq!(
            upstream.request(id).header("x-test-id").as_deref(),
            Some(id)
        );
    }
    assert!(
        tollgate
            .log()
            .contains("tls.insecure: the certificate of 127.0.0.1:"),
        "the insecure backend is announced"
    );
    let status = xds_status(&tollgate).await;
    for kind in ["cluster", "listener", "route"] {
        assert!(
            status["streams"][0]["types"][kind]["last_nack"].is_null(),
            "{status:#}"
        );
    }
}
