//! A log line at most once a second, with the count of the ones left out: what an
//! accept loop needs when the process runs out of file descriptors and every accept
//! fails (unthrottled, that was millions of identical lines a second).

use std::time::{Duration, Instant};

/// Decides which of a stream of repeated events gets logged.
#[derive(Debug)]
pub struct RateLimitedLog {
    last: Option<Instant>,
    suppressed: u64,
    /// The shortest gap between two logged lines.
    every: Duration,
}

impl Default for RateLimitedLog {
    /// One line a second.
    fn default() -> Self {
        RateLimitedLog::every(Duration::from_secs(1))
    }
}

impl RateLimitedLog {
    /// At most one line per `every`.
    pub fn every(every: Duration) -> Self {
        RateLimitedLog {
            last: None,
            suppressed: 0,
            every,
        }
    }

    /// The events have stopped: the next one is logged at once. Returns the events left
    /// out since the last logged one.
    pub fn reset(&mut self) -> u64 {
        self.last = None;
        self.take_suppressed()
    }

    /// Records an event at `now`: `Some(n)` when it should be logged (`n` events were
    /// left out since the last logged one), `None` when it is left out.
    pub fn record(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.every => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }

    /// Events left out since the last logged one (taken: the count restarts at 0).
    pub fn take_suppressed(&mut self) -> u64 {
        std::mem::take(&mut self.suppressed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slower_log_and_a_reset_that_logs_the_next_event_at_once() {
        let t0 = Instant::now();
        let mut log = RateLimitedLog::every(Duration::from_secs(60));
        assert_eq!(log.record(t0), Some(0));
        for s in 1..60 {
            assert_eq!(log.record(t0 + Duration::from_secs(s)), None);
        }
        assert_eq!(log.record(t0 + Duration::from_secs(60)), Some(59));
        assert_eq!(log.record(t0 + Duration::from_secs(61)), None);
        assert_eq!(log.reset(), 1);
        assert_eq!(log.record(t0 + Duration::from_secs(62)), Some(0));
    }

    #[test]
    fn logs_once_a_second_with_the_count_left_out() {
        let t0 = Instant::now();
        let mut log = RateLimitedLog::default();
        assert_eq!(log.record(t0), Some(0));
        for ms in 1..1000 {
            assert_eq!(log.record(t0 + Duration::from_millis(ms)), None);
        }
        assert_eq!(log.record(t0 + Duration::from_millis(1000)), Some(999));
        assert_eq!(log.record(t0 + Duration::from_millis(1500)), None);
        assert_eq!(log.take_suppressed(), 1);
        assert_eq!(log.take_suppressed(), 0);
        assert_eq!(log.record(t0 + Duration::from_millis(2000)), Some(0));
    }
}
