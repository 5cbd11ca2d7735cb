//! Period-budget arithmetic, shared by `LocalStore` and mirrored by
//! `redis_store/budget.lua`.
//!
//! State is the window it counts for and what was used in it. The first operation in a
//! later window starts from zero. `used` records the real spend, past the amount when a
//! settlement charged more than was reserved, so refunds later in the window are exact.
//! A refund only applies to the window it was reserved in: refunding last month's
//! over-estimate into this month would hand out budget that was never charged here.

use super::calendar::{self, Window};
use super::decision::{Decision, Op};
use super::limit::{PeriodBudget, MAX_AMOUNT};

/// A budget's stored state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BudgetState {
    /// Start of the window `used` counts for, milliseconds since the epoch.
    pub window_start_ms: i64,
    /// Spent in that window; may exceed the amount.
    pub used: u64,
}

impl BudgetState {
    /// Nothing used in the window containing `now_ms`.
    pub(crate) fn fresh(b: &PeriodBudget, now_ms: i64) -> BudgetState {
        BudgetState {
            window_start_ms: calendar::window(b.period(), now_ms).start_ms,
            used: 0,
        }
    }

    /// Roll over to the window of `now_ms` if it is later, then apply `op`. Returns
    /// whether a `Reserve` was granted (always `true` for `Charge` and `Refund`). State
    /// from a later window (a replica whose clock is ahead) is used as it is.
    pub(crate) fn apply(&mut self, b: &PeriodBudget, op: Op, now_ms: i64) -> bool {
        let now = calendar::window(b.period(), now_ms);
        if self.window_start_ms < now.start_ms {
            *self = BudgetState {
                window_start_ms: now.start_ms,
                used: 0,
            };
        }
        match op {
            Op::Reserve(n) => {
                if self.used + n <= b.amount() {
                    self.used += n;
                    return true;
                }
                false
            }
            Op::Charge(n) => {
                self.used = (self.used + n).min(MAX_AMOUNT);
                true
            }
            Op::Refund(n) => {
                if self.window_start_ms == now.start_ms {
                    self.used = self.used.saturating_sub(n);
                }
                true
            }
        }
    }

    /// When this state stops mattering: the end of its window.
    pub(crate) fn window(&self, b: &PeriodBudget) -> Window {
        calendar::window(b.period(), self.window_start_ms)
    }
}

/// The decision after a `Reserve(estimate)` at `now_ms` left `used` spent.
pub(crate) fn decision(
    b: &PeriodBudget,
    used: u64,
    allowed: bool,
    estimate: u64,
    now_ms: i64,
) -> Decision {
    let reset_after = calendar::millis(calendar::window(b.period(), now_ms).end_ms - now_ms);
    let retry_after = match allowed {
        true => None,
        false if estimate > b.amount() => None,
        false => Some(reset_after),
    };
    Decision {
        allowed,
        remaining: b.amount().saturating_sub(used),
        limit: b.amount(),
        reset_after,
        retry_after,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::limits::calendar::tests::utc;
    use crate::limits::limit::Period;

    fn daily(amount: u64) -> PeriodBudget {
        PeriodBudget::new(amount, Period::Day).unwrap()
    }

    #[test]
    fn reserve_counts_up_to_the_amount() {
        let b = daily(1_000);
        let t = utc(2025, 3, 10, 9, 0, 0);
        let mut s = BudgetState::fresh(&b, t);
        assert!(s.apply(&b, Op::Reserve(600), t));
        assert!(s.apply(&b, Op::Reserve(400), t));
        assert!(!s.apply(&b, Op::Reserve(1), t));
        assert_eq!(s.used, 1_000);
    }

    #[test]
    fn the_window_rolls_over_at_utc_midnight() {
        let b = daily(1_000);
        let before = utc(2025, 3, 10, 23, 59, 59) + 999;
        let mut s = BudgetState::fresh(&b, before);
        assert!(s.apply(&b, Op::Reserve(1_000), before));
        assert!(!s.apply(&b, Op::Reserve(1), before));
        let d = decision(&b, s.used, false, 1, before);
        assert_eq!(d.retry_after, Some(Duration::from_millis(1)));
        assert_eq!(d.reset_after, Duration::from_millis(1));
        let after = before + 1;
        assert!(s.apply(&b, Op::Reserve(1), after));
        assert_eq!(s.used, 1);
        assert_eq!(s.window_start_ms, utc(2025, 3, 11, 0, 0, 0));
    }

    #[test]
    fn monthly_budgets_roll_over_on_the_first() {
        let b = PeriodBudget::new(5, Period::Month).unwrap();
        let jan = utc(2025, 1, 31, 23, 0, 0);
        let mut s = BudgetState::fresh(&b, jan);
        assert!(s.apply(&b, Op::Charge(5), jan));
        let d = decision(&b, s.used, false, 1, jan);
        assert_eq!(d.retry_after, Some(Duration::from_secs(3_600)));
        assert!(s.apply(&b, Op::Reserve(5), utc(2025, 2, 1, 0, 0, 0)));
    }

    #[test]
    fn charges_are_recorded_past_the_amount_and_refunds_stop_at_zero() {
        let b = daily(1_000);
        let t = utc(2025, 3, 10, 12, 0, 0);
        let mut s = BudgetState::fresh(&b, t);
        assert!(s.apply(&b, Op::Charge(1_300), t));
        assert_eq!(decision(&b, s.used, true, 0, t).remaining, 0);
        assert!(s.apply(&b, Op::Refund(200), t));
        assert_eq!(s.used, 1_100, "still over: the real spend is kept");
        assert!(s.apply(&b, Op::Refund(5_000), t));
        assert_eq!(s.used, 0);
    }

    #[test]
    fn a_refund_after_the_rollover_does_not_credit_the_new_window() {
        let b = daily(1_000);
        let t = utc(2025, 3, 10, 23, 0, 0);
        let mut s = BudgetState::fresh(&b, t);
        assert!(s.apply(&b, Op::Reserve(900), t));
        let next_day = utc(2025, 3, 11, 1, 0, 0);
        assert!(s.apply(&b, Op::Charge(100), next_day));
        // A replica with a clock behind refunds into the state of the later window.
        assert!(s.apply(&b, Op::Refund(100), t));
        assert_eq!(
            s.used, 100,
            "state of a later window is not refunded from the old one"
        );
    }

    #[test]
    fn state_from_a_clock_ahead_is_used_as_it_is() {
        let b = PeriodBudget::new(10, Period::Minute).unwrap();
        let ahead = utc(2025, 3, 10, 12, 1, 0);
        let mut s = BudgetState::fresh(&b, ahead);
        assert!(s.apply(&b, Op::Reserve(10), ahead));
        assert!(!s.apply(&b, Op::Reserve(1), ahead - 1));
        assert_eq!(s.window_start_ms, ahead);
    }

    #[test]
    fn an_estimate_over_the_amount_can_never_pass() {
        let b = daily(1_000);
        let t = utc(2025, 3, 10, 12, 0, 0);
        let d = decision(&b, 0, false, 1_001, t);
        assert_eq!(d.retry_after, None);
        assert_eq!(d.remaining, 1_000);
        assert_eq!(d.reset_after, Duration::from_secs(12 * 3_600));
    }
}
