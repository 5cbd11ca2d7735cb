use std::net::SocketAddr;

use super::*;
use crate::config::{DetectorKind, OrderingPolicy, SaturationConfig};
use crate::epp::pool::{PickPolicy, PoolSpec};
use crate::epp::scheduling::saturation::Detector;
use crate::epp::scheduling::slo::Slo;

/// A pool of `n` endpoints that is saturated with `per_endpoint` requests in flight on
/// each (the concurrency detector: no scrapes needed).
fn pool(n: u16, per_endpoint: u64) -> Arc<Pool> {
    let endpoints: Vec<SocketAddr> = (0..n)
        .map(|i| SocketAddr::from(([127, 0, 0, 1], 9000 + i)))
        .collect();
    Pool::with_policy(
        PoolSpec {
            endpoints,
            metrics_path: "/metrics".into(),
            interval: Duration::from_secs(3600),
            stale_after: Duration::from_secs(3600),
        },
        PickPolicy {
            saturation: Detector::from_config(&SaturationConfig {
                detector: DetectorKind::Concurrency,
                max_concurrency: per_endpoint,
                ..Default::default()
            }),
            ..Default::default()
        },
    )
}

fn controller(pool: Arc<Pool>, settings: FlowControlConfig) -> Arc<FlowController> {
    let metrics =
        FlowControlMetrics::register(&mut prometheus_client::registry::Registry::default());
    FlowController::new(pool, settings, "test-pool", metrics)
}

fn request(tenant: &str, priority: i32, prompt_chars: usize) -> FlowRequest {
    FlowRequest {
        pick: PickSpec {
            model: "m".into(),
            prompt: vec![b'x'; prompt_chars],
            prompt_chars,
            expected_output_tokens: Some(10),
            subset: None,
            slo: None,
            priority,
            session: None,
            block_keys: None,
        },
        priority,
        fairness_id: tenant.into(),
        bytes: prompt_chars as u64,
        ttft_slo: None,
        ttl: None,
    }
}

#[tokio::test]
async fn below_saturation_a_request_is_picked_at_once() {
    let fc = controller(pool(2, 4), FlowControlConfig::default());
    let a = fc.admit(request("t", 0, 400)).await.unwrap();
    assert!(a.queued.is_none());
    assert_eq!(fc.queued(), 0);
    // The flow was charged its estimate: 100 prompt tokens + 2 × 10 output tokens.
    assert_eq!(fc.counter(0, "t"), 120.0);
    a.charge.settle(None, 50);
    assert_eq!(fc.counter(0, "t"), 200.0, "corrected by the real usage");
}

#[tokio::test]
async fn a_saturated_pool_queues_until_a_request_completes() {
    let fc = controller(pool(1, 1), FlowControlConfig::default());
    let first = fc.admit(request("t", 0, 40)).await.unwrap();
    let fc2 = fc.clone();
    let second = tokio::spawn(async move { fc2.admit(request("t", 0, 40)).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(fc.queued(), 1, "held while the only slot is taken");
    assert!(!second.is_finished());
    drop(first);
    fc.released();
    let second = tokio::time::timeout(Duration::from_secs(2), second)
        .await
        .expect("dispatched once the slot freed")
        .unwrap()
        .unwrap();
    assert!(second.queued.unwrap() >= Duration::from_millis(40));
    assert_eq!(fc.queued(), 0);
}

/// Holds every in-flight pick and lets them finish one at a time; returns the order in
/// which the tenants were served.
async fn serve_one_at_a_time(
    fc: &Arc<FlowController>,
    first: Admitted,
    waiting: Vec<tokio::task::JoinHandle<(String, Result<Admitted, FlowDrop>)>>,
) -> Vec<String> {
    let mut order = Vec::new();
    let mut running = first;
    let mut pending: Vec<_> = waiting;
    while !pending.is_empty() {
        drop(running);
        fc.released();
        let (done, i, rest) = futures::future::select_all(pending).await;
        let (tenant, admitted) = done.unwrap();
        order.push(tenant);
        running = admitted.unwrap();
        let _ = i;
        pending = rest;
    }
    order
}

#[tokio::test]
async fn a_flooding_tenant_cannot_starve_a_light_one() {
    let fc = controller(pool(1, 1), FlowControlConfig::default());
    let first = fc.admit(request("seed", 0, 4)).await.unwrap();
    let mut waiting = Vec::new();
    // The heavy tenant queues 8 requests of 4,000 prompt chars first, the light one 2 of
    // 400.
    for (tenant, chars, n) in [("heavy", 4000, 8), ("light", 400, 2)] {
        for _ in 0..n {
            let fc = fc.clone();
            waiting.push(tokio::spawn(async move {
                (
                    tenant.to_string(),
                    fc.admit(request(tenant, 0, chars)).await,
                )
            }));
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(fc.queued(), 10);
    let order = serve_one_at_a_time(&fc, first, waiting).await;
    let light_done = order.iter().rposition(|t| t == "light").unwrap();
    assert!(
        light_done <= 2,
        "both light requests go within the first three dispatches: {order:?}"
    );
}

#[tokio::test]
async fn higher_priority_goes_first() {
    let fc = controller(pool(1, 1), FlowControlConfig::default());
    let first = fc.admit(request("x", 0, 4)).await.unwrap();
    let mut waiting = Vec::new();
    for (tenant, priority) in [("low", -1), ("mid", 0), ("high", 10)] {
        let fc = fc.clone();
        waiting.push(tokio::spawn(async move {
            (
                tenant.to_string(),
                fc.admit(request(tenant, priority, 4)).await,
            )
        }));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let order = serve_one_at_a_time(&fc, first, waiting).await;
    assert_eq!(order, vec!["high", "mid", "low"]);
}

#[tokio::test]
async fn past_its_ttl_a_request_leaves_with_ttl_expired() {
    let fc = controller(
        pool(1, 1),
        FlowControlConfig {
            ttl: crate::config::Duration::from_millis(60),
            ..Default::default()
        },
    );
    let _held = fc.admit(request("t", 0, 4)).await.unwrap();
    let started = Instant::now();
    let e = fc.admit(request("t", 0, 4)).await.unwrap_err();
    assert_eq!(e, FlowDrop::TtlExpired(Duration::from_millis(60)));
    assert!(started.elapsed() >= Duration::from_millis(60));
    assert_eq!(fc.queued(), 0, "an expired request leaves the queue");
}

#[tokio::test]
async fn a_requests_own_ttl_shortens_the_bands_never_extends_it() {
    let fc = controller(
        pool(1, 1),
        FlowControlConfig {
            ttl: crate::config::Duration::from_millis(300),
            ..Default::default()
        },
    );
    let _held = fc.admit(request("t", 0, 4)).await.unwrap();
    let with_ttl = |ms: u64| FlowRequest {
        ttl: Some(Duration::from_millis(ms)),
        ..request("t", 0, 4)
    };
    let started = Instant::now();
    let e = fc.admit(with_ttl(40)).await.unwrap_err();
    assert_eq!(e, FlowDrop::TtlExpired(Duration::from_millis(40)));
    assert!(started.elapsed() < Duration::from_millis(300));
    let e = fc.admit(with_ttl(60_000)).await.unwrap_err();
    assert_eq!(
        e,
        FlowDrop::TtlExpired(Duration::from_millis(300)),
        "capped"
    );
    assert_eq!(fc.queued(), 0);
}

#[tokio::test]
async fn a_full_band_refuses_at_once() {
    let fc = controller(
        pool(1, 1),
        FlowControlConfig {
            max_requests: 1,
            ..Default::default()
        },
    );
    let _held = fc.admit(request("t", 0, 4)).await.unwrap();
    let fc2 = fc.clone();
    let _queued = tokio::spawn(async move { fc2.admit(request("t", 0, 4)).await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    let e = fc.admit(request("u", 0, 4)).await.unwrap_err();
    assert!(matches!(e, FlowDrop::QueueFull(Full::Requests(1))), "{e:?}");
    // Another band still has room.
    let fc3 = fc.clone();
    let other = tokio::spawn(async move { fc3.admit(request("u", 5, 4)).await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!other.is_finished());
    assert_eq!(fc.queued(), 2);
}

#[tokio::test]
async fn a_client_that_goes_away_leaves_the_queue_at_once() {
    let fc = controller(pool(1, 1), FlowControlConfig::default());
    let held = fc.admit(request("t", 0, 4)).await.unwrap();
    let fc2 = fc.clone();
    let gone = tokio::spawn(async move { fc2.admit(request("t", 0, 4)).await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(fc.queued(), 1);
    gone.abort();
    let _ = gone.await;
    assert_eq!(fc.queued(), 0, "dropped future, no queue entry");
    // The slot it would have taken goes to the next request.
    drop(held);
    let next = fc.admit(request("t", 0, 4)).await.unwrap();
    assert!(next.queued.is_none());
}

#[tokio::test]
async fn deadline_ordering_serves_the_tightest_slo_first() {
    let fc = controller(
        pool(1, 1),
        FlowControlConfig {
            ordering: OrderingPolicy::Deadline,
            ..Default::default()
        },
    );
    let first = fc.admit(request("t", 0, 4)).await.unwrap();
    let mut waiting = Vec::new();
    for (name, slo_ms) in [("relaxed", 30_000), ("urgent", 200)] {
        let fc = fc.clone();
        let mut r = request("t", 0, 4);
        r.ttft_slo = Some(Duration::from_millis(slo_ms));
        waiting.push(tokio::spawn(async move {
            (name.to_string(), fc.admit(r).await)
        }));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    let order = serve_one_at_a_time(&fc, first, waiting).await;
    assert_eq!(order, vec!["urgent", "relaxed"]);
}

#[tokio::test]
async fn an_empty_pool_answers_no_endpoints() {
    let fc = controller(pool(0, 1), FlowControlConfig::default());
    let e = fc.admit(request("t", 0, 4)).await.unwrap_err();
    assert_eq!(e, FlowDrop::Pick(PickRejection::NoEndpoints));
    assert_eq!(fc.queued(), 0);
}

/// A request of `chars` prompt characters with a time-to-first-token objective.
fn with_ttft(priority: i32, chars: usize, slo_ms: u64) -> FlowRequest {
    let mut r = request("t", priority, chars);
    r.pick.slo = Some(Slo {
        ttft: Some(Duration::from_millis(slo_ms)),
        tpot: None,
    });
    r.ttft_slo = r.pick.slo.and_then(|s| s.ttft);
    r
}

#[tokio::test]
async fn latency_objectives_admit_wait_or_shed() {
    // Not saturated (100 per endpoint): only the objectives hold requests back.
    let fc = controller(pool(1, 100), FlowControlConfig::default());
    // 400 characters: ~100 tokens, predicted well within 300 ms on an idle endpoint.
    let quick = fc.admit(with_ttft(0, 400, 300)).await.unwrap();
    assert!(quick.queued.is_none());
    assert!(
        quick.picked.predicted_ttft < 0.3,
        "{}",
        quick.picked.predicted_ttft
    );
    // 40,000 characters: ~10,000 prefill tokens at the default 100 µs each, about 1 s:
    // a sheddable request is refused at once...
    let e = fc.admit(with_ttft(-1, 40_000, 300)).await.unwrap_err();
    assert!(
        matches!(e, FlowDrop::Pick(PickRejection::SloUnattainable { best_ttft }) if best_ttft > 0.9),
        "{e:?}"
    );
    // ...and another waits for an endpoint that can make it, then goes best effort once
    // its objective has passed.
    let late = fc.admit(with_ttft(0, 40_000, 150)).await.unwrap();
    let waited = late.queued.expect("it waited");
    assert!(waited >= Duration::from_millis(150), "{waited:?}");
    assert!(waited < Duration::from_secs(2), "{waited:?}");
    assert_eq!(fc.queued(), 0);
}

/// A controller over one endpoint of `slots` with `headroom`, and a flood holding every
/// slot below the headroom (each dispatched at once).
async fn flooded(slots: u64, headroom: f64) -> (Arc<FlowController>, Vec<Admitted>) {
    let settings = FlowControlConfig {
        headroom,
        ..Default::default()
    };
    let fc = controller(pool(1, slots), settings);
    let mut flood = Vec::new();
    for _ in 1..slots {
        let a = fc.admit(request("flood", 0, 40)).await.unwrap();
        assert!(a.queued.is_none(), "below the headroom: at once");
        flood.push(a);
    }
    (fc, flood)
}

#[tokio::test]
async fn the_headroom_goes_to_a_flow_under_its_share_only() {
    // 4 slots, a quarter kept: a flood stops at 3 in flight, a light tenant gets the 4th.
    let (fc, mut flood) = flooded(4, 0.25).await;
    assert_eq!(fc.held("flood"), 3);
    let fc2 = fc.clone();
    let fourth = tokio::spawn(async move { fc2.admit(request("flood", 0, 40)).await });
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(fc.queued(), 1, "the flood's 4th waits in the headroom");

    let light = tokio::time::timeout(Duration::from_secs(2), fc.admit(request("light", 0, 40)))
        .await
        .expect("the light tenant is not held behind the flood")
        .unwrap();
    assert_eq!(fc.held("light"), 1);
    assert_eq!(fc.queued(), 1, "the flood's 4th still waits");

    // The light request ends: the headroom is free again, but not for the flood.
    drop(light);
    fc.released();
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!((fc.held("light"), fc.queued()), (0, 1));
    assert!(!fourth.is_finished());

    // A flood request ends: below the headroom, the flood's 4th goes.
    drop(flood.pop());
    fc.released();
    let fourth = tokio::time::timeout(Duration::from_secs(2), fourth)
        .await
        .expect("dispatched below the headroom")
        .unwrap()
        .unwrap();
    assert!(fourth.queued.is_some());
    assert_eq!(fc.held("flood"), 3);
    drop((fourth, flood));
    assert_eq!(fc.held("flood"), 0, "every place given back");
}

#[tokio::test]
async fn with_a_headroom_a_flow_under_its_share_goes_before_a_lower_counter() {
    // 8 slots, one kept. The light tenant's big prompt gives it the higher counter, so
    // token fairness alone would serve the flood first; under its share, it goes first.
    let (fc, mut flood) = flooded(8, 0.125).await;
    let light = fc.admit(request("light", 0, 40_000)).await.unwrap();
    assert!(fc.counter(0, "light") > fc.counter(0, "flood"));
    let mut queued = Vec::new();
    for tenant in ["flood", "flood", "light"] {
        let fc = fc.clone();
        let chars = if tenant == "light" { 40_000 } else { 40 };
        queued.push(tokio::spawn(async move {
            (tenant, fc.admit(request(tenant, 0, chars)).await)
        }));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(fc.queued(), 3, "the pool is full");
    // Two flood requests end: 6 of 8 in flight, below the headroom.
    flood.truncate(5);
    fc.released();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        fc.held("light"),
        2,
        "the light tenant's second request went"
    );
    assert_eq!(
        fc.queued(),
        2,
        "the flood's wait: 7 of 8 is the headroom again"
    );
    assert!(queued[2].is_finished() && !queued[0].is_finished());
    drop((light, flood));
    for q in queued {
        q.abort();
    }
}

#[tokio::test]
async fn without_a_headroom_no_place_is_counted() {
    // Headroom 0 (the default): the pool fills to its last slot, and nothing reads the
    // flows' shares, so none is taken.
    let (fc, flood) = flooded(4, 0.0).await;
    let last = fc.admit(request("flood", 0, 40)).await.unwrap();
    assert!(last.queued.is_none(), "the 4th slot is the flood's too");
    assert_eq!((fc.held("flood"), flood.len()), (0, 3));
}
