//! Scheduling: a [`Profile`] runs filters → weighted scorers (each score clamped to
//! [0, 1]) → a picker over the [`Candidate`]s of one request and ranks them; the first is
//! the pick, the next ones (up to `maxNumOfEndpoints`) the gateway's fallbacks.
//!
//! - `filters`: `leastQueue`, `leastKvCache`, `loraAffinity`, `prefixAffinity`,
//!   `sessionAffinity`;
//! - `scorers`: `queue`, `kvCache`, `prefixCache`, `lora`, `inFlightLoad`, `latency`,
//!   `sessionAffinity`;
//! - `pickers`: `maxScore`, `random`, `roundRobin`;
//! - `latency`: the time-to-first-token model behind `latency` and `prefixAffinity`;
//! - `profiles`: the presets and the build from config;
//! - `saturation`: the reference saturation detector;
//! - `session`: session tokens, the session-id bindings, the session's candidate.
//!
//! Everything here is pure and synchronous; the pool gathers the candidates.

pub mod filters;
pub mod latency;
pub mod pickers;
pub mod profiles;
pub mod saturation;
pub mod scorers;
pub mod session;
pub mod slo;

use std::cell::Cell;

use super::load::LoadSnapshot;
use super::metrics::LoraMatch;

pub use profiles::Profile;

/// What scheduling knows of one eligible endpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    /// Index of the endpoint in the pool's current members.
    pub slot: usize,
    /// Requests waiting in the endpoint's queue (last scrape; 0 before any).
    pub waiting: f64,
    /// Requests running (last scrape).
    pub running: f64,
    /// KV-cache utilisation, 0..=1 (last scrape).
    pub kv_cache: f64,
    /// No metrics, or metrics older than the pool's staleness bound.
    pub stale: bool,
    /// Its metrics are stale because scraping it fails (refused, timing out, not
    /// metrics): likely down. Avoided while any endpoint is not.
    pub failing: bool,
    /// Leading prompt blocks the endpoint holds.
    pub prefix_matched: usize,
    /// Where the request's model stands among the endpoint's LoRA adapters.
    pub lora: LoraMatch,
    /// This picker's requests in flight there and the observed latencies.
    pub load: LoadSnapshot,
    /// Predicted seconds to the first token (filled when the profile needs it).
    pub ttft: f64,
    /// Of `ttft`, the seconds spent waiting behind other work (filled with it).
    pub wait: f64,
    /// The endpoint of the request's session, not saturated (see `session::mark`).
    pub session: bool,
}

impl Candidate {
    /// An idle endpoint with fresh metrics and nothing cached.
    pub fn idle(slot: usize) -> Self {
        Candidate {
            slot,
            waiting: 0.0,
            running: 0.0,
            kv_cache: 0.0,
            stale: false,
            failing: false,
            prefix_matched: 0,
            lora: LoraMatch::Unknown,
            load: LoadSnapshot::default(),
            ttft: 0.0,
            wait: 0.0,
            session: false,
        }
    }
}

/// What scheduling knows of the request.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RequestView {
    /// Blocks the prompt was cut into.
    pub total_blocks: usize,
    /// Estimated prompt tokens.
    pub prompt_tokens: f64,
}

/// The ranking of one request.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// Indexes into the (filtered) candidates, best first; at most the profile's
    /// `maxNumOfEndpoints`.
    pub order: Vec<usize>,
    /// The total score of every (filtered) candidate.
    pub totals: Vec<f64>,
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
