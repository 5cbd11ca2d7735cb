//! `RedisStore`: limit state shared by every tollgate replica through one Redis.
//!
//! Each operation is one atomic Lua script on one hash (`scripts`), with the caller's
//! `now` (see the `limits` module docs for why not Redis' `TIME`), and a `PEXPIRE` so
//! idle keys vanish once they equal a fresh one. The connection is a redis-rs
//! `ConnectionManager` built lazily — tollgate starts while Redis is down — that
//! reconnects after I/O errors; every operation is bounded by `command_timeout`, and for
//! `retry_after_failure` after a failure operations do not try Redis at all (so a Redis
//! that is gone costs requests nothing, not a timeout each); then the next one probes.
//!
//! When Redis cannot answer, the [`RedisFailureMode`] decides reservations: fail open
//! allows them, fail closed denies them with `LimitError::Unavailable` (503). Either
//! way, charges and refunds that could not be applied — and fail-open pre-charges — go
//! to a pending ledger, netted per key, which a background task replays once Redis
//! answers again (at once after the first success, else every `flush_interval`). So
//! nothing admitted goes unaccounted. Known limit: an operation that timed out after
//! Redis received it may still be applied by Redis *and* replayed from the ledger.

mod config;
mod ledger;
mod scripts;
#[cfg(test)]
mod test_server;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::runtime::Handle;
use tokio::sync::Notify;

pub use config::{RedisFailureMode, RedisStoreConfig};

use self::ledger::Ledger;
use super::bucket::BucketState;
use super::budget::BudgetState;
use super::calendar::epoch_ms;
use super::decision::{Decision, Op, Reserved};
use super::error::{LimitError, StoreFailure};
use super::limit::Limit;
use super::store::{clamp, settle_op, Applied, LimitStore};

/// A `LimitStore` in Redis. Cheap to clone; clones share the connection and the ledger.
#[derive(Clone)]
pub struct RedisStore {
    shared: Arc<Shared>,
}

struct Shared {
    conn: ConnectionManager,
    failure_mode: RedisFailureMode,
    command_timeout: Duration,
    retry_after_failure: Duration,
    /// When operations may try Redis again after a failure, in nanoseconds since
    /// `started`; 0 when Redis answered last.
    retry_at_ns: AtomicU64,
    started: Instant,
    ledger: Ledger,
    /// Entries taken out of the ledger by the replay in progress and not finished yet.
    replaying: AtomicUsize,
    /// One replay at a time.
    flushing: tokio::sync::Mutex<()>,
    /// Wakes the background replay (Redis answered after failing).
    wake: Arc<Notify>,
    /// Whether the last operation reached Redis; logs only the transitions.
    available: AtomicBool,
    counters: Counters,
}

#[derive(Default)]
struct Counters {
    fail_open: AtomicU64,
    fail_closed: AtomicU64,
    pended: AtomicU64,
    replayed: AtomicU64,
    expired: AtomicU64,
    rejected: AtomicU64,
}

/// Counters for metrics and tests; monotonic except `pending_entries` and `available`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RedisStoreStats {
    /// Reservations allowed without Redis.
    pub fail_open_reservations: u64,
    /// Reservations denied because Redis could not answer.
    pub fail_closed_reservations: u64,
    /// Operations written to the pending ledger.
    pub pended_operations: u64,
    /// Ledger entries applied to Redis.
    pub replayed_entries: u64,
    /// Ledger entries dropped because their budget window ended first.
    pub expired_entries: u64,
    /// Ledger entries dropped because Redis rejected them (e.g. a key of another type).
    pub rejected_entries: u64,
    /// Ledger entries waiting now.
    pub pending_entries: usize,
    /// Whether the last operation reached Redis.
    pub available: bool,
}

/// What one replay of the pending ledger did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlushReport {
    pub replayed: usize,
    pub expired: usize,
    pub rejected: usize,
}

// === impl RedisStore ===

impl RedisStore {
    /// A store on `config.url`. Connects lazily (the first operation connects), so it
    /// succeeds while Redis is down; must be called inside a Tokio runtime, which runs
    /// the connection and the ledger replay.
    pub fn new(config: RedisStoreConfig) -> Result<RedisStore, LimitError> {
        Handle::try_current().map_err(|_| LimitError::NoRuntime { what: "RedisStore" })?;
        let client = redis::Client::open(config.url.as_str())
            .map_err(|source| LimitError::RedisClient { source })?;
        // No retry loop inside the manager: a failed attempt fails the operation at
        // once (the failure mode applies) and the next operation tries again.
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.command_timeout))
            .set_number_of_retries(0);
        let conn = ConnectionManager::new_lazy_with_config(client, manager_config)
            .map_err(|source| LimitError::RedisClient { source })?;
        let wake = Arc::new(Notify::new());
        let shared = Arc::new(Shared {
            conn,
            failure_mode: config.failure_mode,
            command_timeout: config.command_timeout,
            retry_after_failure: config.retry_after_failure,
            retry_at_ns: AtomicU64::new(0),
            started: Instant::now(),
            ledger: Ledger::default(),
            replaying: AtomicUsize::new(0),
            flushing: tokio::sync::Mutex::new(()),
            wake: wake.clone(),
            available: AtomicBool::new(true),
            counters: Counters::default(),
        });
        tokio::spawn(replay_loop(
            Arc::downgrade(&shared),
            wake,
            config.flush_interval,
        ));
        Ok(RedisStore { shared })
    }

    /// Replay the pending ledger into Redis now. On a failure that is worth retrying,
    /// what was not replayed stays pending and the error is returned.
    pub async fn flush_pending(&self) -> Result<FlushReport, LimitError> {
        self.shared.flush().await
    }

    /// Ledger entries waiting to be replayed, or being replayed right now.
    pub fn pending(&self) -> usize {
        self.shared.pending()
    }

    pub fn stats(&self) -> RedisStoreStats {
        let c = &self.shared.counters;
        let get = |n: &AtomicU64| n.load(Ordering::Relaxed);
        RedisStoreStats {
            fail_open_reservations: get(&c.fail_open),
            fail_closed_reservations: get(&c.fail_closed),
            pended_operations: get(&c.pended),
            replayed_entries: get(&c.replayed),
            expired_entries: get(&c.expired),
            rejected_entries: get(&c.rejected),
            pending_entries: self.shared.pending(),
            available: self.shared.available.load(Ordering::Relaxed),
        }
    }
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("failure_mode", &self.shared.failure_mode)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl LimitStore for RedisStore {
    async fn reserve(
        &self,
        key: &str,
        limit: &Limit,
        estimate: u64,
        now: SystemTime,
    ) -> Result<Decision, LimitError> {
        let (now_ms, op) = (epoch_ms(now), Op::Reserve(clamp(estimate)));
        let failure = match self.shared.run(key, limit, op, now_ms).await {
            Ok(applied) => return Ok(applied.decision(limit, estimate, now_ms)),
            Err(failure) => failure,
        };
        match self.shared.failure_mode {
            RedisFailureMode::FailOpen => {
                self.shared
                    .counters
                    .fail_open
                    .fetch_add(1, Ordering::Relaxed);
                self.shared.pend(key, limit, op, now_ms);
                Ok(fail_open_decision(limit, estimate, now_ms))
            }
            RedisFailureMode::FailClosed => {
                self.shared
                    .counters
                    .fail_closed
                    .fetch_add(1, Ordering::Relaxed);
                Err(LimitError::Unavailable {
                    key: key.to_owned(),
                    op: "reserve",
                    source: failure,
                })
            }
        }
    }

    async fn settle(
        &self,
        key: &str,
        limit: &Limit,
        reserved: Reserved,
        actual: u64,
        now: SystemTime,
    ) -> Result<(), LimitError> {
        let now_ms = epoch_ms(now);
        if let Some(op) = settle_op(limit, reserved, actual, now_ms) {
            self.shared.apply_or_pend(key, limit, op, now_ms).await;
        }
        Ok(())
    }

    async fn charge(
        &self,
        key: &str,
        limit: &Limit,
        amount: u64,
        now: SystemTime,
    ) -> Result<(), LimitError> {
        let now_ms = epoch_ms(now);
        let op = Op::Charge(clamp(amount));
        self.shared.apply_or_pend(key, limit, op, now_ms).await;
        Ok(())
    }
}

/// What a fail-open reservation answers: the decision a fresh key would give, allowed
/// even if the estimate is larger than the limit (Redis' real state is unknown).
fn fail_open_decision(limit: &Limit, estimate: u64, now_ms: i64) -> Decision {
    let op = Op::Charge(clamp(estimate));
    let value = match limit {
        Limit::Bucket(b) => {
            let mut s = BucketState::fresh(b, now_ms);
            s.apply(b, op, now_ms);
            s.level
        }
        Limit::Budget(b) => {
            let mut s = BudgetState::fresh(b, now_ms);
            s.apply(b, op, now_ms);
            s.used as f64
        }
    };
    let applied = Applied {
        allowed: true,
        value,
    };
    applied.decision(limit, estimate, now_ms)
}

// === impl Shared ===

impl Shared {
    /// One script call, bounded by `command_timeout`.
    async fn run(
        &self,
        key: &str,
        limit: &Limit,
        op: Op,
        now_ms: i64,
    ) -> Result<Applied, StoreFailure> {
        if self.backing_off() {
            return Err(StoreFailure::BackingOff(self.retry_after_failure));
        }
        let mut conn = self.conn.clone();
        let call = scripts::run(&mut conn, key, limit, op, now_ms);
        let result = match tokio::time::timeout(self.command_timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(StoreFailure::Timeout(self.command_timeout)),
        };
        self.observe(&result);
        result
    }

    /// Whether Redis failed less than `retry_after_failure` ago: then operations fail at
    /// once instead of each waiting up to `command_timeout` on a Redis that is gone.
    fn backing_off(&self) -> bool {
        let retry_at = self.retry_at_ns.load(Ordering::Acquire);
        retry_at != 0 && self.elapsed_ns() < retry_at
    }

    fn elapsed_ns(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Log the transitions between reachable and not, and wake the replay on recovery.
    fn observe(&self, result: &Result<Applied, StoreFailure>) {
        match result {
            Ok(_) => {
                self.retry_at_ns.store(0, Ordering::Release);
                if !self.available.swap(true, Ordering::Relaxed) {
                    tracing::info!("limits: redis answers again; replaying the pending ledger");
                    self.wake.notify_one();
                }
            }
            Err(error) if error.is_rejection() => {}
            Err(error) => {
                let retry_at = self.elapsed_ns().saturating_add(
                    u64::try_from(self.retry_after_failure.as_nanos()).unwrap_or(u64::MAX),
                );
                self.retry_at_ns.store(retry_at.max(1), Ordering::Release);
                if self.available.swap(false, Ordering::Relaxed) {
                    tracing::warn!(%error, mode = ?self.failure_mode,
                        "limits: redis unavailable; applying the failure mode");
                }
            }
        }
    }

    async fn apply_or_pend(&self, key: &str, limit: &Limit, op: Op, now_ms: i64) {
        if self.run(key, limit, op, now_ms).await.is_err() {
            self.pend(key, limit, op, now_ms);
        }
    }

    fn pend(&self, key: &str, limit: &Limit, op: Op, now_ms: i64) {
        self.counters.pended.fetch_add(1, Ordering::Relaxed);
        self.ledger.add(key, limit, op, now_ms);
    }

    /// Replay the ledger. Each entry counts as pending until its outcome is counted, so
    /// `pending() == 0` means every replayed amount is in Redis (and in the stats).
    async fn flush(&self) -> Result<FlushReport, LimitError> {
        let _one_at_a_time = self.flushing.lock().await;
        let now_ms = epoch_ms(SystemTime::now());
        let mut report = FlushReport::default();
        let replays = self.ledger.take_all(now_ms);
        self.replaying.store(replays.len(), Ordering::Release);
        let mut replays = replays.into_iter();
        while let Some(replay) = replays.next() {
            let _done = Replayed(&self.replaying);
            let c = &self.counters;
            let Some(op) = replay.op else {
                if replay.entry.net != 0 {
                    report.expired += 1;
                    c.expired.fetch_add(1, Ordering::Relaxed);
                }
                continue;
            };
            let (key, limit) = (&replay.slot.key, &replay.entry.limit);
            match self.run(key, limit, op, now_ms).await {
                Ok(_) => {
                    report.replayed += 1;
                    c.replayed.fetch_add(1, Ordering::Relaxed);
                }
                Err(failure) if failure.is_rejection() => {
                    tracing::error!(%key, net = replay.entry.net, %failure,
                        "limits: redis rejected a pending ledger entry; dropping it");
                    report.rejected += 1;
                    c.rejected.fetch_add(1, Ordering::Relaxed);
                }
                Err(failure) => {
                    // Back in the ledger before they stop counting as being replayed.
                    let key = key.clone();
                    self.ledger.merge(replay.slot, replay.entry);
                    for rest in replays {
                        self.ledger.merge(rest.slot, rest.entry);
                    }
                    self.replaying.store(0, Ordering::Release);
                    return Err(LimitError::Unavailable {
                        key,
                        op: "flush",
                        source: failure,
                    });
                }
            }
        }
        Ok(report)
    }

    fn pending(&self) -> usize {
        self.ledger.len() + self.replaying.load(Ordering::Acquire)
    }
}

/// Counts one replayed (or dropped) entry as finished when it goes out of scope.
struct Replayed<'a>(&'a AtomicUsize);

impl Drop for Replayed<'_> {
    fn drop(&mut self) {
        let _ = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }
}

/// Replays the ledger while it holds anything: every `interval`, and at once when woken.
/// Ends when the store is dropped.
async fn replay_loop(shared: Weak<Shared>, wake: Arc<Notify>, interval: Duration) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = wake.notified() => {}
        }
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if shared.ledger.is_empty() {
            continue;
        }
        match shared.flush().await {
            Ok(report) if report != FlushReport::default() => {
                tracing::info!(?report, "limits: pending ledger replayed into redis");
            }
            Ok(_) => {}
            Err(error) => tracing::debug!(%error, "limits: pending ledger not replayed yet"),
        }
    }
}
