//! `RedisStore` against a real `redis-server`: the scripts agree with the Rust
//! arithmetic, replicas share one limit, and Redis going away (killed, hung, not started
//! yet) gives the configured failure mode, no panic, and no lost accounting.

use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::test_server::RedisServer;
use super::*;
use crate::limits::calendar::tests::utc;
use crate::limits::limit::Period;
use crate::limits::LocalStore;

fn store(server: &RedisServer, mode: RedisFailureMode) -> RedisStore {
    let config = RedisStoreConfig::new(server.url())
        .failure_mode(mode)
        .connect_timeout(Duration::from_millis(200))
        .command_timeout(Duration::from_millis(200))
        .retry_after_failure(Duration::from_millis(300))
        .flush_interval(Duration::from_millis(100));
    RedisStore::new(config).unwrap()
}

async fn raw(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(server.url()).unwrap();
    client.get_multiplexed_async_connection().await.unwrap()
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn remaining(store: &RedisStore, key: &str, limit: &Limit) -> u64 {
    let d = store
        .reserve(key, limit, 0, SystemTime::now())
        .await
        .unwrap();
    assert!(d.allowed, "{d:?}");
    d.remaining
}

fn at(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms as u64)
}

#[test]
#[should_panic(expected = "redis-server not found: apt-get install -y redis-server")]
fn a_missing_redis_server_fails_the_test() {
    RedisServer::start_binary("redis-server-that-is-not-installed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scripts_agree_with_the_local_arithmetic() {
    let server = RedisServer::start();
    let redis = store(&server, RedisFailureMode::FailClosed);
    let local = LocalStore::new();
    let limits = [
        Limit::bucket(1_000, 1_000.0 / 60.0).unwrap(),
        Limit::budget(1_000, Period::Minute).unwrap(),
    ];
    // A deterministic walk of reserves, settlements and charges at exact instants,
    // crossing minute boundaries, going into debt and refunding past capacity.
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut now = utc(2031, 1, 31, 23, 58, 30);
    let mut held: Vec<(usize, Reserved)> = Vec::new();
    for step in 0..600 {
        // Bursts (little refill, into debt, denials) alternate with quiet stretches.
        let pace = if (step / 100) % 2 == 0 { 1_000 } else { 12_000 };
        now += next(pace) as i64;
        let which = next(2) as usize;
        let (key, limit) = (format!("agree:{which}"), &limits[which]);
        match next(4) {
            0 | 1 => {
                let estimate = next(400);
                let r = redis.reserve(&key, limit, estimate, at(now)).await.unwrap();
                let l = local.reserve(&key, limit, estimate, at(now)).await.unwrap();
                assert_eq!(r, l, "step {step}: reserve {estimate} on {key}");
                if r.allowed {
                    held.push((
                        which,
                        Reserved {
                            amount: estimate,
                            at: at(now),
                        },
                    ));
                }
            }
            2 if !held.is_empty() => {
                let (which, reserved) = held.swap_remove(next(held.len() as u64) as usize);
                let (key, limit) = (format!("agree:{which}"), &limits[which]);
                let actual = next(2 * reserved.amount + 1);
                redis
                    .settle(&key, limit, reserved, actual, at(now))
                    .await
                    .unwrap();
                local
                    .settle(&key, limit, reserved, actual, at(now))
                    .await
                    .unwrap();
            }
            _ => {
                let amount = next(100);
                redis.charge(&key, limit, amount, at(now)).await.unwrap();
                local.charge(&key, limit, amount, at(now)).await.unwrap();
            }
        }
    }
    assert_eq!(redis.stats().pending_entries, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_enforce_one_shared_limit() {
    let server = RedisServer::start();
    let replicas = [
        store(&server, RedisFailureMode::FailClosed),
        store(&server, RedisFailureMode::FailClosed),
    ];
    // 1,000 tokens refilling 1 per day: nothing refills while the test runs.
    let limit = Limit::bucket(1_000, 1.0 / 86_400.0).unwrap();
    let now = SystemTime::now();
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let (replica, limit) = (replicas[i % 2].clone(), limit.clone());
            tokio::spawn(async move {
                let d = replica.reserve("shared", &limit, 7, now).await.unwrap();
                u64::from(d.allowed)
            })
        })
        .collect();
    let mut allowed = 0;
    for t in tasks {
        allowed += t.await.unwrap();
    }
    assert_eq!(
        allowed,
        1_000 / 7,
        "exactly as many as fit, across both replicas"
    );
    let d = replicas[1].reserve("shared", &limit, 7, now).await.unwrap();
    assert!(!d.allowed);
    assert_eq!((d.remaining, d.limit), (6, 1_000));
    assert!(d.retry_after.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_fails_open_or_closed_and_the_ledger_is_replayed_on_return() {
    let mut server = RedisServer::start();
    let open = store(&server, RedisFailureMode::FailOpen);
    let closed = store(&server, RedisFailureMode::FailClosed);
    let monthly = Limit::budget(10_000, Period::Month).unwrap();
    let t = SystemTime::now();
    let first = Reserved {
        amount: 3_000,
        at: t,
    };
    assert_eq!(
        open.reserve("k", &monthly, 3_000, t)
            .await
            .unwrap()
            .remaining,
        7_000
    );
    assert_eq!(
        closed
            .reserve("k", &monthly, 3_000, t)
            .await
            .unwrap()
            .remaining,
        4_000
    );

    // A crash after a snapshot: the restarted server comes back with 6,000 used.
    let _: () = redis::cmd("SAVE")
        .query_async(&mut raw(&server).await)
        .await
        .unwrap();
    server.kill();

    let d = open.reserve("k", &monthly, 2_000, t).await.unwrap();
    assert!(d.allowed, "fail open allows: {d:?}");
    let second = Reserved {
        amount: 2_000,
        at: t,
    };
    open.settle("k", &monthly, second, 2_500, t).await.unwrap();
    open.settle("k", &monthly, first, 1_000, t).await.unwrap();
    assert_eq!(open.pending(), 1, "netted on one key: +2,000 +500 -2,000");

    let err = closed.reserve("k", &monthly, 1, t).await.unwrap_err();
    assert!(err.is_unavailable(), "fail closed denies: {err}");
    assert!(err.to_string().contains("\"k\""), "{err}");
    closed.charge("k", &monthly, 400, t).await.unwrap();
    assert_eq!(closed.pending(), 1, "an admitted request's charge is kept");

    let (o, c) = (open.stats(), closed.stats());
    assert_eq!(
        (o.fail_open_reservations, o.pended_operations, o.available),
        (1, 3, false)
    );
    assert_eq!((c.fail_closed_reservations, c.pended_operations), (1, 1));

    server.restart();
    eventually("both ledgers replayed", || async {
        open.pending() == 0 && closed.pending() == 0
    })
    .await;
    assert_eq!(
        remaining(&open, "k", &monthly).await,
        10_000 - 6_000 - 500 - 400
    );
    let used: u64 = redis::cmd("HGET")
        .arg("k")
        .arg("used")
        .query_async(&mut raw(&server).await)
        .await
        .unwrap();
    assert_eq!(used, 6_900);
    assert_eq!(open.stats().replayed_entries, 1);
    assert!(open.stats().available);
    assert!(closed.reserve("k", &monthly, 100, t).await.unwrap().allowed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_closed_denies_fast_while_redis_is_down_and_recovers_when_it_returns() {
    let mut server = RedisServer::start();
    let closed = store(&server, RedisFailureMode::FailClosed);
    let tpm = Limit::per(1_000, Duration::from_secs(60)).unwrap();
    assert!(
        closed
            .reserve("k", &tpm, 10, SystemTime::now())
            .await
            .unwrap()
            .allowed
    );
    server.kill();
    for _ in 0..3 {
        let started = Instant::now();
        let err = closed
            .reserve("k", &tpm, 10, SystemTime::now())
            .await
            .unwrap_err();
        assert!(err.is_unavailable(), "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }
    server.restart();
    eventually("a reservation through the restarted redis", || async {
        closed
            .reserve("k", &tpm, 10, SystemTime::now())
            .await
            .is_ok()
    })
    .await;
    assert!(closed.stats().available);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_built_while_redis_is_down_works_once_it_is_up() {
    let mut server = RedisServer::unused();
    let open = store(&server, RedisFailureMode::FailOpen);
    let daily = Limit::budget(1_000, Period::Day).unwrap();
    let d = open
        .reserve("k", &daily, 1_200, SystemTime::now())
        .await
        .unwrap();
    assert!(d.allowed, "fail open allows even over the amount: {d:?}");
    assert_eq!(d.remaining, 0);
    assert_eq!(open.pending(), 1);
    server.restart();
    eventually("the ledger replayed", || async { open.pending() == 0 }).await;
    let d = open
        .reserve("k", &daily, 1, SystemTime::now())
        .await
        .unwrap();
    assert!(!d.allowed, "the fail-open charge counts: {d:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redis_trips_the_failure_mode_within_the_command_timeout() {
    let server = RedisServer::start();
    let open = store(&server, RedisFailureMode::FailOpen);
    let tpm = Limit::per(1_000, Duration::from_secs(60)).unwrap();
    assert!(
        open.reserve("k", &tpm, 10, SystemTime::now())
            .await
            .unwrap()
            .allowed
    );
    server.signal("-STOP");
    let started = Instant::now();
    let d = open
        .reserve("k", &tpm, 10, SystemTime::now())
        .await
        .unwrap();
    let first = started.elapsed();
    let started = Instant::now();
    let again = open
        .reserve("k", &tpm, 10, SystemTime::now())
        .await
        .unwrap();
    let second = started.elapsed();
    server.signal("-CONT");
    assert!(d.allowed && again.allowed);
    assert!(first >= Duration::from_millis(200), "{first:?}");
    assert!(first < Duration::from_millis(800), "{first:?}");
    assert!(
        second < Duration::from_millis(50),
        "within retry_after_failure the next one does not wait: {second:?}"
    );
    assert_eq!(open.stats().fail_open_reservations, 2);
    // The timed-out call may still run once Redis resumes (see the module docs), so
    // only recovery is checked here, not the total.
    eventually("the ledger replayed", || async { open.pending() == 0 }).await;
    assert!(open.stats().available);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_expire_once_they_equal_a_fresh_one() {
    let server = RedisServer::start();
    let s = store(&server, RedisFailureMode::FailClosed);
    let mut conn = raw(&server).await;
    let now = SystemTime::now();
    let bucket = Limit::bucket(100, 10.0).unwrap();
    assert!(s.reserve("b", &bucket, 50, now).await.unwrap().allowed);
    let pttl: i64 = redis::cmd("PTTL")
        .arg("b")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        (5_500..=6_000).contains(&pttl),
        "5 s to refill + 1 s slack: {pttl}"
    );
    let minute = Limit::budget(100, Period::Minute).unwrap();
    assert!(s.reserve("m", &minute, 50, now).await.unwrap().allowed);
    let pttl: i64 = redis::cmd("PTTL")
        .arg("m")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        (1..=61_000).contains(&pttl),
        "to the minute's end + 1 s slack: {pttl}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_ledger_entry_is_dropped_without_blocking_the_others() {
    let server = RedisServer::start();
    let open = store(&server, RedisFailureMode::FailOpen);
    let mut conn = raw(&server).await;
    let _: () = redis::cmd("SET")
        .arg("wrongtype")
        .arg("x")
        .query_async(&mut conn)
        .await
        .unwrap();
    let limit = Limit::bucket(100, 1.0).unwrap();
    let now = SystemTime::now();
    let d = open.reserve("wrongtype", &limit, 10, now).await.unwrap();
    assert!(d.allowed, "a script error fails open too");
    open.shared
        .pend("fine", &limit, Op::Charge(30), epoch_ms(now));
    eventually("the ledger emptied", || async { open.pending() == 0 }).await;
    let stats = open.stats();
    assert_eq!((stats.rejected_entries, stats.replayed_entries), (1, 1));
    assert_eq!(remaining(&open, "fine", &limit).await, 70);
}
