//! Upstream connections, shared across config reloads: plain HTTP/1.1 upstreams through
//! the proxy's own pool ([`H1Pool`]), the others through one pooled client (built by
//! [`crate::outbound`]) per distinct TLS / protocol setting; and the mapping of
//! upstream failures to 502 / 503 / 504.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, StatusCode, Uri};

use super::balance::Health;
use super::client_body::ClientBodyError;
use super::h1_pool::{H1Pool, PoolError, UpstreamBody};
use super::ProxyBody;
use crate::config::{Backend, UpstreamConfig};
use crate::outbound::{self, error_chain, ClientOptions, OutboundError, Protocol, TlsOptions};
use crate::pipeline::LocalReply;

type HttpClient = outbound::HttpClient<ProxyBody>;

/// Why an upstream call failed. The messages name the upstream for the log; the
/// client's reply never does (`reply`).
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream {host} unreachable: {reason}")]
    Connect { host: String, reason: String },
    #[error("upstream {host} did not answer within {after:?}")]
    Timeout { host: String, after: Duration },
    #[error("upstream {host} failed: {reason}")]
    Broken { host: String, reason: String },
    #[error("upstream {host} TLS setup failed: {error}")]
    Tls { host: String, error: OutboundError },
    /// The call failed because the client's request body did: not the upstream's fault.
    #[error(transparent)]
    ClientBody(ClientBodyError),
}

impl UpstreamError {
    /// The one place an upstream failure becomes a client reply; `None` when the client
    /// went away. The reply says what failed, never where (no address, no reason that
    /// could carry one): those stay in the log.
    pub fn reply(&self) -> Option<LocalReply> {
        let (status, kind, message) = match self {
            UpstreamError::Connect { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "upstream_unavailable",
                "the upstream is unavailable".to_string(),
            ),
            UpstreamError::Timeout { after, .. } => (
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_timeout",
                format!("the upstream did not answer within {after:?}"),
            ),
            UpstreamError::Broken { .. } => (
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                "the upstream failed to answer".to_string(),
            ),
            UpstreamError::Tls { .. } => (
                StatusCode::BAD_GATEWAY,
                "upstream_tls_error",
                "the TLS setup for the upstream failed".to_string(),
            ),
            UpstreamError::ClientBody(e) => return e.reply(),
        };
        Some(LocalReply::error(status, kind, &message))
    }
}

/// The request's URI at `backend`: its scheme and host, the request's path and query
/// (shared, not copied).
fn upstream_uri(backend: &Backend, uri: &Uri) -> Result<Uri, http::Error> {
    let scheme = if backend.tls.is_some() {
        Scheme::HTTPS
    } else {
        Scheme::HTTP
    };
    let path = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    Uri::builder()
        .scheme(scheme)
        .authority(Authority::try_from(backend.host.as_str())?)
        .path_and_query(path)
        .build()
}

/// A request for the HTTP/1.1 pool: origin-form URI, HTTP/1.1, a `host` header (the
/// client's, else the backend's).
fn origin_form(backend: &Backend, mut req: Request<ProxyBody>) -> Request<ProxyBody> {
    if req.uri().scheme().is_some() || req.uri().authority().is_some() {
        let path = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        *req.uri_mut() = Uri::from(path);
    }
    *req.version_mut() = http::Version::HTTP_11;
    if !req.headers().contains_key(http::header::HOST) {
        if let Ok(host) = http::HeaderValue::from_str(&backend.host) {
            req.headers_mut().insert(http::header::HOST, host);
        }
    }
    req
}

/// A failure after the request went to the upstream: the client's body's fault when
/// its error is in the chain, else the upstream's.
fn sent_error(e: &(dyn std::error::Error + 'static), host: impl Fn() -> String) -> UpstreamError {
    match ClientBodyError::find(e) {
        Some(client) => UpstreamError::ClientBody(client.clone()),
        None => UpstreamError::Broken {
            host: host(),
            reason: error_chain(e),
        },
    }
}

/// The pooled clients: plain HTTP/1.1, plain HTTP/2, one per TLS setting.
pub struct Upstreams {
    config: UpstreamConfig,
    h1: H1Pool,
    /// The client of HTTP/2 backends without TLS settings.
    plain_h2: OnceLock<HttpClient>,
    clients: Mutex<HashMap<ClientOptions, HttpClient>>,
    /// The backends' health, for picking among a route's backends.
    health: Health,
}

impl Upstreams {
    pub fn new(config: &UpstreamConfig) -> Self {
        Upstreams {
            config: config.clone(),
            h1: H1Pool::new(
                config.connect_timeout.get(),
                config.idle_timeout.get(),
                config.max_idle_per_host,
            ),
            plain_h2: OnceLock::new(),
            clients: Mutex::new(HashMap::new()),
            health: Health::new(&config.outlier_detection),
        }
    }

    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Sends `req` (whose URI path is set) to `backend`, waiting up to `timeout` for the
    /// response headers.
    pub async fn send(
        &self,
        backend: &Backend,
        req: Request<ProxyBody>,
        timeout: Option<Duration>,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        let after = timeout.unwrap_or(self.config.request_timeout.get());
        let host = || backend.host.clone();
        if backend.tls.is_none() && !backend.http2 {
            let req = origin_form(backend, req);
            return match tokio::time::timeout(after, self.h1.send(&backend.host, req)).await {
                Err(_) => Err(UpstreamError::Timeout {
                    host: host(),
                    after,
                }),
                Ok(Ok(resp)) => Ok(resp),
                Ok(Err(PoolError::Send(e))) => Err(sent_error(&e, host)),
                Ok(Err(e)) => Err(UpstreamError::Connect {
                    host: host(),
                    reason: error_chain(&e),
                }),
            };
        }
        self.send_pooled(backend, req, after).await
    }

    /// Sends through hyper-util's pooled client (TLS or HTTP/2 upstreams).
    async fn send_pooled(
        &self,
        backend: &Backend,
        mut req: Request<ProxyBody>,
        after: Duration,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        let client = self.client(backend)?;
        *req.uri_mut() = upstream_uri(backend, req.uri()).map_err(|e| UpstreamError::Broken {
            host: backend.host.clone(),
            reason: format!("bad upstream URI: {e}"),
        })?;
        if backend.http2 {
            *req.version_mut() = http::Version::HTTP_2;
            req.headers_mut().remove(http::header::HOST);
        } else {
            *req.version_mut() = http::Version::HTTP_11;
        }
        let host = || backend.host.clone();
        match tokio::time::timeout(after, client.request(req)).await {
            Err(_) => Err(UpstreamError::Timeout {
                host: host(),
                after,
            }),
            Ok(Ok(resp)) => Ok(resp.map(UpstreamBody::from)),
            Ok(Err(e)) if e.is_connect() && ClientBodyError::find(&e).is_none() => {
                Err(UpstreamError::Connect {
                    host: host(),
                    reason: error_chain(&e),
                })
            }
            Ok(Err(e)) => Err(sent_error(&e, host)),
        }
    }

    fn client(&self, backend: &Backend) -> Result<HttpClient, UpstreamError> {
        // Backends without TLS settings share one client per protocol, found without
        // building and hashing options on every request.
        if backend.tls.is_none() {
            if let Some(c) = self.plain_h2.get() {
                return Ok(c.clone());
            }
            let client = self.build(backend)?;
            return Ok(self.plain_h2.get_or_init(|| client).clone());
        }
        self.build(backend)
    }

    /// The client for `backend`'s TLS and protocol settings, made on first use.
    fn build(&self, backend: &Backend) -> Result<HttpClient, UpstreamError> {
        let options = ClientOptions {
            tls: backend
                .tls
                .as_ref()
                .map(|t| TlsOptions {
                    ca_file: t.ca_file.as_ref().map(Into::into),
                    sni: t.sni.clone(),
                    insecure: t.insecure,
                    client_cert: t
                        .cert_file
                        .as_ref()
                        .zip(t.key_file.as_ref())
                        .map(|(c, k)| (c.into(), k.into())),
                })
                .unwrap_or_default(),
            protocol: if backend.http2 {
                Protocol::Http2
            } else {
                Protocol::Http1
            },
            connect_timeout: Some(self.config.connect_timeout.get()),
            idle_timeout: Some(self.config.idle_timeout.get()),
            max_idle_per_host: Some(self.config.max_idle_per_host),
        };
        let mut clients = self.clients.lock().expect("client map lock");
        if let Some(c) = clients.get(&options) {
            return Ok(c.clone());
        }
        let client = outbound::client(&options).map_err(|error| UpstreamError::Tls {
            host: backend.host.clone(),
            error,
        })?;
        clients.insert(options, client.clone());
        Ok(client)
    }
}
