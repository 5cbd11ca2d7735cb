//! What this picker has sent to each endpoint and is not finished yet, and how fast the
//! endpoint turned out to be.
//!
//! Per endpoint ([`Load`]), all atomics: requests in flight; their prompt tokens
//! (estimated at 4 characters a token); their decode tokens (each request counts its
//! expected output — the request's max tokens, else [`DEFAULT_EXPECTED_OUTPUT`] — until
//! tokens stream, then the count delivered so far); requests still waiting for their first
//! token and their uncached prompt tokens (the prefill work queued there); and EWMAs of
//! the observed time to first token, time per output token, prefill time per prompt token
//! and uncached prompt tokens per request.
//!
//! A request's share is held by an [`InFlight`] guard: [`InFlight::first_token`],
//! [`InFlight::output_tokens`] and [`InFlight::finish`] move it along and feed the EWMAs;
//! [`InFlight::served_by`] moves it to the endpoint that actually served the request;
//! dropping the guard unfinished releases the share (an abandoned request) and learns
//! nothing. No lock is taken and nothing is allocated after the guard is made, but
//! for settling the precise prefix cache's guess it may hold (one short lock).

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::kv_events::PrefillGuess;

/// Output tokens expected of a request that gives no max tokens.
pub const DEFAULT_EXPECTED_OUTPUT: u64 = 256;
/// Characters per token of the prompt estimate.
pub const CHARS_PER_TOKEN: u64 = 4;
/// Weight of a new observation in the EWMAs.
pub const EWMA_ALPHA: f64 = 0.2;
/// Fewest prefill tokens (queued ahead + own) for a time-to-first-token observation to
/// teach the prefill rate (shorter ones are dominated by fixed costs).
pub const MIN_LEARN_TOKENS: f64 = 32.0;

/// An exponentially weighted moving average, lock-free; empty until the first sample.
#[derive(Debug)]
pub struct Ewma(AtomicU64);

impl Default for Ewma {
    fn default() -> Self {
        Ewma(AtomicU64::new(f64::NAN.to_bits()))
    }
}

impl Ewma {
    pub fn get(&self) -> Option<f64> {
        let v = f64::from_bits(self.0.load(Ordering::Relaxed));
        (!v.is_nan()).then_some(v)
    }

    pub fn observe(&self, x: f64) {
        if !x.is_finite() {
            return;
        }
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                let old = f64::from_bits(bits);
                let new = if old.is_nan() {
                    x
                } else {
                    old + EWMA_ALPHA * (x - old)
                };
                Some(new.to_bits())
            });
    }
}

/// The in-flight load of one endpoint and what was observed of it.
#[derive(Debug, Default)]
pub struct Load {
    requests: AtomicI64,
    prompt_tokens: AtomicI64,
    decode_tokens: AtomicI64,
    prefill_requests: AtomicI64,
    prefill_tokens: AtomicI64,
    /// Seconds from dispatch to the first token.
    pub ttft: Ewma,
    /// Seconds per output token after the first.
    pub tpot: Ewma,
    /// Seconds per prefill token (queued ahead + own uncached).
    pub prefill_per_token: Ewma,
    /// Uncached prompt tokens per request sent here.
    pub uncached_per_request: Ewma,
}

/// A copy of a [`Load`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LoadSnapshot {
    pub requests: i64,
    pub prompt_tokens: i64,
    pub decode_tokens: i64,
    /// Requests without a first token yet.
    pub prefill_requests: i64,
    /// Their uncached prompt tokens.
    pub prefill_tokens: i64,
    pub ttft: Option<f64>,
    pub tpot: Option<f64>,
    pub prefill_per_token: Option<f64>,
    pub uncached_per_request: Option<f64>,
}

impl LoadSnapshot {
    /// Prompt and decode tokens in flight.
    pub fn tokens(&self) -> i64 {
        self.prompt_tokens + self.decode_tokens
    }
}

impl Load {
    pub fn snapshot(&self) -> LoadSnapshot {
        let r = |a: &AtomicI64| a.load(Ordering::Relaxed).max(0);
        LoadSnapshot {
            requests: r(&self.requests),
            prompt_tokens: r(&self.prompt_tokens),
            decode_tokens: r(&self.decode_tokens),
            prefill_requests: r(&self.prefill_requests),
            prefill_tokens: r(&self.prefill_tokens),
            ttft: self.ttft.get(),
            tpot: self.tpot.get(),
            prefill_per_token: self.prefill_per_token.get(),
            uncached_per_request: self.uncached_per_request.get(),
        }
    }

    /// Adds (`sign` 1) or removes (`sign` −1) one request's share.
    fn apply(&self, s: &Share, sign: i64) {
        self.requests.fetch_add(sign, Ordering::Relaxed);
        self.prompt_tokens
            .fetch_add(sign * s.prompt_tokens, Ordering::Relaxed);
        self.decode_tokens
            .fetch_add(sign * s.decode_tokens, Ordering::Relaxed);
        if s.prefilling {
            self.prefill_requests.fetch_add(sign, Ordering::Relaxed);
            self.prefill_tokens
                .fetch_add(sign * s.uncached_tokens, Ordering::Relaxed);
        }
    }
}

/// Finds the load of an endpoint by address (the pool's current members).
pub trait Directory: Send + Sync {
    fn load_of(&self, addr: &SocketAddr) -> Option<Arc<Load>>;
}

/// What the picker knew when it sent a request.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Dispatch {
    pub prompt_tokens: u64,
    /// Prompt tokens not in the endpoint's prefix cache.
    pub uncached_tokens: u64,
    /// Max tokens of the request, when it gave one.
    pub expected_output: Option<u64>,
    /// Prefill tokens predicted to be queued ahead of it there.
    pub prefill_ahead_tokens: f64,
    /// The predicted fixed part of its time to first token, in seconds.
    pub base_ttft: f64,
}

/// One request's share of an endpoint's load.
#[derive(Clone, Copy, Debug)]
struct Share {
    prompt_tokens: i64,
    uncached_tokens: i64,
    decode_tokens: i64,
    prefilling: bool,
}

/// A request in flight on an endpoint; see the module doc.
#[must_use = "dropping the guard ends the request's share at once"]
pub struct InFlight {
    directory: Arc<dyn Directory>,
    addr: SocketAddr,
    load: Option<Arc<Load>>,
    share: Share,
    started: Instant,
    first_token_at: Option<Instant>,
    streaming: bool,
    /// Whether the dispatch facts still describe where the request is (not after a move).
    learn_prefill: bool,
    dispatch: Dispatch,
    /// The precise prefix cache's guess that the endpoint now holds the prompt, kept
    /// until the prefill ends.
    prefill_guess: Option<PrefillGuess>,
    done: bool,
}

impl fmt::Debug for InFlight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InFlight")
            .field("addr", &self.addr)
            .field("share", &self.share)
            .field("first_token_at", &self.first_token_at)
            .field("done", &self.done)
            .finish()
    }
}

impl InFlight {
    /// Starts a request on the endpoint at `addr` whose load is `load`.
    pub fn start(
        directory: Arc<dyn Directory>,
        addr: SocketAddr,
        load: Arc<Load>,
        now: Instant,
        dispatch: Dispatch,
    ) -> InFlight {
        let share = Share {
            prompt_tokens: dispatch.prompt_tokens as i64,
            uncached_tokens: dispatch.uncached_tokens.min(dispatch.prompt_tokens) as i64,
            decode_tokens: dispatch.expected_output.unwrap_or(DEFAULT_EXPECTED_OUTPUT) as i64,
            prefilling: true,
        };
        load.apply(&share, 1);
        load.uncached_per_request
            .observe(share.uncached_tokens as f64);
        InFlight {
            directory,
            addr,
            load: Some(load),
            share,
            started: now,
            first_token_at: None,
            streaming: false,
            learn_prefill: true,
            dispatch,
            prefill_guess: None,
            done: false,
        }
    }

    /// Keeps `guess` until the request's prefill ends (its first token, its end or a
    /// move elsewhere).
    pub fn hold_guess(&mut self, guess: Option<PrefillGuess>) {
        self.prefill_guess = guess;
    }

    /// The endpoint the request is accounted to.
    pub fn endpoint(&self) -> SocketAddr {
        self.addr
    }

    /// The first token arrived: the prefill share ends and the time to first token (and
    /// from it the prefill rate) is learnt.
    pub fn first_token(&mut self, now: Instant) {
        if self.first_token_at.is_some() || self.done {
            return;
        }
        self.first_token_at = Some(now);
        self.prefill_guess = None;
        let Some(load) = &self.load else {
            return;
        };
        load.prefill_requests.fetch_sub(1, Ordering::Relaxed);
        load.prefill_tokens
            .fetch_sub(self.share.uncached_tokens, Ordering::Relaxed);
        self.share.prefilling = false;
        let ttft = now.saturating_duration_since(self.started).as_secs_f64();
        load.ttft.observe(ttft);
        let work = self.dispatch.prefill_ahead_tokens + self.share.uncached_tokens as f64;
        if self.learn_prefill && work >= MIN_LEARN_TOKENS {
            load.prefill_per_token
                .observe((ttft - self.dispatch.base_ttft).max(0.0) / work);
        }
    }

    /// `delivered` output tokens have streamed so far (a running total): from now on the
    /// request counts them instead of its expected output.
    pub fn output_tokens(&mut self, delivered: u64) {
        if self.done {
            return;
        }
        if delivered > 0 && self.first_token_at.is_none() {
            self.first_token(Instant::now());
        }
        if !self.streaming && delivered == 0 {
            return;
        }
        self.streaming = true;
        let delivered = delivered as i64;
        let delta = delivered - self.share.decode_tokens;
        if delta != 0 {
            if let Some(load) = &self.load {
                load.decode_tokens.fetch_add(delta, Ordering::Relaxed);
            }
            self.share.decode_tokens = delivered;
        }
    }

    /// The request was served by `addr` (a fallback, say): its share moves there. An
    /// endpoint outside the pool takes nothing; the share is released.
    pub fn served_by(&mut self, addr: SocketAddr) {
        if addr == self.addr || self.done {
            return;
        }
        if let Some(old) = self.load.take() {
            old.apply(&self.share, -1);
        }
        self.addr = addr;
        self.learn_prefill = false;
        self.prefill_guess = None;
        if self.share.prefilling {
            // The fallback did not see this prompt before.
            self.share.uncached_tokens = self.share.prompt_tokens;
        }
        self.load = self.directory.load_of(&addr);
        if let Some(new) = &self.load {
            new.apply(&self.share, 1);
        }
    }

    /// The request ended with `output_tokens` tokens: the share is released and the time
    /// per output token learnt.
    pub fn finish(mut self, now: Instant, output_tokens: u64) {
        if let Some(first) = self.first_token_at {
            if output_tokens >= 2 {
                if let Some(load) = &self.load {
                    let tpot = now.saturating_duration_since(first).as_secs_f64()
                        / (output_tokens - 1) as f64;
                    load.tpot.observe(tpot);
                }
            }
        }
        self.release();
    }

    fn release(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        self.prefill_guess = None;
        if let Some(load) = self.load.take() {
            load.apply(&self.share, -1);
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use super::*;

    struct Map(HashMap<SocketAddr, Arc<Load>>);

    impl Directory for Map {
        fn load_of(&self, addr: &SocketAddr) -> Option<Arc<Load>> {
            self.0.get(addr).cloned()
        }
    }

    fn setup() -> (Arc<Map>, SocketAddr, SocketAddr) {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let m = Map(HashMap::from([
            (a, Arc::new(Load::default())),
            (b, Arc::new(Load::default())),
        ]));
        (Arc::new(m), a, b)
    }

    fn dispatch() -> Dispatch {
        Dispatch {
            prompt_tokens: 1000,
            uncached_tokens: 600,
            expected_output: Some(100),
            prefill_ahead_tokens: 400.0,
            base_ttft: 0.01,
        }
    }

    fn zero() -> LoadSnapshot {
        LoadSnapshot::default()
    }

    #[test]
    fn a_request_moves_through_its_phases_and_teaches_the_ewmas() {
        let (dir, a, _) = setup();
        let load = dir.load_of(&a).unwrap();
        let t0 = Instant::now();
        let mut f = InFlight::start(dir.clone(), a, load.clone(), t0, dispatch());
        let s = load.snapshot();
        assert_eq!(
            (s.requests, s.prompt_tokens, s.decode_tokens),
            (1, 1000, 100)
        );
        assert_eq!((s.prefill_requests, s.prefill_tokens), (1, 600));
        assert_eq!(s.uncached_per_request, Some(600.0));

        // 1,000 prefill tokens (400 ahead + 600 own) in 110 ms, 10 ms of it fixed.
        f.first_token(t0 + Duration::from_millis(110));
        let s = load.snapshot();
        assert_eq!((s.prefill_requests, s.prefill_tokens), (0, 0));
        assert_eq!(s.requests, 1);
        assert!((s.ttft.unwrap() - 0.110).abs() < 1e-9);
        assert!((s.prefill_per_token.unwrap() - 1e-4).abs() < 1e-9);

        f.output_tokens(1);
        assert_eq!(
            load.snapshot().decode_tokens,
            1,
            "delivered replaces expected"
        );
        f.output_tokens(40);
        assert_eq!(load.snapshot().decode_tokens, 40);

        // 41 tokens, the last 40 in 400 ms: 10 ms each.
        f.finish(t0 + Duration::from_millis(510), 41);
        let s = load.snapshot();
        assert_eq!((s.requests, s.prompt_tokens, s.decode_tokens), (0, 0, 0));
        assert!((s.tpot.unwrap() - 0.01).abs() < 1e-9);
    }

    #[test]
    fn dropping_unfinished_releases_everything_and_learns_nothing() {
        let (dir, a, _) = setup();
        let load = dir.load_of(&a).unwrap();
        let mut d = dispatch();
        d.expected_output = None;
        let f = InFlight::start(dir.clone(), a, load.clone(), Instant::now(), d);
        assert_eq!(
            load.snapshot().decode_tokens,
            DEFAULT_EXPECTED_OUTPUT as i64
        );
        drop(f);
        let s = load.snapshot();
        assert_eq!(
            LoadSnapshot {
                uncached_per_request: None,
                ..s
            },
            zero()
        );
        assert_eq!(s.ttft, None);
    }

    #[test]
    fn served_by_moves_the_share() {
        let (dir, a, b) = setup();
        let (la, lb) = (dir.load_of(&a).unwrap(), dir.load_of(&b).unwrap());
        let t0 = Instant::now();
        let mut f = InFlight::start(dir.clone(), a, la.clone(), t0, dispatch());
        f.served_by(b);
        assert_eq!(f.endpoint(), b);
        assert_eq!(la.snapshot().requests, 0);
        let s = lb.snapshot();
        assert_eq!(
            (s.requests, s.prompt_tokens, s.decode_tokens),
            (1, 1000, 100)
        );
        assert_eq!(s.prefill_tokens, 1000, "the fallback holds no prefix");
        f.first_token(t0 + Duration::from_millis(50));
        assert_eq!(lb.snapshot().ttft, Some(0.05));
        assert_eq!(lb.snapshot().prefill_per_token, None, "facts were for a");
        assert_eq!(la.snapshot().ttft, None);
        f.output_tokens(5);
        // Served outside the pool: nobody carries it.
        f.served_by("127.0.0.1:9".parse().unwrap());
        assert_eq!(lb.snapshot().requests, 0);
        assert_eq!(lb.snapshot().decode_tokens, 0);
        f.output_tokens(9);
        f.finish(t0 + Duration::from_millis(90), 9);
        assert_eq!(la.snapshot().tokens() + lb.snapshot().tokens(), 0);
    }

    #[test]
    fn output_before_first_token_counts_as_first_token() {
        let (dir, a, _) = setup();
        let load = dir.load_of(&a).unwrap();
        let mut f = InFlight::start(dir.clone(), a, load.clone(), Instant::now(), dispatch());
        f.output_tokens(0);
        assert_eq!(
            load.snapshot().decode_tokens,
            100,
            "zero delivered changes nothing"
        );
        f.output_tokens(3);
        let s = load.snapshot();
        assert_eq!((s.prefill_requests, s.decode_tokens), (0, 3));
        assert!(s.ttft.is_some());
        drop(f);
        assert_eq!(load.snapshot().tokens(), 0);
    }

    #[test]
    fn ewma_smooths() {
        let e = Ewma::default();
        assert_eq!(e.get(), None);
        e.observe(10.0);
        e.observe(f64::NAN);
        assert_eq!(e.get(), Some(10.0));
        e.observe(20.0);
        assert!((e.get().unwrap() - 12.0).abs() < 1e-9);
    }
}
