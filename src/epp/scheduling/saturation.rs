//! The saturation detectors. `utilization` (the reference's default): the mean over the
//! candidates of `max(queue / queueThreshold, kvCache / kvCacheThreshold)`, an endpoint
//! with stale (or no) metrics counting as 1. `concurrency`: the mean over the candidates
//! of `max(requests / maxConcurrency, tokens / maxTokenConcurrency)` in flight from this
//! picker, which sees a dispatch at once (scraped queues lag by a scrape interval). At 1
//! or more the pool is saturated: requests with a negative priority (sheddable) are
//! refused, and flow control holds every request in its queue.

use super::Candidate;
use crate::config::{DetectorKind, SaturationConfig};

/// Thresholds of the detector.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Detector {
    pub kind: DetectorKind,
    pub queue_threshold: f64,
    pub kv_cache_threshold: f64,
    pub max_concurrency: f64,
    pub max_token_concurrency: f64,
}

impl Default for Detector {
    fn default() -> Self {
        Detector::from_config(&SaturationConfig::default())
    }
}

impl Detector {
    pub fn from_config(c: &SaturationConfig) -> Self {
        Detector {
            kind: c.detector,
            queue_threshold: c.queue_threshold,
            kv_cache_threshold: c.kv_cache_threshold,
            max_concurrency: c.max_concurrency as f64,
            max_token_concurrency: c.max_token_concurrency as f64,
        }
    }

    /// How full one endpoint is (1 = at a threshold).
    pub fn fullness(&self, c: &Candidate) -> f64 {
        match self.kind {
            DetectorKind::Utilization => {
                if c.stale {
                    return 1.0;
                }
                (c.waiting / self.queue_threshold).max(c.kv_cache / self.kv_cache_threshold)
            }
            DetectorKind::Concurrency => (c.load.requests.max(0) as f64 / self.max_concurrency)
                .max(c.load.tokens().max(0) as f64 / self.max_token_concurrency),
        }
    }

    /// The mean fullness; 1 when there is no candidate.
    pub fn saturation(&self, c: &[Candidate]) -> f64 {
        if c.is_empty() {
            return 1.0;
        }
        c.iter().map(|c| self.fullness(c)).sum::<f64>() / c.len() as f64
    }

    pub fn is_saturated(&self, c: &[Candidate]) -> bool {
        self.saturation(c) >= 1.0
    }

    /// With the `concurrency` detector, an endpoint at its bound takes no more while
    /// another has room: the bound is per endpoint, not only the pool's mean (else a
    /// scorer's favourite — the prefix holder — would queue inside the server while
    /// others idle). The utilization detector leaves this to the queue scorers.
    pub fn keep_room(&self, c: &mut Vec<Candidate>) {
        if self.kind == DetectorKind::Concurrency && c.iter().any(|c| self.fullness(c) < 1.0) {
            c.retain(|c| self.fullness(c) < 1.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(waiting: f64, kv_cache: f64, stale: bool) -> Candidate {
        Candidate {
            waiting,
            kv_cache,
            stale,
            ..Candidate::idle(0)
        }
    }

    #[test]
    fn mean_of_the_worse_ratio() {
        let d = Detector::default();
        // max(5/5, 0.2/0.8) = 1; max(0/5, 0.4/0.8) = 0.5.
        let c = [cand(5.0, 0.2, false), cand(0.0, 0.4, false)];
        assert!((d.saturation(&c) - 0.75).abs() < 1e-12);
        assert!(!d.is_saturated(&c));
        let c = [cand(5.0, 0.2, false), cand(0.0, 0.8, false)];
        assert!(d.is_saturated(&c));
    }

    #[test]
    fn stale_metrics_count_as_saturated() {
        let d = Detector::default();
        let c = [cand(0.0, 0.0, true), cand(0.0, 0.0, true)];
        assert_eq!(d.saturation(&c), 1.0);
        assert!(d.is_saturated(&c));
        let mixed = [cand(0.0, 0.0, true), cand(0.0, 0.0, false)];
        assert_eq!(d.saturation(&mixed), 0.5);
        assert!(d.is_saturated(&[]));
    }

    #[test]
    fn thresholds_come_from_config() {
        let d = Detector::from_config(&SaturationConfig {
            queue_threshold: 10.0,
            kv_cache_threshold: 0.5,
            ..Default::default()
        });
        assert_eq!(d.fullness(&cand(5.0, 0.1, false)), 0.5);
        assert_eq!(d.fullness(&cand(0.0, 0.5, false)), 1.0);
    }

    #[test]
    fn concurrency_counts_requests_and_tokens_in_flight() {
        let d = Detector::from_config(&SaturationConfig {
            detector: DetectorKind::Concurrency,
            max_concurrency: 4,
            max_token_concurrency: 1000,
            ..Default::default()
        });
        let mut busy = cand(0.0, 0.0, true);
        busy.load.requests = 4;
        let mut idle = cand(99.0, 1.0, true);
        idle.load.requests = 0;
        // Stale metrics and scraped queues do not count: only this picker's load.
        assert_eq!(d.fullness(&busy), 1.0);
        assert_eq!(d.fullness(&idle), 0.0);
        assert_eq!(d.saturation(&[busy.clone(), idle.clone()]), 0.5);
        let mut heavy = idle;
        heavy.load.requests = 1;
        heavy.load.prompt_tokens = 1500;
        assert_eq!(d.fullness(&heavy), 1.5, "tokens over the bound");
        let mut c = vec![busy.clone(), heavy.clone(), cand(0.0, 0.0, false)];
        d.keep_room(&mut c);
        assert_eq!(c.len(), 1, "only the endpoint with room");
        let mut full = vec![busy.clone(), heavy];
        d.keep_room(&mut full);
        assert_eq!(full.len(), 2, "all full: nothing filtered");
        let mut c = vec![busy, cand(0.0, 0.0, false)];
        Detector::default().keep_room(&mut c);
        assert_eq!(c.len(), 2, "utilization: left to the scorers");
    }
}
