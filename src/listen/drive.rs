//! Driving one hyper server connection: until it ends, or its watchdog expires it
//! (closed at once when it never completed a request's headers in time; shut down
//! gracefully when idle), or the server shuts down (graceful: in-flight requests
//! finish, HTTP/2 gets a GOAWAY).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

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
pub async fn drive(
    mut conn: Pin<Box<dyn Connection>>,
    watch: &ConnWatch,
    timeouts: &Timeouts,
    mut shutdown: watch::Receiver<bool>,
    listener: &str,
    metrics: &Metrics,
) {
    let mut watching = true;
    let mut stopping = false;
    loop {
        tokio::select! {
            ended = conn.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!(listener, error = %e, "connection ended with an error");
                }
                return;
            }
            why = watch.expired(timeouts), if watching => {
                metrics.connections.timed_out(listener, why.label());
                if why != Expiry::Idle {
                    tracing::debug!(listener, timeout = why.label(), "closing a slow connection");
                    return;
                }
                conn.as_mut().shutdown();
                watching = false;
            }
            _ = shutdown.wait_for(|stop| *stop), if !stopping => {
                conn.as_mut().shutdown();
                stopping = true;
            }
        }
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
