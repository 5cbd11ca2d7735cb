//! Upstream connections: pooled hyper clients (TCP_NODELAY, connect timeout, idle
//! timeout), plaintext or rustls, HTTP/1.1 or HTTP/2, shared across config reloads, and
//! the mapping of upstream failures to 502 / 503 / 504.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_rustls::{ConfigBuilderExt, FixedServerNameResolver, HttpsConnector};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::pki_types::ServerName;

use super::client_body::ClientBodyError;
use super::ProxyBody;
use crate::config::{Backend, BackendTls, UpstreamConfig};
use crate::pipeline::LocalReply;

type HttpClient = Client<HttpsConnector<HttpConnector>, ProxyBody>;

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
    #[error("upstream {host} TLS setup failed: {reason}")]
    Tls { host: String, reason: String },
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

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct ClientKey {
    tls: Option<(Option<String>, Option<String>)>,
    http2: bool,
}

/// The pooled clients, one per distinct TLS / protocol setting.
pub struct Upstreams {
    config: UpstreamConfig,
    clients: Mutex<HashMap<ClientKey, HttpClient>>,
}

impl Upstreams {
    pub fn new(config: &UpstreamConfig) -> Self {
        Upstreams {
            config: config.clone(),
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// Sends `req` (whose URI path is set) to `backend`, waiting up to `timeout` for the
    /// response headers.
    pub async fn send(
        &self,
        backend: &Backend,
        mut req: Request<ProxyBody>,
        timeout: Option<Duration>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let host = backend.host.clone();
        let client = self.client(backend)?;
        let scheme = if backend.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let path = req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        *req.uri_mut() =
            format!("{scheme}://{host}{path}")
                .parse()
                .map_err(|e| UpstreamError::Broken {
                    host: host.clone(),
                    reason: format!("bad upstream URI: {e}"),
                })?;
        if backend.http2 {
            *req.version_mut() = http::Version::HTTP_2;
            req.headers_mut().remove(http::header::HOST);
        } else {
            *req.version_mut() = http::Version::HTTP_11;
        }
        let after = timeout.unwrap_or(self.config.request_timeout.get());
        match tokio::time::timeout(after, client.request(req)).await {
            Err(_) => Err(UpstreamError::Timeout { host, after }),
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => Err(match ClientBodyError::find(&e) {
                Some(client) => UpstreamError::ClientBody(client.clone()),
                None if e.is_connect() => UpstreamError::Connect {
                    host,
                    reason: error_chain(&e),
                },
                None => UpstreamError::Broken {
                    host,
                    reason: error_chain(&e),
                },
            }),
        }
    }

    fn client(&self, backend: &Backend) -> Result<HttpClient, UpstreamError> {
        let key = ClientKey {
            tls: backend
                .tls
                .as_ref()
                .map(|t| (t.sni.clone(), t.ca_file.clone())),
            http2: backend.http2,
        };
        let mut clients = self.clients.lock().expect("client map lock");
        if let Some(c) = clients.get(&key) {
            return Ok(c.clone());
        }
        let client = self.build(backend).map_err(|reason| UpstreamError::Tls {
            host: backend.host.clone(),
            reason,
        })?;
        clients.insert(key, client.clone());
        Ok(client)
    }

    fn build(&self, backend: &Backend) -> Result<HttpClient, String> {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.set_connect_timeout(Some(self.config.connect_timeout.get()));
        http.enforce_http(false);
        let tls_config = match &backend.tls {
            Some(t) => client_tls(t)?,
            None => rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_webpki_roots()
            .with_no_client_auth(),
        };
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config)
            .https_or_http();
        let builder = match backend.tls.as_ref().and_then(|t| t.sni.as_ref()) {
            Some(sni) => {
                let name = ServerName::try_from(sni.clone())
                    .map_err(|e| format!("invalid sni {sni:?}: {e}"))?;
                builder.with_server_name_resolver(FixedServerNameResolver::new(name))
            }
            None => builder,
        };
        let connector = if backend.http2 {
            builder.enable_http2().wrap_connector(http)
        } else {
            builder.enable_http1().wrap_connector(http)
        };
        let mut client = Client::builder(TokioExecutor::new());
        client
            .pool_idle_timeout(self.config.idle_timeout.get())
            .pool_max_idle_per_host(self.config.max_idle_per_host)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .http2_only(backend.http2);
        Ok(client.build(connector))
    }
}

fn client_tls(tls: &BackendTls) -> Result<rustls::ClientConfig, String> {
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?;
    let config = match &tls.ca_file {
        None => builder.with_webpki_roots().with_no_client_auth(),
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            let file = std::fs::File::open(path).map_err(|e| format!("opening {path}: {e}"))?;
            for cert in rustls_pemfile::certs(&mut std::io::BufReader::new(file)) {
                let cert = cert.map_err(|e| format!("reading {path}: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("bad CA certificate in {path}: {e}"))?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    Ok(config)
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
