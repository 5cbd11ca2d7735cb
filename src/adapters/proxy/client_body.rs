//! The client's request body as the proxy reads it. A client that stops sending for
//! longer than `limits.connections.bodyProgressTimeout` while tollgate waits for the
//! next piece gets a 408; hyper's read errors are sorted into a malformed body (400)
//! and a client that went away (no reply: it is gone; the exchange ends as
//! `client_gone`). The error travels inside the upstream client's error when the body
//! was streamed to the upstream, and is found there again (`ClientBodyError::find`).

use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use prometheus_client::metrics::counter::Counter;
use tokio::time::Sleep;

use crate::pipeline::LocalReply;

/// Why the client's request body could not be read.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ClientBodyError {
    #[error("the client sent nothing of the request body for {0:?}")]
    Stalled(Duration),
    #[error("malformed request body: {0}")]
    Malformed(String),
    #[error("the client went away while sending the request body: {0}")]
    Gone(String),
}

impl ClientBodyError {
    /// Sorts a read error of hyper's: a framing error the decoder found (bad chunk
    /// size, bad chunk end) is the client's malformed body; anything else (reset, EOF
    /// before the end, an HTTP/2 stream reset) means the client went away.
    pub fn classify(e: &hyper::Error) -> Self {
        let mut source: Option<&(dyn StdError + 'static)> = Some(e);
        while let Some(s) = source {
            if let Some(io) = s.downcast_ref::<std::io::Error>() {
                if matches!(
                    io.kind(),
                    std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData
                ) {
                    return ClientBodyError::Malformed(io.to_string());
                }
            }
            source = s.source();
        }
        if e.is_parse() {
            return ClientBodyError::Malformed(e.to_string());
        }
        ClientBodyError::Gone(e.to_string())
    }

    /// The client-body error somewhere in `e`'s chain of sources (looking inside
    /// `io::Error`s too, whose `source` skips the error they wrap).
    pub fn find<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a ClientBodyError> {
        let mut source = Some(e);
        while let Some(s) = source {
            if let Some(found) = s.downcast_ref::<ClientBodyError>() {
                return Some(found);
            }
            let wrapped = s
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref());
            if let Some(found) = wrapped.and_then(|w| w.downcast_ref::<ClientBodyError>()) {
                return Some(found);
            }
            source = s.source();
        }
        None
    }

    /// The reply to give, in the OpenAI error shape; `None` when the client is gone.
    pub fn reply(&self) -> Option<LocalReply> {
        let (status, kind) = match self {
            ClientBodyError::Stalled(_) => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            ClientBodyError::Malformed(_) => (StatusCode::BAD_REQUEST, "invalid_request_error"),
            ClientBodyError::Gone(_) => return None,
        };
        Some(LocalReply::error(status, kind, &self.to_string()))
    }
}

/// The request body with a progress timeout and sorted errors.
pub struct ClientBody {
    inner: Incoming,
    timeout: Duration,
    /// The stall timer: allocated on the first wait, reset on each later one.
    timer: Option<Pin<Box<Sleep>>>,
    /// The timer runs for the current wait.
    armed: bool,
    stalls: Counter,
}

impl ClientBody {
    /// `stalls` counts the bodies ended by the timeout.
    pub fn new(inner: Incoming, timeout: Duration, stalls: Counter) -> Self {
        ClientBody {
            inner,
            timeout,
            timer: None,
            armed: false,
            stalls,
        }
    }

    /// Polls the stall timer of the current wait, starting it on the wait's first poll:
    /// the time counts only while tollgate asks for data, not while the upstream pushes
    /// back.
    fn stalled(&mut self, cx: &mut Context<'_>) -> bool {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if !self.armed {
            timer.as_mut().reset(deadline);
            self.armed = true;
        }
        timer.as_mut().poll(cx).is_ready()
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = ClientBodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                self.armed = false;
                Poll::Ready(frame.map(|r| r.map_err(|e| ClientBodyError::classify(&e))))
            }
            Poll::Pending if self.stalled(cx) => {
                self.armed = false;
                self.stalls.inc();
                Poll::Ready(Some(Err(ClientBodyError::Stalled(self.timeout))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_found_through_wrapping_errors() {
        let inner: Box<dyn StdError + Send + Sync> =
            Box::new(ClientBodyError::Stalled(Duration::from_secs(1)));
        let outer = std::io::Error::other(inner);
        let found = ClientBodyError::find(&outer).expect("found");
        assert!(matches!(found, ClientBodyError::Stalled(_)));
        assert!(ClientBodyError::find(&std::io::Error::other("other")).is_none());
    }

    #[test]
    fn replies_are_openai_errors_and_none_for_a_gone_client() {
        let reply = ClientBodyError::Stalled(Duration::from_secs(2))
            .reply()
            .unwrap();
        assert_eq!(reply.status, StatusCode::REQUEST_TIMEOUT);
        let json: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(json["error"]["type"], "request_timeout");
        assert_eq!(json["error"]["code"], 408);
        let reply = ClientBodyError::Malformed("bad chunk".into())
            .reply()
            .unwrap();
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        assert!(ClientBodyError::Gone("reset".into()).reply().is_none());
    }
}
