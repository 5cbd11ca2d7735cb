//! Token-bucket arithmetic, shared by `LocalStore` and mirrored line for line by
//! `redis_store/bucket.lua` (same IEEE double operations in the same order).
//!
//! State is the level (tokens available, fractional, may be negative = debt) and the
//! instant it was last brought up to date. A bucket may go into debt through `Charge`:
//! the output tokens of a response are unknown when the estimate is reserved, and
//! forgiving them at zero would let a client with small prompts and long answers run far
//! past its rate. A bucket in debt denies until it has refilled past the next estimate.

use std::time::Duration;

use super::decision::{ceil_ms, Decision, Op};
use super::limit::TokenBucket;

/// A bucket's stored state.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct BucketState {
    /// Tokens available; at most the capacity, below zero when in debt.
    pub level: f64,
    /// Milliseconds since the epoch of the last refill; never moves backwards.
    pub ts_ms: i64,
}

impl BucketState {
    /// A bucket nobody has used yet: full.
    pub(crate) fn fresh(b: &TokenBucket, now_ms: i64) -> BucketState {
        BucketState {
            level: b.capacity() as f64,
            ts_ms: now_ms,
        }
    }

    /// Refill for the time since `ts_ms`, then apply `op`. Returns whether a `Reserve`
    /// was granted (always `true` for `Charge` and `Refund`). A clock behind `ts_ms`
    /// (another replica's, a step back) refills nothing and keeps `ts_ms`.
    pub(crate) fn apply(&mut self, b: &TokenBucket, op: Op, now_ms: i64) -> bool {
        let capacity = b.capacity() as f64;
        if now_ms > self.ts_ms {
            self.level += (now_ms - self.ts_ms) as f64 * b.refill_per_second() / 1000.0;
            self.ts_ms = now_ms;
        }
        if self.level > capacity {
            self.level = capacity;
        }
        match op {
            Op::Reserve(n) => {
                let n = n as f64;
                if self.level >= n {
                    self.level -= n;
                    return true;
                }
                false
            }
            Op::Charge(n) => {
                self.level -= n as f64;
                true
            }
            Op::Refund(n) => {
                self.level = (self.level + n as f64).min(capacity);
                true
            }
        }
    }

    /// When the bucket is full again, i.e. indistinguishable from a fresh one and safe to
    /// forget (the local store's idle expiry, the Redis key's PEXPIRE).
    pub(crate) fn full_at_ms(&self, b: &TokenBucket) -> i64 {
        let wait = time_to(b, self.level, b.capacity() as f64);
        self.ts_ms
            .saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX))
    }
}

/// The decision after a `Reserve(estimate)` left the bucket at `level`.
pub(crate) fn decision(b: &TokenBucket, level: f64, allowed: bool, estimate: u64) -> Decision {
    let capacity = b.capacity();
    let retry_after = match allowed {
        true => None,
        false if estimate > capacity => None,
        false => Some(time_to(b, level, estimate as f64).max(Duration::from_millis(1))),
    };
    Decision {
        allowed,
        remaining: (level.max(0.0).floor() as u64).min(capacity),
        limit: capacity,
        reset_after: time_to(b, level, capacity as f64),
        retry_after,
    }
}

/// How long until a bucket at `level` holds `target`, rounded up to a millisecond.
fn time_to(b: &TokenBucket, level: f64, target: f64) -> Duration {
    ceil_ms((target - level) * 1000.0 / b.refill_per_second())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 600 tokens per minute: 10 per second, 1 per 100 ms.
    fn tpm600() -> TokenBucket {
        TokenBucket::new(600, 10.0).unwrap()
    }

    #[test]
    fn reserve_takes_the_estimate_while_it_fits() {
        let b = tpm600();
        let mut s = BucketState::fresh(&b, 0);
        assert!(s.apply(&b, Op::Reserve(500), 0));
        assert_eq!(s.level, 100.0);
        assert!(s.apply(&b, Op::Reserve(100), 0));
        assert!(!s.apply(&b, Op::Reserve(1), 0), "empty bucket denies");
        assert_eq!(s.level, 0.0, "a denial changes nothing");
    }

    #[test]
    fn refill_is_continuous_and_capped_at_capacity() {
        let b = tpm600();
        let mut s = BucketState::fresh(&b, 0);
        assert!(s.apply(&b, Op::Reserve(600), 0));
        assert!(s.apply(&b, Op::Reserve(0), 1_500));
        assert_eq!(s.level, 15.0, "1.5 s at 10/s");
        assert!(s.apply(&b, Op::Reserve(0), 3_600_000));
        assert_eq!(s.level, 600.0, "an hour later: full, not 36,000");
    }

    #[test]
    fn a_clock_behind_the_last_refill_refills_nothing() {
        let b = tpm600();
        let mut s = BucketState::fresh(&b, 10_000);
        assert!(s.apply(&b, Op::Reserve(600), 10_000));
        assert!(s.apply(&b, Op::Reserve(0), 9_000));
        assert_eq!((s.level, s.ts_ms), (0.0, 10_000));
    }

    #[test]
    fn refund_never_fills_past_capacity() {
        let b = tpm600();
        let mut s = BucketState::fresh(&b, 0);
        assert!(s.apply(&b, Op::Reserve(100), 0));
        assert!(s.apply(&b, Op::Refund(1_000), 0));
        assert_eq!(s.level, 600.0);
    }

    #[test]
    fn charge_goes_into_debt_that_refill_pays_back() {
        let b = tpm600();
        let mut s = BucketState::fresh(&b, 0);
        assert!(s.apply(&b, Op::Charge(800), 0));
        assert_eq!(s.level, -200.0);
        let d = decision(&b, s.level, false, 50);
        assert_eq!(d.remaining, 0, "debt reports zero remaining");
        assert_eq!(
            d.retry_after,
            Some(Duration::from_secs(25)),
            "250 tokens at 10/s"
        );
        assert_eq!(d.reset_after, Duration::from_secs(80));
        assert!(!s.apply(&b, Op::Reserve(50), 24_900));
        assert!(s.apply(&b, Op::Reserve(50), 25_000));
    }

    #[test]
    fn retry_after_is_exactly_when_the_estimate_fits() {
        let b = tpm600();
        let mut s = BucketState::fresh(&b, 0);
        assert!(s.apply(&b, Op::Reserve(595), 0));
        assert!(!s.apply(&b, Op::Reserve(20), 0));
        let d = decision(&b, s.level, false, 20);
        assert_eq!(d.retry_after, Some(Duration::from_millis(1_500)));
        assert!(!s.apply(&b, Op::Reserve(20), 1_499));
        assert!(s.apply(&b, Op::Reserve(20), 1_500));
    }

    #[test]
    fn decision_reports_headers_values() {
        let b = tpm600();
        let d = decision(&b, 450.5, true, 150);
        assert_eq!(
            d,
            Decision {
                allowed: true,
                remaining: 450,
                limit: 600,
                reset_after: Duration::from_millis(14_950),
                retry_after: None,
            }
        );
        let full = decision(&b, 600.0, true, 0);
        assert_eq!(full.reset_after, Duration::ZERO);
    }

    #[test]
    fn an_estimate_over_capacity_can_never_pass() {
        let b = tpm600();
        let mut s = BucketState::fresh(&b, 0);
        assert!(!s.apply(&b, Op::Reserve(601), 0));
        let d = decision(&b, s.level, false, 601);
        assert!(!d.allowed);
        assert_eq!(d.retry_after, None);
        assert_eq!(d.remaining, 600);
    }

    #[test]
    fn fractional_rates_refill_exactly_over_a_period() {
        // 1,000 tokens per minute = 16.666… per second.
        let b = TokenBucket::new(1_000, 1_000.0 / 60.0).unwrap();
        let mut s = BucketState::fresh(&b, 0);
        assert!(s.apply(&b, Op::Reserve(1_000), 0));
        assert!(s.apply(&b, Op::Reserve(0), 60_000));
        assert!((s.level - 1_000.0).abs() < 1e-9, "{}", s.level);
        assert!(s.apply(&b, Op::Reserve(1_000), 60_000));
    }

    #[test]
    fn full_at_is_when_a_drained_bucket_is_whole_again() {
        let b = tpm600();
        let mut s = BucketState::fresh(&b, 1_000);
        assert_eq!(s.full_at_ms(&b), 1_000);
        assert!(s.apply(&b, Op::Reserve(300), 1_000));
        assert_eq!(s.full_at_ms(&b), 31_000);
    }
}
