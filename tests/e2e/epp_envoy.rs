//! The endpoint picker behind a real Envoy 1.40, as an inference gateway runs it:
//! ext_proc FULL_DUPLEX_STREAMED to tollgate, the pool cluster forwarding to the pick
//! (ORIGINAL_DST on `envoy.lb` metadata, ORIGINAL_DST on the header, `override_host`).
//! Requests land on the endpoint tollgate picked, a client's spoofed destination header
//! has no effect, and with tollgate down Envoy fails open or closed as configured.

use std::time::Duration;

use crate::support::client::{self, Req};
use crate::support::envoy::Envoy;
use crate::support::epp_envoy::{start_gateway, Forwarding};
use crate::support::sim::Sim;
use crate::support::tollgate::Tollgate;
use crate::support::upstream::MockUpstream;
use crate::support::{eventually, free_port};

/// Envoy in front of a pool of mock upstreams, its picker down (nothing listens on the
/// ext_proc port).
struct Gateway {
    envoy: Envoy,
    pool: Vec<MockUpstream>,
}

async fn picker_down(failure_mode_allow: bool) -> Gateway {
    let mut pool = Vec::new();
    for _ in 0..3 {
        pool.push(MockUpstream::start().await);
    }
    let endpoints: Vec<String> = pool
        .iter()
        .map(|u| format!("127.0.0.1:{}", u.port))
        .collect();
    let ext_proc = free_port();
    let envoy = start_gateway(
        ext_proc,
        &endpoints,
        Forwarding::OverrideHost,
        failure_mode_allow,
    )
    .await;
    Gateway { envoy, pool }
}

fn chat(id: &str, prompt: &str) -> Req {
    Req::post(
        "/v1/chat/completions",
        serde_json::json!({"model": "m", "messages": [{"role": "user", "content": prompt}]})
            .to_string(),
    )
    .header("content-type", "application/json")
    .header("x-test-id", id)
}

/// Envoy in front of three simulated model servers, tollgate picking.
async fn simulated(forwarding: Forwarding) -> (Envoy, Sim, MockUpstream, Tollgate) {
    let sim = Sim::start(3, &["--default-max-tokens", "4"]);
    let endpoints: Vec<String> = sim.addrs.iter().map(|a| a.to_string()).collect();
    let outsider = MockUpstream::start().await;
    let ext_proc = free_port();
    let tollgate = Tollgate::start(&format!(
        "extProc: {{ address: \"127.0.0.1:{ext_proc}\" }}\npolicies:\n  endpointPicker:\n    endpoints: {endpoints:?}\n"
    ))
    .await;
    let envoy = start_gateway(ext_proc, &endpoints, forwarding, false).await;
    (envoy, sim, outsider, tollgate)
}

async fn lands_on_the_pick(forwarding: Forwarding) {
    let (envoy, sim, outsider, _tollgate) = simulated(forwarding).await;
    let port = envoy.port(0);
    let spoof = format!("127.0.0.1:{}", outsider.port);
    let system =
        "You are the support assistant of tenant {t}. Answer briefly and politely. ".repeat(4);
    let mut by_tenant: std::collections::HashMap<usize, std::collections::HashSet<String>> =
        Default::default();
    for i in 0..12 {
        let tenant = i % 3;
        let id = format!("{forwarding:?}-{i}");
        let prompt = format!(
            "{} question {i}",
            system.replace("{t}", &tenant.to_string())
        );
        let reply = client::must(
            port,
            chat(&id, &prompt).header("x-gateway-destination-endpoint", &spoof),
        )
        .await;
        assert_eq!(reply.status, 200, "{id}: {}", reply.text());
        let entry = envoy.access_log_entry(&id).await;
        let picked = entry["picked"].as_str().unwrap_or_default().to_string();
        assert!(
            !picked.is_empty(),
            "{id}: no pick in Envoy's metadata: {entry}"
        );
        assert_eq!(
            entry["upstream_host"], picked,
            "{id}: Envoy forwarded where tollgate picked"
        );
        assert_eq!(
            reply.header("x-sim-endpoint"),
            Some(picked.as_str()),
            "{id}: the picked model server answered"
        );
        by_tenant.entry(tenant).or_default().insert(picked);
    }
    assert!(
        outsider.requests().is_empty(),
        "a spoofed destination header never steers a request"
    );
    for (tenant, endpoints) in &by_tenant {
        assert_eq!(
            endpoints.len(),
            1,
            "tenant {tenant}'s shared prompt stays on the endpoint caching it: {endpoints:?}"
        );
    }
    // Whether the three tenants land on two or three endpoints is not asserted: with one
    // request at a time nothing loads the pool, and the reference scheduler breaks the
    // resulting score ties at random (all three on one endpoint: 1 run in 9).
    drop(sim);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn original_dst_on_metadata_lands_on_the_pick() {
    lands_on_the_pick(Forwarding::OriginalDstMetadata).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn original_dst_on_the_header_lands_on_the_pick() {
    lands_on_the_pick(Forwarding::OriginalDstHeader).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn override_host_lands_on_the_pick() {
    lands_on_the_pick(Forwarding::OverrideHost).await;
}

/// The picker down: with `failure_mode_allow: false` Envoy answers 500 and no model
/// server is called; with `true` a request goes on without a pick (override_host's
/// fallback round robin serves it) — in FULL_DUPLEX_STREAMED Envoy 1.40 can fail open
/// only before a body chunk went to the picker, so a bodiless request is served while a
/// POST whose body was already streaming still gets 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn picker_down_fails_closed_or_open_as_configured() {
    let closed = picker_down(false).await;
    for (id, req) in [
        ("closed-post", chat("closed-post", "x")),
        (
            "closed-get",
            Req::get("/v1/models").header("x-test-id", "closed-get"),
        ),
    ] {
        let reply = client::must(closed.envoy.port(0), req).await;
        assert_eq!(reply.status, 500, "{id}: {}", reply.text());
    }
    assert!(closed.pool.iter().all(|u| u
        .requests()
        .iter()
        .all(|r| r.path != "/v1/models" && r.method != "POST")));

    let open = picker_down(true).await;
    let reply = client::must(
        open.envoy.port(0),
        Req::get("/v1/models").header("x-test-id", "open-get"),
    )
    .await;
    let entry = open.envoy.access_log_entry("open-get").await;
    assert_eq!(reply.status, 200, "{} {entry}", reply.text());
    assert!(entry["picked"].is_null(), "served without a pick: {entry}");
    eventually(
        "the open request served",
        Duration::from_secs(5),
        || async {
            open.pool
                .iter()
                .find(|u| u.requests().iter().any(|r| r.path == "/v1/models"))
                .map(|_| ())
        },
    )
    .await;
    let reply = client::must(open.envoy.port(0), chat("open-post", "x")).await;
    assert_eq!(
        reply.status, 500,
        "Envoy 1.40 cannot fail open once the body streams to the picker"
    );
}
