//! Output allowances for limits enforced mid-stream (`enforce: midStream`): what a
//! streamed completion may still produce, drawn from each limit's store in chunks as
//! the completion streams, so concurrent streams of one key share what is left.
//!
//! The request's own reservation (its prompt estimate, settled with the real usage at
//! the end) is not touched here. Each allowance holds extra reservations — one per
//! chunk of output drawn — only while the stream runs: they keep the output taken from
//! the limit for every other request to see, and are refunded when the allowance is
//! dropped, once the real usage has been (or is about to be) charged on the request's
//! own reservation. A chunk the limit cannot give whole is given as what is left; when
//! nothing is left, [`StreamBudget::admit`] says no, and the caller ends the stream.

use std::time::SystemTime;

use super::{Admission, Limit, LimitError, Limiter, Reservation};

/// Output tokens drawn from a limit at once.
pub const CHUNK_TOKENS: u64 = 32;

/// The allowances of one streamed response, one per `midStream` limit that applies.
#[derive(Default)]
pub struct StreamBudget {
    allowances: Vec<Allowance>,
    /// Output tokens admitted so far.
    delivered: u64,
    /// Tokens drawn for something other than output (a prompt larger than its
    /// estimate, once the upstream reported it).
    other: u64,
}

/// What one limit lets a stream produce.
struct Allowance {
    limiter: Limiter,
    key: String,
    limit: Limit,
    /// Units of the limit (tokens, or micro-dollars) one output token costs.
    unit_cost: u64,
    /// Output tokens drawn so far.
    granted: u64,
    holds: Vec<Reservation>,
}

impl std::fmt::Debug for StreamBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamBudget")
            .field("limits", &self.allowances.len())
            .field("delivered", &self.delivered)
            .finish()
    }
}

impl StreamBudget {
    /// Adds limit `limit` on `key` (the request's counter key), whose output tokens cost
    /// `unit_cost` units each (1 for tokens; a money budget's price).
    pub fn add(&mut self, limiter: Limiter, key: String, limit: Limit, unit_cost: u64) {
        self.allowances.push(Allowance {
            limiter,
            key,
            limit,
            unit_cost: unit_cost.max(1),
            granted: 0,
            holds: Vec::new(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.allowances.is_empty()
    }

    /// Output tokens admitted so far.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// Whether `tokens` more output tokens fit every limit, drawing more from the
    /// stores when needed; admitted tokens count as delivered. `false` (nothing
    /// admitted) means some limit has nothing left for them.
    pub async fn admit(&mut self, tokens: u64, now: SystemTime) -> Result<bool, LimitError> {
        if !self.draw(tokens, now).await? {
            return Ok(false);
        }
        self.delivered += tokens;
        Ok(true)
    }

    /// Draws `tokens` that are not output (the part of a prompt its estimate missed),
    /// at the output's price; `false` when they do not fit.
    pub async fn draw_other(&mut self, tokens: u64, now: SystemTime) -> Result<bool, LimitError> {
        if !self.draw(tokens, now).await? {
            return Ok(false);
        }
        self.other += tokens;
        Ok(true)
    }

    async fn draw(&mut self, tokens: u64, now: SystemTime) -> Result<bool, LimitError> {
        let total = self
            .delivered
            .saturating_add(self.other)
            .saturating_add(tokens);
        for a in &mut self.allowances {
            if !a.draw_up_to(total, now).await? {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

impl Allowance {
    /// Draws until `total` output tokens are granted: a chunk at a time, or what is
    /// left when a chunk does not fit. Whether it got there.
    async fn draw_up_to(&mut self, total: u64, now: SystemTime) -> Result<bool, LimitError> {
        while self.granted < total {
            let short = total - self.granted;
            let want = short.max(CHUNK_TOKENS);
            let tokens = match self.reserve(want, now).await? {
                Some(granted) => granted,
                None => return Ok(false),
            };
            self.granted += tokens;
        }
        Ok(true)
    }

    /// Reserves `tokens` output tokens, or as many as the limit has left; how many, or
    /// `None` when it has less than one.
    async fn reserve(&mut self, tokens: u64, now: SystemTime) -> Result<Option<u64>, LimitError> {
        let units = tokens.saturating_mul(self.unit_cost);
        let left = match self
            .limiter
            .reserve(self.key.clone(), &self.limit, units, now)
            .await?
        {
            Admission::Allowed(r) => {
                self.holds.push(r);
                return Ok(Some(tokens));
            }
            Admission::Denied(decision) => decision.remaining / self.unit_cost,
        };
        if left == 0 {
            return Ok(None);
        }
        let units = left * self.unit_cost;
        match self
            .limiter
            .reserve(self.key.clone(), &self.limit, units, now)
            .await?
        {
            Admission::Allowed(r) => {
                self.holds.push(r);
                Ok(Some(left))
            }
            Admission::Denied(_) => Ok(None), // taken by another request meanwhile
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::limits::{LocalStore, Period};

    fn limiter() -> Limiter {
        Limiter::new(Arc::new(LocalStore::new())).unwrap()
    }

    #[tokio::test]
    async fn a_stream_gets_what_the_budget_has_left_and_no_more() {
        let limiter = limiter();
        let budget = Limit::budget(100, Period::Day).unwrap();
        let now = SystemTime::now();
        // The request's own reservation: a 30-token prompt.
        let Admission::Allowed(prompt) = limiter.reserve("k", &budget, 30, now).await.unwrap()
        else {
            panic!("the prompt fits")
        };
        let mut stream = StreamBudget::default();
        stream.add(limiter.clone(), "k".into(), budget.clone(), 1);
        let mut admitted = 0;
        while stream.admit(3, now).await.unwrap() {
            admitted += 3;
        }
        assert_eq!(
            admitted, 69,
            "70 left: 23 events of 3 tokens, the 24th does not fit"
        );
        assert!(stream.admit(1, now).await.unwrap(), "the last token does");
        assert!(!stream.admit(1, now).await.unwrap());
        assert_eq!(stream.delivered(), 70);
        // A concurrent request sees the output as taken.
        let other = limiter.reserve("k", &budget, 1, now).await.unwrap();
        assert!(matches!(other, Admission::Denied(_)));
        // The end: the allowance is refunded, the real usage charged on the request's
        // reservation — the budget is exactly spent.
        drop(stream);
        prompt.settle(100, now).await.unwrap();
        limiter.drain().await;
        let d = limiter.store().reserve("k", &budget, 1, now).await.unwrap();
        assert!(!d.allowed && d.remaining == 0, "{d:?}");
    }

    #[tokio::test]
    async fn money_budgets_draw_output_at_its_price() {
        let limiter = limiter();
        let budget = Limit::budget(1_000, Period::Day).unwrap();
        let now = SystemTime::now();
        let mut stream = StreamBudget::default();
        stream.add(limiter.clone(), "m".into(), budget, 15);
        let mut admitted = 0;
        while stream.admit(1, now).await.unwrap() {
            admitted += 1;
        }
        assert_eq!(admitted, 66, "1,000 units at 15 per token");
    }
}
