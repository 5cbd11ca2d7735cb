//! What a reservation answers, and the one operation vocabulary both stores speak.

use std::time::{Duration, SystemTime};

/// The answer to a `reserve`: enough to build OpenAI's rate-limit headers.
///
/// | header | from |
/// |---|---|
/// | `x-ratelimit-limit-tokens` | `limit` |
/// | `x-ratelimit-remaining-tokens` | `remaining` |
/// | `x-ratelimit-reset-tokens` | `reset_after` (OpenAI writes e.g. `6m0s`, `1s`, `20ms`) |
/// | `retry-after` (429 only) | `retry_after`, rounded up to whole seconds |
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The estimate was pre-charged (`true`) or nothing changed (`false`).
    pub allowed: bool,
    /// What is left after this decision, never below zero (a bucket in debt says 0).
    pub remaining: u64,
    /// The limit's maximum: the bucket's capacity or the budget's amount.
    pub limit: u64,
    /// Until the limit is back at its maximum: a bucket full again, a budget's window end.
    pub reset_after: Duration,
    /// When denied: the earliest wait after which the same estimate could pass (for
    /// `retry-after`). `None` when allowed, and when the estimate is larger than the
    /// limit's maximum and can never pass (answer 429 without `retry-after`).
    pub retry_after: Option<Duration>,
}

/// A pre-charge that a later `settle` trues up: how much, and when (a budget's refund
/// only applies within the window the reservation was charged to).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reserved {
    pub amount: u64,
    pub at: SystemTime,
}

/// One atomic change to a key's state; what `reserve`, `settle` and `charge` become.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// Take `n` if it is available; otherwise change nothing.
    Reserve(u64),
    /// Take `n` unconditionally (a bucket may go into debt, a budget past its amount).
    Charge(u64),
    /// Give `n` back, never above a bucket's capacity nor below a budget's zero.
    Refund(u64),
}

// === impl Op ===

impl Op {
    /// The name the Lua scripts switch on.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Op::Reserve(_) => "reserve",
            Op::Charge(_) => "charge",
            Op::Refund(_) => "refund",
        }
    }

    pub(crate) fn amount(self) -> u64 {
        match self {
            Op::Reserve(n) | Op::Charge(n) | Op::Refund(n) => n,
        }
    }
}

/// Milliseconds rounded up, zero when negative or NaN, saturating when huge.
pub(crate) fn ceil_ms(ms: f64) -> Duration {
    if ms.is_nan() || ms <= 0.0 {
        return Duration::ZERO;
    }
    Duration::from_millis(ms.ceil().min(u64::MAX as f64) as u64)
}
