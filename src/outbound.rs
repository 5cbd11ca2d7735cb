//! Outbound HTTP: the one place the hyper clients for the calls tollgate makes itself are
//! built — proxied upstreams, guard webhooks and moderation, endpoint metrics scrapes.
//!
//! It owns the rustls client config (the built-in web roots or a CA file, and a fixed
//! SNI), the TCP connector (TCP_NODELAY, connect timeout), the connection pool (idle
//! timeout, idle connections per host), the HTTP/1.1-or-HTTP/2 choice and the Tokio
//! timers; and [`RedactedUrl`] and [`error_chain`], which keep credentials that ride in
//! URLs out of error messages and logs.
//!
//! A client is a connection pool: each caller builds the clients it needs once and keeps
//! them (the proxy one per distinct TLS / protocol setting, a guard one per service).

mod error;
mod tls;

use std::time::Duration;

use hyper_rustls::{FixedServerNameResolver, HttpsConnector};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::pki_types::ServerName;

pub use error::{error_chain, OutboundError, RedactedUrl};
pub use tls::{client_config, TlsOptions};

/// A pooled client for `http://` and `https://` URLs, sending bodies of type `B`.
pub type HttpClient<B> = Client<HttpsConnector<HttpConnector>, B>;

/// The HTTP version a client speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// HTTP/1.1 (over TLS, offered by ALPN).
    #[default]
    Http1,
    /// HTTP/2 only: prior knowledge over plaintext, ALPN over TLS.
    Http2,
}

/// How to build one client. The defaults are hyper's: no connect timeout, idle
/// connections kept 90 s, no limit on idle connections per host.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ClientOptions {
    /// Trust and server name for `https://` URLs; `http://` URLs ignore it.
    pub tls: TlsOptions,
    pub protocol: Protocol,
    /// Time allowed to open the TCP connection.
    pub connect_timeout: Option<Duration>,
    /// How long an idle pooled connection is kept.
    pub idle_timeout: Option<Duration>,
    /// Most idle connections kept per host.
    pub max_idle_per_host: Option<usize>,
}

/// Builds a client. Needs no runtime; the first request does.
pub fn client<B>(options: &ClientOptions) -> Result<HttpClient<B>, OutboundError>
where
    B: http_body::Body + Send,
    B::Data: Send,
{
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.set_connect_timeout(options.connect_timeout);
    http.enforce_http(false);
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(client_config(&options.tls)?)
        .https_or_http();
    let builder = match &options.tls.sni {
        Some(sni) => {
            let name = ServerName::try_from(sni.clone()).map_err(|e| OutboundError::Sni {
                name: sni.clone(),
                error: e,
            })?;
            builder.with_server_name_resolver(FixedServerNameResolver::new(name))
        }
        None => builder,
    };
    let connector = match options.protocol {
        Protocol::Http1 => builder.enable_http1().wrap_connector(http),
        Protocol::Http2 => builder.enable_http2().wrap_connector(http),
    };
    let mut client = Client::builder(TokioExecutor::new());
    client
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .http2_only(options.protocol == Protocol::Http2);
    if let Some(idle) = options.idle_timeout {
        client.pool_idle_timeout(idle);
    }
    if let Some(max) = options.max_idle_per_host {
        client.pool_max_idle_per_host(max);
    }
    Ok(client.build(connector))
}

#[cfg(test)]
mod tests;
