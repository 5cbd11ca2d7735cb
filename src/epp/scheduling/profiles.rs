//! Profiles: a chain of filters, weighted scorers and a picker, built from a preset or
//! from `endpointPicker.scheduling`.
//!
//! Presets:
//! - `default`, the reference: queue ×2, kvCache ×2, prefixCache ×3, maxScore;
//! - `latencyAware`, tollgate's: loraAffinity → prefixAffinity (×1.5 + 50 ms) → latency,
//!   maxScore — the prompt sticks to the endpoints caching most of it until the request
//!   is predicted to wait there clearly longer than elsewhere, then it spills to the
//!   endpoint without the prefix predicted to answer first (a new replica of it);
//! - `random`, `roundRobin`: no scoring.

use std::sync::atomic::AtomicUsize;

use super::filters::Filter;
use super::pickers::Picker;
use super::scorers::{Scorer, Stats};
use super::{Candidate, Decision, RequestView, Rng};
use crate::config::{
    FilterConfig, PickerKind, PrefixAffinityConfig, ProfilePreset, SchedulingConfig, ScorerKind,
};

/// A scheduling profile.
#[derive(Debug)]
pub struct Profile {
    filters: Vec<Filter>,
    scorers: Vec<(Scorer, f64)>,
    picker: Picker,
    max_endpoints: usize,
    needs_latency: bool,
    /// The round-robin counter.
    turn: AtomicUsize,
}

impl Profile {
    pub fn new(
        filters: Vec<Filter>,
        scorers: Vec<(Scorer, f64)>,
        picker: Picker,
        max_endpoints: usize,
    ) -> Self {
        let needs_latency = filters.iter().any(|f| f.needs_latency())
            || scorers.iter().any(|(s, _)| s.needs_latency());
        Profile {
            filters,
            scorers,
            picker,
            max_endpoints: max_endpoints.max(1),
            needs_latency,
            turn: AtomicUsize::new(0),
        }
    }

    /// A preset returning up to `max_endpoints` endpoints.
    pub fn preset(p: ProfilePreset, max_endpoints: usize) -> Self {
        match p {
            ProfilePreset::Default => Profile::new(
                vec![],
                vec![
                    (Scorer::Queue, 2.0),
                    (Scorer::KvCache, 2.0),
                    (Scorer::PrefixCache, 3.0),
                ],
                Picker::MaxScore,
                max_endpoints,
            ),
            ProfilePreset::LatencyAware => Profile::new(
                vec![
                    Filter::LoraAffinity,
                    prefix_affinity(&PrefixAffinityConfig::default()),
                ],
                vec![(Scorer::Latency, 1.0)],
                Picker::MaxScore,
                max_endpoints,
            ),
            ProfilePreset::Random => Profile::new(vec![], vec![], Picker::Random, max_endpoints),
            ProfilePreset::RoundRobin => {
                Profile::new(vec![], vec![], Picker::RoundRobin, max_endpoints)
            }
        }
    }

    /// The profile a (validated) config describes.
    pub fn from_config(c: &SchedulingConfig) -> Self {
        if !c.is_custom() {
            return Profile::preset(
                c.profile.unwrap_or(ProfilePreset::Default),
                c.max_num_of_endpoints,
            );
        }
        let filters = c
            .filters
            .iter()
            .flatten()
            .map(|f| match f {
                FilterConfig::LeastQueue {} => Filter::LeastQueue,
                FilterConfig::LeastKvCache {} => Filter::LeastKvCache,
                FilterConfig::LoraAffinity {} => Filter::LoraAffinity,
                FilterConfig::PrefixAffinity(p) => prefix_affinity(p),
                FilterConfig::SessionAffinity(_) => Filter::SessionAffinity,
            })
            .collect();
        let scorers = c
            .scorers
            .iter()
            .flatten()
            .map(|s| {
                let scorer = match s.kind {
                    ScorerKind::Queue => Scorer::Queue,
                    ScorerKind::KvCache => Scorer::KvCache,
                    ScorerKind::PrefixCache => Scorer::PrefixCache,
                    ScorerKind::Lora => Scorer::Lora,
                    ScorerKind::InFlightLoad => Scorer::InFlightLoad,
                    ScorerKind::Latency => Scorer::Latency,
                    ScorerKind::SessionAffinity => Scorer::SessionAffinity,
                };
                (scorer, s.weight)
            })
            .collect();
        let picker = match c.picker.unwrap_or_default() {
            PickerKind::MaxScore => Picker::MaxScore,
            PickerKind::Random => Picker::Random,
            PickerKind::RoundRobin => Picker::RoundRobin,
        };
        Profile::new(filters, scorers, picker, c.max_num_of_endpoints)
    }

    /// Whether candidates need a predicted time to first token.
    pub fn needs_latency(&self) -> bool {
        self.needs_latency
    }

    pub fn max_endpoints(&self) -> usize {
        self.max_endpoints
    }

    /// Filters `c` in place, scores what is left and ranks it.
    pub fn run(&self, c: &mut Vec<Candidate>, req: &RequestView, rng: &mut Rng) -> Decision {
        for f in &self.filters {
            f.apply(c);
        }
        let totals: Vec<f64> = if self.scorers.is_empty() {
            vec![0.0; c.len()]
        } else {
            let stats = Stats::of(c, req);
            c.iter()
                .map(|c| {
                    self.scorers
                        .iter()
                        .map(|(s, w)| w * s.score(c, &stats))
                        .sum()
                })
                .collect()
        };
        let order = self
            .picker
            .rank(&totals, self.max_endpoints, rng, &self.turn);
        Decision { order, totals }
    }
}

fn prefix_affinity(p: &PrefixAffinityConfig) -> Filter {
    Filter::PrefixAffinity {
        ttft_ratio: p.ttft_ratio,
        ttft_margin: p.ttft_margin.get().as_secs_f64(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::epp::metrics::LoraMatch;

    fn req(blocks: usize) -> RequestView {
        RequestView {
            total_blocks: blocks,
            prompt_tokens: blocks as f64 * 16.0,
        }
    }

    fn cand(slot: usize, waiting: f64, kv_cache: f64, prefix_matched: usize) -> Candidate {
        Candidate {
            waiting,
            kv_cache,
            prefix_matched,
            ..Candidate::idle(slot)
        }
    }

    #[test]
    fn default_preset_is_the_reference_weighting() {
        let p = Profile::preset(ProfilePreset::Default, 1);
        assert!(!p.needs_latency());
        let mut rng = Rng::with_seed(7);
        // Endpoint 0 is idle with no prefix: 2·1 + 2·1 + 3·0 = 4. Endpoint 1 holds the
        // whole prefix but is busier: 2·0 + 2·0.6 + 3·1 = 4.2.
        let mut c = vec![cand(0, 0.0, 0.0, 0), cand(1, 4.0, 0.4, 4)];
        let d = p.run(&mut c, &req(4), &mut rng);
        assert_eq!(d.order, vec![1]);
        assert!((d.totals[0] - 4.0).abs() < 1e-9);
        assert!((d.totals[1] - 4.2).abs() < 1e-9);
        let d = p.run(&mut vec![], &req(4), &mut rng);
        assert!(d.order.is_empty());
    }

    #[test]
    fn latency_aware_preset_sticks_then_spills() {
        let p = Profile::preset(ProfilePreset::LatencyAware, 2);
        assert!(p.needs_latency());
        let mut rng = Rng::with_seed(1);
        let mk = |sticky_ttft: f64| {
            vec![
                Candidate {
                    ttft: 0.1,
                    wait: 0.1,
                    ..cand(0, 0.0, 0.0, 0)
                },
                Candidate {
                    ttft: sticky_ttft,
                    wait: sticky_ttft,
                    ..cand(1, 0.0, 0.0, 8)
                },
                Candidate {
                    ttft: 0.05,
                    wait: 0.05,
                    lora: LoraMatch::None,
                    ..cand(2, 0.0, 0.0, 0)
                },
            ]
        };
        // Endpoint 2 is dropped for LoRA; endpoint 1 holds the prefix and is within
        // 0.1 × 1.5 + 0.05.
        let mut c = mk(0.19);
        let d = p.run(&mut c, &req(8), &mut rng);
        assert_eq!(c.iter().map(|c| c.slot).collect::<Vec<_>>(), vec![1]);
        assert_eq!(d.order, vec![0]);
        // Waits too long: the prompt spills to the other LoRA-able endpoint.
        let mut c = mk(0.3);
        let d = p.run(&mut c, &req(8), &mut rng);
        let ranked: Vec<usize> = d.order.iter().map(|&i| c[i].slot).collect();
        assert_eq!(ranked, vec![0]);
    }

    #[test]
    fn random_and_round_robin_presets_ignore_load() {
        let mut rng = Rng::with_seed(5);
        let rr = Profile::preset(ProfilePreset::RoundRobin, 1);
        let picks: Vec<usize> = (0..4)
            .map(|_| {
                let mut c = vec![cand(0, 9.0, 0.9, 0), cand(1, 0.0, 0.0, 0)];
                rr.run(&mut c, &req(1), &mut rng).order[0]
            })
            .collect();
        assert_eq!(picks, vec![0, 1, 0, 1]);
        let random = Profile::preset(ProfilePreset::Random, 1);
        let mut seen = [0; 2];
        for _ in 0..200 {
            let mut c = vec![cand(0, 9.0, 0.9, 0), cand(1, 0.0, 0.0, 0)];
            seen[random.run(&mut c, &req(1), &mut rng).order[0]] += 1;
        }
        assert!(seen[0] > 50 && seen[1] > 50, "{seen:?}");
    }

    #[test]
    fn custom_profiles_follow_the_config() {
        let c: SchedulingConfig = serde_yaml::from_str(
            "{filters: [{type: leastQueue}], scorers: [{type: inFlightLoad, weight: 2}], maxNumOfEndpoints: 3}",
        )
        .unwrap();
        c.validate("s").unwrap();
        let p = Profile::from_config(&c);
        assert_eq!(p.filters, vec![Filter::LeastQueue]);
        assert_eq!(p.scorers, vec![(Scorer::InFlightLoad, 2.0)]);
        assert_eq!(p.picker, Picker::MaxScore);
        assert_eq!(p.max_endpoints(), 3);
        let c: SchedulingConfig = serde_yaml::from_str("{profile: latencyAware}").unwrap();
        let p = Profile::from_config(&c);
        assert_eq!(p.scorers, vec![(Scorer::Latency, 1.0)]);
        let p = Profile::from_config(&SchedulingConfig::default());
        assert_eq!(p.scorers.len(), 3, "nothing given is the default preset");
    }
}
