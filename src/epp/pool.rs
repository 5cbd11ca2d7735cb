//! The pool of endpoints: the state table scheduling reads (last scraped metrics, when
//! they were scraped, each endpoint's prefix-cache LRU) and the scraper that keeps it
//! fresh. The scraper starts on first use inside the Tokio runtime (`tollgate validate`
//! builds pipelines without one) and stops when the pool is dropped (a reload that
//! replaced the route's policy).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

use super::metrics::{self, EndpointMetrics};
use super::prefix::{Lru, LRU_CAPACITY};
use super::scheduler::Candidate;

/// What a pool is made of.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PoolSpec {
    pub endpoints: Vec<SocketAddr>,
    /// HTTP path of the Prometheus metrics.
    pub metrics_path: String,
    pub interval: Duration,
    /// Metrics older than this are stale.
    pub stale_after: Duration,
}

/// One endpoint and what is known of it.
#[derive(Debug)]
pub struct Endpoint {
    pub addr: SocketAddr,
    /// `ip:port` as the EPP protocol writes it (IPv6 in brackets).
    pub name: String,
    state: Mutex<EndpointState>,
}

#[derive(Debug)]
struct EndpointState {
    metrics: Option<EndpointMetrics>,
    scraped_at: Option<Instant>,
    last_error: Option<String>,
    prefix: Lru,
}

/// An eligible endpoint as scheduling sees it.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Index in the pool.
    pub index: usize,
    pub candidate: Candidate,
    /// No metrics, or metrics older than `stale_after`.
    pub stale: bool,
}

/// The endpoints of one picker.
#[derive(Debug)]
pub struct Pool {
    spec: PoolSpec,
    endpoints: Vec<Endpoint>,
    scraper_started: AtomicBool,
}

impl Pool {
    pub fn new(spec: PoolSpec) -> Arc<Pool> {
        let endpoints = spec
            .endpoints
            .iter()
            .map(|addr| Endpoint {
                addr: *addr,
                name: addr.to_string(),
                state: Mutex::new(EndpointState {
                    metrics: None,
                    scraped_at: None,
                    last_error: None,
                    prefix: Lru::new(LRU_CAPACITY),
                }),
            })
            .collect();
        Arc::new(Pool {
            spec,
            endpoints,
            scraper_started: AtomicBool::new(false),
        })
    }

    pub fn spec(&self) -> &PoolSpec {
        &self.spec
    }

    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// Index of the endpoint at `addr`.
    pub fn position(&self, addr: &SocketAddr) -> Option<usize> {
        self.endpoints.iter().position(|e| e.addr == *addr)
    }

    /// Records a scrape of endpoint `index`: its metrics, or why there are none.
    pub fn set_metrics(&self, index: usize, result: Result<EndpointMetrics, String>, now: Instant) {
        let mut s = self.endpoints[index].state.lock().expect("endpoint lock");
        match result {
            Ok(m) => {
                s.metrics = Some(m);
                s.scraped_at = Some(now);
                s.last_error = None;
            }
            Err(e) => s.last_error = Some(e),
        }
    }

    /// The last metrics of endpoint `index`, and whether they are stale at `now`.
    pub fn metrics(&self, index: usize, now: Instant) -> (Option<EndpointMetrics>, bool) {
        let s = self.endpoints[index].state.lock().expect("endpoint lock");
        (s.metrics, self.stale(&s, now))
    }

    /// The last scrape error of endpoint `index` (cleared by a good scrape).
    pub fn last_error(&self, index: usize) -> Option<String> {
        let s = self.endpoints[index].state.lock().expect("endpoint lock");
        s.last_error.clone()
    }

    fn stale(&self, s: &EndpointState, now: Instant) -> bool {
        s.scraped_at
            .is_none_or(|at| now.saturating_duration_since(at) > self.spec.stale_after)
    }

    /// The endpoints at `indexes` as scheduling candidates for a prompt of `hashes`.
    /// An endpoint with no metrics yet counts as idle (and stale).
    pub fn snapshot(&self, indexes: &[usize], hashes: &[u64], now: Instant) -> Vec<Snapshot> {
        indexes
            .iter()
            .map(|&index| {
                let s = self.endpoints[index].state.lock().expect("endpoint lock");
                let m = s.metrics.unwrap_or_default();
                Snapshot {
                    index,
                    candidate: Candidate {
                        waiting: m.waiting,
                        kv_cache: m.kv_cache,
                        prefix_matched: s.prefix.matched(hashes),
                    },
                    stale: self.stale(&s, now),
                }
            })
            .collect()
    }

    /// Records that a prompt of `hashes` was sent to endpoint `index`.
    pub fn record_pick(&self, index: usize, hashes: &[u64]) {
        let mut s = self.endpoints[index].state.lock().expect("endpoint lock");
        s.prefix.record(hashes);
    }

    /// Starts scraping every endpoint, once; a no-op outside a Tokio runtime.
    pub fn start_scraper(self: &Arc<Self>) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.scraper_started.swap(true, Ordering::AcqRel) {
            return;
        }
        let client: Client<HttpConnector, Empty<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        for (index, e) in self.endpoints.iter().enumerate() {
            let uri = format!("http://{}{}", e.name, self.spec.metrics_path);
            let Ok(uri) = uri.parse::<http::Uri>() else {
                tracing::warn!(%uri, "endpoint picker: bad metrics URI; not scraped");
                continue;
            };
            rt.spawn(scrape_loop(
                Arc::downgrade(self),
                index,
                client.clone(),
                uri,
                self.spec.interval,
            ));
        }
    }
}

/// Scrapes one endpoint every `interval` until the pool is gone.
async fn scrape_loop(
    pool: Weak<Pool>,
    index: usize,
    client: Client<HttpConnector, Empty<Bytes>>,
    uri: http::Uri,
    interval: Duration,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let timeout = (interval * 10).max(Duration::from_secs(1));
    loop {
        tick.tick().await;
        if pool.strong_count() == 0 {
            return;
        }
        let result = match tokio::time::timeout(timeout, scrape(&client, uri.clone())).await {
            Ok(r) => r,
            Err(_) => Err(format!("timed out after {timeout:?}")),
        };
        let Some(pool) = pool.upgrade() else {
            return;
        };
        if let Err(e) = &result {
            tracing::debug!(endpoint = %pool.endpoints[index].name, error = %e, "metrics scrape failed");
        }
        pool.set_metrics(index, result, Instant::now());
    }
}

async fn scrape(
    client: &Client<HttpConnector, Empty<Bytes>>,
    uri: http::Uri,
) -> Result<EndpointMetrics, String> {
    let resp = client.get(uri).await.map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("status {}", resp.status()));
    }
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let text = std::str::from_utf8(&body).map_err(|_| "metrics are not UTF-8".to_string())?;
    metrics::parse(text).ok_or_else(|| "no known metric family".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(endpoints: Vec<SocketAddr>) -> PoolSpec {
        PoolSpec {
            endpoints,
            metrics_path: "/metrics".into(),
            interval: Duration::from_millis(10),
            stale_after: Duration::from_millis(200),
        }
    }

    #[test]
    fn tracks_staleness_and_prefixes() {
        let pool = Pool::new(spec(vec![
            "127.0.0.1:1".parse().unwrap(),
            "[::1]:2".parse().unwrap(),
        ]));
        assert_eq!(pool.endpoints()[1].name, "[::1]:2");
        let t0 = Instant::now();
        assert!(pool.metrics(0, t0).1, "never scraped is stale");
        let m = EndpointMetrics {
            waiting: 3.0,
            running: 1.0,
            kv_cache: 0.5,
        };
        pool.set_metrics(0, Ok(m), t0);
        assert_eq!(pool.metrics(0, t0), (Some(m), false));
        assert!(pool.metrics(0, t0 + Duration::from_millis(300)).1);
        pool.set_metrics(0, Err("boom".into()), t0);
        assert_eq!(pool.last_error(0).as_deref(), Some("boom"));
        assert_eq!(
            pool.metrics(0, t0).0,
            Some(m),
            "an error keeps the last metrics"
        );

        pool.record_pick(1, &[10, 11]);
        let snap = pool.snapshot(&[0, 1], &[10, 11, 12], t0);
        assert_eq!(snap[0].candidate.waiting, 3.0);
        assert_eq!(snap[0].candidate.prefix_matched, 0);
        assert_eq!(snap[1].candidate.prefix_matched, 2);
        assert!(snap[1].stale);
    }

    #[tokio::test]
    async fn scrapes_metrics_over_http() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut buf = [0u8; 1024];
                    loop {
                        let Ok(n) = sock.read(&mut buf).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        let body = "vllm:num_requests_waiting 5\nvllm:kv_cache_usage_perc 0.4\n";
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if sock.write_all(resp.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let pool = Pool::new(spec(vec![addr]));
        pool.start_scraper();
        pool.start_scraper(); // idempotent
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let (Some(m), false) = pool.metrics(0, Instant::now()) {
                assert_eq!(m.waiting, 5.0);
                assert_eq!(m.kv_cache, 0.4);
                break;
            }
            assert!(Instant::now() < deadline, "never scraped");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
