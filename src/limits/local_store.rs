//! `LocalStore`: limit state in this process, in a sharded `DashMap`. An operation holds
//! its key's shard lock only for the arithmetic (no await, no allocation on the hot path
//! once a key exists); there is no global lock. Keys forget themselves: a bucket once it
//! is full again, a budget once its window has ended — both indistinguishable from a
//! fresh key then — swept at most once per `sweep_interval` by the operation that finds
//! the sweep due.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use dashmap::DashMap;

use super::bucket::BucketState;
use super::budget::BudgetState;
use super::calendar::epoch_ms;
use super::decision::{Decision, Op, Reserved};
use super::error::LimitError;
use super::limit::Limit;
use super::store::{clamp, settle_op, Applied, LimitStore};

/// In-process limit state; one per process (or per config snapshot, if limits should
/// reset on reload). `Send + Sync`; share it behind an `Arc`.
#[derive(Debug)]
pub struct LocalStore {
    slots: DashMap<String, Slot>,
    sweep_every_ms: i64,
    next_sweep_ms: AtomicI64,
}

/// One key's state and when it can be forgotten.
#[derive(Debug)]
struct Slot {
    state: State,
    expires_at_ms: i64,
}

#[derive(Debug)]
enum State {
    Bucket(BucketState),
    Budget(BudgetState),
}

// === impl LocalStore ===

impl Default for LocalStore {
    fn default() -> Self {
        LocalStore::new()
    }
}

impl LocalStore {
    /// A store that sweeps idle keys at most once a minute.
    pub fn new() -> LocalStore {
        LocalStore::with_sweep_interval(Duration::from_secs(60))
    }

    /// A store that sweeps idle keys at most once per `every`.
    pub fn with_sweep_interval(every: Duration) -> LocalStore {
        LocalStore {
            slots: DashMap::new(),
            sweep_every_ms: i64::try_from(every.as_millis()).unwrap_or(i64::MAX),
            next_sweep_ms: AtomicI64::new(0),
        }
    }

    /// Keys currently held.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Forget every key that is back to its fresh state at `now`; returns how many.
    pub fn sweep(&self, now: SystemTime) -> usize {
        let now_ms = epoch_ms(now);
        let before = self.slots.len();
        self.slots.retain(|_, slot| slot.expires_at_ms > now_ms);
        before.saturating_sub(self.slots.len())
    }

    /// Apply `op` to `key` atomically.
    fn apply(&self, key: &str, limit: &Limit, op: Op, now_ms: i64) -> Applied {
        let applied = match self.slots.get_mut(key) {
            Some(mut slot) => slot.apply(limit, op, now_ms),
            None => self
                .slots
                .entry(key.to_owned())
                .or_insert_with(|| Slot::fresh(limit, now_ms))
                .apply(limit, op, now_ms),
        };
        // No shard lock is held here, so the sweep cannot deadlock against this key.
        self.maybe_sweep(now_ms);
        applied
    }

    fn maybe_sweep(&self, now_ms: i64) {
        let due = self.next_sweep_ms.load(Ordering::Relaxed);
        if now_ms < due {
            return;
        }
        let next = now_ms.saturating_add(self.sweep_every_ms);
        if self
            .next_sweep_ms
            .compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            self.slots.retain(|_, slot| slot.expires_at_ms > now_ms);
        }
    }
}

#[async_trait]
impl LimitStore for LocalStore {
    async fn reserve(
        &self,
        key: &str,
        limit: &Limit,
        estimate: u64,
        now: SystemTime,
    ) -> Result<Decision, LimitError> {
        let now_ms = epoch_ms(now);
        let applied = self.apply(key, limit, Op::Reserve(clamp(estimate)), now_ms);
        Ok(applied.decision(limit, estimate, now_ms))
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
            self.apply(key, limit, op, now_ms);
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
        self.apply(key, limit, Op::Charge(clamp(amount)), now_ms);
        Ok(())
    }
}

// === impl Slot ===

impl Slot {
    fn fresh(limit: &Limit, now_ms: i64) -> Slot {
        let state = match limit {
            Limit::Bucket(b) => State::Bucket(BucketState::fresh(b, now_ms)),
            Limit::Budget(b) => State::Budget(BudgetState::fresh(b, now_ms)),
        };
        Slot {
            state,
            expires_at_ms: now_ms,
        }
    }

    fn apply(&mut self, limit: &Limit, op: Op, now_ms: i64) -> Applied {
        match (&mut self.state, limit) {
            (State::Bucket(s), Limit::Bucket(b)) => {
                let allowed = s.apply(b, op, now_ms);
                self.expires_at_ms = s.full_at_ms(b);
                Applied {
                    allowed,
                    value: s.level,
                }
            }
            (State::Budget(s), Limit::Budget(b)) => {
                let allowed = s.apply(b, op, now_ms);
                self.expires_at_ms = s.window(b).end_ms;
                Applied {
                    allowed,
                    value: s.used as f64,
                }
            }
            // The key's limit changed kind (a config reload): start over.
            _ => {
                *self = Slot::fresh(limit, now_ms);
                self.apply(limit, op, now_ms)
            }
        }
    }
}

#[cfg(test)]
mod tests;
