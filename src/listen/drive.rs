//! Driving one hyper server connection: until it ends, or its watchdog expires it
//! (closed at once when it never completed a request's headers in time; shut down
//! gracefully when idle), or the server shuts down (graceful: in-flight requests
//! finish, HTTP/2 gets a GOAWAY).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::task::AtomicWaker;
use http_body::{Body, Frame, SizeHint};
use hyper_util::server::graceful::GracefulConnection;
use tokio::sync::watch;

use super::{ConnWatch, Expiry, RequestGuard, Timeouts};
use crate::metrics::Metrics;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A hyper server connection, its type erased.
pub trait Connection: Future<Output = Result<(), BoxError>> + Send {
    /// Starts a graceful shutdown.
    fn shutdown(self: Pin<&mut Self>);
}

impl<C> Connection for C
where
    C: GracefulConnection<Error = BoxError> + Send,
{
    fn shutdown(self: Pin<&mut Self>) {
        GracefulConnection::graceful_shutdown(self)
    }
}

/// A connection boxed outside any async block: the hyper bounds are proven here, with
/// concrete lifetimes (proving them inside a spawned future trips rustc's "`From` is
/// not general enough" on the boxed error types).
pub fn boxed<C: Connection + 'static>(conn: C) -> Pin<Box<dyn Connection>> {
    Box::pin(conn)
}

/// Serves `conn` to its end under `watch` and `shutdown` (which turns true to stop).
///
/// The watchdog and the shutdown signal wait in a task of their own and reach the
/// connection through [`Signals`]: the connection's task wakes on every read and write,
/// and each wake-up then polls the connection alone, not a timer and two notifications
/// beside it.
pub async fn drive(
    mut conn: Pin<Box<dyn Connection>>,
    watch: &Arc<ConnWatch>,
    timeouts: &Timeouts,
    shutdown: watch::Receiver<bool>,
    listener: &str,
    metrics: &Metrics,
) {
    let signals = Arc::new(Signals::default());
    let side = tokio::spawn(wait_for_signals(
        watch.clone(),
        *timeouts,
        shutdown,
        signals.clone(),
    ));
    let _side = AbortOnDrop(side);
    let mut stopping = false;
    std::future::poll_fn(|cx| {
        signals.waker.register(cx.waker());
        let raised = signals.raised.swap(0, Ordering::AcqRel);
        if raised & SHUTDOWN != 0 && !stopping {
            conn.as_mut().shutdown();
            stopping = true;
        }
        if let Some(why) = expiry(raised) {
            metrics.connections.timed_out(listener, why.label());
            if why != Expiry::Idle {
                tracing::debug!(listener, timeout = why.label(), "closing a slow connection");
                return Poll::Ready(());
            }
            conn.as_mut().shutdown();
        }
        match conn.as_mut().poll(cx) {
            Poll::Ready(Err(e)) => {
                tracing::debug!(listener, error = %e, "connection ended with an error");
                Poll::Ready(())
            }
            Poll::Ready(Ok(())) => Poll::Ready(()),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// What the side task raised for the connection, and the connection task's waker.
#[derive(Default)]
struct Signals {
    raised: AtomicU8,
    waker: AtomicWaker,
}

const SHUTDOWN: u8 = 1;
const FIRST_BYTE: u8 = 2;
const HEADER_READ: u8 = 4;
const IDLE: u8 = 8;

impl Signals {
    fn raise(&self, bit: u8) {
        self.raised.fetch_or(bit, Ordering::AcqRel);
        self.waker.wake();
    }
}

/// The expiry among the raised signals.
fn expiry(raised: u8) -> Option<Expiry> {
    if raised & FIRST_BYTE != 0 {
        Some(Expiry::FirstByte)
    } else if raised & HEADER_READ != 0 {
        Some(Expiry::HeaderRead)
    } else if raised & IDLE != 0 {
        Some(Expiry::Idle)
    } else {
        None
    }
}

/// The side task: raises the watchdog's expiry (waiting no more after it) and the
/// server's shutdown (once).
async fn wait_for_signals(
    watch: Arc<ConnWatch>,
    timeouts: Timeouts,
    mut shutdown: watch::Receiver<bool>,
    signals: Arc<Signals>,
) {
    let (mut watching, mut stopping) = (true, false);
    loop {
        tokio::select! {
            why = watch.expired(&timeouts), if watching => {
                signals.raise(match why {
                    Expiry::FirstByte => FIRST_BYTE,
                    Expiry::HeaderRead => HEADER_READ,
                    Expiry::Idle => IDLE,
                });
                watching = false;
            }
            _ = shutdown.wait_for(|stop| *stop), if !stopping => {
                signals.raise(SHUTDOWN);
                stopping = true;
            }
            else => return,
        }
    }
}

/// Ends the side task with the connection.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A response body that keeps its request counted as in flight until it is dropped
/// (written in full, or abandoned).
pub struct Tracked<B> {
    inner: B,
    _guard: RequestGuard,
}

impl<B> Tracked<B> {
    pub fn new(inner: B, guard: RequestGuard) -> Self {
        Tracked {
            inner,
            _guard: guard,
        }
    }
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
