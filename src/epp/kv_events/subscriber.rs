//! The subscriber task of one endpoint: a ZeroMQ SUB socket connected to
//! `tcp://<endpoint ip>:<port>`, feeding every message to the endpoint's
//! [`EndpointEvents`]. It reconnects with a doubling backoff (100 ms to 10 s) when the
//! connection fails, breaks or stays silent for `staleAfter` (a silent socket is
//! replaced, so a connection that died quietly cannot hold the task forever). Malformed
//! messages are dropped and counted, with a warning at most every 10 s. The task never
//! ends by itself: the pool aborts it when the endpoint leaves or the pool is dropped.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use zeromq::{Socket, SocketOptions, SocketRecv, SubSocket};

use super::endpoint::EndpointEvents;

/// Longest wait for a connection (and the ZMTP handshake).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Least time between two warnings about malformed messages of one endpoint.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Where and what one subscriber reads.
#[derive(Clone, Debug)]
pub struct Target {
    /// The endpoint (`ip:port` of its HTTP server), for logs.
    pub endpoint: SocketAddr,
    /// `tcp://ip:port` of its publisher.
    pub url: String,
    pub topic: String,
    pub stale_after: Duration,
}

/// Where an endpoint's publisher listens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Port {
    /// The same port on every endpoint's IP.
    Fixed(u16),
    /// The endpoint's own port plus this.
    Offset(i32),
}

impl Port {
    /// The publisher's address for `endpoint`; `None` when an offset leaves the port
    /// range.
    pub fn of(self, endpoint: SocketAddr) -> Option<SocketAddr> {
        let port = match self {
            Port::Fixed(p) => p,
            Port::Offset(o) => u16::try_from(i64::from(endpoint.port()) + i64::from(o))
                .ok()
                .filter(|p| *p != 0)?,
        };
        Some(SocketAddr::new(endpoint.ip(), port))
    }
}

impl Target {
    /// The subscription of `endpoint`; `None` when `port` gives it no publisher port.
    pub fn new(
        endpoint: SocketAddr,
        port: Port,
        topic: &str,
        stale_after: Duration,
    ) -> Option<Self> {
        let url = format!("tcp://{}", port.of(endpoint)?);
        Some(Target {
            endpoint,
            url,
            topic: topic.to_string(),
            stale_after,
        })
    }
}

/// Subscribes to `target` for as long as the task lives.
pub async fn run(target: Target, events: Arc<EndpointEvents>) {
    let mut backoff = BACKOFF_MIN;
    loop {
        match connect(&target).await {
            Ok(mut socket) => {
                tracing::info!(endpoint = %target.endpoint, url = %target.url, "kv events: subscribed");
                backoff = BACKOFF_MIN;
                let why = receive(&mut socket, &target, &events).await;
                tracing::debug!(endpoint = %target.endpoint, reason = %why, "kv events: reconnecting");
            }
            Err(e) => {
                tracing::debug!(endpoint = %target.endpoint, url = %target.url, error = %e, "kv events: cannot subscribe");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

async fn connect(target: &Target) -> Result<SubSocket, String> {
    let mut options = SocketOptions::default();
    options.connect_timeout(CONNECT_TIMEOUT);
    let mut socket = SubSocket::with_options(options);
    match tokio::time::timeout(CONNECT_TIMEOUT * 2, socket.connect(&target.url)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => return Err(format!("no connection within {:?}", CONNECT_TIMEOUT * 2)),
    }
    socket
        .subscribe(&target.topic)
        .await
        .map_err(|e| format!("subscribing: {e}"))?;
    Ok(socket)
}

/// Reads messages until the socket fails or stays silent; why it stopped.
async fn receive(socket: &mut SubSocket, target: &Target, events: &EndpointEvents) -> String {
    let silence = target.stale_after.max(Duration::from_secs(1));
    let mut warned: Option<Instant> = None;
    loop {
        let message = match tokio::time::timeout(silence, socket.recv()).await {
            Err(_) => return format!("silent for {silence:?}"),
            Ok(Err(e)) => return e.to_string(),
            Ok(Ok(m)) => m,
        };
        let now = Instant::now();
        let frames = message.into_vec();
        if let Err(e) = events.receive(&frames, now) {
            if warned.is_none_or(|at| now.duration_since(at) >= WARN_EVERY) {
                warned = Some(now);
                tracing::warn!(
                    endpoint = %target.endpoint,
                    error = %e,
                    malformed_total = events.counters.malformed.load(Ordering::Relaxed),
                    "kv events: dropped a malformed message"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_publisher_port_is_fixed_or_follows_the_endpoint() {
        let e: SocketAddr = "[::1]:8001".parse().unwrap();
        assert_eq!(Port::Fixed(5557).of(e), Some("[::1]:5557".parse().unwrap()));
        assert_eq!(
            Port::Offset(1000).of(e),
            Some("[::1]:9001".parse().unwrap())
        );
        assert_eq!(Port::Offset(-8001).of(e), None);
        assert_eq!(Port::Offset(60_000).of(e), None);
        let t = Target::new(e, Port::Offset(-2444), "", Duration::from_secs(1)).unwrap();
        assert_eq!(t.url, "tcp://[::1]:5557");
    }
}
