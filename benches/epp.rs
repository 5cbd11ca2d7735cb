//! Endpoint-picker decision latency: one `Pool::pick` — hash a 4 KiB prompt, gather
//! every endpoint's state (metrics, prefix match, in-flight load), filter, score, rank,
//! record the prefix on the pick and start its in-flight share — at 10, 100 and 1,000
//! endpoints, for the `default` and `latencyAware` profiles. The prefix index is warm:
//! 5,000 prompts of 100 system-prompt families were picked first, and a rolling window
//! of requests stays in flight. Besides criterion's mean, 10,000 individually timed picks
//! give the p50 / p99 / max printed after each group. `epp/hash_only` is the baseline:
//! cutting and hashing the same prompts, which any prefix-aware picker pays.

use std::collections::VecDeque;
use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use tollgate::config::ProfilePreset;
use tollgate::epp::scheduling::Profile;
use tollgate::epp::{EndpointMetrics, InFlight, PickPolicy, PickRequest, Pool, PoolSpec};

const PROMPT_BYTES: usize = 4096;
const FAMILIES: usize = 100;
const WARM_PICKS: usize = 5_000;
const TIMED_PICKS: usize = 10_000;

/// A deterministic generator for the synthetic load.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}

/// A 4 KiB prompt: 3 KiB of its family's system prompt, then a 1 KiB question.
fn prompt(family: usize, question: u64) -> Vec<u8> {
    let mut p = Vec::with_capacity(PROMPT_BYTES);
    let mut i = 0u64;
    while p.len() < 3 * 1024 {
        p.extend_from_slice(format!("[family {family} rule {i}] be precise. ").as_bytes());
        i += 1;
    }
    p.truncate(3 * 1024);
    while p.len() < PROMPT_BYTES {
        p.extend_from_slice(format!("question {question} part {i}; ").as_bytes());
        i += 1;
    }
    p.truncate(PROMPT_BYTES);
    p
}

fn pool(n: usize, profile: ProfilePreset, rng: &mut Lcg) -> Arc<Pool> {
    let endpoints: Vec<SocketAddr> = (0..n)
        .map(|i| SocketAddr::from(([127, (i / 250) as u8 + 1, (i % 250) as u8, 1], 8000)))
        .collect();
    let pool = Pool::with_policy(
        PoolSpec {
            endpoints,
            metrics_path: "/metrics".into(),
            interval: Duration::from_millis(50),
            stale_after: Duration::from_secs(3600),
        },
        PickPolicy {
            profile: Profile::preset(profile, 1),
            ..PickPolicy::default()
        },
    );
    let now = Instant::now();
    for i in 0..n {
        let m = EndpointMetrics {
            waiting: (rng.next() % 8) as f64,
            running: (rng.next() % 64) as f64,
            kv_cache: (rng.next() % 90) as f64 / 100.0,
        };
        pool.set_metrics(i, Ok(m), now);
    }
    pool
}

/// Picks `prompts` in turn, keeping the last `window` in flight.
fn warm(pool: &Pool, prompts: &[Vec<u8>], window: usize) -> VecDeque<InFlight> {
    let mut held = VecDeque::with_capacity(window + 1);
    for p in prompts.iter().cycle().take(WARM_PICKS) {
        let picked = pool.pick(&PickRequest::new("m", p)).unwrap();
        held.push_back(picked.in_flight);
        if held.len() > window {
            held.pop_front();
        }
    }
    held
}

fn picks(c: &mut Criterion) {
    let mut rng = Lcg(7);
    let prompts: Vec<Vec<u8>> = (0..2_000)
        .map(|q| prompt((rng.next() as usize) % FAMILIES, q))
        .collect();
    for (label, profile) in [
        ("default", ProfilePreset::Default),
        ("latencyAware", ProfilePreset::LatencyAware),
    ] {
        let mut g = c.benchmark_group(format!("epp/pick/{label}"));
        g.sample_size(30)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(3));
        for n in [10usize, 100, 1_000] {
            let pool = pool(n, profile, &mut rng);
            let _held = warm(&pool, &prompts, 2 * n);
            let mut i = 0usize;
            g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
                b.iter(|| {
                    i += 1;
                    black_box(
                        pool.pick(&PickRequest::new("m", &prompts[i % prompts.len()]))
                            .unwrap(),
                    )
                })
            });
            let mut times: Vec<Duration> = (0..TIMED_PICKS)
                .map(|k| {
                    let p = &prompts[(k * 7) % prompts.len()];
                    let t = Instant::now();
                    let picked = pool.pick(&PickRequest::new("m", p)).unwrap();
                    let d = t.elapsed();
                    black_box(picked);
                    d
                })
                .collect();
            times.sort_unstable();
            let mean = times.iter().sum::<Duration>() / times.len() as u32;
            let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
            println!(
                "epp/pick/{label}/{n}: {TIMED_PICKS} timed picks: mean {:.1} µs, p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
                mean.as_secs_f64() * 1e6,
                at(0.50).as_secs_f64() * 1e6,
                at(0.99).as_secs_f64() * 1e6,
                times[times.len() - 1].as_secs_f64() * 1e6,
            );
        }
        g.finish();
    }
}

/// The baseline any prefix-aware picker pays: cutting and hashing the same prompts.
fn hashing(c: &mut Criterion) {
    let mut rng = Lcg(7);
    let prompts: Vec<Vec<u8>> = (0..2_000)
        .map(|q| prompt((rng.next() as usize) % FAMILIES, q))
        .collect();
    let mut i = 0usize;
    c.bench_function("epp/hash_only", |b| {
        b.iter(|| {
            i += 1;
            black_box(tollgate::epp::prefix::block_hashes(
                "m",
                &prompts[i % prompts.len()],
            ))
        })
    });
}

criterion_group!(benches, hashing, picks);
criterion_main!(benches);
