//! Latency objectives: a request that carries `x-llm-d-slo-ttft-ms` /
//! `x-llm-d-slo-tpot-ms` is admitted to an endpoint predicted to meet them (the
//! reference's `slo-headroom-tier-filter` and `latency-slo-admitter`).
//!
//! Predictions come from the picker's own latency model (`latency`): time to first token
//! as estimated for each candidate, time per output token as its engine-step estimate
//! (`base`: the observed TPOT stretched by the sequences decoding there). Then:
//! - some candidates meet both objectives: only they stay (the profile picks among them);
//! - none does and the request is sheddable (negative priority): refused
//!   ([`SloVerdict::Unattainable`]: 429, it would miss anyway);
//! - none does and the request may still wait (flow control, budget left):
//!   [`SloVerdict::NotYet`] — it stays queued until an endpoint frees up;
//! - otherwise, best effort: the candidates with the lowest predicted TTFT stay.

use std::time::Duration;

use super::Candidate;

/// A request's latency objectives.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Slo {
    /// Time to first token still available (the objective less time already waited).
    pub ttft: Option<Duration>,
    /// Time per output token.
    pub tpot: Option<Duration>,
}

/// What the objectives made of the candidates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SloVerdict {
    /// The candidates left are predicted to meet the objectives.
    Met,
    /// None is; the best predicted are left (best effort).
    BestEffort,
    /// None is, and the request is sheddable.
    Unattainable { best_ttft: f64 },
    /// None is yet; the request can wait.
    NotYet { best_ttft: f64 },
}

/// Whether `c` (with `ttft` predicted, `tpot` its predicted step) meets `slo`.
fn meets(c: &Candidate, tpot: f64, slo: &Slo) -> bool {
    slo.ttft.is_none_or(|t| c.ttft <= t.as_secs_f64())
        && slo.tpot.is_none_or(|t| tpot <= t.as_secs_f64())
}

/// Keeps the candidates that meet `slo`; `tpot[i]` is candidate `i`'s predicted time per
/// output token.
pub fn admit(
    cands: &mut Vec<Candidate>,
    tpot: &[f64],
    slo: &Slo,
    sheddable: bool,
    may_wait: bool,
) -> SloVerdict {
    let best_ttft = cands.iter().map(|c| c.ttft).fold(f64::INFINITY, f64::min);
    let ok: Vec<bool> = cands
        .iter()
        .zip(tpot)
        .map(|(c, &t)| meets(c, t, slo))
        .collect();
    if ok.iter().any(|&m| m) {
        let mut keep = ok.iter();
        cands.retain(|_| *keep.next().unwrap_or(&false));
        return SloVerdict::Met;
    }
    if sheddable {
        return SloVerdict::Unattainable { best_ttft };
    }
    if may_wait {
        return SloVerdict::NotYet { best_ttft };
    }
    cands.retain(|c| c.ttft <= best_ttft);
    SloVerdict::BestEffort
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(slot: usize, ttft: f64) -> Candidate {
        Candidate {
            ttft,
            ..Candidate::idle(slot)
        }
    }

    fn slo(ttft_ms: u64, tpot_ms: Option<u64>) -> Slo {
        Slo {
            ttft: Some(Duration::from_millis(ttft_ms)),
            tpot: tpot_ms.map(Duration::from_millis),
        }
    }

    fn slots(c: &[Candidate]) -> Vec<usize> {
        c.iter().map(|c| c.slot).collect()
    }

    #[test]
    fn only_endpoints_predicted_to_meet_the_objectives_stay() {
        let mut c = vec![cand(0, 0.050), cand(1, 0.400), cand(2, 0.150)];
        let v = admit(
            &mut c,
            &[0.02, 0.02, 0.08],
            &slo(200, Some(50)),
            false,
            false,
        );
        assert_eq!(v, SloVerdict::Met);
        // 2 meets the TTFT but not the TPOT objective.
        assert_eq!(slots(&c), vec![0]);
    }

    #[test]
    fn sheddable_requests_that_cannot_make_it_are_refused() {
        let mut c = vec![cand(0, 0.500), cand(1, 0.300)];
        let v = admit(&mut c, &[0.01, 0.01], &slo(100, None), true, true);
        assert_eq!(v, SloVerdict::Unattainable { best_ttft: 0.300 });
        assert_eq!(c.len(), 2, "nothing filtered on a refusal");
    }

    #[test]
    fn a_request_that_may_wait_waits_else_best_effort() {
        let mut c = vec![cand(0, 0.500), cand(1, 0.300), cand(2, 0.300)];
        let v = admit(&mut c, &[0.01; 3], &slo(100, None), false, true);
        assert_eq!(v, SloVerdict::NotYet { best_ttft: 0.300 });
        let v = admit(&mut c, &[0.01; 3], &slo(100, None), false, false);
        assert_eq!(v, SloVerdict::BestEffort);
        assert_eq!(slots(&c), vec![1, 2], "the lowest predicted TTFT");
    }

    #[test]
    fn no_objective_is_always_met() {
        let mut c = vec![cand(0, 9.0)];
        let v = admit(&mut c, &[1.0], &Slo::default(), true, false);
        assert_eq!(v, SloVerdict::Met);
        assert_eq!(c.len(), 1);
    }
}
