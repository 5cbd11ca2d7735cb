//! One endpoint of a pool and what is known of it: the last scrape (gauges, LoRA state,
//! cache geometry) and when it was taken, its prefix-cache LRU (one short lock for all
//! of these), and this picker's in-flight load (atomics).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::epp::load::Load;
use crate::epp::metrics::{CacheConfig, EndpointMetrics, LoraInfo, LoraMatch, Scrape};
use crate::epp::prefix::{capacity_for, Lru, LRU_CAPACITY};
use crate::epp::scheduling::Candidate;

use super::ScrapeError;

/// One model server.
#[derive(Debug)]
pub struct Endpoint {
    pub addr: SocketAddr,
    /// `ip:port` as the EPP protocol writes it (IPv6 in brackets).
    pub name: String,
    load: Arc<Load>,
    /// Set when the endpoint left the pool (or the pool is gone): its scraper stops.
    retired: AtomicBool,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    metrics: Option<EndpointMetrics>,
    lora: Option<LoraInfo>,
    cache_config: Option<CacheConfig>,
    scraped_at: Option<Instant>,
    last_error: Option<ScrapeError>,
    prefix: Lru,
}

impl Endpoint {
    pub fn new(addr: SocketAddr) -> Self {
        Endpoint {
            addr,
            name: addr.to_string(),
            load: Arc::new(Load::default()),
            retired: AtomicBool::new(false),
            state: Mutex::new(State {
                metrics: None,
                lora: None,
                cache_config: None,
                scraped_at: None,
                last_error: None,
                prefix: Lru::new(LRU_CAPACITY),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind: keep using it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// This picker's requests in flight here.
    pub fn load(&self) -> &Arc<Load> {
        &self.load
    }

    pub fn retire(&self) {
        self.retired.store(true, Ordering::Release);
    }

    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    /// Records a scrape: what it said, or why it failed (the last good one is kept). A
    /// known cache geometry resizes the prefix LRU to match.
    pub fn record_scrape(&self, result: Result<Scrape, ScrapeError>, now: Instant) {
        let mut s = self.state();
        match result {
            Ok(scrape) => {
                s.metrics = Some(scrape.metrics);
                s.lora = scrape.lora;
                if let Some(cc) = scrape.cache_config {
                    s.cache_config = Some(cc);
                    let capacity = capacity_for(&cc);
                    if s.prefix.capacity() != capacity {
                        s.prefix.set_capacity(capacity);
                    }
                }
                s.scraped_at = Some(now);
                s.last_error = None;
            }
            Err(e) => s.last_error = Some(e),
        }
    }

    /// The last gauges and whether they are stale (older than `stale_after`, or none).
    pub fn metrics(&self, stale_after: Duration, now: Instant) -> (Option<EndpointMetrics>, bool) {
        let s = self.state();
        (s.metrics, stale(&s, stale_after, now))
    }

    pub fn lora(&self) -> Option<LoraInfo> {
        self.state().lora.clone()
    }

    pub fn cache_config(&self) -> Option<CacheConfig> {
        self.state().cache_config
    }

    /// The last scrape error (cleared by a good scrape).
    pub fn last_error(&self) -> Option<ScrapeError> {
        self.state().last_error.clone()
    }

    /// Capacity and fill of the prefix LRU.
    pub fn prefix_usage(&self) -> (usize, usize) {
        let s = self.state();
        (s.prefix.capacity(), s.prefix.len())
    }

    /// Records that a prompt of `hashes` was sent here.
    pub fn record_prefix(&self, hashes: &[u64]) {
        if !hashes.is_empty() {
            self.state().prefix.record(hashes);
        }
    }

    /// This endpoint as a scheduling candidate for a prompt of `hashes` to `model`.
    pub fn candidate(
        &self,
        slot: usize,
        hashes: &[u64],
        model: &str,
        stale_after: Duration,
        now: Instant,
    ) -> Candidate {
        let (m, is_stale, failing, prefix_matched, lora) = {
            let s = self.state();
            let lora = match &s.lora {
                Some(l) if !model.is_empty() => l.matches(model),
                _ => LoraMatch::Unknown,
            };
            let is_stale = stale(&s, stale_after, now);
            (
                s.metrics.unwrap_or_default(),
                is_stale,
                is_stale && s.last_error.is_some(),
                s.prefix.matched(hashes),
                lora,
            )
        };
        Candidate {
            slot,
            waiting: m.waiting,
            running: m.running,
            kv_cache: m.kv_cache,
            stale: is_stale,
            failing,
            prefix_matched,
            lora,
            load: self.load.snapshot(),
            ttft: 0.0,
            wait: 0.0,
            session: false,
        }
    }
}

fn stale(s: &State, stale_after: Duration, now: Instant) -> bool {
    s.scraped_at
        .is_none_or(|at| now.saturating_duration_since(at) > stale_after)
}
