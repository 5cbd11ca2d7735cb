//! The reference default scheduling profile: queue scorer ×2, KV-cache-utilisation
//! scorer ×2, prefix-cache scorer ×3, each score clamped to [0, 1]; the max-score picker
//! breaks ties at random.

use std::cell::Cell;

/// Weights of the default profile.
pub const QUEUE_WEIGHT: f64 = 2.0;
pub const KV_CACHE_WEIGHT: f64 = 2.0;
pub const PREFIX_WEIGHT: f64 = 3.0;

/// What scheduling knows of one eligible endpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    /// Requests waiting in the endpoint's queue.
    pub waiting: f64,
    /// KV-cache utilisation, 0..=1.
    pub kv_cache: f64,
    /// Leading prompt blocks the endpoint holds.
    pub prefix_matched: usize,
}

/// The decision: the index of the chosen candidate and every candidate's total score.
#[derive(Clone, Debug, PartialEq)]
pub struct Pick {
    pub index: usize,
    pub scores: Vec<f64>,
}

/// Queue scorer: `(maxQ − q) / (maxQ − minQ)`, 1 for every endpoint when all are equal.
pub fn queue_scores(c: &[Candidate]) -> Vec<f64> {
    let min = c.iter().map(|c| c.waiting).fold(f64::INFINITY, f64::min);
    let max = c
        .iter()
        .map(|c| c.waiting)
        .fold(f64::NEG_INFINITY, f64::max);
    c.iter()
        .map(|c| {
            if max <= min {
                1.0
            } else {
                ((max - c.waiting) / (max - min)).clamp(0.0, 1.0)
            }
        })
        .collect()
}

/// KV-cache scorer: `1 − utilisation`.
pub fn kv_cache_scores(c: &[Candidate]) -> Vec<f64> {
    c.iter()
        .map(|c| (1.0 - c.kv_cache).clamp(0.0, 1.0))
        .collect()
}

/// Prefix-cache scorer: matched blocks / blocks of the prompt (0 for a prompt shorter
/// than one block).
pub fn prefix_scores(c: &[Candidate], total_blocks: usize) -> Vec<f64> {
    c.iter()
        .map(|c| {
            if total_blocks == 0 {
                0.0
            } else {
                (c.prefix_matched as f64 / total_blocks as f64).clamp(0.0, 1.0)
            }
        })
        .collect()
}

/// Scores every candidate with the default profile and picks the best; `None` when there
/// is no candidate.
pub fn schedule(c: &[Candidate], total_blocks: usize, rng: &mut Rng) -> Option<Pick> {
    if c.is_empty() {
        return None;
    }
    let q = queue_scores(c);
    let kv = kv_cache_scores(c);
    let p = prefix_scores(c, total_blocks);
    let scores: Vec<f64> = (0..c.len())
        .map(|i| QUEUE_WEIGHT * q[i] + KV_CACHE_WEIGHT * kv[i] + PREFIX_WEIGHT * p[i])
        .collect();
    let index = max_score(&scores, rng)?;
    Some(Pick { index, scores })
}

/// The index of the highest score, a tie broken uniformly at random.
pub fn max_score(scores: &[f64], rng: &mut Rng) -> Option<usize> {
    let best = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let tied: Vec<usize> = (0..scores.len())
        .filter(|&i| (scores[i] - best).abs() <= 1e-9)
        .collect();
    match tied.len() {
        0 => None,
        1 => Some(tied[0]),
        n => Some(tied[rng.below(n)]),
    }
}

/// A xorshift64* generator: cheap randomness for tie-breaks, not for secrets.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn with_seed(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    /// This thread's generator, seeded from the clock and the thread on first use.
    pub fn with_thread<T>(f: impl FnOnce(&mut Rng) -> T) -> T {
        thread_local! {
            static STATE: Cell<u64> = Cell::new(clock_seed());
        }
        STATE.with(|s| {
            let mut rng = Rng::with_seed(s.get());
            let out = f(&mut rng);
            s.set(rng.0);
            out
        })
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

fn clock_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(nanos);
    h.finish() | 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(waiting: f64, kv_cache: f64, prefix_matched: usize) -> Candidate {
        Candidate {
            waiting,
            kv_cache,
            prefix_matched,
        }
    }

    #[test]
    fn queue_scorer_normalises_between_min_and_max() {
        let c = [cand(0.0, 0.0, 0), cand(5.0, 0.0, 0), cand(10.0, 0.0, 0)];
        assert_eq!(queue_scores(&c), vec![1.0, 0.5, 0.0]);
        let same = [cand(3.0, 0.0, 0), cand(3.0, 0.0, 0)];
        assert_eq!(queue_scores(&same), vec![1.0, 1.0]);
    }

    #[test]
    fn kv_cache_scorer_is_free_fraction() {
        let c = [cand(0.0, 0.25, 0), cand(0.0, 1.5, 0)];
        assert_eq!(kv_cache_scores(&c), vec![0.75, 0.0]);
    }

    #[test]
    fn prefix_scorer_is_matched_over_total() {
        let c = [cand(0.0, 0.0, 3), cand(0.0, 0.0, 0)];
        assert_eq!(prefix_scores(&c, 4), vec![0.75, 0.0]);
        assert_eq!(prefix_scores(&c, 0), vec![0.0, 0.0]);
    }

    #[test]
    fn picks_the_weighted_best() {
        let mut rng = Rng::with_seed(7);
        // Endpoint 0 is idle with no prefix: 2·1 + 2·1 + 3·0 = 4. Endpoint 1 holds the
        // whole prefix but is busier: 2·0 + 2·0.6 + 3·1 = 4.2.
        let c = [cand(0.0, 0.0, 0), cand(4.0, 0.4, 4)];
        let p = schedule(&c, 4, &mut rng).unwrap();
        assert_eq!(p.index, 1);
        assert!((p.scores[0] - 4.0).abs() < 1e-9);
        assert!((p.scores[1] - 4.2).abs() < 1e-9);
        assert_eq!(schedule(&[], 4, &mut rng), None);
    }

    #[test]
    fn ties_are_broken_at_random() {
        let mut rng = Rng::with_seed(42);
        let mut seen = [0usize; 3];
        for _ in 0..300 {
            seen[max_score(&[1.0, 1.0, 0.5], &mut rng).unwrap()] += 1;
        }
        assert!(seen[0] > 100 && seen[1] > 100, "{seen:?}");
        assert_eq!(seen[2], 0);
        assert_eq!(max_score(&[], &mut rng), None);
    }
}
