//! Scorers: each gives every candidate a score in [0, 1] (clamped), higher is better.
//!
//! - `queue`: `(maxQ − q) / (maxQ − minQ)` over the scraped queues; 1 when all are equal.
//! - `kvCache`: `1 − utilisation`.
//! - `prefixCache`: matched leading blocks / blocks of the prompt (0 for a prompt shorter
//!   than a block).
//! - `lora`: 1 adapter running, 0.8 free slot, 0.6 adapter waiting, else 0; 1 when the
//!   endpoint reports no LoRA state (a base model).
//! - `inFlightLoad`: `(maxT − t) / (maxT − minT)` over the prompt + decode tokens this
//!   picker has in flight; 1 when all are equal.
//! - `latency`: lowest predicted time to first token / this one's.
//! - `sessionAffinity`: 1 for the endpoint of the request's session, else 0.

use super::{Candidate, RequestView};
use crate::epp::metrics::LoraMatch;

/// A scorer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scorer {
    Queue,
    KvCache,
    PrefixCache,
    Lora,
    InFlightLoad,
    Latency,
    SessionAffinity,
}

/// Facts over all candidates that scores are relative to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stats {
    pub min_waiting: f64,
    pub max_waiting: f64,
    pub min_tokens: f64,
    pub max_tokens: f64,
    pub min_ttft: f64,
    pub total_blocks: usize,
}

impl Stats {
    pub fn of(c: &[Candidate], req: &RequestView) -> Stats {
        let mut s = Stats {
            min_waiting: f64::INFINITY,
            max_waiting: f64::NEG_INFINITY,
            min_tokens: f64::INFINITY,
            max_tokens: f64::NEG_INFINITY,
            min_ttft: f64::INFINITY,
            total_blocks: req.total_blocks,
        };
        for c in c {
            s.min_waiting = s.min_waiting.min(c.waiting);
            s.max_waiting = s.max_waiting.max(c.waiting);
            let t = c.load.tokens() as f64;
            s.min_tokens = s.min_tokens.min(t);
            s.max_tokens = s.max_tokens.max(t);
            s.min_ttft = s.min_ttft.min(c.ttft);
        }
        s
    }
}

/// `(max − x) / (max − min)`, 1 when the spread is nil.
fn spread(x: f64, min: f64, max: f64) -> f64 {
    if max <= min {
        1.0
    } else {
        (max - x) / (max - min)
    }
}

impl Scorer {
    /// The score of `c`, in [0, 1].
    pub fn score(self, c: &Candidate, s: &Stats) -> f64 {
        let raw = match self {
            Scorer::Queue => spread(c.waiting, s.min_waiting, s.max_waiting),
            Scorer::KvCache => 1.0 - c.kv_cache,
            Scorer::PrefixCache => {
                if s.total_blocks == 0 {
                    0.0
                } else {
                    c.prefix_matched as f64 / s.total_blocks as f64
                }
            }
            Scorer::Lora => match c.lora {
                LoraMatch::Unknown | LoraMatch::Running => 1.0,
                LoraMatch::FreeSlot => 0.8,
                LoraMatch::Waiting => 0.6,
                LoraMatch::None => 0.0,
            },
            Scorer::InFlightLoad => spread(c.load.tokens() as f64, s.min_tokens, s.max_tokens),
            Scorer::SessionAffinity => f64::from(u8::from(c.session)),
            Scorer::Latency => {
                if c.ttft <= 0.0 {
                    1.0 // not predicted
                } else {
                    s.min_ttft / c.ttft
                }
            }
        };
        if raw.is_nan() {
            0.0
        } else {
            raw.clamp(0.0, 1.0)
        }
    }

    /// Whether the candidates need a predicted time to first token.
    pub fn needs_latency(self) -> bool {
        self == Scorer::Latency
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::epp::load::LoadSnapshot;

    fn scores(s: Scorer, c: &[Candidate], blocks: usize) -> Vec<f64> {
        let req = RequestView {
            total_blocks: blocks,
            prompt_tokens: blocks as f64 * 16.0,
        };
        let stats = Stats::of(c, &req);
        c.iter().map(|c| s.score(c, &stats)).collect()
    }

    fn with(f: impl Fn(&mut Candidate)) -> Candidate {
        let mut c = Candidate::idle(0);
        f(&mut c);
        c
    }

    #[test]
    fn queue_normalises_between_min_and_max() {
        let c = [
            with(|c| c.waiting = 0.0),
            with(|c| c.waiting = 5.0),
            with(|c| c.waiting = 10.0),
        ];
        assert_eq!(scores(Scorer::Queue, &c, 1), vec![1.0, 0.5, 0.0]);
        let same = [with(|c| c.waiting = 3.0), with(|c| c.waiting = 3.0)];
        assert_eq!(scores(Scorer::Queue, &same, 1), vec![1.0, 1.0]);
    }

    #[test]
    fn kv_cache_is_the_free_fraction_clamped() {
        let c = [with(|c| c.kv_cache = 0.25), with(|c| c.kv_cache = 1.5)];
        assert_eq!(scores(Scorer::KvCache, &c, 1), vec![0.75, 0.0]);
    }

    #[test]
    fn prefix_is_matched_over_total() {
        let c = [with(|c| c.prefix_matched = 3), Candidate::idle(1)];
        assert_eq!(scores(Scorer::PrefixCache, &c, 4), vec![0.75, 0.0]);
        assert_eq!(scores(Scorer::PrefixCache, &c, 0), vec![0.0, 0.0]);
    }

    #[test]
    fn lora_classes() {
        let c: Vec<Candidate> = [
            LoraMatch::Running,
            LoraMatch::FreeSlot,
            LoraMatch::Waiting,
            LoraMatch::None,
            LoraMatch::Unknown,
        ]
        .into_iter()
        .map(|l| with(|c| c.lora = l))
        .collect();
        assert_eq!(scores(Scorer::Lora, &c, 1), vec![1.0, 0.8, 0.6, 0.0, 1.0]);
    }

    #[test]
    fn in_flight_load_prefers_fewer_tokens() {
        let load = |p, d| LoadSnapshot {
            prompt_tokens: p,
            decode_tokens: d,
            ..Default::default()
        };
        let c = [
            with(|c| c.load = load(1000, 1000)),
            with(|c| c.load = load(500, 500)),
            with(|c| c.load = load(0, 0)),
        ];
        assert_eq!(scores(Scorer::InFlightLoad, &c, 1), vec![0.0, 0.5, 1.0]);
        let same = [Candidate::idle(0), Candidate::idle(1)];
        assert_eq!(scores(Scorer::InFlightLoad, &same, 1), vec![1.0, 1.0]);
    }

    #[test]
    fn session_affinity_is_one_for_the_session_endpoint() {
        let c = [Candidate::idle(0), with(|c| c.session = true)];
        assert_eq!(scores(Scorer::SessionAffinity, &c, 1), vec![0.0, 1.0]);
    }

    #[test]
    fn latency_is_best_over_own() {
        let c = [
            with(|c| c.ttft = 0.1),
            with(|c| c.ttft = 0.4),
            with(|c| c.ttft = f64::NAN),
        ];
        assert_eq!(scores(Scorer::Latency, &c, 1), vec![1.0, 0.25, 0.0]);
    }
}
