//! The scraper: one Tokio task per endpoint fetching its Prometheus metrics every
//! interval, until the endpoint leaves the pool or the pool is dropped.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};

use super::endpoint::Endpoint;
use crate::epp::metrics::{Mapping, Scrape};
use crate::outbound::{self, error_chain};

type HttpClient = outbound::HttpClient<Empty<Bytes>>;

/// What starting a scrape task needs; made once, inside the runtime.
#[derive(Clone)]
pub struct Scraper {
    rt: tokio::runtime::Handle,
    client: HttpClient,
    mapping: Arc<Mapping>,
    path: String,
    interval: Duration,
}

impl std::fmt::Debug for Scraper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scraper")
            .field("path", &self.path)
            .field("interval", &self.interval)
            .finish()
    }
}

impl Scraper {
    /// `None` outside a Tokio runtime, or when no client can be built (logged).
    pub fn in_current_runtime(
        mapping: Arc<Mapping>,
        path: &str,
        interval: Duration,
    ) -> Option<Self> {
        let rt = tokio::runtime::Handle::try_current().ok()?;
        let client = outbound::client(&Default::default())
            .inspect_err(
                |e| tracing::warn!(error = %e, "endpoint picker: no metrics client; not scraped"),
            )
            .ok()?;
        Some(Scraper {
            rt,
            client,
            mapping,
            path: path.to_string(),
            interval,
        })
    }

    /// Starts scraping `e`.
    pub fn spawn(&self, e: &Arc<Endpoint>) {
        let uri = format!("http://{}{}", e.name, self.path);
        let Ok(uri) = uri.parse::<http::Uri>() else {
            tracing::warn!(uri = %crate::redact::redact_url(&uri), "endpoint picker: bad metrics URI; not scraped");
            return;
        };
        self.rt.spawn(scrape_loop(
            Arc::downgrade(e),
            self.client.clone(),
            uri,
            self.interval,
            self.mapping.clone(),
        ));
    }
}

/// Scrapes one endpoint every `interval` until it is retired or gone.
async fn scrape_loop(
    endpoint: Weak<Endpoint>,
    client: HttpClient,
    uri: http::Uri,
    interval: Duration,
    mapping: Arc<Mapping>,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let timeout = (interval * 10).max(Duration::from_secs(1));
    loop {
        tick.tick().await;
        if endpoint.upgrade().is_none_or(|e| e.is_retired()) {
            return;
        }
        let result =
            match tokio::time::timeout(timeout, scrape(&client, uri.clone(), &mapping)).await {
                Ok(r) => r,
                Err(_) => Err(format!("timed out after {timeout:?}")),
            };
        let Some(e) = endpoint.upgrade() else {
            return;
        };
        if e.is_retired() {
            return;
        }
        if let Err(err) = &result {
            tracing::debug!(endpoint = %e.name, error = %err, "metrics scrape failed");
        }
        e.record_scrape(result, Instant::now());
    }
}

async fn scrape(client: &HttpClient, uri: http::Uri, mapping: &Mapping) -> Result<Scrape, String> {
    let resp = client.get(uri).await.map_err(|e| error_chain(&e))?;
    if !resp.status().is_success() {
        return Err(format!("status {}", resp.status()));
    }
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| error_chain(&e))?
        .to_bytes();
    let text = std::str::from_utf8(&body).map_err(|_| "metrics are not UTF-8".to_string())?;
    mapping
        .parse(text)
        .ok_or_else(|| "no mapped metric family".to_string())
}
