//! Accepting on one listener within its connection limit. Beyond the limit a new
//! connection is refused the way its listener's clients understand best (`Refusal`);
//! an accept error (above all EMFILE / ENFILE: out of file descriptors) pauses the
//! loop with a doubling backoff (5 ms to 1 s) instead of spinning, and is logged at
//! most once a second with the count of the errors left out. TCP listeners and Unix
//! domain sockets (ext_proc beside Envoy) are accepted alike ([`Listen`]).

use std::future::Future;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::RateLimitedLog;
use crate::metrics::{ListenerLabels, Metrics};

/// What a listener does with a connection beyond its limit.
#[derive(Clone, Copy, Debug)]
pub enum Refusal {
    /// Accept it, write this HTTP/1.1 response, close it: an HTTP client gets an
    /// answer it can act on (retry elsewhere) at once, instead of a hang.
    Reply(&'static [u8]),
    /// Accept it and close it (TLS: there is no plaintext to answer in).
    Close,
    /// Leave it in the kernel's accept backlog until a connection ends: for a peer
    /// that holds a few long-lived connections (Envoy on ext_proc) and would otherwise
    /// reconnect in a loop.
    Hold,
}

/// A socket that accepts connections.
pub trait Listen: Send + Sync + 'static {
    type Stream: Send + 'static;
    type Addr: Send + 'static;
    fn accept(&self) -> impl Future<Output = std::io::Result<(Self::Stream, Self::Addr)>> + Send;
    /// Reads what the peer already sent, then writes `reply` without waiting (a fresh
    /// socket's send buffer is empty), so closing does not turn into a reset that could
    /// discard the reply before the peer reads it.
    fn refuse_with(stream: &Self::Stream, reply: &[u8]);
}

impl Listen for TcpListener {
    type Stream = TcpStream;
    type Addr = SocketAddr;
    fn accept(&self) -> impl Future<Output = std::io::Result<(TcpStream, SocketAddr)>> + Send {
        TcpListener::accept(self)
    }
    fn refuse_with(stream: &TcpStream, reply: &[u8]) {
        drain_then_write(
            |buf| stream.try_read(buf),
            |bytes| stream.try_write(bytes),
            reply,
        );
    }
}

impl Listen for UnixListener {
    type Stream = UnixStream;
    type Addr = tokio::net::unix::SocketAddr;
    fn accept(&self) -> impl Future<Output = std::io::Result<(UnixStream, Self::Addr)>> + Send {
        UnixListener::accept(self)
    }
    fn refuse_with(stream: &UnixStream, reply: &[u8]) {
        drain_then_write(
            |buf| stream.try_read(buf),
            |bytes| stream.try_write(bytes),
            reply,
        );
    }
}

/// [`Listen::refuse_with`] on a socket's non-blocking read and write.
fn drain_then_write(
    read: impl Fn(&mut [u8]) -> std::io::Result<usize>,
    write: impl FnOnce(&[u8]) -> std::io::Result<usize>,
    reply: &[u8],
) {
    let mut sink = [0u8; 4096];
    for _ in 0..16 {
        match read(&mut sink) {
            Ok(n) if n > 0 => continue,
            _ => break,
        }
    }
    let _ = write(reply);
}

/// A connection accepted within the limit.
pub struct Accepted<L: Listen = TcpListener> {
    pub stream: L::Stream,
    pub remote: L::Addr,
    pub permit: Permit,
}

/// One connection's place under the limit; counted in `tollgate_connections_active`
/// while it lives.
pub struct Permit {
    _permit: OwnedSemaphorePermit,
    active: Gauge<i64, AtomicI64>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.active.dec();
    }
}

/// Accepts connections on one listener.
pub struct Acceptor<L: Listen = TcpListener> {
    listener: L,
    name: String,
    permits: Arc<Semaphore>,
    max: u32,
    refusal: Refusal,
    backoff: Duration,
    errors_log: RateLimitedLog,
    refusals_log: RateLimitedLog,
    active: Gauge<i64, AtomicI64>,
    refused: Counter,
    accept_errors: Counter,
}

const FIRST_BACKOFF: Duration = Duration::from_millis(5);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

impl Acceptor<TcpListener> {
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

impl<L: Listen> Acceptor<L> {
    /// `name` labels the metrics and logs (`proxy:8080`, `admin`, `ext_proc`).
    pub fn new(
        listener: L,
        name: &str,
        max: NonZeroU32,
        refusal: Refusal,
        metrics: &Metrics,
    ) -> Self {
        let labels = ListenerLabels {
            listener: name.to_string(),
        };
        let m = &metrics.connections;
        Acceptor {
            listener,
            name: name.to_string(),
            permits: Arc::new(Semaphore::new(max.get() as usize)),
            max: max.get(),
            refusal,
            backoff: Duration::ZERO,
            errors_log: RateLimitedLog::default(),
            refusals_log: RateLimitedLog::default(),
            active: m.active.get_or_create(&labels).clone(),
            refused: m.refused.get_or_create(&labels).clone(),
            accept_errors: m.accept_errors.get_or_create(&labels).clone(),
        }
    }

    /// The next connection within the limit. Cancel-safe.
    pub async fn accept(&mut self) -> Accepted<L> {
        loop {
            let held = match self.refusal {
                Refusal::Hold => Some(
                    self.permits
                        .clone()
                        .acquire_owned()
                        .await
                        .expect("the semaphore is never closed"),
                ),
                _ => None,
            };
            let (stream, remote) = match self.listener.accept().await {
                Ok(conn) => conn,
                Err(e) => {
                    self.failed(&e).await;
                    continue;
                }
            };
            self.recovered();
            let permit = match held.map_or_else(|| self.permits.clone().try_acquire_owned(), Ok) {
                Ok(p) => p,
                Err(_) => {
                    self.refuse(stream);
                    continue;
                }
            };
            self.active.inc();
            return Accepted {
                stream,
                remote,
                permit: Permit {
                    _permit: permit,
                    active: self.active.clone(),
                },
            };
        }
    }

    /// Stops accepting (the socket closes); the returned `Drain` resolves once every
    /// accepted connection has ended.
    pub fn into_drain(self) -> Drain {
        Drain {
            permits: self.permits,
            max: self.max,
        }
    }

    async fn failed(&mut self, e: &std::io::Error) {
        self.accept_errors.inc();
        self.backoff = (self.backoff * 2).clamp(FIRST_BACKOFF, MAX_BACKOFF);
        if let Some(suppressed) = self.errors_log.record(Instant::now()) {
            tracing::warn!(
                listener = %self.name,
                error = %e,
                suppressed,
                backoff = ?self.backoff,
                "accept failed; pausing the accept loop"
            );
        }
        tokio::time::sleep(self.backoff).await;
    }

    fn recovered(&mut self) {
        if self.backoff.is_zero() {
            return;
        }
        self.backoff = Duration::ZERO;
        let suppressed = self.errors_log.take_suppressed();
        tracing::info!(listener = %self.name, suppressed, "accepting again");
    }

    fn refuse(&mut self, stream: L::Stream) {
        self.refused.inc();
        if let Some(suppressed) = self.refusals_log.record(Instant::now()) {
            tracing::warn!(
                listener = %self.name,
                max_connections = self.max,
                suppressed,
                "connection limit reached; refusing new connections"
            );
        }
        if let Refusal::Reply(bytes) = self.refusal {
            L::refuse_with(&stream, bytes);
        }
    }
}

/// Waits for the connections of a listener that stopped accepting.
pub struct Drain {
    permits: Arc<Semaphore>,
    max: u32,
}

impl Drain {
    /// Resolves once every connection accepted by the listener has ended.
    pub async fn wait(self) {
        let _ = self.permits.acquire_many(self.max).await;
    }
}

#[cfg(test)]
mod tests;
