//! `Limiter` and its `Reservation` guard: a pre-charge that is settled exactly once.
//!
//! Exactly once is by construction: `settle` and `settle_in_background` consume the
//! guard, and `Drop` settles only a guard that was not consumed. A dropped guard (an
//! abandoned stream, a panic, a denied sibling limit) settles for what the caller
//! recorded as delivered so far — zero unless recorded, which refunds the whole estimate.
//!
//! `Drop` is synchronous and a store may be remote, so the drop path and
//! `settle_in_background` (for the processor's synchronous `on_complete`) hand the
//! settlement to a task spawned on the runtime the `Limiter` was built on — one task per
//! settlement, so a slow store delays nothing else and settlements run concurrently.
//! The `Limiter` counts those tasks; `drain` waits for them (graceful shutdown, tests).
//! If the runtime is already shut down the task never runs and the settlement is lost,
//! with a warning; the Redis store's own failure handling (the pending ledger) covers a
//! store that is down, not a process that is exiting.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use tokio::runtime::Handle;
use tokio::sync::Notify;

use super::decision::{Decision, Reserved};
use super::error::LimitError;
use super::limit::Limit;
use super::store::LimitStore;

/// A store plus the runtime that background settlements run on. Cheap to clone.
#[derive(Clone)]
pub struct Limiter {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn LimitStore>,
    runtime: Handle,
    in_flight: AtomicUsize,
    idle: Notify,
}

/// The outcome of [`Limiter::reserve`].
#[must_use = "dropping an allowed reservation refunds it at once"]
#[derive(Debug)]
pub enum Admission {
    /// Pre-charged; settle the guard when the actual amount is known.
    Allowed(Reservation),
    /// Over the limit; nothing was charged.
    Denied(Decision),
}

/// A pre-charged estimate on one key. Settles exactly once: [`Reservation::settle`],
/// [`Reservation::settle_in_background`], or on drop for what was recorded as delivered.
#[must_use = "dropping a reservation settles it for what was delivered so far"]
pub struct Reservation {
    limiter: Limiter,
    pending: Option<Pending>,
    decision: Decision,
    delivered: u64,
}

/// What a settlement needs; taken out exactly once.
struct Pending {
    key: String,
    limit: Limit,
    reserved: Reserved,
}

// === impl Limiter ===

impl Limiter {
    /// A limiter over `store`; must be called inside a Tokio runtime, which is the one
    /// background settlements are spawned on.
    pub fn new(store: Arc<dyn LimitStore>) -> Result<Limiter, LimitError> {
        let runtime =
            Handle::try_current().map_err(|_| LimitError::NoRuntime { what: "Limiter" })?;
        Ok(Limiter {
            inner: Arc::new(Inner {
                store,
                runtime,
                in_flight: AtomicUsize::new(0),
                idle: Notify::new(),
            }),
        })
    }

    pub fn store(&self) -> &Arc<dyn LimitStore> {
        &self.inner.store
    }

    /// Check `limit` on `key` and pre-charge `estimate`; see [`LimitStore::reserve`].
    pub async fn reserve(
        &self,
        key: impl Into<String>,
        limit: &Limit,
        estimate: u64,
        now: SystemTime,
    ) -> Result<Admission, LimitError> {
        let key = key.into();
        let decision = self.inner.store.reserve(&key, limit, estimate, now).await?;
        if !decision.allowed {
            return Ok(Admission::Denied(decision));
        }
        Ok(Admission::Allowed(Reservation {
            limiter: self.clone(),
            pending: Some(Pending {
                key,
                limit: limit.clone(),
                reserved: Reserved {
                    amount: estimate,
                    at: now,
                },
            }),
            decision,
            delivered: 0,
        }))
    }

    /// Charge `amount` unconditionally; see [`LimitStore::charge`].
    pub async fn charge(
        &self,
        key: &str,
        limit: &Limit,
        amount: u64,
        now: SystemTime,
    ) -> Result<(), LimitError> {
        self.inner.store.charge(key, limit, amount, now).await
    }

    /// Background settlements not finished yet.
    pub fn settlements_in_flight(&self) -> usize {
        self.inner.in_flight.load(Ordering::Acquire)
    }

    /// Wait until every background settlement started so far has finished.
    pub async fn drain(&self) {
        loop {
            let idle = self.inner.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.settlements_in_flight() == 0 {
                return;
            }
            idle.await;
        }
    }

    /// Run `settlement` on the limiter's runtime, counted until it finishes or is dropped.
    fn spawn(&self, settlement: impl Future<Output = ()> + Send + 'static) {
        self.inner.in_flight.fetch_add(1, Ordering::AcqRel);
        let counted = InFlight(self.inner.clone());
        self.inner.runtime.spawn(async move {
            let _counted = counted;
            settlement.await;
        });
    }
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("settlements_in_flight", &self.settlements_in_flight())
            .finish_non_exhaustive()
    }
}

/// Counts one background settlement; dropped when its task ends or is discarded.
struct InFlight(Arc<Inner>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

// === impl Admission ===

impl Admission {
    /// The decision, allowed or not (for the `x-ratelimit-*` headers).
    pub fn decision(&self) -> &Decision {
        match self {
            Admission::Allowed(r) => r.decision(),
            Admission::Denied(d) => d,
        }
    }
}

// === impl Reservation ===

impl Reservation {
    /// The decision that granted this reservation.
    pub fn decision(&self) -> &Decision {
        &self.decision
    }

    /// The pre-charged estimate.
    pub fn reserved(&self) -> u64 {
        self.pending.as_ref().map_or(0, |p| p.reserved.amount)
    }

    /// What a drop would settle for.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// Record `amount` more as delivered (e.g. output tokens of a stream chunk).
    pub fn add_delivered(&mut self, amount: u64) {
        self.delivered = self.delivered.saturating_add(amount);
    }

    /// Record the total delivered so far (e.g. the prompt once it went upstream).
    pub fn set_delivered(&mut self, total: u64) {
        self.delivered = total;
    }

    /// True up with the actual amount now, waiting for the store.
    pub async fn settle(mut self, actual: u64, now: SystemTime) -> Result<(), LimitError> {
        let Some(p) = self.pending.take() else {
            return Ok(());
        };
        let store = &self.limiter.inner.store;
        store
            .settle(&p.key, &p.limit, p.reserved, actual, now)
            .await
    }

    /// True up with the actual amount on a background task; for synchronous callers
    /// such as a processor's `on_complete`. Failures are logged.
    pub fn settle_in_background(mut self, actual: u64) {
        self.settle_detached(actual);
    }

    fn settle_detached(&mut self, actual: u64) {
        let Some(p) = self.pending.take() else {
            return;
        };
        let store = self.limiter.inner.store.clone();
        self.limiter.spawn(async move {
            let now = SystemTime::now();
            if let Err(error) = store
                .settle(&p.key, &p.limit, p.reserved, actual, now)
                .await
            {
                tracing::warn!(key = %p.key, reserved = p.reserved.amount, actual, %error,
                    "limits: background settlement failed");
            }
        });
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let delivered = self.delivered;
        self.settle_detached(delivered);
    }
}

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reservation")
            .field("key", &self.pending.as_ref().map(|p| &p.key))
            .field("reserved", &self.reserved())
            .field("delivered", &self.delivered)
            .field("decision", &self.decision)
            .finish()
    }
}

#[cfg(test)]
mod tests;
