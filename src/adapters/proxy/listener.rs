//! Accepting connections on one bind: TCP with TCP_NODELAY, optional TLS (rustls, ALPN
//! h2 and http/1.1), HTTP/1.1 and h2c on the same port, and a graceful drain on shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::handler::Handler;
use super::upstream::Upstreams;
use crate::config::{Bind, ServerTls, UpstreamConfig};
use crate::pipeline::PipelineStore;

/// A bound proxy port, ready to serve.
pub struct BoundListener {
    listener: TcpListener,
    port: u16,
    tls: Option<TlsAcceptor>,
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
    })
}

/// Accepts and serves connections until `shutdown`, then lets open connections finish
/// for up to `grace`.
pub async fn serve(
    bound: BoundListener,
    store: Arc<PipelineStore>,
    upstream: UpstreamConfig,
    shutdown: impl std::future::Future<Output = ()>,
    grace: Duration,
) -> anyhow::Result<()> {
    let handler = Arc::new(Handler::new(store, Upstreams::new(&upstream), bound.port));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30));
    builder
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .keep_alive_interval(Duration::from_secs(30));
    let builder = Arc::new(builder);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = bound.listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "proxy accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let service = hyper::service::service_fn(move |req| {
            let handler = handler.clone();
            async move { Ok::<_, std::convert::Infallible>(handler.handle(req, remote).await) }
        });
        match &bound.tls {
            None => {
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                let conn = graceful.watch(conn.into_owned());
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "proxy connection ended with an error");
                    }
                });
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let builder = builder.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let tls = match tokio::time::timeout(
                        Duration::from_secs(10),
                        acceptor.accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    };
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
                    if let Err(e) = watcher.watch(conn.into_owned()).await {
                        tracing::debug!(error = %e, "proxy TLS connection ended with an error");
                    }
                });
            }
        }
    }
    drop(bound.listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(grace) => {
            tracing::warn!("proxy connections still open after the grace period; closing them");
        }
    }
    Ok(())
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
