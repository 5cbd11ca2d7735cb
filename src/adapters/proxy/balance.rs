//! A route's requests spread over its backends, in the standalone proxy: weighted power
//! of two choices on requests in flight, passive health (outlier ejection), and
//! retries. Under Envoy, Envoy does the same from the cluster tollgate generates.
//!
//! - **Pick**: two distinct backends drawn by weight among those not ejected (and not
//!   tried yet by this request); the one with fewer requests in flight per unit of
//!   weight wins, the first drawn on a tie — so an idle pool follows the weights, and a
//!   busy one evens out the load. A request is in flight until its response body ends.
//! - **Health**: connection failures, timeouts and 5xx answers in a row eject a backend
//!   (`upstream.outlierDetection`), for longer each time it is ejected again; a 429
//!   with `Retry-After` ejects it for that long. Never more than `maxEjectionPercent`
//!   of a route's backends, never the last one; with every backend ejected, the pick
//!   ignores ejection rather than fail.
//! - **Retries** (`retry`): a connection failure is retried (nothing was sent), so is
//!   a response whose status is in `codes`, and, for an idempotent method, a timeout
//!   or a broken exchange; each retry goes to a backend not tried yet when there is
//!   one, after the backoff. Only a request whose body is held whole (buffered by a
//!   policy, or empty) can be sent again; a response handed to the client is final.

use std::cell::Cell;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dashmap::DashMap;
use http::{Request, Response, StatusCode};

use super::body;
use super::h1_pool::UpstreamBody;
use super::upstream::{UpstreamError, Upstreams};
use super::ProxyBody;
use crate::config::{Backend, OutlierDetection, RetryPolicy};

/// Backends tracked per listener port; past this, new hosts go untracked.
const MAX_TRACKED: usize = 4096;
/// Longest ejection a `Retry-After` can ask for, in base ejection times.
const MAX_EJECTION_FACTOR: u32 = 10;

/// What one backend has been doing.
#[derive(Debug, Default)]
pub struct BackendStats {
    in_flight: AtomicU32,
    /// Failures in a row.
    failures: AtomicU32,
    /// Ejections in a row (reset by a success).
    ejections: AtomicU32,
    ejected_until: Mutex<Option<Instant>>,
}

impl BackendStats {
    fn ejected(&self, now: Instant) -> bool {
        self.ejected_until
            .lock()
            .unwrap()
            .is_some_and(|until| until > now)
    }

    fn in_flight(&self) -> u64 {
        u64::from(self.in_flight.load(Ordering::Relaxed))
    }
}

/// A request in flight on a backend, until dropped (with the response body).
#[derive(Debug)]
pub struct InFlight(Arc<BackendStats>);

impl InFlight {
    fn start(stats: &Arc<BackendStats>) -> Self {
        stats.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(stats.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How an attempt went, for the backend's health.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
    /// A 429, with how long the backend asked to be left alone.
    RateLimited(Option<Duration>),
}

/// The backends' health, shared by every route of one listener port, across reloads.
pub struct Health {
    stats: DashMap<String, Arc<BackendStats>>,
    outlier: OutlierDetection,
}

impl Health {
    pub fn new(outlier: &OutlierDetection) -> Self {
        Health {
            stats: DashMap::new(),
            outlier: outlier.clone(),
        }
    }

    /// The stats of `host` (fresh, untracked ones past [`MAX_TRACKED`]).
    pub fn stats(&self, host: &str) -> Arc<BackendStats> {
        if let Some(s) = self.stats.get(host) {
            return s.clone();
        }
        if self.stats.len() >= MAX_TRACKED {
            return Arc::default();
        }
        self.stats.entry(host.to_owned()).or_default().clone()
    }

    /// The backend the next attempt goes to (see the module doc).
    pub fn pick(
        &self,
        backends: &[Backend],
        stats: &[Arc<BackendStats>],
        tried: &[usize],
        now: Instant,
    ) -> usize {
        let all = 0..backends.len();
        let fresh = |i: &usize| !tried.contains(i);
        let mut candidates: Vec<usize> = all
            .clone()
            .filter(fresh)
            .filter(|&i| !stats[i].ejected(now))
            .collect();
        if candidates.is_empty() {
            candidates = all.clone().filter(fresh).collect();
        }
        if candidates.is_empty() {
            candidates = all.collect();
        }
        let weight = |i: usize| u64::from(backends[i].weight.max(1));
        let first = draw(&candidates, weight);
        candidates.retain(|&i| i != first);
        if candidates.is_empty() {
            return first;
        }
        let second = draw(&candidates, weight);
        // Fewer in flight per unit of weight: a/wa < b/wb ⇔ a·wb < b·wa.
        let load = |i: usize, other: usize| stats[i].in_flight() * weight(other);
        if load(second, first) < load(first, second) {
            second
        } else {
            first
        }
    }

    /// Records how an attempt on `stats` went; `route` are the stats of every backend of
    /// its route (for the ejection cap).
    pub fn record(
        &self,
        host: &str,
        stats: &BackendStats,
        route: &[Arc<BackendStats>],
        outcome: Outcome,
        now: Instant,
    ) {
        let base = self.outlier.base_ejection_time.get();
        match outcome {
            Outcome::Success => {
                stats.failures.store(0, Ordering::Relaxed);
                if !stats.ejected(now) {
                    stats.ejections.store(0, Ordering::Relaxed);
                }
            }
            Outcome::RateLimited(None) => {}
            Outcome::RateLimited(Some(wait)) => {
                let wait = wait.min(base.saturating_mul(MAX_EJECTION_FACTOR));
                self.eject(host, stats, route, wait, now);
            }
            Outcome::Failure => {
                let threshold = self.outlier.consecutive_failures;
                let failures = stats.failures.fetch_add(1, Ordering::Relaxed) + 1;
                if threshold > 0 && failures >= threshold {
                    stats.failures.store(0, Ordering::Relaxed);
                    let n = (stats.ejections.load(Ordering::Relaxed) + 1).min(MAX_EJECTION_FACTOR);
                    if self.eject(host, stats, route, base.saturating_mul(n), now) {
                        stats.ejections.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }

    /// Ejects `stats` for `wait` unless the route's cap forbids it; whether it did.
    fn eject(
        &self,
        host: &str,
        stats: &BackendStats,
        route: &[Arc<BackendStats>],
        wait: Duration,
        now: Instant,
    ) -> bool {
        if route.len() < 2 || wait.is_zero() {
            return false;
        }
        let ejected = route.iter().filter(|s| s.ejected(now)).count();
        let cap =
            (route.len() * self.outlier.max_ejection_percent as usize / 100).min(route.len() - 1);
        if !stats.ejected(now) && ejected >= cap {
            return false;
        }
        *stats.ejected_until.lock().unwrap() = Some(now + wait);
        tracing::warn!(target: "tollgate::upstream", backend = %host, seconds = wait.as_secs_f64(), "backend ejected");
        true
    }
}

/// A request's body for the upstream: held whole (it can be sent again), or streamed
/// once.
pub enum Payload {
    Held(Bytes),
    Once(ProxyBody),
}

/// Sends a request to one of `backends`, retrying as `retry` allows (module doc).
pub async fn send(
    upstreams: &Upstreams,
    backends: &[Backend],
    retry: Option<&RetryPolicy>,
    timeout: Option<Duration>,
    parts: http::request::Parts,
    payload: Payload,
) -> Result<Response<UpstreamBody>, UpstreamError> {
    let health = upstreams.health();
    let stats: Vec<Arc<BackendStats>> = backends.iter().map(|b| health.stats(&b.host)).collect();
    let (held, mut once) = match payload {
        Payload::Held(bytes) => (Some(bytes), None),
        Payload::Once(body) => (None, Some(body)),
    };
    let attempts = match (&held, retry) {
        (Some(_), Some(r)) => r.attempts.max(1),
        _ => 1,
    };
    let idempotent = parts.method.is_idempotent();
    let mut tried = Vec::with_capacity(attempts as usize);
    for attempt in 1..=attempts {
        let i = health.pick(backends, &stats, &tried, Instant::now());
        tried.push(i);
        let body = match (&held, once.take()) {
            (Some(bytes), _) => body::full(bytes.clone()),
            (None, Some(body)) => body,
            (None, None) => unreachable!("a streamed body is sent once"),
        };
        let request = copy_head(&parts, body);
        let in_flight = InFlight::start(&stats[i]);
        let backend = &backends[i];
        let result = upstreams.send(backend, request, timeout).await;
        let last = attempt == attempts;
        let now = Instant::now();
        match result {
            Ok(mut response) => {
                let status = response.status();
                health.record(&backend.host, &stats[i], &stats, outcome_of(&response), now);
                if !last && retry.is_some_and(|r| r.codes.contains(&status.as_u16())) {
                    drop(response);
                    tokio::time::sleep(jittered(retry, attempt)).await;
                    continue;
                }
                response.body_mut().hold(in_flight);
                return Ok(response);
            }
            Err(UpstreamError::ClientBody(e)) => return Err(UpstreamError::ClientBody(e)),
            Err(e) => {
                health.record(&backend.host, &stats[i], &stats, Outcome::Failure, now);
                let again = match e {
                    UpstreamError::Connect { .. } => true,
                    UpstreamError::Timeout { .. } | UpstreamError::Broken { .. } => idempotent,
                    _ => false,
                };
                if last || !again {
                    return Err(e);
                }
                tracing::debug!(target: "tollgate::upstream", error = %e, attempt, "retrying");
                tokio::time::sleep(jittered(retry, attempt)).await;
            }
        }
    }
    unreachable!("the last attempt returns")
}

/// A request with `parts`' method, URI, version and headers, and `body`.
fn copy_head(parts: &http::request::Parts, body: ProxyBody) -> Request<ProxyBody> {
    let mut request = Request::new(body);
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = parts.uri.clone();
    *request.version_mut() = parts.version;
    *request.headers_mut() = parts.headers.clone();
    request
}

/// A response's verdict on its backend: 5xx fails it, a 429 may ask for a pause.
fn outcome_of(response: &Response<UpstreamBody>) -> Outcome {
    let status = response.status();
    if status == StatusCode::TOO_MANY_REQUESTS {
        let wait = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        Outcome::RateLimited(wait)
    } else if status.is_server_error() {
        Outcome::Failure
    } else {
        Outcome::Success
    }
}

/// The backoff before retry `n`, plus up to half again at random.
fn jittered(retry: Option<&RetryPolicy>, n: u32) -> Duration {
    let base = retry.map_or(Duration::from_millis(25), |r| r.backoff_before(n));
    let extra = base.as_nanos() as u64 / 2;
    base + Duration::from_nanos(if extra == 0 { 0 } else { random() % extra })
}

/// One of `candidates`, drawn with probability proportional to `weight`.
fn draw(candidates: &[usize], weight: impl Fn(usize) -> u64) -> usize {
    let total: u64 = candidates.iter().map(|&i| weight(i)).sum();
    let mut at = random() % total.max(1);
    for &i in candidates {
        let w = weight(i);
        if at < w {
            return i;
        }
        at -= w;
    }
    candidates[candidates.len() - 1]
}

/// A fast per-thread pseudo-random number (xorshift64*): for spreading load, not for
/// secrets.
fn random() -> u64 {
    thread_local! {
        static STATE: Cell<u64> = Cell::new(seed());
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        s.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    })
}

fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(Instant::now().elapsed().as_nanos() as u64);
    h.finish() | 1
}

#[cfg(test)]
mod tests;
