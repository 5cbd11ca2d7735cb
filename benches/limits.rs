//! Limits hot paths: one `reserve` + `settle` on the `LocalStore` (a hot key, and 10,000
//! keys round robin), the same through a `Limiter` and its `Reservation` guard, and — as
//! the remote baseline, when `redis-server` is installed — the same on a `RedisStore`
//! over loopback (two script calls, one round trip each).
//! - `labels`: the cost of `limits.labels` where a client picks a metric label (the
//!   `model`): `BoundedLabel::value` for a value already kept and for one counted as
//!   `other`, beside the unbounded `to_string` it replaced, in one run.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use criterion::{criterion_group, criterion_main, Criterion};
use tollgate::limits::{
    Admission, Limit, LimitStore, Limiter, LocalStore, RedisStore, RedisStoreConfig, Reserved,
    MAX_AMOUNT,
};
use tollgate::metrics::{BoundedLabel, LabelBounds};

/// 2^53 tokens, refilled 2^53 per second: never denies at bench rates.
fn limit() -> Limit {
    Limit::bucket(MAX_AMOUNT, MAX_AMOUNT as f64).unwrap()
}

async fn reserve_settle(store: &dyn LimitStore, key: &str, limit: &Limit) {
    let now = SystemTime::now();
    let d = store.reserve(key, limit, 1_200, now).await.unwrap();
    assert!(d.allowed);
    let reserved = Reserved {
        amount: 1_200,
        at: now,
    };
    store
        .settle(key, limit, reserved, 1_000, now)
        .await
        .unwrap();
}

fn local(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = LocalStore::new();
    let limit = limit();
    let mut g = c.benchmark_group("limits/local");
    g.bench_function("reserve+settle, one key", |b| {
        b.to_async(&rt)
            .iter(|| reserve_settle(&store, "tollgate:limit:tpm:chat:hot", &limit))
    });
    let keys: Vec<String> = (0..10_000)
        .map(|i| format!("tollgate:limit:tpm:chat:{i:016x}"))
        .collect();
    let mut next = 0;
    g.bench_function("reserve+settle, 10k keys", |b| {
        b.to_async(&rt).iter(|| {
            next = (next + 1) % keys.len();
            reserve_settle(&store, &keys[next], &limit)
        })
    });
    let limiter = rt.block_on(async { Limiter::new(Arc::new(LocalStore::new())).unwrap() });
    g.bench_function("Limiter reserve + Reservation::settle", |b| {
        b.to_async(&rt).iter(|| async {
            let now = SystemTime::now();
            let admission = limiter
                .reserve("tollgate:limit:tpm:chat:hot", &limit, 1_200, now)
                .await
                .unwrap();
            let Admission::Allowed(r) = admission else {
                panic!("denied")
            };
            r.settle(1_000, now).await.unwrap();
        })
    });
    g.finish();
}

fn redis(c: &mut Criterion) {
    let Some(server) = Server::start() else {
        eprintln!(
            "limits/redis: skipped, redis-server not found (apt-get install -y redis-server)"
        );
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = rt.block_on(async {
        let url = format!("redis://127.0.0.1:{}/", server.port);
        RedisStore::new(RedisStoreConfig::new(url)).unwrap()
    });
    let limit = limit();
    let mut g = c.benchmark_group("limits/redis");
    g.bench_function("reserve+settle, one key, loopback", |b| {
        b.to_async(&rt)
            .iter(|| reserve_settle(&store, "tollgate:limit:tpm:chat:hot", &limit))
    });
    g.finish();
    assert_eq!(
        store.stats().pending_entries,
        0,
        "redis failed during the bench"
    );
}

/// A throwaway `redis-server` on a free port, killed on drop.
struct Server {
    port: u16,
    child: Child,
}

impl Server {
    fn start() -> Option<Server> {
        let port = TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--bind", "127.0.0.1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let server = Server { port, child };
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(server)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn labels(c: &mut Criterion) {
    let label = BoundedLabel::new(Arc::new(LabelBounds::default()));
    // Fill the label to its bound (256 values), so a new name is counted as `other`.
    for i in 0..10_000 {
        std::hint::black_box(label.value(&format!("model-{i}")));
    }
    let kept = "model-17";
    let new = "gpt-4o-2024-08-06-someone-elses-fine-tune";
    assert_eq!(label.value(kept), kept);
    assert_eq!(label.value(new), tollgate::metrics::OTHER);
    let mut g = c.benchmark_group("labels");
    g.bench_function("unbounded_to_string", |b| {
        b.iter(|| std::hint::black_box(std::hint::black_box(kept).to_string()))
    });
    g.bench_function("bounded/kept", |b| {
        b.iter(|| std::hint::black_box(label.value(std::hint::black_box(kept))))
    });
    g.bench_function("bounded/other", |b| {
        b.iter(|| std::hint::black_box(label.value(std::hint::black_box(new))))
    });
    g.finish();
}

criterion_group!(benches, local, redis, labels);
criterion_main!(benches);
