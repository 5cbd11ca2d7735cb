//! The storage contract: three atomic operations on a caller-named key. `LocalStore`
//! keeps state in this process; `RedisStore` shares it between replicas.

use std::time::SystemTime;

use async_trait::async_trait;

use super::decision::{Decision, Op, Reserved};
use super::error::LimitError;
use super::limit::{Limit, MAX_AMOUNT};
use super::{bucket, budget, calendar};

/// Where limit state lives. Every operation is atomic per key; amounts are clamped to
/// [`MAX_AMOUNT`]. `now` is the caller's wall clock (see the module docs for why the
/// Redis store does not use Redis' `TIME`).
///
/// The key is the caller's, e.g. `tollgate:limit:<policy>:<route>:<api-key-hash>`; one
/// key holds one limit. Changing a key's limit (a config reload) keeps its state where it
/// still makes sense: a bucket's level is capped at the new capacity, a budget keeps its
/// usage; a key that switches between bucket and budget starts fresh.
#[async_trait]
pub trait LimitStore: Send + Sync + 'static {
    /// Check and pre-charge `estimate` in one step. A denial changes nothing.
    async fn reserve(
        &self,
        key: &str,
        limit: &Limit,
        estimate: u64,
        now: SystemTime,
    ) -> Result<Decision, LimitError>;

    /// True up a reservation: charge `actual - reserved` when positive, refund the
    /// difference when negative (never above a bucket's capacity or below a budget's zero;
    /// a budget refund is dropped once the window of the reservation has ended).
    async fn settle(
        &self,
        key: &str,
        limit: &Limit,
        reserved: Reserved,
        actual: u64,
        now: SystemTime,
    ) -> Result<(), LimitError>;

    /// Charge `amount` unconditionally (what an abandoned stream delivered).
    async fn charge(
        &self,
        key: &str,
        limit: &Limit,
        amount: u64,
        now: SystemTime,
    ) -> Result<(), LimitError>;
}

/// What one operation left behind: whether a `Reserve` was granted, and the state's
/// value afterwards (a bucket's level; a budget's `used`, exact in an `f64` below 2^53).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Applied {
    pub allowed: bool,
    pub value: f64,
}

impl Applied {
    /// The decision a `Reserve(estimate)` at `now_ms` that ended here answers.
    pub(crate) fn decision(self, limit: &Limit, estimate: u64, now_ms: i64) -> Decision {
        match limit {
            Limit::Bucket(b) => bucket::decision(b, self.value, self.allowed, clamp(estimate)),
            Limit::Budget(b) => {
                let used = self.value.max(0.0) as u64;
                budget::decision(b, used, self.allowed, clamp(estimate), now_ms)
            }
        }
    }
}

/// The one operation a settlement is, or `None` when there is nothing to do.
pub(crate) fn settle_op(limit: &Limit, reserved: Reserved, actual: u64, now_ms: i64) -> Option<Op> {
    let (reserved_amount, actual) = (clamp(reserved.amount), clamp(actual));
    if actual > reserved_amount {
        return Some(Op::Charge(actual - reserved_amount));
    }
    if actual == reserved_amount {
        return None;
    }
    if let Limit::Budget(b) = limit {
        let then = calendar::window(b.period(), calendar::epoch_ms(reserved.at));
        if then != calendar::window(b.period(), now_ms) {
            return None;
        }
    }
    Some(Op::Refund(reserved_amount - actual))
}

/// Amounts beyond 2^53 are clamped (see [`MAX_AMOUNT`]).
pub(crate) fn clamp(n: u64) -> u64 {
    n.min(MAX_AMOUNT)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::limits::calendar::tests::utc;
    use crate::limits::limit::Period;

    fn at(ms: i64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms as u64)
    }

    #[test]
    fn settlement_charges_the_excess_and_refunds_the_rest() {
        let l = Limit::bucket(100, 1.0).unwrap();
        let r = Reserved {
            amount: 40,
            at: at(0),
        };
        assert_eq!(settle_op(&l, r, 55, 9), Some(Op::Charge(15)));
        assert_eq!(settle_op(&l, r, 10, 9), Some(Op::Refund(30)));
        assert_eq!(settle_op(&l, r, 40, 9), None);
    }

    #[test]
    fn budget_refunds_stay_in_their_window() {
        let l = Limit::budget(100, Period::Hour).unwrap();
        let t = utc(2025, 5, 1, 10, 59, 0);
        let r = Reserved {
            amount: 40,
            at: at(t),
        };
        assert_eq!(settle_op(&l, r, 10, t + 59_999), Some(Op::Refund(30)));
        assert_eq!(settle_op(&l, r, 10, t + 60_000), None);
        assert_eq!(settle_op(&l, r, 50, t + 60_000), Some(Op::Charge(10)));
    }
}
