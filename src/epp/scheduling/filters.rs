//! Filters: each keeps a subset of the candidates, never none of them (a filter that
//! would drop everything keeps everything).
//!
//! - `leastQueue` / `leastKvCache`: the reference's lowest band, `value ≤ min + (max −
//!   min) / n`.
//! - `loraAffinity`: the endpoints running or queueing the request's adapter or with a
//!   free adapter slot (and those reporting no LoRA state), when any are.
//! - `prefixAffinity`, "sticky until saturated": the endpoints holding the longest cached
//!   prefix of the prompt, unless the best of them is predicted (see `latency`) to make
//!   the request wait behind other work longer than `best other × ttftRatio +
//!   ttftMargin`; then the others, so the prompt spills to a new endpoint, which caches
//!   it from then on (one prefill paid for a second replica, as llm-d's "sticky until
//!   saturated" does). The wait compared is queueing, not the whole time to first token:
//!   the holder always wins on the prefill it saves, so comparing whole predictions would
//!   never spill a hot prompt before its queue outgrew a full uncached prefill.
//! - `sessionAffinity`: only the endpoint of the request's session when it is a
//!   candidate and not saturated (see `session::mark`), else all.

use super::Candidate;
use crate::epp::metrics::LoraMatch;

/// A filter.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Filter {
    LeastQueue,
    LeastKvCache,
    LoraAffinity,
    PrefixAffinity {
        ttft_ratio: f64,
        /// Seconds.
        ttft_margin: f64,
    },
    SessionAffinity,
}

fn keep_if(c: &mut Vec<Candidate>, keep: impl Fn(&Candidate) -> bool) {
    if c.iter().any(&keep) {
        c.retain(keep);
    }
}

fn lowest_band(c: &mut Vec<Candidate>, value: impl Fn(&Candidate) -> f64) {
    let (min, max) = c
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), c| {
            (lo.min(value(c)), hi.max(value(c)))
        });
    let band = min + (max - min) / c.len() as f64;
    keep_if(c, |c| value(c) <= band);
}

impl Filter {
    /// Keeps the candidates that pass.
    pub fn apply(self, c: &mut Vec<Candidate>) {
        if c.len() < 2 {
            return;
        }
        match self {
            Filter::LeastQueue => lowest_band(c, |c| c.waiting),
            Filter::LeastKvCache => lowest_band(c, |c| c.kv_cache),
            Filter::LoraAffinity => keep_if(c, |c| c.lora != LoraMatch::None),
            Filter::SessionAffinity => keep_if(c, |c| c.session),
            Filter::PrefixAffinity {
                ttft_ratio,
                ttft_margin,
            } => {
                let longest = c.iter().map(|c| c.prefix_matched).max().unwrap_or(0);
                if longest == 0 {
                    return;
                }
                let (mut sticky, mut other) = (f64::INFINITY, f64::INFINITY);
                for c in c.iter() {
                    let best = if c.prefix_matched == longest {
                        &mut sticky
                    } else {
                        &mut other
                    };
                    *best = best.min(c.wait);
                }
                if other.is_infinite() || sticky <= other * ttft_ratio + ttft_margin {
                    c.retain(|c| c.prefix_matched == longest);
                } else {
                    c.retain(|c| c.prefix_matched != longest);
                }
            }
        }
    }

    /// Whether the candidates need a predicted time to first token.
    pub fn needs_latency(self) -> bool {
        matches!(self, Filter::PrefixAffinity { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(c: &[Candidate]) -> Vec<usize> {
        c.iter().map(|c| c.slot).collect()
    }

    fn cands(n: usize, f: impl Fn(usize, &mut Candidate)) -> Vec<Candidate> {
        (0..n)
            .map(|i| {
                let mut c = Candidate::idle(i);
                f(i, &mut c);
                c
            })
            .collect()
    }

    #[test]
    fn least_queue_and_kv_keep_the_lowest_band() {
        // min 0, max 9, 3 candidates: band ≤ 3.
        let mut c = cands(3, |i, c| c.waiting = [0.0, 3.0, 9.0][i]);
        Filter::LeastQueue.apply(&mut c);
        assert_eq!(slots(&c), vec![0, 1]);
        let mut c = cands(4, |i, c| c.kv_cache = [0.9, 0.1, 0.2, 0.5][i]);
        Filter::LeastKvCache.apply(&mut c);
        assert_eq!(slots(&c), vec![1, 2], "band ≤ 0.1 + 0.8/4 = 0.3");
        let mut same = cands(3, |_, c| c.waiting = 2.0);
        Filter::LeastQueue.apply(&mut same);
        assert_eq!(same.len(), 3);
    }

    #[test]
    fn lora_affinity_drops_the_full_endpoints_unless_all_are() {
        let classes = [
            LoraMatch::None,
            LoraMatch::Running,
            LoraMatch::FreeSlot,
            LoraMatch::Waiting,
            LoraMatch::Unknown,
        ];
        let mut c = cands(5, |i, c| c.lora = classes[i]);
        Filter::LoraAffinity.apply(&mut c);
        assert_eq!(slots(&c), vec![1, 2, 3, 4]);
        let mut full = cands(2, |_, c| c.lora = LoraMatch::None);
        Filter::LoraAffinity.apply(&mut full);
        assert_eq!(full.len(), 2);
    }

    #[test]
    fn session_affinity_keeps_the_session_endpoint_or_all() {
        let mut c = cands(3, |i, c| c.session = i == 2);
        Filter::SessionAffinity.apply(&mut c);
        assert_eq!(slots(&c), vec![2]);
        let mut c = cands(3, |_, _| {});
        Filter::SessionAffinity.apply(&mut c);
        assert_eq!(slots(&c), vec![0, 1, 2], "never empty");
    }

    const STICKY: Filter = Filter::PrefixAffinity {
        ttft_ratio: 1.5,
        ttft_margin: 0.05,
    };

    #[test]
    fn prefix_affinity_sticks_to_the_longest_prefix_until_it_is_too_slow() {
        // Endpoint 1 holds the longest prefix; it is predicted a bit slower.
        let setup = |sticky_ttft: f64| {
            cands(3, |i, c| {
                c.prefix_matched = [2, 10, 0][i];
                c.wait = [0.2, sticky_ttft, 0.1][i];
            })
        };
        let mut c = setup(0.19); // ≤ 0.1 × 1.5 + 0.05 = 0.2
        STICKY.apply(&mut c);
        assert_eq!(slots(&c), vec![1]);
        let mut c = setup(0.21);
        STICKY.apply(&mut c);
        assert_eq!(
            slots(&c),
            vec![0, 2],
            "saturated: the prompt spills elsewhere"
        );
    }

    #[test]
    fn prefix_affinity_keeps_all_without_a_prefix_and_ties_stay_together() {
        let mut c = cands(3, |_, c| c.wait = 0.1);
        STICKY.apply(&mut c);
        assert_eq!(c.len(), 3);
        let mut c = cands(3, |i, c| {
            c.prefix_matched = [4, 4, 1][i];
            c.wait = [9.0, 0.1, 0.1][i];
        });
        STICKY.apply(&mut c);
        assert_eq!(slots(&c), vec![0, 1], "the best holder counts");
        let mut all = cands(2, |_, c| c.prefix_matched = 3);
        STICKY.apply(&mut all);
        assert_eq!(all.len(), 2);
    }
}
