//! The time-to-first-token model behind the `latency` scorer and the `prefixAffinity`
//! filter ("sticky until saturated").
//!
//! For a request of `P` estimated prompt tokens, on an endpoint holding `m` of its leading
//! blocks (16 tokens each):
//!
//! ```text
//! own     = max(P − 16·m, 0)                         this request's uncached prefill
//! others  = max(scraped running + waiting − this picker's requests there, 0)
//!                                                     (sent by other replicas, clients)
//! queued  = min(max(scraped waiting − this picker's requests without a first token, 0),
//!               others)
//! ahead   = prefill tokens this picker has in flight there without a first token yet
//!         + queued × U                                (others' queued requests)
//!         + (others − queued) × U × f / 2             (others' running ones: a share f
//!                                                     still prefilling, half done)
//! base    = tpot × (1 + decoding / 32)               one engine step, longer with every
//!                                                     32 sequences decoding alongside
//! decoding = max(scraped running, in flight past their first token)
//! ttft    = (ahead + own) × prefill_per_token + base
//! ```
//!
//! `prefill_per_token`, `tpot` and uncached tokens per request (`U`) are the endpoint's
//! observed EWMAs (see `epp::load`); before anything is observed they are 100 µs per token
//! (≈10k prefill tokens a second), 20 ms per output token and 512 tokens. `f`, the share
//! of a request's time spent before its first token, is the observed time to first token
//! over that plus `tpot` × the output tokens this picker expects per request there
//! (0 before a first token was observed). With one picker replica in front of the
//! servers `others` is only the scrape's lag; with several it is what the other replicas
//! sent, which their picks would otherwise hide from this one. Each first
//! token teaches `prefill_per_token` the other way round:
//! `(observed ttft − base) / (ahead + own)` with the `ahead` and `base` predicted at
//! dispatch, so the model corrects its own bias.
//!
//! Chunked prefill makes a queued prompt wait for the prefill tokens before it, decode
//! steps run alongside, and a cached prefix skips its prefill: that is all the model says.
//! It ignores what it cannot see (prompts of other pickers beyond the scraped queue
//! length, the exact batch budget); the margin of `prefixAffinity` absorbs that.

use super::{Candidate, RequestView};
use crate::epp::prefix::TOKENS_PER_BLOCK;

/// Prefill seconds per token before any observation.
pub const DEFAULT_PREFILL_PER_TOKEN: f64 = 100e-6;
/// Seconds per output token before any observation.
pub const DEFAULT_TPOT: f64 = 0.020;
/// Uncached prompt tokens of a queued request before any observation.
pub const DEFAULT_QUEUED_PROMPT_TOKENS: f64 = 512.0;
/// Sequences decoding alongside that add one engine step to a first token.
pub const DECODE_BATCH: f64 = 32.0;

/// The parts of one prediction.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Estimate {
    /// Prefill tokens queued ahead of the request.
    pub ahead_tokens: f64,
    /// The request's own uncached prompt tokens.
    pub own_tokens: f64,
    /// The fixed part, in seconds.
    pub base: f64,
    /// Predicted seconds to the first token.
    pub ttft: f64,
    /// The part of `ttft` spent waiting for others: queued prefill ahead and the engine
    /// step, without this request's own prefill.
    pub wait: f64,
}

/// Predicts the time to first token of `req` on `c`.
pub fn estimate(c: &Candidate, req: &RequestView) -> Estimate {
    let l = &c.load;
    let cached = (c.prefix_matched as u64 * TOKENS_PER_BLOCK) as f64;
    let own_tokens = (req.prompt_tokens - cached).max(0.0);
    let per_request = l
        .uncached_per_request
        .unwrap_or(DEFAULT_QUEUED_PROMPT_TOKENS);
    let others = (c.running + c.waiting - l.requests as f64).max(0.0);
    let others_queued = (c.waiting - l.prefill_requests as f64).clamp(0.0, others);
    let others_prefilling = (others - others_queued) * prefilling_share(l) / 2.0;
    let ahead_tokens = l.prefill_tokens as f64 + (others_queued + others_prefilling) * per_request;
    let decoding = c
        .running
        .max((l.requests - l.prefill_requests).max(0) as f64);
    let base = l.tpot.unwrap_or(DEFAULT_TPOT) * (1.0 + decoding / DECODE_BATCH);
    let per_token = l.prefill_per_token.unwrap_or(DEFAULT_PREFILL_PER_TOKEN);
    Estimate {
        ahead_tokens,
        own_tokens,
        base,
        ttft: (ahead_tokens + own_tokens) * per_token + base,
        wait: ahead_tokens * per_token + base,
    }
}

/// The share of a request's time on the endpoint spent before its first token, from
/// what was observed there; 0 before any first token.
fn prefilling_share(l: &crate::epp::load::LoadSnapshot) -> f64 {
    let Some(ttft) = l.ttft else {
        return 0.0;
    };
    let outputs = if l.requests > 0 {
        l.decode_tokens as f64 / l.requests as f64
    } else {
        crate::epp::load::DEFAULT_EXPECTED_OUTPUT as f64
    };
    let decode = l.tpot.unwrap_or(DEFAULT_TPOT) * outputs;
    if ttft + decode > 0.0 {
        ttft / (ttft + decode)
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::epp::load::LoadSnapshot;

    fn req(tokens: f64) -> RequestView {
        RequestView {
            total_blocks: (tokens / 16.0) as usize,
            prompt_tokens: tokens,
        }
    }

    #[test]
    fn cold_idle_endpoint_is_own_prefill_plus_a_step() {
        let e = estimate(&Candidate::idle(0), &req(1000.0));
        assert_eq!(e.own_tokens, 1000.0);
        assert_eq!(e.ahead_tokens, 0.0);
        assert!((e.ttft - (1000.0 * 100e-6 + 0.020)).abs() < 1e-12);
    }

    #[test]
    fn a_cached_prefix_skips_its_prefill() {
        let mut c = Candidate::idle(0);
        c.prefix_matched = 50; // 800 tokens
        let e = estimate(&c, &req(1000.0));
        assert_eq!(e.own_tokens, 200.0);
        c.prefix_matched = 100;
        assert_eq!(estimate(&c, &req(1000.0)).own_tokens, 0.0);
    }

    #[test]
    fn requests_other_pickers_run_there_count_as_prefill_in_the_share_observed() {
        let mut c = Candidate::idle(0);
        c.load = LoadSnapshot {
            requests: 2,
            decode_tokens: 32,
            ttft: Some(0.48),
            tpot: Some(0.010),
            uncached_per_request: Some(1000.0),
            ..Default::default()
        };
        // Ours: 2 running. The scrape: 6 running, none waiting; 4 are someone else's.
        c.running = 6.0;
        // 16 output tokens a request: 0.16 s decoding against 0.48 s to the first token.
        let e = estimate(&c, &req(100.0));
        assert!(
            (e.ahead_tokens - 4.0 * 1000.0 * 0.75 / 2.0).abs() < 1e-9,
            "{e:?}"
        );
        // Before a first token was observed nothing says they prefill.
        c.load.ttft = None;
        assert_eq!(estimate(&c, &req(100.0)).ahead_tokens, 0.0);
        // Alone in front of the server the scrape shows only this picker's requests.
        c.load.ttft = Some(0.48);
        c.running = 2.0;
        assert_eq!(estimate(&c, &req(100.0)).ahead_tokens, 0.0);
    }

    #[test]
    fn queued_work_and_decodes_add_up_without_double_counting() {
        let mut c = Candidate::idle(0);
        c.load = LoadSnapshot {
            requests: 5,
            prefill_requests: 2,
            prefill_tokens: 3000,
            prefill_per_token: Some(200e-6),
            tpot: Some(0.010),
            uncached_per_request: Some(1000.0),
            ..Default::default()
        };
        // The scrape sees our 2 queued plus 1 more; 32 running (ours included).
        c.waiting = 3.0;
        c.running = 32.0;
        let e = estimate(&c, &req(500.0));
        assert_eq!(e.ahead_tokens, 3000.0 + 1000.0);
        assert!((e.base - 0.020).abs() < 1e-12, "two steps: {}", e.base);
        assert!((e.ttft - (4500.0 * 200e-6 + 0.020)).abs() < 1e-12);
        // Our own count wins when the scrape lags behind.
        c.waiting = 0.0;
        c.running = 0.0;
        let e = estimate(&c, &req(500.0));
        assert_eq!(e.ahead_tokens, 3000.0);
        assert!((e.base - 0.010 * (1.0 + 3.0 / 32.0)).abs() < 1e-12);
    }
}
