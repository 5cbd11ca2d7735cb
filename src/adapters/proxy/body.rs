//! Bodies of the proxy: passed through untouched when no processor asks for them
//! (finishing the exchange when the response ends), pumped chunk by chunk through the
//! exchange when processors stream them, or collected when a processor needs the whole
//! body. An SSE response is never buffered unless a processor asks.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use tokio::sync::{mpsc, oneshot, Mutex};
use tokio_stream::wrappers::ReceiverStream;

use super::client_body::ClientBodyError;
use crate::pipeline::{Exchange, Headers, LocalReply, Outcome, Verdict};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type the proxy sends both ways.
pub type ProxyBody = BoxBody<Bytes, BoxError>;

/// An exchange shared by the handler and the body tasks.
pub type SharedExchange = Arc<Mutex<Exchange>>;

/// Which body: the pipeline's one `Direction` type.
pub use crate::pipeline::Direction as Side;

pub fn full(data: Bytes) -> ProxyBody {
    Full::new(data).map_err(|never| match never {}).boxed()
}

/// A body, untouched.
pub fn passthrough<B>(body: B) -> ProxyBody
where
    B: Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed()
}

/// Why reading a whole body stopped.
#[derive(Debug)]
pub enum Stopped {
    /// Answer with this instead.
    Reply(LocalReply),
    /// The client went away: nobody to answer.
    ClientGone,
}

impl Stopped {
    /// A broken body: on the request side the client's (malformed, stalled or gone),
    /// on the response side the upstream's (502).
    fn broken(side: Side, e: BoxError) -> Self {
        if side == Side::Request {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                return Stopped::Reply(LocalReply::error(
                    http::StatusCode::PAYLOAD_TOO_LARGE,
                    "invalid_request_error",
                    "the request body is larger than limits.buffers.jsonBodyBytes",
                ));
            }
            return match ClientBodyError::find(&*e) {
                Some(c) => c.reply().map_or(Stopped::ClientGone, Stopped::Reply),
                None => Stopped::Reply(LocalReply::error(
                    http::StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    &format!("reading the request body failed: {e}"),
                )),
            };
        }
        Stopped::Reply(LocalReply::error(
            http::StatusCode::BAD_GATEWAY,
            "upstream_error",
            "reading the upstream response body failed",
        ))
    }
}

/// The upstream's response body, untouched; the exchange finishes when it ends.
pub fn completing<B>(body: B, exchange: SharedExchange, status: u16) -> ProxyBody
where
    B: Body<Data = Bytes> + Send + Sync + Unpin + 'static,
    B::Error: Into<BoxError> + std::fmt::Display,
{
    Completing {
        inner: body,
        exchange: Some(exchange),
        status,
    }
    .boxed()
}

/// Ends the exchange without waiting (from a poll or a task).
pub fn finish(exchange: &SharedExchange, outcome: Outcome) {
    match exchange.try_lock() {
        Ok(mut ex) => ex.finish(outcome),
        Err(_) => {
            let exchange = exchange.clone();
            tokio::spawn(async move { exchange.lock().await.finish(outcome) });
        }
    }
}

struct Completing<B> {
    inner: B,
    exchange: Option<SharedExchange>,
    status: u16,
}

impl<B> Body for Completing<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError> + std::fmt::Display,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        let outcome = match &polled {
            Poll::Ready(None) => Some(Outcome::Completed {
                status: self.status,
            }),
            Poll::Ready(Some(Err(e))) => Some(Outcome::Failed {
                reason: format!("upstream body: {e}"),
            }),
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => Some(Outcome::Completed {
                status: self.status,
            }),
            _ => None,
        };
        if let (Some(outcome), Some(ex)) = (outcome, self.exchange.take()) {
            finish(&ex, outcome);
        }
        polled.map(|f| f.map(|r| r.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Streams `body` through the exchange's processors chunk by chunk. For the request
/// side, a local reply from a processor arrives on the returned receiver (and the
/// upstream body is aborted); on the response side it ends the stream with the reply's
/// body, since the status has already gone out.
pub fn pump<B>(
    mut body: B,
    exchange: SharedExchange,
    side: Side,
) -> (ProxyBody, oneshot::Receiver<LocalReply>)
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError> + Send,
{
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, BoxError>>(16);
    let (reply_tx, reply_rx) = oneshot::channel();
    tokio::spawn(async move {
        let mut ended = false;
        loop {
            let frame = tokio::select! {
                frame = body.frame() => frame,
                _ = tx.closed() => return,
            };
            let frame = match frame {
                None => None,
                Some(Ok(frame)) => Some(frame),
                Some(Err(e)) => {
                    let _ = tx.send(Err(e.into())).await;
                    if side == Side::Response {
                        finish(
                            &exchange,
                            Outcome::Failed {
                                reason: "upstream body broke".into(),
                            },
                        );
                    }
                    return;
                }
            };
            let finished = frame.is_none();
            let (data, trailers) = split(frame);
            let eos = finished || trailers.is_some() || body.is_end_stream();
            let mut ex = exchange.lock().await;
            if !ended {
                match ex.body_chunk(side, data, eos, false).await {
                    Verdict::Continue(out) => {
                        if !out.data.is_empty() && tx.send(Ok(Frame::data(out.data))).await.is_err()
                        {
                            return;
                        }
                        if out.ends_stream {
                            // A processor ended the body: it closes here, whatever the
                            // other side still sends.
                            if side == Side::Response {
                                let status = ex.cx.response_status.unwrap_or(0);
                                ex.finish(Outcome::Completed { status });
                            }
                            return;
                        }
                    }
                    Verdict::Respond(reply) => {
                        respond_mid_body(&mut ex, side, reply, &tx, reply_tx).await;
                        return;
                    }
                }
                ended = eos;
            }
            if let Some(map) = trailers {
                let mut t = Headers::new(map);
                if let Verdict::Respond(reply) = ex.trailers(side, &mut t).await {
                    respond_mid_body(&mut ex, side, reply, &tx, reply_tx).await;
                    return;
                }
                let _ = tx.send(Ok(Frame::trailers(t.into_map()))).await;
            }
            if ended {
                if side == Side::Response {
                    let status = ex.cx.response_status.unwrap_or(0);
                    ex.finish(Outcome::Completed { status });
                }
                return;
            }
        }
    });
    (StreamBody::new(ReceiverStream::new(rx)).boxed(), reply_rx)
}

/// A frame as its data and its trailers (neither when the body ended).
fn split(frame: Option<Frame<Bytes>>) -> (Bytes, Option<http::HeaderMap>) {
    match frame {
        None => (Bytes::new(), None),
        Some(frame) => match frame.into_data() {
            Ok(data) => (data, None),
            Err(frame) => (Bytes::new(), frame.into_trailers().ok()),
        },
    }
}

async fn respond_mid_body(
    ex: &mut Exchange,
    side: Side,
    reply: LocalReply,
    tx: &mpsc::Sender<Result<Frame<Bytes>, BoxError>>,
    reply_tx: oneshot::Sender<LocalReply>,
) {
    let status = reply.status.as_u16();
    match side {
        Side::Request => {
            let _ = reply_tx.send(reply);
            let _ = tx.send(Err("request stopped by a policy".into())).await;
        }
        Side::Response => {
            tracing::warn!(request_id = %ex.cx.request_id, status, "policy stopped the response mid-stream");
            let _ = tx.send(Ok(Frame::data(reply.body))).await;
        }
    }
    ex.finish(Outcome::LocalReply { status });
}

/// Reads a body through the exchange while its processors scan it: the bytes released
/// when the scan ended, and whether the body ended there too. Trailers are dropped.
pub async fn scan<B>(
    body: &mut B,
    exchange: &SharedExchange,
    side: Side,
) -> Result<(Bytes, bool), Stopped>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    read_through(body, exchange, side, |ex| !ex.body_mode(side).holds()).await
}

/// `first`, then `rest`.
pub fn prepend(first: Bytes, rest: ProxyBody) -> ProxyBody {
    if first.is_empty() {
        return rest;
    }
    let head = futures::stream::once(async move { Ok::<_, BoxError>(Frame::data(first)) });
    let frames = futures::StreamExt::chain(head, http_body_util::BodyStream::new(rest));
    BodyExt::boxed(StreamBody::new(frames))
}

/// Reads a whole body through the exchange (a processor buffers it). Trailers are
/// dropped.
pub async fn collect<B>(
    mut body: B,
    exchange: &SharedExchange,
    side: Side,
) -> Result<Bytes, Stopped>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let (bytes, _) = read_through(&mut body, exchange, side, |_| false).await?;
    Ok(bytes)
}

/// Reads `body` through the exchange until it ends, or until `done` says so after a
/// chunk: what the exchange let out, and whether the body ended.
async fn read_through<B>(
    body: &mut B,
    exchange: &SharedExchange,
    side: Side,
    done: impl Fn(&Exchange) -> bool,
) -> Result<(Bytes, bool), Stopped>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let mut out = BytesMut::new();
    loop {
        let (data, eos) = match body.frame().await {
            None => (Bytes::new(), true),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => (data, body.is_end_stream()),
                Err(_) => continue,
            },
            Some(Err(e)) => return Err(Stopped::broken(side, e.into())),
        };
        let mut ex = exchange.lock().await;
        match ex.body_chunk(side, data, eos, false).await {
            Verdict::Respond(reply) => return Err(Stopped::Reply(reply)),
            Verdict::Continue(o) => out.extend_from_slice(&o.data),
        }
        if eos || done(&ex) {
            return Ok((out.freeze(), eos));
        }
    }
}
