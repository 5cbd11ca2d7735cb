//! The guard settles exactly once: explicitly, in the background, or on drop.

use std::sync::Mutex;
use std::time::{Duration, UNIX_EPOCH};

use async_trait::async_trait;

use super::*;
use crate::limits::LocalStore;

/// A `LocalStore` that records every settlement it is asked for.
#[derive(Default)]
struct Recording {
    inner: LocalStore,
    settled: Mutex<Vec<(String, u64, u64)>>,
}

#[async_trait]
impl LimitStore for Recording {
    async fn reserve(
        &self,
        key: &str,
        limit: &Limit,
        estimate: u64,
        now: SystemTime,
    ) -> Result<Decision, LimitError> {
        self.inner.reserve(key, limit, estimate, now).await
    }

    async fn settle(
        &self,
        key: &str,
        limit: &Limit,
        reserved: Reserved,
        actual: u64,
        now: SystemTime,
    ) -> Result<(), LimitError> {
        self.settled
            .lock()
            .unwrap()
            .push((key.to_owned(), reserved.amount, actual));
        self.inner.settle(key, limit, reserved, actual, now).await
    }

    async fn charge(
        &self,
        key: &str,
        limit: &Limit,
        amount: u64,
        now: SystemTime,
    ) -> Result<(), LimitError> {
        self.inner.charge(key, limit, amount, now).await
    }
}

fn setup() -> (Arc<Recording>, Limiter, Limit) {
    let store = Arc::new(Recording::default());
    let limiter = Limiter::new(store.clone()).unwrap();
    // Refills 1 token per 1,000 s: nothing moves while a test runs.
    (store, limiter, Limit::bucket(1_000, 0.001).unwrap())
}

fn settled(store: &Recording) -> Vec<(String, u64, u64)> {
    store.settled.lock().unwrap().clone()
}

async fn remaining(limiter: &Limiter, limit: &Limit) -> u64 {
    match limiter
        .reserve("k", limit, 0, SystemTime::now())
        .await
        .unwrap()
    {
        Admission::Allowed(r) => {
            let remaining = r.decision().remaining;
            r.settle(0, SystemTime::now()).await.unwrap();
            remaining
        }
        Admission::Denied(d) => panic!("a zero reservation was denied: {d:?}"),
    }
}

fn allowed(admission: Admission) -> Reservation {
    match admission {
        Admission::Allowed(r) => r,
        Admission::Denied(d) => panic!("denied: {d:?}"),
    }
}

#[tokio::test]
async fn an_explicit_settle_is_the_only_settlement() {
    let (store, limiter, limit) = setup();
    let now = SystemTime::now();
    let mut r = allowed(limiter.reserve("k", &limit, 300, now).await.unwrap());
    assert_eq!((r.reserved(), r.decision().remaining), (300, 700));
    r.add_delivered(50);
    r.settle(420, now).await.unwrap();
    limiter.drain().await;
    assert_eq!(settled(&store), [("k".to_owned(), 300, 420)]);
    assert_eq!(remaining(&limiter, &limit).await, 580);
}

#[tokio::test]
async fn a_dropped_guard_settles_once_for_what_was_delivered() {
    let (store, limiter, limit) = setup();
    let mut r = allowed(
        limiter
            .reserve("k", &limit, 300, SystemTime::now())
            .await
            .unwrap(),
    );
    r.set_delivered(100);
    r.add_delivered(25);
    assert_eq!(r.delivered(), 125);
    drop(r);
    limiter.drain().await;
    assert_eq!(limiter.settlements_in_flight(), 0);
    assert_eq!(settled(&store), [("k".to_owned(), 300, 125)]);
    assert_eq!(
        remaining(&limiter, &limit).await,
        875,
        "175 of 300 refunded"
    );
}

#[tokio::test]
async fn a_guard_dropped_with_nothing_delivered_refunds_everything() {
    let (store, limiter, limit) = setup();
    drop(allowed(
        limiter
            .reserve("k", &limit, 300, SystemTime::now())
            .await
            .unwrap(),
    ));
    limiter.drain().await;
    assert_eq!(settled(&store), [("k".to_owned(), 300, 0)]);
    assert_eq!(remaining(&limiter, &limit).await, 1_000);
}

#[tokio::test]
async fn a_background_settle_is_the_only_settlement() {
    let (store, limiter, limit) = setup();
    let mut r = allowed(
        limiter
            .reserve("k", &limit, 300, SystemTime::now())
            .await
            .unwrap(),
    );
    r.add_delivered(999);
    r.settle_in_background(310);
    limiter.drain().await;
    assert_eq!(settled(&store), [("k".to_owned(), 300, 310)]);
    assert_eq!(remaining(&limiter, &limit).await, 690);
}

#[tokio::test]
async fn a_denial_holds_no_guard_and_settles_nothing() {
    let (store, limiter, limit) = setup();
    let a = limiter
        .reserve("k", &limit, 1_001, SystemTime::now())
        .await
        .unwrap();
    let Admission::Denied(d) = &a else {
        panic!("allowed over capacity")
    };
    assert_eq!(d.retry_after, None);
    assert_eq!(a.decision().limit, 1_000);
    drop(a);
    limiter.drain().await;
    assert!(settled(&store).is_empty());
}

#[tokio::test]
async fn a_guard_dropped_by_a_panicking_task_still_settles() {
    let (store, limiter, limit) = setup();
    let mut r = allowed(
        limiter
            .reserve("k", &limit, 300, SystemTime::now())
            .await
            .unwrap(),
    );
    r.add_delivered(40);
    let task = tokio::spawn(async move {
        let _r = r;
        panic!("the exchange failed");
    });
    assert!(task.await.is_err());
    limiter.drain().await;
    assert_eq!(settled(&store), [("k".to_owned(), 300, 40)]);
}

#[test]
fn a_guard_dropped_outside_the_runtime_settles_on_it() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (store, limiter, limit) = rt.block_on(async { setup() });
    let r = rt
        .block_on(limiter.reserve("k", &limit, 300, UNIX_EPOCH + Duration::from_secs(9)))
        .unwrap();
    std::thread::spawn(move || drop(r)).join().unwrap();
    rt.block_on(limiter.drain());
    assert_eq!(settled(&store), [("k".to_owned(), 300, 0)]);
}

#[test]
fn a_limiter_needs_a_runtime() {
    let err = Limiter::new(Arc::new(LocalStore::new())).unwrap_err();
    assert!(matches!(err, LimitError::NoRuntime { .. }), "{err}");
}
