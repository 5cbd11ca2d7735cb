use super::*;

fn backends(weights: &[u32]) -> Vec<Backend> {
    weights
        .iter()
        .enumerate()
        .map(|(i, &weight)| Backend {
            host: format!("127.0.0.1:{}", 1000 + i),
            tls: None,
            http2: false,
            weight,
        })
        .collect()
}

fn setup(weights: &[u32]) -> (Health, Vec<Backend>, Vec<Arc<BackendStats>>) {
    let health = Health::new(&OutlierDetection::default());
    let b = backends(weights);
    let stats = b.iter().map(|b| health.stats(&b.host)).collect();
    (health, b, stats)
}

#[test]
fn an_idle_pool_follows_the_weights() {
    let (health, b, stats) = setup(&[1, 2, 7]);
    let now = Instant::now();
    let mut counts = [0u32; 3];
    let n = 20_000;
    for _ in 0..n {
        counts[health.pick(&b, &stats, &[], now)] += 1;
    }
    for (i, want) in [0.1, 0.2, 0.7].into_iter().enumerate() {
        let share = f64::from(counts[i]) / f64::from(n);
        assert!(
            (share - want).abs() < 0.02,
            "backend {i}: {share} of picks, want {want}: {counts:?}"
        );
    }
}

#[test]
fn the_backend_with_fewer_requests_in_flight_per_weight_wins() {
    let (health, b, stats) = setup(&[1, 1]);
    let now = Instant::now();
    let _busy: Vec<InFlight> = (0..5).map(|_| InFlight::start(&stats[0])).collect();
    for _ in 0..200 {
        assert_eq!(health.pick(&b, &stats, &[], now), 1);
    }
    drop(_busy);
    assert_eq!(stats[0].in_flight(), 0, "in flight ends with the guard");
    // Weighted: 3 in flight on a weight-4 backend is less than 1 on a weight-1 one.
    let (health, b, stats) = setup(&[4, 1]);
    let _a: Vec<InFlight> = (0..3).map(|_| InFlight::start(&stats[0])).collect();
    let _b = InFlight::start(&stats[1]);
    for _ in 0..200 {
        assert_eq!(health.pick(&b, &stats, &[], now), 0);
    }
}

#[test]
fn retries_avoid_tried_and_ejected_backends_but_never_run_dry() {
    let (health, b, stats) = setup(&[1, 1, 1]);
    let now = Instant::now();
    for _ in 0..100 {
        let i = health.pick(&b, &stats, &[0, 1], now);
        assert_eq!(i, 2);
    }
    *stats[2].ejected_until.lock().unwrap() = Some(now + Duration::from_secs(60));
    for _ in 0..100 {
        assert_ne!(health.pick(&b, &stats, &[0], now), 2, "ejected");
        assert!(
            health.pick(&b, &stats, &[0, 1, 2], now) < 3,
            "all tried: any"
        );
    }
    // Every untried backend ejected: ejection is ignored rather than failing.
    assert_eq!(health.pick(&b, &stats, &[0, 1], now), 2);
}

#[test]
fn failures_in_a_row_eject_within_the_cap_and_a_success_forgives() {
    let (health, b, stats) = setup(&[1, 1]);
    let now = Instant::now();
    let fail = |i: usize| health.record(&b[i].host, &stats[i], &stats, Outcome::Failure, now);
    for _ in 0..4 {
        fail(0);
    }
    health.record(&b[0].host, &stats[0], &stats, Outcome::Success, now);
    for _ in 0..4 {
        fail(0);
    }
    assert!(
        !stats[0].ejected(now),
        "a success in between resets the count"
    );
    fail(0);
    assert!(stats[0].ejected(now), "five in a row eject");
    assert!(
        !stats[0].ejected(now + Duration::from_secs(31)),
        "for the base time"
    );
    for _ in 0..5 {
        fail(1);
    }
    assert!(!stats[1].ejected(now), "50 % of two backends: one at most");
    // Ejected again after it came back: twice as long.
    let later = now + Duration::from_secs(31);
    for _ in 0..5 {
        health.record(&b[0].host, &stats[0], &stats, Outcome::Failure, later);
    }
    assert!(stats[0].ejected(later + Duration::from_secs(59)));
    assert!(!stats[0].ejected(later + Duration::from_secs(61)));
}

#[test]
fn a_429_with_retry_after_ejects_for_that_long_within_bounds() {
    let (health, b, stats) = setup(&[1, 1]);
    let now = Instant::now();
    let limited = |wait| Outcome::RateLimited(Some(Duration::from_secs(wait)));
    health.record(&b[0].host, &stats[0], &stats, limited(7), now);
    assert!(stats[0].ejected(now + Duration::from_secs(6)));
    assert!(!stats[0].ejected(now + Duration::from_secs(8)));
    let (health, b, stats) = setup(&[1, 1]);
    health.record(&b[1].host, &stats[1], &stats, limited(86_400), now);
    assert!(
        !stats[1].ejected(now + Duration::from_secs(301)),
        "at most 10 × 30 s"
    );
    health.record(
        &b[0].host,
        &stats[0],
        &stats,
        Outcome::RateLimited(None),
        now,
    );
    assert!(!stats[0].ejected(now));
    // One backend alone is never ejected.
    let (health, b, stats) = setup(&[1]);
    health.record(&b[0].host, &stats[0], &stats, limited(7), now);
    assert!(!stats[0].ejected(now));
}

#[test]
fn backoff_is_jittered_upward_by_at_most_half() {
    let retry = RetryPolicy {
        attempts: 3,
        backoff: Some(crate::config::Duration::from_millis(100)),
        codes: vec![],
    };
    for _ in 0..100 {
        let d = jittered(Some(&retry), 2);
        assert!(
            d >= Duration::from_millis(200) && d < Duration::from_millis(300),
            "{d:?}"
        );
    }
}

#[test]
fn the_stats_table_is_bounded() {
    let health = Health::new(&OutlierDetection::default());
    for i in 0..MAX_TRACKED + 10 {
        health.stats(&format!("10.0.0.1:{i}"));
    }
    assert_eq!(health.stats.len(), MAX_TRACKED);
    assert!(Arc::ptr_eq(
        &health.stats("10.0.0.1:1"),
        &health.stats("10.0.0.1:1")
    ));
}
