//! A bound on a target's answer that stops sending: a body that yields no frame for
//! the route's `streamIdleTimeout` ends with an error (the client sees its stream cut),
//! instead of holding the client's request and tollgate's buffers for ever.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// `B`, ended with an error after `idle` without a frame.
pub struct IdleLimited<B> {
    body: B,
    idle: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl<B> IdleLimited<B> {
    pub fn new(body: B, idle: Duration) -> Self {
        IdleLimited {
            body,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
        }
    }
}

impl<B> Body for IdleLimited<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(frame) => {
                let deadline = tokio::time::Instant::now() + this.idle;
                this.timer.as_mut().reset(deadline);
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    let message = format!("the MCP target sent nothing for {:?}", this.idle);
                    Poll::Ready(Some(Err(message.into())))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stops_sending_ends_with_an_error() {
        let (mut tx, rx) = futures::channel::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(4);
        let body = http_body_util::StreamBody::new(rx);
        let mut limited = IdleLimited::new(body, Duration::from_secs(60));
        tx.try_send(Ok(Frame::data(Bytes::from_static(b"a"))))
            .unwrap();
        let first = limited.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "a");
        tokio::time::advance(Duration::from_secs(59)).await;
        tx.try_send(Ok(Frame::data(Bytes::from_static(b"b"))))
            .unwrap();
        assert!(
            limited.frame().await.unwrap().is_ok(),
            "a frame in time resets the clock"
        );
        let err = limited.frame().await.unwrap().unwrap_err();
        assert_eq!(err.to_string(), "the MCP target sent nothing for 60s");
        drop(tx);
    }
}
