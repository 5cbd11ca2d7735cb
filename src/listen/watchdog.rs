//! The watchdog of one connection: closes it when it stays silent after connecting
//! (`firstByteTimeout`), when a request's headers take too long from their first byte
//! (`headerReadTimeout`), or when no request has been in flight for `idleTimeout`.
//!
//! One watchdog serves HTTP/1.1 and HTTP/2 alike, which hyper's own
//! `header_read_timeout` does not: hyper starts that timer as soon as it waits for the
//! next request, so on a kept-alive HTTP/1.1 connection it would also be the idle
//! timeout, and it never covers the bytes the auto-detecting server reads before it
//! knows the protocol. Here the socket reports the first byte read while no request is
//! in flight, and each request reports its start and the end of its response body.
//!
//! Reports never wake the watchdog: it looks on its own schedule, at the deadline when
//! one falls within the shortest timeout, else after the shortest timeout. Every
//! deadline a report can set lies at least the shortest timeout after the report, so it
//! is never earlier than the time the watchdog sleeps until, and each deadline is still
//! met to the millisecond. A request costs a few atomic operations and a clock read, no
//! wake-up and no timer; an idle watchdog wakes once per shortest timeout.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use crate::config::ConnectionLimits;

/// The timeouts the watchdog applies.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    pub first_byte: Duration,
    pub header_read: Duration,
    pub idle: Duration,
}

impl From<&ConnectionLimits> for Timeouts {
    fn from(c: &ConnectionLimits) -> Self {
        Timeouts {
            first_byte: c.first_byte_timeout.get(),
            header_read: c.header_read_timeout.get(),
            idle: c.idle_timeout.get(),
        }
    }
}

/// Which timeout closed a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// Nothing arrived after connecting.
    FirstByte,
    /// A request's headers did not complete in time.
    HeaderRead,
    /// No request in flight for too long: closed gracefully.
    Idle,
}

impl Expiry {
    /// The `timeout` label of `tollgate_connection_timeouts_total`.
    pub fn label(self) -> &'static str {
        match self {
            Expiry::FirstByte => "first_byte",
            Expiry::HeaderRead => "header_read",
            Expiry::Idle => "idle",
        }
    }
}

/// What one connection's socket and requests report to its watchdog.
#[derive(Debug)]
pub struct ConnWatch {
    start: Instant,
    /// Requests whose response body has not ended.
    active: AtomicU32,
    /// When `active` last fell to 0 (ms since `start`).
    idle_since: AtomicU64,
    /// 1 + when the first byte arrived while no request was in flight (ms since
    /// `start`); 0: none since.
    pending: AtomicU64,
    /// Some request has started on this connection.
    served: AtomicBool,
    /// HTTP/2: bytes between requests are control frames, not a request's headers.
    multiplexed: AtomicBool,
}

impl ConnWatch {
    pub fn new() -> Arc<Self> {
        Arc::new(ConnWatch {
            start: Instant::now(),
            active: AtomicU32::new(0),
            idle_since: AtomicU64::new(0),
            pending: AtomicU64::new(0),
            served: AtomicBool::new(false),
            multiplexed: AtomicBool::new(false),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }

    /// A request's headers arrived; the guard ends it (drop it with the response body).
    /// No deadline while it is in flight: nothing to wake the watchdog for.
    pub fn begin(self: &Arc<Self>, http2: bool) -> RequestGuard {
        self.served.store(true, Ordering::Relaxed);
        if http2 {
            self.multiplexed.store(true, Ordering::Relaxed);
        }
        self.active.fetch_add(1, Ordering::SeqCst);
        self.pending.store(0, Ordering::SeqCst);
        RequestGuard(self.clone())
    }

    fn end(&self) {
        if self.active.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle_since.store(self.now_ms(), Ordering::SeqCst);
        }
    }

    /// The socket read some bytes.
    fn read_some(&self) {
        if self.active.load(Ordering::Relaxed) == 0 && self.pending.load(Ordering::Relaxed) == 0 {
            self.pending.store(self.now_ms() + 1, Ordering::SeqCst);
        }
    }

    /// When the connection expires (ms since `start`) and why; `None` while a request
    /// is in flight.
    fn deadline(&self, t: &Timeouts) -> Option<(u64, Expiry)> {
        if self.active.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 2);
        let pending = self.pending.load(Ordering::SeqCst);
        if pending != 0 && !self.multiplexed.load(Ordering::Relaxed) {
            return Some((pending - 1 + ms(t.header_read), Expiry::HeaderRead));
        }
        if !self.served.load(Ordering::Relaxed) {
            return Some((ms(t.first_byte), Expiry::FirstByte));
        }
        let idle_since = self.idle_since.load(Ordering::SeqCst);
        Some((idle_since + ms(t.idle), Expiry::Idle))
    }

    /// Resolves when the connection has expired.
    pub async fn expired(&self, t: &Timeouts) -> Expiry {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 2);
        // The schedule of the module doc: no report sets a deadline sooner than this.
        let every = ms(t.first_byte.min(t.header_read).min(t.idle)).max(1);
        loop {
            let now = self.now_ms();
            let next = match self.deadline(t) {
                Some((at, why)) if now >= at => return why,
                Some((at, _)) => at.min(now + every),
                None => now + every,
            };
            tokio::time::sleep_until(self.start + Duration::from_millis(next)).await;
        }
    }
}

/// One request in flight; ends when dropped.
#[derive(Debug)]
pub struct RequestGuard(Arc<ConnWatch>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// A socket that reports reads to its connection's watchdog.
pub struct Watched<T> {
    inner: T,
    watch: Arc<ConnWatch>,
}

impl<T> Watched<T> {
    pub fn new(inner: T, watch: Arc<ConnWatch>) -> Self {
        Watched { inner, watch }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.watch.read_some();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timeouts = Timeouts {
        first_byte: Duration::from_secs(1),
        header_read: Duration::from_secs(2),
        idle: Duration::from_secs(5),
    };

    fn expiry(w: &ConnWatch) -> Option<Expiry> {
        w.deadline(&T).map(|(_, why)| why)
    }

    #[test]
    fn a_silent_connection_expires_on_its_first_byte_timeout() {
        let w = ConnWatch::new();
        assert_eq!(w.deadline(&T), Some((1000, Expiry::FirstByte)));
    }

    #[test]
    fn bytes_with_no_request_start_the_header_timer() {
        let w = ConnWatch::new();
        w.read_some();
        let (at, why) = w.deadline(&T).unwrap();
        assert_eq!(why, Expiry::HeaderRead);
        assert!((2000..2100).contains(&at), "{at}");
        // Later bytes do not move the deadline: slow headers cannot keep it alive.
        w.read_some();
        assert_eq!(w.deadline(&T).unwrap().0, at);
    }

    #[test]
    fn no_deadline_while_a_request_is_in_flight_then_idle() {
        let w = ConnWatch::new();
        w.read_some();
        let guard = w.begin(false);
        w.read_some(); // the request's body
        assert_eq!(expiry(&w), None);
        drop(guard);
        assert_eq!(expiry(&w), Some(Expiry::Idle));
        w.read_some(); // the next request's headers begin
        assert_eq!(expiry(&w), Some(Expiry::HeaderRead));
    }

    #[test]
    fn http2_control_frames_between_requests_keep_the_idle_timer() {
        let w = ConnWatch::new();
        drop(w.begin(true));
        w.read_some(); // a PING
        assert_eq!(expiry(&w), Some(Expiry::Idle));
    }

    #[test]
    fn overlapping_requests_end_with_the_last() {
        let w = ConnWatch::new();
        let a = w.begin(true);
        let b = w.begin(true);
        drop(a);
        assert_eq!(expiry(&w), None);
        drop(b);
        assert_eq!(expiry(&w), Some(Expiry::Idle));
    }

    #[tokio::test(start_paused = true)]
    async fn expired_resolves_at_the_deadline() {
        let w = ConnWatch::new();
        let started = tokio::time::Instant::now();
        assert_eq!(w.expired(&T).await, Expiry::FirstByte);
        assert!(started.elapsed() >= Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_header_deadline_set_while_the_watchdog_sleeps_is_met() {
        let w = ConnWatch::new();
        drop(w.begin(false)); // idle from 0: expires at 5 s
        let started = tokio::time::Instant::now();
        let watchdog = {
            let w = w.clone();
            tokio::spawn(async move { w.expired(&T).await })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        w.read_some(); // headers begin at 1 s: expire at 3 s, before the idle deadline
        assert_eq!(watchdog.await.unwrap(), Expiry::HeaderRead);
        let at = started.elapsed();
        assert!(
            (Duration::from_secs(3)..Duration::from_millis(3100)).contains(&at),
            "{at:?}"
        );
    }

    /// Reports do not wake the watchdog: it wakes once per shortest timeout (1 s here),
    /// whatever the traffic.
    #[tokio::test(start_paused = true)]
    async fn requests_do_not_wake_the_watchdog() {
        let w = ConnWatch::new();
        let polls = Arc::new(AtomicU32::new(0));
        let watchdog = {
            let (w, polls) = (w.clone(), polls.clone());
            tokio::spawn(async move {
                use std::future::Future;
                let mut expired = std::pin::pin!(w.expired(&T));
                std::future::poll_fn(|cx| {
                    polls.fetch_add(1, Ordering::SeqCst);
                    expired.as_mut().poll(cx)
                })
                .await
            })
        };
        tokio::task::yield_now().await;
        let before = polls.load(Ordering::SeqCst);
        for _ in 0..1000 {
            w.read_some();
            drop(w.begin(false));
        }
        tokio::task::yield_now().await;
        assert_eq!(polls.load(Ordering::SeqCst), before);
        tokio::time::sleep(Duration::from_millis(3500)).await;
        let woke = polls.load(Ordering::SeqCst) - before;
        assert!((3..=4).contains(&woke), "{woke} wake-ups in 3.5 s");
        assert!(!watchdog.is_finished(), "idle since 0 s: expires at 5 s");
        assert_eq!(watchdog.await.unwrap(), Expiry::Idle);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_flight_is_never_expired_and_its_end_starts_idle() {
        let w = ConnWatch::new();
        let started = tokio::time::Instant::now();
        let watchdog = {
            let w = w.clone();
            tokio::spawn(async move { w.expired(&T).await })
        };
        tokio::task::yield_now().await;
        w.read_some(); // header deadline at 2 s
        tokio::time::sleep(Duration::from_secs(1)).await;
        let guard = w.begin(false); // the watchdog finds it when it next looks
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(
            !watchdog.is_finished(),
            "no expiry while the request is in flight"
        );
        drop(guard); // at 4 s: idle until 9 s
        assert_eq!(watchdog.await.unwrap(), Expiry::Idle);
        let at = started.elapsed();
        assert!(
            (Duration::from_secs(9)..Duration::from_millis(9100)).contains(&at),
            "{at:?}"
        );
    }
}
