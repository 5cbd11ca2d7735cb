//! Pooled HTTP/1.1 connections to plain (non-TLS) upstreams, the proxy's common case.
//!
//! hyper-util's pooled client, which the proxy keeps for TLS and HTTP/2 upstreams, does
//! per request what this pool does not need: it clones its connector, races a pool
//! checkout against a lazy connect, spawns a task that returns the connection to the
//! pool once it is ready again, and stores connection info in the response. Here a
//! request pops the most recently used connection of its host, and the response body
//! puts it back when it ends ([`UpstreamBody`]); the next request waits for it to be
//! ready, which it is by the time its body has ended.
//!
//! A request that could not be sent on a pooled connection (the upstream closed it
//! while it sat idle) is sent again on a fresh one. Idle connections are dropped after
//! `upstream.idleTimeout` (checked when the host is next used, and by a sweep every
//! idle timeout) and beyond `upstream.maxIdlePerHost`.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

use super::ProxyBody;

/// Why a request found no answer.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("connecting failed: {0}")]
    Connect(std::io::Error),
    #[error("connecting timed out after {0:?}")]
    ConnectTimeout(Duration),
    #[error("the HTTP/1.1 handshake failed: {0}")]
    Handshake(hyper::Error),
    #[error(transparent)]
    Send(hyper::Error),
}

/// The pool: idle connections by upstream host (`host:port`).
#[derive(Clone)]
pub struct H1Pool {
    inner: Arc<Inner>,
}

struct Inner {
    idle: Mutex<HashMap<String, Vec<Idle>>>,
    connect_timeout: Duration,
    idle_timeout: Duration,
    max_idle_per_host: usize,
}

struct Idle {
    sender: SendRequest<ProxyBody>,
    since: Instant,
}

impl H1Pool {
    /// A pool; its idle sweep runs while the pool lives (on the current runtime).
    pub fn new(
        connect_timeout: Duration,
        idle_timeout: Duration,
        max_idle_per_host: usize,
    ) -> Self {
        let inner = Arc::new(Inner {
            idle: Mutex::new(HashMap::new()),
            connect_timeout,
            idle_timeout,
            max_idle_per_host,
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(sweep(Arc::downgrade(&inner), idle_timeout));
        }
        H1Pool { inner }
    }

    /// Sends `req` (origin-form URI, `host` header set) to `host`.
    pub async fn send(
        &self,
        host: &str,
        mut req: Request<ProxyBody>,
    ) -> Result<Response<UpstreamBody>, PoolError> {
        while let Some(mut sender) = self.inner.checkout(host) {
            if sender.ready().await.is_err() {
                continue;
            }
            match sender.try_send_request(req).await {
                Ok(response) => return Ok(self.inner.pooled(host, sender, response)),
                Err(mut e) => match e.take_message() {
                    // Never sent: the connection was gone. Another one may do.
                    Some(unsent) => req = unsent,
                    None => return Err(PoolError::Send(e.into_error())),
                },
            }
        }
        let mut sender = self.inner.connect(host).await?;
        let response = sender.send_request(req).await.map_err(PoolError::Send)?;
        Ok(self.inner.pooled(host, sender, response))
    }
}

impl Inner {
    /// The most recently used idle connection of `host` that is still open and fresh.
    fn checkout(&self, host: &str) -> Option<SendRequest<ProxyBody>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.get_mut(host)?;
        while let Some(entry) = list.pop() {
            if !entry.sender.is_closed() && entry.since.elapsed() < self.idle_timeout {
                return Some(entry.sender);
            }
        }
        None
    }

    fn put(&self, host: &str, sender: SendRequest<ProxyBody>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = match idle.get_mut(host) {
            Some(list) => list,
            None => idle.entry(host.to_string()).or_default(),
        };
        if list.len() < self.max_idle_per_host {
            list.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    async fn connect(&self, host: &str) -> Result<SendRequest<ProxyBody>, PoolError> {
        let stream =
            tokio::time::timeout(self.connect_timeout, tokio::net::TcpStream::connect(host))
                .await
                .map_err(|_| PoolError::ConnectTimeout(self.connect_timeout))?
                .map_err(PoolError::Connect)?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(PoolError::Handshake)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }

    /// The response, its body returning `sender` to the pool when it ends.
    fn pooled(
        self: &Arc<Self>,
        host: &str,
        sender: SendRequest<ProxyBody>,
        response: Response<Incoming>,
    ) -> Response<UpstreamBody> {
        let back = Back {
            pool: self.clone(),
            host: host.to_string(),
            sender,
        };
        response.map(|inner| UpstreamBody {
            inner,
            back: Some(back),
            in_flight: None,
        })
    }
}

/// Drops idle connections past the idle timeout, while the pool lives.
async fn sweep(pool: Weak<Inner>, every: Duration) {
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(100)));
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(pool) = pool.upgrade() else { return };
        let mut idle = pool.idle.lock().unwrap_or_else(|e| e.into_inner());
        for list in idle.values_mut() {
            list.retain(|e| !e.sender.is_closed() && e.since.elapsed() < pool.idle_timeout);
        }
        idle.retain(|_, list| !list.is_empty());
    }
}

/// A connection on its way back to the pool.
struct Back {
    pool: Arc<Inner>,
    host: String,
    sender: SendRequest<ProxyBody>,
}

/// An upstream response body. From a pooled connection, its end puts the connection
/// back; a body dropped before its end closes it.
pub struct UpstreamBody {
    inner: Incoming,
    back: Option<Back>,
    /// The request counts as in flight on its backend until this body is dropped.
    in_flight: Option<super::balance::InFlight>,
}

impl From<Incoming> for UpstreamBody {
    fn from(inner: Incoming) -> Self {
        UpstreamBody {
            inner,
            back: None,
            in_flight: None,
        }
    }
}

impl UpstreamBody {
    /// Keeps the request in flight on its backend while this body lives.
    pub fn hold(&mut self, in_flight: super::balance::InFlight) {
        self.in_flight = Some(in_flight);
    }

    fn give_back(&mut self) {
        if let Some(back) = self.back.take() {
            back.pool.put(&back.host, back.sender);
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.give_back(),
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => self.give_back(),
            Poll::Ready(Some(Err(_))) => self.back = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // A body without bytes (204, 304, HEAD) may never be polled.
        if self.inner.is_end_stream() {
            self.give_back();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// An upstream answering every request on a connection with `body`, closing the
    /// connection after `per_conn` answers; it counts the connections it accepted.
    async fn upstream(body: &'static str, per_conn: usize) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (mut sock, _) = listener.accept().await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    for _ in 0..per_conn {
                        let mut seen = Vec::new();
                        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                            let n = sock.read(&mut buf).await.unwrap_or(0);
                            if n == 0 {
                                return;
                            }
                            seen.extend_from_slice(&buf[..n]);
                        }
                        let reply = format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if sock.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (addr, accepted)
    }

    fn get(host: &str) -> Request<ProxyBody> {
        Request::builder()
            .uri("/x")
            .header("host", host)
            .body(super::super::body::full(Bytes::new()))
            .unwrap()
    }

    async fn read(resp: Response<UpstreamBody>) -> String {
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    fn pool() -> H1Pool {
        H1Pool::new(Duration::from_secs(1), Duration::from_secs(30), 4)
    }

    #[tokio::test]
    async fn a_connection_whose_body_ended_serves_the_next_request() {
        let (addr, accepted) = upstream("hello", 100).await;
        let pool = pool();
        for _ in 0..5 {
            assert_eq!(
                read(pool.send(&addr, get(&addr)).await.unwrap()).await,
                "hello"
            );
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_body_dropped_before_its_end_does_not_go_back() {
        let (addr, accepted) = upstream("hello", 100).await;
        let pool = pool();
        drop(pool.send(&addr, get(&addr)).await.unwrap());
        assert_eq!(
            read(pool.send(&addr, get(&addr)).await.unwrap()).await,
            "hello"
        );
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_connection_the_upstream_closed_while_idle_is_replaced() {
        // One answer per connection: the pooled connection is closed by the time the
        // second request comes.
        let (addr, accepted) = upstream("hello", 1).await;
        let pool = pool();
        assert_eq!(
            read(pool.send(&addr, get(&addr)).await.unwrap()).await,
            "hello"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            read(pool.send(&addr, get(&addr)).await.unwrap()).await,
            "hello"
        );
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn idle_connections_are_bounded_per_host() {
        let (addr, accepted) = upstream("hello", 100).await;
        let pool = H1Pool::new(Duration::from_secs(1), Duration::from_secs(30), 1);
        // Two at once: two connections; only one stays.
        let (a, b) = tokio::join!(pool.send(&addr, get(&addr)), pool.send(&addr, get(&addr)));
        read(a.unwrap()).await;
        read(b.unwrap()).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        let idle = pool
            .inner
            .idle
            .lock()
            .unwrap()
            .get(&addr)
            .map_or(0, Vec::len);
        assert_eq!(idle, 1);
    }

    #[tokio::test]
    async fn a_dead_upstream_is_a_connect_error() {
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().to_string()
        };
        let Err(err) = pool().send(&addr, get(&addr)).await else {
            panic!("a closed port answered");
        };
        assert!(matches!(err, PoolError::Connect(_)), "{err:?}");
    }
}
