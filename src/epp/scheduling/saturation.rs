//! The reference saturation detector: the mean over the candidates of
//! `max(queue / queueThreshold, kvCache / kvCacheThreshold)`, an endpoint with stale (or no)
//! metrics counting as 1. At 1 or more the pool is saturated and requests with a negative
//! priority (sheddable) are refused.

use super::Candidate;
use crate::config::SaturationConfig;

/// Thresholds of the detector.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Detector {
    pub queue_threshold: f64,
    pub kv_cache_threshold: f64,
}

impl Default for Detector {
    fn default() -> Self {
        Detector::from_config(&SaturationConfig::default())
    }
}

impl Detector {
    pub fn from_config(c: &SaturationConfig) -> Self {
        Detector {
            queue_threshold: c.queue_threshold,
            kv_cache_threshold: c.kv_cache_threshold,
        }
    }

    /// How full one endpoint is (1 = at a threshold).
    pub fn fullness(&self, c: &Candidate) -> f64 {
        if c.stale {
            return 1.0;
        }
        (c.waiting / self.queue_threshold).max(c.kv_cache / self.kv_cache_threshold)
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
        });
        assert_eq!(d.fullness(&cand(5.0, 0.1, false)), 0.5);
        assert_eq!(d.fullness(&cand(0.0, 0.5, false)), 1.0);
    }
}
