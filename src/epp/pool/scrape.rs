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

/// Why a scrape gave no metrics; kept on the endpoint until the next good one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScrapeError {
    #[error("timed out after {after:?}")]
    Timeout { after: Duration },
    /// `reason` is the client's error chain, URLs redacted.
    #[error("request failed: {reason}")]
    Request { reason: String },
    #[error("status {status}")]
    Status { status: http::StatusCode },
    #[error("reading the body failed: {reason}")]
    Body { reason: String },
    #[error("metrics are not UTF-8")]
    NotUtf8,
    #[error("no mapped metric family")]
    NoMappedFamily,
}

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
                Err(_) => Err(ScrapeError::Timeout { after: timeout }),
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

async fn scrape(
    client: &HttpClient,
    uri: http::Uri,
    mapping: &Mapping,
) -> Result<Scrape, ScrapeError> {
    let resp = client.get(uri).await.map_err(|e| ScrapeError::Request {
        reason: error_chain(&e),
    })?;
    if !resp.status().is_success() {
        return Err(ScrapeError::Status {
            status: resp.status(),
        });
    }
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| ScrapeError::Body {
            reason: error_chain(&e),
        })?
        .to_bytes();
    let text = std::str::from_utf8(&body).map_err(|_| ScrapeError::NotUtf8)?;
    mapping.parse(text).ok_or(ScrapeError::NoMappedFamily)
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http_body_util::Full;

    use super::*;

    /// A loopback server answering every request with `status` and `body`; its URI.
    async fn serve(status: u16, body: &'static [u8]) -> http::Uri {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let service = hyper::service::service_fn(move |_| async move {
                    let mut resp = http::Response::new(Full::new(Bytes::from_static(body)));
                    *resp.status_mut() = http::StatusCode::from_u16(status).unwrap();
                    Ok::<_, Infallible>(resp)
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
                );
            }
        });
        format!("http://{addr}/metrics").parse().unwrap()
    }

    async fn scrape_of(status: u16, body: &'static [u8]) -> Result<Scrape, ScrapeError> {
        let client = outbound::client(&Default::default()).unwrap();
        scrape(
            &client,
            serve(status, body).await,
            Mapping::shared_default(),
        )
        .await
    }

    #[tokio::test]
    async fn each_failure_is_its_own_error() {
        let gauge = b"vllm:num_requests_waiting{model_name=\"m\"} 7.0\n";
        let ok = scrape_of(200, gauge).await.unwrap();
        assert_eq!(ok.metrics.waiting, 7.0);
        assert_eq!(
            scrape_of(503, gauge).await.unwrap_err(),
            ScrapeError::Status {
                status: http::StatusCode::SERVICE_UNAVAILABLE
            }
        );
        assert_eq!(
            scrape_of(200, b"\xff\xfe").await.unwrap_err(),
            ScrapeError::NotUtf8
        );
        assert_eq!(
            scrape_of(200, b"other_metric 1\n").await.unwrap_err(),
            ScrapeError::NoMappedFamily
        );
        let client = outbound::client(&Default::default()).unwrap();
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let uri = format!("http://{closed}/metrics").parse().unwrap();
        let err = scrape(&client, uri, Mapping::shared_default())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ScrapeError::Request { reason } if reason.contains("onnect")),
            "{err:?}"
        );
    }
}
