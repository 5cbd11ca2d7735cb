//! Flow control behind a real Envoy 1.40 over simulated model servers: a tenant flooding
//! the pool with three times its capacity waits in tollgate's queues, and a light
//! tenant's requests still go out about as fast as on an idle pool (token-fair dispatch);
//! drops carry llm-d's reason header and the flow-control metrics count them.

use std::time::{Duration, Instant};

use crate::support::client::{self, Req};
use crate::support::envoy::Envoy;
use crate::support::epp_envoy::{start_gateway, Forwarding};
use crate::support::free_port;
use crate::support::sim::Sim;
use crate::support::tollgate::Tollgate;

/// Each request decodes 12 tokens of 25 ms: about 0.3 s on an idle instance.
const SIM_ARGS: &[&str] = &["--default-max-tokens", "12", "--decode-step-us", "25000"];

fn tenant_chat(tenant: &str, id: &str, prompt_chars: usize) -> Req {
    let prompt = format!("{id} {}", "lorem ipsum ".repeat(prompt_chars / 12));
    Req::post(
        "/v1/chat/completions",
        serde_json::json!({"model": "m", "messages": [{"role": "user", "content": prompt}]})
            .to_string(),
    )
    .header("content-type", "application/json")
    .header("x-llm-d-inference-fairness-id", tenant)
    .header("x-test-id", id)
}

/// Envoy → tollgate (flow control on, 2 requests in flight per endpoint) → 2 sims.
async fn gateway(flow_control: &str) -> (Envoy, Sim, Tollgate) {
    let sim = Sim::start(2, SIM_ARGS);
    let endpoints: Vec<String> = sim.addrs.iter().map(|a| a.to_string()).collect();
    let ext_proc = free_port();
    let tollgate = Tollgate::start(&format!(
        "extProc: {{ address: \"127.0.0.1:{ext_proc}\" }}
policies:
  endpointPicker:
    endpoints: {endpoints:?}
    saturation: {{ detector: concurrency, maxConcurrency: 2 }}
    flowControl: {flow_control}
"
    ))
    .await;
    let envoy = start_gateway(ext_proc, &endpoints, Forwarding::OriginalDstMetadata, false).await;
    (envoy, sim, tollgate)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flooding_tenant_cannot_starve_a_light_one() {
    let (envoy, _sim, tollgate) = gateway("{}").await;
    let port = envoy.port(0);
    // The light tenant's latency on the idle pool.
    let mut idle = Vec::new();
    for i in 0..3 {
        let started = Instant::now();
        let r = client::must(port, tenant_chat("light", &format!("idle-{i}"), 200)).await;
        assert_eq!(r.status, 200, "{}", r.text());
        idle.push(started.elapsed());
    }
    let idle = median(idle);
    // The heavy tenant keeps 12 requests of long prompts in flight: 3× the pool's 4 slots.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut flooders = Vec::new();
    for w in 0..12 {
        let stop = stop.clone();
        flooders.push(tokio::spawn(async move {
            let mut waits = Vec::new();
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r =
                    client::must(port, tenant_chat("heavy", &format!("heavy-{w}-{n}"), 4000)).await;
                assert_eq!(r.status, 200, "{}", r.text());
                waits.push(
                    r.header("x-llm-d-flow-queue-duration-ms")
                        .map(str::to_string),
                );
                n += 1;
            }
            waits
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut light = Vec::new();
    for i in 0..6 {
        let started = Instant::now();
        let r = client::must(port, tenant_chat("light", &format!("light-{i}"), 200)).await;
        assert_eq!(r.status, 200, "{}", r.text());
        light.push(started.elapsed());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut heavy_waits = Vec::new();
    for f in flooders {
        heavy_waits.extend(f.await.unwrap());
    }
    let queued: Vec<u64> = heavy_waits
        .iter()
        .flatten()
        .filter_map(|w| w.parse().ok())
        .collect();
    let heavy_median_wait = {
        let mut q = queued.clone();
        q.sort_unstable();
        q.get(q.len() / 2).copied().unwrap_or(0)
    };
    let light_worst = *light.iter().max().unwrap();
    eprintln!(
        "idle {idle:?}, light under flood {light:?}, heavy requests {} ({} queued, median wait {heavy_median_wait} ms)",
        heavy_waits.len(),
        queued.len()
    );
    assert!(
        queued.len() * 2 >= heavy_waits.len() && heavy_median_wait >= 300,
        "the flood waited in tollgate's queues: {} of {} queued, median {heavy_median_wait} ms",
        queued.len(),
        heavy_waits.len()
    );
    assert!(
        median(light.clone()) <= idle * 5 / 2,
        "the light tenant's median {:?} stays within 2.5× its idle {idle:?}",
        median(light)
    );
    assert!(
        light_worst < Duration::from_millis(heavy_median_wait) + idle,
        "no light request waited like a heavy one ({light_worst:?})"
    );
    let metrics = tollgate.metrics().await;
    for needle in [
        "llm_d_epp_flow_control_requests_total{outcome=\"Dispatched\",priority=\"0\"",
        "llm_d_epp_flow_control_request_queue_duration_seconds_count{fairness_id=\"heavy\"",
        "llm_d_epp_flow_control_queue_size{fairness_id=\"heavy\"",
        "llm_d_epp_flow_control_pool_saturation{",
    ] {
        assert!(metrics.contains(needle), "{needle} missing:\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn full_queues_and_expired_waits_are_dropped_with_their_reason() {
    let (envoy, _sim, tollgate) = gateway("{ ttl: 200ms, maxRequests: 2 }").await;
    let port = envoy.port(0);
    let mut all = Vec::new();
    for i in 0..10 {
        all.push(tokio::spawn(client::send(
            port,
            tenant_chat("t", &format!("burst-{i}"), 200),
        )));
    }
    let mut by_reason: std::collections::BTreeMap<String, usize> = Default::default();
    for r in all {
        let r = r.await.unwrap().expect("a reply");
        let reason = r
            .header("x-llm-d-request-dropped-reason")
            .unwrap_or("served")
            .to_string();
        match reason.as_str() {
            "served" => assert_eq!(r.status, 200, "{}", r.text()),
            "rejected-saturated" | "rejected-ttl-expired" => {
                assert_eq!(r.status, 429, "{}", r.text());
                let body = r.json();
                assert!(
                    body["error"]["message"]
                        .as_str()
                        .is_some_and(|m| !m.is_empty()),
                    "an OpenAI-style error body: {body}"
                );
            }
            other => panic!("unexpected reason {other}: {}", r.text()),
        }
        *by_reason.entry(reason).or_default() += 1;
    }
    // 4 slots, 2 queue places: 4 served at once, 2 queued (TTL 200 ms < 0.3 s per
    // request: they expire), 4 refused.
    assert_eq!(by_reason.get("served"), Some(&4), "{by_reason:?}");
    assert_eq!(
        by_reason.get("rejected-saturated"),
        Some(&4),
        "{by_reason:?}"
    );
    assert_eq!(
        by_reason.get("rejected-ttl-expired"),
        Some(&2),
        "{by_reason:?}"
    );
    let metrics = tollgate.metrics().await;
    for needle in ["outcome=\"RejectedCapacity\"", "outcome=\"EvictedTTL\""] {
        assert!(metrics.contains(needle), "{needle} missing:\n{metrics}");
    }
    // Queues are empty again: the next request goes through.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = client::must(port, tenant_chat("t", "after", 200)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    a_requests_own_ttl_shortens_the_wait(port).await;
}

/// llm-d's `x-llm-d-inference-ttl` (a Go duration) shortens the band's 200 ms for one
/// request; a malformed one is a 400 before any queue.
async fn a_requests_own_ttl_shortens_the_wait(port: u16) {
    let holders: Vec<_> = (0..4)
        .map(|i| {
            tokio::spawn(client::send(
                port,
                tenant_chat("t", &format!("hold-{i}"), 200),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let short = tenant_chat("t", "short-ttl", 200).header("x-llm-d-inference-ttl", "0.02s");
    let r = client::must(port, short).await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(
        r.header("x-llm-d-request-dropped-reason"),
        Some("rejected-ttl-expired")
    );
    let message = r.json()["error"]["message"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(message.contains("waited 20ms"), "{message}");
    let bad = tenant_chat("t", "bad-ttl", 200).header("x-llm-d-inference-ttl", "soon");
    let r = client::must(port, bad).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("x-llm-d-inference-ttl"), "{}", r.text());
    for h in holders {
        let r = h.await.unwrap().expect("a reply");
        assert_eq!(r.status, 200, "{}", r.text());
    }
}
