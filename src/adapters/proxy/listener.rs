//! Accepting connections on one bind: TCP with TCP_NODELAY, optional TLS (rustls, ALPN
//! h2 and http/1.1), HTTP/1.1 and h2c on the same port, the connection limit and
//! timeouts of `limits.connections` (see `crate::listen`), and a graceful drain on
//! shutdown.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::forward::Client;
use super::handler::{Handler, RouteSource};
use super::upstream::Upstreams;
use super::ProxyBody;
use crate::config::{Bind, ServerTls, UpstreamConfig};
use crate::listen::{
    self, Accepted, Acceptor, ConnWatch, Connection, Refusal, Timeouts, Tracked, Watched,
};
use crate::metrics::{Metrics, TimeoutLabels};
use crate::pipeline::PipelineStore;

/// A bound proxy port, ready to serve.
pub struct BoundListener {
    listener: TcpListener,
    port: u16,
    tls: Option<TlsAcceptor>,
    routes: RouteSource,
}

impl BoundListener {
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], self.port)))
    }
}

/// Binds a proxy port (and loads its TLS certificate).
pub async fn bind(bind: &Bind) -> anyhow::Result<BoundListener> {
    let addr = format!("{}:{}", bind.address, bind.port);
    let listener = TcpListener::bind(&addr)
        .await
        .with_context(|| format!("binding proxy address {addr}"))?;
    let tls = match &bind.tls {
        Some(t) => Some(acceptor(t).with_context(|| format!("TLS for bind {addr}"))?),
        None => None,
    };
    Ok(BoundListener {
        listener,
        port: bind.port,
        tls,
        routes: RouteSource::Bind(bind.port),
    })
}

/// Binds tollgate's MCP listener under xDS (`xds.mcpAddress`): plaintext, on the
/// loopback beside Envoy by default, serving the `mcp` route Envoy names.
pub async fn bind_mcp(address: &str) -> anyhow::Result<BoundListener> {
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("binding the MCP listener address {address} (xds.mcpAddress)"))?;
    let port = listener.local_addr()?.port();
    Ok(BoundListener {
        listener,
        port,
        tls: None,
        routes: RouteSource::EnvoyMcp,
    })
}

/// The reply to a connection beyond `limits.connections.maxConnections` (plaintext
/// binds): an OpenAI-style error, so SDKs show it as an overload and retry.
const OVERLOADED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\nretry-after: 1\r\nconnection: close\r\n\
content-length: 88\r\n\r\n\
{\"error\":{\"message\":\"too many connections; retry later\",\"type\":\"overloaded\",\"code\":503}}";

/// Accepts and serves connections until `shutdown`, then lets open connections finish
/// for up to `grace`. The connection bounds are `limits.connections` as configured at
/// start.
pub async fn serve(
    bound: BoundListener,
    store: Arc<PipelineStore>,
    upstream: UpstreamConfig,
    shutdown: impl std::future::Future<Output = ()>,
    grace: Duration,
) -> anyhow::Result<()> {
    let (metrics, limits) = {
        let pipeline = store.load();
        let limits = pipeline.config().limits.connections.clone();
        (pipeline.metrics.clone(), limits)
    };
    let name = match bound.routes {
        RouteSource::Bind(port) => format!("proxy:{port}"),
        RouteSource::EnvoyMcp => format!("mcp:{}", bound.port),
    };
    let refusal = match bound.tls {
        Some(_) => Refusal::Close,
        None => Refusal::Reply(OVERLOADED),
    };
    let mut acceptor = Acceptor::new(
        bound.listener,
        &name,
        limits.max_connections,
        refusal,
        &metrics,
    );
    let stalls = metrics
        .connections
        .timeouts
        .get_or_create(&TimeoutLabels {
            listener: name.clone(),
            timeout: "body_progress",
        })
        .clone();
    let handler = Handler::new(
        store,
        Upstreams::new(&upstream),
        bound.routes,
        limits.body_progress_timeout.get(),
        stalls,
    );
    let server = Arc::new(Server {
        handler: Arc::new(handler),
        builder: http_builder(),
        timeouts: Timeouts::from(&limits),
        tls: bound.tls,
        name,
        metrics,
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = acceptor.accept() => accepted,
            _ = &mut shutdown => break,
        };
        tokio::spawn(server.clone().connection(accepted, stop_rx.clone()));
    }
    let drain = acceptor.into_drain();
    let _ = stop_tx.send(true);
    tokio::select! {
        _ = drain.wait() => {}
        _ = tokio::time::sleep(grace) => {
            tracing::warn!("proxy connections still open after the grace period; closing them");
        }
    }
    Ok(())
}

/// HTTP/1.1 and h2c on one port. Header and idle timeouts are the watchdog's (see
/// `listen::watchdog`), so hyper's own header timer is off; HTTP/2 pings find peers
/// that vanished.
fn http_builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().header_read_timeout(None);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20));
    builder
}

/// What every connection of one bind shares.
struct Server {
    handler: Arc<Handler>,
    builder: auto::Builder<TokioExecutor>,
    timeouts: Timeouts,
    tls: Option<TlsAcceptor>,
    name: String,
    metrics: Arc<Metrics>,
}

impl Server {
    /// HTTP over `io`, boxed outside the connection's future (see `listen::boxed`).
    fn http<I, S>(&self, io: I, service: S) -> Pin<Box<dyn Connection>>
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
        S: hyper::service::Service<
                http::Request<Incoming>,
                Response = http::Response<Tracked<ProxyBody>>,
                Error = std::convert::Infallible,
            > + Send
            + 'static,
        S::Future: Send + 'static,
    {
        listen::boxed(
            self.builder
                .serve_connection_with_upgrades(io, service)
                .into_owned(),
        )
    }

    /// Serves one connection (TLS first when the bind has it) under its watchdog.
    async fn connection(self: Arc<Self>, accepted: Accepted, stop: watch::Receiver<bool>) {
        let Accepted {
            stream,
            remote,
            permit: _permit,
        } = accepted;
        let _ = stream.set_nodelay(true);
        let watch = ConnWatch::new();
        let io = Watched::new(stream, watch.clone());
        let handler = self.handler.clone();
        let requests = watch.clone();
        let client = Arc::new(Client::new(remote));
        let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
            let guard = requests.begin(req.version() == http::Version::HTTP_2);
            let (handler, client) = (handler.clone(), client.clone());
            // Boxed: hyper moves the service future, and the handler's is large.
            Box::pin(async move {
                let response = handler.handle(req, &client).await;
                Ok::<_, std::convert::Infallible>(response.map(|b| Tracked::new(b, guard)))
            })
        });
        let (t, name, m) = (&self.timeouts, self.name.as_str(), &*self.metrics);
        let Some(acceptor) = &self.tls else {
            let conn = self.http(TokioIo::new(io), service);
            return listen::drive(conn, &watch, t, stop, name, m).await;
        };
        // The handshake is bounded like a request's headers: `firstByteTimeout` until
        // its first byte, `headerReadTimeout` from there.
        let tls = tokio::select! {
            tls = acceptor.accept(io) => match tls {
                Ok(tls) => tls,
                Err(e) => return tracing::debug!(error = %e, "TLS handshake failed"),
            },
            why = watch.expired(t) => return m.connections.timed_out(name, why.label()),
        };
        let conn = self.http(TokioIo::new(tls), service);
        listen::drive(conn, &watch, t, stop, name, m).await;
    }
}

/// A rustls acceptor for a server certificate, offering h2 and http/1.1.
fn acceptor(tls: &ServerTls) -> anyhow::Result<TlsAcceptor> {
    let certs = rustls_pemfile::certs(&mut std::io::BufReader::new(
        std::fs::File::open(&tls.cert_file)
            .with_context(|| format!("opening {}", tls.cert_file))?,
    ))
    .collect::<Result<Vec<_>, _>>()
    .with_context(|| format!("reading certificates from {}", tls.cert_file))?;
    let key = rustls_pemfile::private_key(&mut std::io::BufReader::new(
        std::fs::File::open(&tls.key_file).with_context(|| format!("opening {}", tls.key_file))?,
    ))
    .with_context(|| format!("reading the private key from {}", tls.key_file))?
    .with_context(|| format!("no private key in {}", tls.key_file))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    /// The canned 503's `content-length` is its body's, and the body an OpenAI error.
    #[test]
    fn the_overload_reply_is_well_formed() {
        let body = crate::listen::overload_reply_body(super::OVERLOADED);
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"]["type"], "overloaded");
        assert_eq!(json["error"]["code"], 503);
    }
}
