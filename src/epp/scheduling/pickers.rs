//! Pickers: rank the (filtered, scored) candidates and keep the first `k`.
//!
//! - `maxScore`: highest total first, ties broken uniformly at random;
//! - `random`: a uniform random order;
//! - `roundRobin`: each candidate first in turn, the next ones after it.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::Rng;

/// Scores within this of each other are a tie.
const TIE: f64 = 1e-9;

/// A picker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Picker {
    MaxScore,
    Random,
    RoundRobin,
}

impl Picker {
    /// The best `k` of `totals` (indexes), best first. `turn` is the round-robin counter.
    pub fn rank(self, totals: &[f64], k: usize, rng: &mut Rng, turn: &AtomicUsize) -> Vec<usize> {
        let n = totals.len();
        let k = k.min(n);
        if k == 0 {
            return Vec::new();
        }
        match self {
            Picker::MaxScore if k == 1 => vec![max_score(totals, rng)],
            Picker::MaxScore => {
                let mut keyed: Vec<(f64, u64, usize)> = totals
                    .iter()
                    .enumerate()
                    .map(|(i, &t)| (t, rng.next_u64(), i))
                    .collect();
                let by = |a: &(f64, u64, usize), b: &(f64, u64, usize)| {
                    if (a.0 - b.0).abs() <= TIE {
                        a.1.cmp(&b.1)
                    } else {
                        b.0.total_cmp(&a.0)
                    }
                };
                if k < n {
                    keyed.select_nth_unstable_by(k - 1, by);
                    keyed.truncate(k);
                }
                keyed.sort_unstable_by(by);
                keyed.into_iter().map(|(_, _, i)| i).collect()
            }
            Picker::Random if k == 1 => vec![rng.below(n)],
            Picker::Random => {
                let mut idx: Vec<usize> = (0..n).collect();
                for i in 0..k {
                    let j = i + rng.below(n - i);
                    idx.swap(i, j);
                }
                idx.truncate(k);
                idx
            }
            Picker::RoundRobin => {
                let start = turn.fetch_add(1, Ordering::Relaxed) % n;
                (0..k).map(|j| (start + j) % n).collect()
            }
        }
    }
}

/// The index of the highest score, a tie broken uniformly at random (`totals` not empty).
fn max_score(totals: &[f64], rng: &mut Rng) -> usize {
    let best = totals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let tied = |t: &&f64| (**t - best).abs() <= TIE;
    let count = totals.iter().filter(tied).count();
    let nth = if count > 1 { rng.below(count) } else { 0 };
    totals
        .iter()
        .enumerate()
        .filter(|(_, t)| tied(t))
        .nth(nth)
        .map_or(0, |(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_score_breaks_ties_at_random() {
        let mut rng = Rng::with_seed(42);
        let turn = AtomicUsize::new(0);
        let mut seen = [0usize; 3];
        for _ in 0..300 {
            seen[Picker::MaxScore.rank(&[1.0, 1.0, 0.5], 1, &mut rng, &turn)[0]] += 1;
        }
        assert!(seen[0] > 100 && seen[1] > 100, "{seen:?}");
        assert_eq!(seen[2], 0);
        assert!(Picker::MaxScore.rank(&[], 1, &mut rng, &turn).is_empty());
    }

    #[test]
    fn max_score_ranks_fallbacks_by_score() {
        let mut rng = Rng::with_seed(3);
        let turn = AtomicUsize::new(0);
        let totals = [0.1, 0.9, 0.5, 0.7, 0.3];
        assert_eq!(
            Picker::MaxScore.rank(&totals, 3, &mut rng, &turn),
            vec![1, 3, 2]
        );
        assert_eq!(
            Picker::MaxScore.rank(&totals, 9, &mut rng, &turn),
            vec![1, 3, 2, 4, 0]
        );
        // Ties at the top still vary.
        let mut firsts = [0usize; 2];
        for _ in 0..200 {
            let r = Picker::MaxScore.rank(&[1.0, 1.0, 0.2], 2, &mut rng, &turn);
            assert_eq!(r.len(), 2);
            assert!(r.contains(&0) && r.contains(&1));
            firsts[r[0]] += 1;
        }
        assert!(firsts[0] > 50 && firsts[1] > 50, "{firsts:?}");
    }

    #[test]
    fn random_covers_everyone_without_repeats() {
        let mut rng = Rng::with_seed(9);
        let turn = AtomicUsize::new(0);
        let mut seen = [0usize; 4];
        for _ in 0..400 {
            let r = Picker::Random.rank(&[0.0, 9.0, 0.0, 0.0], 1, &mut rng, &turn);
            seen[r[0]] += 1;
        }
        assert!(seen.iter().all(|&s| s > 50), "{seen:?}");
        let mut r = Picker::Random.rank(&[0.0; 4], 4, &mut rng, &turn);
        r.sort_unstable();
        assert_eq!(r, vec![0, 1, 2, 3]);
    }

    #[test]
    fn round_robin_takes_turns() {
        let mut rng = Rng::with_seed(1);
        let turn = AtomicUsize::new(0);
        let firsts: Vec<usize> = (0..6)
            .map(|_| Picker::RoundRobin.rank(&[0.0; 3], 1, &mut rng, &turn)[0])
            .collect();
        assert_eq!(firsts, vec![0, 1, 2, 0, 1, 2]);
        assert_eq!(
            Picker::RoundRobin.rank(&[0.0; 3], 2, &mut rng, &turn),
            vec![0, 1]
        );
    }
}
