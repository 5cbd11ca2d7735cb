//! `LocalStore`: the arithmetic through the store, idle expiry, and concurrent callers
//! that must never overspend.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;
use crate::limits::calendar::tests::utc;
use crate::limits::limit::Period;

fn at(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms as u64)
}

#[tokio::test]
async fn reserve_settle_and_charge_on_a_bucket() {
    let store = LocalStore::new();
    let tpm = Limit::per(600, Duration::from_secs(60)).unwrap();
    let t = utc(2025, 4, 1, 12, 0, 0);

    let d = store.reserve("k", &tpm, 400, at(t)).await.unwrap();
    assert!(d.allowed);
    assert_eq!((d.remaining, d.limit), (200, 600));
    assert_eq!(d.reset_after, Duration::from_secs(40));

    let reserved = Reserved {
        amount: 400,
        at: at(t),
    };
    store.settle("k", &tpm, reserved, 100, at(t)).await.unwrap();
    let d = store.reserve("k", &tpm, 0, at(t)).await.unwrap();
    assert_eq!(d.remaining, 500, "300 refunded");

    store.charge("k", &tpm, 700, at(t)).await.unwrap();
    let d = store.reserve("k", &tpm, 100, at(t)).await.unwrap();
    assert!(!d.allowed);
    assert_eq!(d.remaining, 0);
    assert_eq!(
        d.retry_after,
        Some(Duration::from_secs(30)),
        "200 debt + 100 at 10/s"
    );

    let d = store.reserve("other", &tpm, 100, at(t)).await.unwrap();
    assert!(d.allowed, "keys are independent");
}

#[tokio::test]
async fn budget_rolls_over_at_the_utc_boundary_through_the_store() {
    let store = LocalStore::new();
    let hourly = Limit::budget(1_000, Period::Hour).unwrap();
    let t = utc(2025, 4, 1, 12, 59, 0);
    assert!(
        store
            .reserve("k", &hourly, 1_000, at(t))
            .await
            .unwrap()
            .allowed
    );
    let d = store.reserve("k", &hourly, 1, at(t)).await.unwrap();
    assert_eq!(d.retry_after, Some(Duration::from_secs(60)));
    // The reservation settles after the boundary: the refund belongs to the old hour.
    let r = Reserved {
        amount: 1_000,
        at: at(t),
    };
    let next = utc(2025, 4, 1, 13, 0, 0);
    store.settle("k", &hourly, r, 200, at(next)).await.unwrap();
    let d = store.reserve("k", &hourly, 1_000, at(next)).await.unwrap();
    assert!(
        d.allowed,
        "a fresh hour, not credited with the refund: {d:?}"
    );
    assert_eq!(d.remaining, 0);
}

#[tokio::test]
async fn idle_keys_are_forgotten_once_they_are_fresh_again() {
    let store = LocalStore::new();
    let bucket = Limit::bucket(100, 10.0).unwrap();
    let daily = Limit::budget(100, Period::Day).unwrap();
    let t = utc(2025, 4, 1, 23, 59, 0);
    assert!(
        store
            .reserve("b", &bucket, 50, at(t))
            .await
            .unwrap()
            .allowed
    );
    assert!(store.reserve("d", &daily, 50, at(t)).await.unwrap().allowed);
    assert_eq!(store.sweep(at(t + 4_999)), 0);
    assert_eq!(
        store.sweep(at(t + 5_000)),
        1,
        "the bucket is full after 5 s"
    );
    assert_eq!(store.len(), 1);
    assert_eq!(store.sweep(at(t + 59_999)), 0);
    assert_eq!(store.sweep(at(t + 60_000)), 1, "the day has ended");
    assert!(store.is_empty());
}

#[tokio::test]
async fn operations_sweep_on_their_own_at_most_once_per_interval() {
    let store = LocalStore::with_sweep_interval(Duration::from_secs(10));
    let bucket = Limit::bucket(100, 100.0).unwrap();
    for i in 0..50 {
        assert!(
            store
                .reserve(&format!("k{i}"), &bucket, 100, at(0))
                .await
                .unwrap()
                .allowed
        );
    }
    assert_eq!(store.len(), 50, "the sweep at t=0 found every key in use");
    assert!(
        store
            .reserve("late", &bucket, 100, at(5_000))
            .await
            .unwrap()
            .allowed
    );
    assert_eq!(store.len(), 51, "no sweep before the interval has passed");
    assert!(
        store
            .reserve("later", &bucket, 100, at(10_000))
            .await
            .unwrap()
            .allowed
    );
    assert_eq!(
        store.len(),
        1,
        "swept everything full again, kept the one just used"
    );
}

#[tokio::test]
async fn a_key_whose_limit_changes_kind_starts_fresh() {
    let store = LocalStore::new();
    let bucket = Limit::bucket(100, 1.0).unwrap();
    let budget = Limit::budget(10, Period::Day).unwrap();
    assert!(
        store
            .reserve("k", &bucket, 100, at(0))
            .await
            .unwrap()
            .allowed
    );
    let d = store.reserve("k", &budget, 4, at(0)).await.unwrap();
    assert!(d.allowed);
    assert_eq!(d.remaining, 6);
    // A smaller capacity caps the level of an existing bucket.
    let small = Limit::bucket(5, 1.0).unwrap();
    assert!(store.reserve("j", &bucket, 0, at(0)).await.unwrap().allowed);
    assert_eq!(
        store
            .reserve("j", &small, 0, at(0))
            .await
            .unwrap()
            .remaining,
        5
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_reservations_never_overspend() {
    let store = Arc::new(LocalStore::new());
    // 1,000 tokens, refilling 1 per day: nothing refills while the test runs.
    let limit = Limit::bucket(1_000, 1.0 / 86_400.0).unwrap();
    let now = SystemTime::now();
    let barrier = Arc::new(tokio::sync::Barrier::new(400));
    let tasks: Vec<_> = (0..400)
        .map(|_| {
            let (store, limit, barrier) = (store.clone(), limit.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                store
                    .reserve("shared", &limit, 7, now)
                    .await
                    .unwrap()
                    .allowed
            })
        })
        .collect();
    let mut allowed = 0;
    for t in tasks {
        allowed += u64::from(t.await.unwrap());
    }
    assert_eq!(allowed, 1_000 / 7, "exactly as many as fit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_reserve_and_settle_account_for_every_token() {
    let store = Arc::new(LocalStore::new());
    let limit = Limit::budget(1_000_000, Period::Month).unwrap();
    let now = SystemTime::now();
    let tasks: Vec<_> = (0..200u64)
        .map(|i| {
            let (store, limit) = (store.clone(), limit.clone());
            tokio::spawn(async move {
                let estimate = 100 + i;
                let d = store.reserve("k", &limit, estimate, now).await.unwrap();
                assert!(d.allowed);
                tokio::task::yield_now().await;
                let r = Reserved {
                    amount: estimate,
                    at: now,
                };
                let actual = if i % 2 == 0 {
                    estimate / 2
                } else {
                    estimate * 2
                };
                store.settle("k", &limit, r, actual, now).await.unwrap();
                actual
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    let d = store.reserve("k", &limit, 0, now).await.unwrap();
    assert_eq!(d.remaining, 1_000_000 - total);
}
