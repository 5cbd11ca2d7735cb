//! What a limit is: a token bucket (`capacity`, refilled continuously at
//! `refill_per_second`) or a period budget (`amount` per UTC-aligned minute / hour / day /
//! month). Units are the caller's: tokens, or micro-dollars for money budgets. Both are
//! validated on construction so the stores never see a limit they cannot compute with.

use std::time::Duration;

use super::error::LimitError;

/// The largest amount a limit, estimate or charge may carry: 2^53, the largest integer
/// Redis' Lua (IEEE doubles) represents exactly. Larger amounts are clamped to it.
pub const MAX_AMOUNT: u64 = 1 << 53;

/// A limit on one key. Cheap to clone; built once per config snapshot.
#[derive(Clone, Debug, PartialEq)]
pub enum Limit {
    /// Smooth rate limit: at most `capacity` at once, refilled continuously.
    Bucket(TokenBucket),
    /// Fixed allowance per UTC calendar period, reset at the period boundary.
    Budget(PeriodBudget),
}

/// A token bucket: starts full at `capacity`, gains `refill_per_second` per second up to
/// `capacity`. Tokens per minute `t` is `capacity: t, refill_per_second: t / 60`.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenBucket {
    capacity: u64,
    refill_per_second: f64,
}

/// A budget of `amount` per `period`, windows aligned to UTC boundaries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeriodBudget {
    amount: u64,
    period: Period,
}

/// A budget's window length. Windows start at UTC boundaries: `Minute` at :00 seconds,
/// `Hour` at :00:00, `Day` at 00:00:00 UTC, `Month` on the 1st at 00:00:00 UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Period {
    Minute,
    Hour,
    Day,
    Month,
}

/// US dollars as the micro-dollars money budgets count in, rounded to the nearest;
/// negative and NaN are 0, huge amounts [`MAX_AMOUNT`].
pub fn micro_dollars(usd: f64) -> u64 {
    let micros = (usd * 1_000_000.0).round();
    if micros.is_nan() || micros <= 0.0 {
        return 0;
    }
    (micros as u64).min(MAX_AMOUNT)
}

// === impl Limit ===

impl Limit {
    /// A token bucket; see [`TokenBucket::new`].
    pub fn bucket(capacity: u64, refill_per_second: f64) -> Result<Limit, LimitError> {
        TokenBucket::new(capacity, refill_per_second).map(Limit::Bucket)
    }

    /// A bucket of `amount` per `per`, refilled smoothly (e.g. 10,000 tokens per minute).
    pub fn per(amount: u64, per: Duration) -> Result<Limit, LimitError> {
        let secs = per.as_secs_f64();
        if secs <= 0.0 {
            return Err(LimitError::invalid(
                "refill period must be longer than zero",
            ));
        }
        Limit::bucket(amount, amount as f64 / secs)
    }

    /// A period budget; see [`PeriodBudget::new`].
    pub fn budget(amount: u64, period: Period) -> Result<Limit, LimitError> {
        PeriodBudget::new(amount, period).map(Limit::Budget)
    }

    /// The most this limit ever allows at once: the bucket's capacity or the budget's
    /// amount (what `x-ratelimit-limit-*` reports).
    pub fn max(&self) -> u64 {
        match self {
            Limit::Bucket(b) => b.capacity,
            Limit::Budget(b) => b.amount,
        }
    }
}

// === impl TokenBucket ===

impl TokenBucket {
    /// `capacity` in 1..=2^53, `refill_per_second` finite and above zero.
    pub fn new(capacity: u64, refill_per_second: f64) -> Result<TokenBucket, LimitError> {
        if capacity == 0 || capacity > MAX_AMOUNT {
            return Err(LimitError::invalid(format!(
                "bucket capacity {capacity} must be in 1..={MAX_AMOUNT}"
            )));
        }
        if !refill_per_second.is_finite() || refill_per_second <= 0.0 {
            return Err(LimitError::invalid(format!(
                "bucket refill_per_second {refill_per_second} must be a finite number above zero"
            )));
        }
        Ok(TokenBucket {
            capacity,
            refill_per_second,
        })
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    pub fn refill_per_second(&self) -> f64 {
        self.refill_per_second
    }
}

// === impl PeriodBudget ===

impl PeriodBudget {
    /// `amount` in 1..=2^53.
    pub fn new(amount: u64, period: Period) -> Result<PeriodBudget, LimitError> {
        if amount == 0 || amount > MAX_AMOUNT {
            return Err(LimitError::invalid(format!(
                "budget amount {amount} must be in 1..={MAX_AMOUNT}"
            )));
        }
        Ok(PeriodBudget { amount, period })
    }

    pub fn amount(&self) -> u64 {
        self.amount
    }

    pub fn period(&self) -> Period {
        self.period
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_rejects_what_cannot_be_computed() {
        assert!(Limit::bucket(0, 1.0).is_err());
        assert!(Limit::bucket(MAX_AMOUNT + 1, 1.0).is_err());
        assert!(Limit::bucket(10, 0.0).is_err());
        assert!(Limit::bucket(10, f64::NAN).is_err());
        assert!(Limit::bucket(10, f64::INFINITY).is_err());
        assert!(Limit::budget(0, Period::Day).is_err());
        assert!(Limit::per(10, Duration::ZERO).is_err());
        let err = Limit::bucket(0, 1.0).unwrap_err().to_string();
        assert!(err.contains("capacity 0"), "{err}");
    }

    #[test]
    fn dollars_become_micro_dollars() {
        assert_eq!(micro_dollars(5.0), 5_000_000);
        assert_eq!(micro_dollars(0.000_002_5), 3, "rounded to the nearest");
        assert_eq!(micro_dollars(-1.0), 0);
        assert_eq!(micro_dollars(f64::NAN), 0);
        assert_eq!(micro_dollars(f64::INFINITY), MAX_AMOUNT);
    }

    #[test]
    fn per_minute_is_a_bucket_refilling_amount_over_the_period() {
        let Limit::Bucket(b) = Limit::per(6_000, Duration::from_secs(60)).unwrap() else {
            panic!("not a bucket")
        };
        assert_eq!(b.capacity(), 6_000);
        assert_eq!(b.refill_per_second(), 100.0);
    }
}
