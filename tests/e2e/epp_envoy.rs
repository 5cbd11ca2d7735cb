//! The endpoint picker behind a real Envoy 1.40, as an inference gateway runs it:
//! ext_proc FULL_DUPLEX_STREAMED to tollgate, the pool cluster forwarding to the pick
//! (ORIGINAL_DST on `envoy.lb` metadata, ORIGINAL_DST on the header, `override_host`).
//! Requests land on the endpoint tollgate picked, a client's spoofed destination header
//! has no effect, and with tollgate down Envoy fails open or closed as configured.

use std::time::Duration;

use crate::support::client::{self, Req};
use crate::support::envoy::Envoy;
use crate::support::epp_envoy::{render, Forwarding};
use crate::support::tollgate::Tollgate;
use crate::support::upstream::MockUpstream;
use crate::support::{eventually, free_port};

struct Gateway {
    envoy: Envoy,
    pool: Vec<MockUpstream>,
    /// Not in the pool: where a spoofing client would like to go.
    outsider: MockUpstream,
    _tollgate: Option<Tollgate>,
}

async fn gateway(forwarding: Forwarding, picker_up: bool, failure_mode_allow: bool) -> Gateway {
    let mut pool = Vec::new();
    for _ in 0..3 {
        pool.push(MockUpstream::start().await);
    }
    let outsider = MockUpstream::start().await;
    let endpoints: Vec<String> = pool
        .iter()
        .map(|u| format!("127.0.0.1:{}", u.port))
        .collect();
    let ext_proc = free_port();
    let tollgate = if picker_up {
        Some(
            Tollgate::start(&format!(
                "extProc: {{ address: \"127.0.0.1:{ext_proc}\" }}\npolicies:\n  endpointPicker:\n    endpoints: {endpoints:?}\n"
            ))
            .await,
        )
    } else {
        None
    };
    let envoy = Envoy::start_with(1, |admin, ports, log| {
        render(
            admin,
            ports,
            log,
            ext_proc,
            &endpoints,
            forwarding,
            failure_mode_allow,
        )
    })
    .await;
    Gateway {
        envoy,
        pool,
        outsider,
        _tollgate: tollgate,
    }
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

/// Inference requests (POSTs; the picker's metric scrapes are GETs) an upstream got.
fn posts(u: &MockUpstream) -> Vec<crate::support::upstream::Recorded> {
    u.requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .collect()
}

async fn lands_on_the_pick(forwarding: Forwarding) {
    let g = gateway(forwarding, true, false).await;
    let port = g.envoy.port(0);
    let outsider = format!("127.0.0.1:{}", g.outsider.port);
    for i in 0..9 {
        let id = format!("{forwarding:?}-{i}");
        let reply = client::must(
            port,
            chat(&id, &format!("tenant {} asks question {i}", i % 3))
                .header("x-gateway-destination-endpoint", &outsider),
        )
        .await;
        assert_eq!(reply.status, 200, "{id}: {}", reply.text());
        let entry = g.envoy.access_log_entry(&id).await;
        let picked = entry["picked"].as_str().unwrap_or_default().to_string();
        assert!(
            !picked.is_empty(),
            "{id}: no pick in Envoy's metadata: {entry}"
        );
        assert_eq!(
            entry["upstream_host"], picked,
            "{id}: Envoy forwarded where tollgate picked"
        );
        let served = g
            .pool
            .iter()
            .find(|u| format!("127.0.0.1:{}", u.port) == picked)
            .unwrap_or_else(|| panic!("{id}: picked {picked}, not a pool endpoint"));
        let got = posts(served)
            .into_iter()
            .find(|r| r.header("x-test-id").as_deref() == Some(id.as_str()))
            .unwrap_or_else(|| panic!("{id}: the picked endpoint never got it"));
        assert_eq!(
            got.header("x-gateway-destination-endpoint").as_deref(),
            Some(picked.as_str()),
            "{id}: the model server sees tollgate's pick, not the client's"
        );
    }
    assert!(
        posts(&g.outsider).is_empty(),
        "a spoofed destination header never steers a request"
    );
    let used = g.pool.iter().filter(|u| !posts(u).is_empty()).count();
    assert!(used >= 2, "idle endpoints share the load: {used} used");
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
    let closed = gateway(Forwarding::OverrideHost, false, false).await;
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

    let open = gateway(Forwarding::OverrideHost, false, true).await;
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
