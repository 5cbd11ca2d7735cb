//! The client's GET stream: every target's GET stream (server notifications such as
//! `list_changed`, and server requests) merged into one SSE stream, with no state.
//!
//! - With several targets, each server request's id is tagged with its target
//!   (`relay`), and each event that had an id gets a composite id: the last event id
//!   seen from every target (`tge.` + base64url of a JSON array), so the client's
//!   `Last-Event-ID` tells each target where to resume. With one target the stream and
//!   its ids pass as they are.
//! - A target stream that ends or fails leaves the others going; when none is left the
//!   client's stream ends (it reconnects, as SSE clients do).
//! - After `KEEPALIVE` without an event a comment line goes out, so idle streams stay
//!   open through proxies.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::Value;

use super::listen::ListenMerge;
use super::relay;
use super::McpBody;
use crate::llm::{SseEvent, SseLimits, SseParser};

/// Silence after which a keep-alive comment is sent.
pub const KEEPALIVE: Duration = Duration::from_secs(15);
const COMPOSITE: &str = "tge.";
/// Longer `Last-Event-ID`s are ignored unread.
const MAX_LAST_EVENT_ID: usize = 8 * 1024;

/// Each target's last event id in a composite id from `targets` targets; `None` for an
/// id the gateway did not make (or made for another target set).
pub fn split_event_id(id: &str, targets: usize) -> Option<Vec<Option<String>>> {
    if id.len() > MAX_LAST_EVENT_ID {
        return None;
    }
    let raw = URL_SAFE_NO_PAD.decode(id.strip_prefix(COMPOSITE)?).ok()?;
    let ids: Vec<Option<String>> = serde_json::from_slice(&raw).ok()?;
    (ids.len() == targets).then_some(ids)
}

/// The composite id of every target's last event id.
pub fn join_event_ids(ids: &[Option<String>]) -> String {
    let json = serde_json::to_vec(ids).expect("strings serialize");
    format!("{COMPOSITE}{}", URL_SAFE_NO_PAD.encode(json))
}

/// One target's GET stream.
pub struct TargetStream {
    pub index: usize,
    pub body: Incoming,
}

/// The merged stream of `streams` (targets of a route with `targets` targets), resuming
/// from `last_ids`; each event at most `limit` bytes.
pub fn merge(
    streams: Vec<TargetStream>,
    targets: usize,
    last_ids: Vec<Option<String>>,
    limit: usize,
) -> McpBody {
    merged(streams, targets, last_ids, limit, None)
}

/// The merged stream of the targets' answers to one `subscriptions/listen` request
/// (2026-07-28): one acknowledgement, every notification, one closing result
/// (`listen`); each event at most `limit` bytes.
pub fn merge_listen(streams: Vec<TargetStream>, targets: usize, limit: usize) -> McpBody {
    let listen = ListenMerge::new(streams.len());
    merged(streams, targets, vec![None; targets], limit, Some(listen))
}

fn merged(
    streams: Vec<TargetStream>,
    targets: usize,
    last_ids: Vec<Option<String>>,
    limit: usize,
    listen: Option<ListenMerge>,
) -> McpBody {
    let limits = SseLimits {
        line_bytes: limit,
        event_bytes: limit,
    };
    let live = streams
        .into_iter()
        .enumerate()
        .map(|(slot, s)| Live {
            index: s.index,
            slot,
            body: s.body,
            parser: SseParser::with_limits(limits),
        })
        .collect();
    Merged {
        live,
        last_ids,
        targets,
        out: VecDeque::new(),
        next: 0,
        keepalive: Box::pin(tokio::time::sleep(KEEPALIVE)),
        listen,
    }
    .boxed()
}

struct Live {
    index: usize,
    /// Its position among the streams merged (for `listen`).
    slot: usize,
    body: Incoming,
    parser: SseParser,
}

struct Merged {
    live: Vec<Live>,
    last_ids: Vec<Option<String>>,
    targets: usize,
    out: VecDeque<Bytes>,
    /// Where the next poll round starts, so no target starves the others.
    next: usize,
    keepalive: Pin<Box<tokio::time::Sleep>>,
    /// Set for a `subscriptions/listen` stream.
    listen: Option<ListenMerge>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Body for Merged {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            if let Some(bytes) = this.out.pop_front() {
                this.keepalive
                    .as_mut()
                    .reset(tokio::time::Instant::now() + KEEPALIVE);
                return Poll::Ready(Some(Ok(Frame::data(bytes))));
            }
            if this.live.is_empty() {
                return Poll::Ready(None);
            }
            if this.poll_targets(cx) {
                continue;
            }
            if this.keepalive.as_mut().poll(cx).is_ready() {
                this.out.push_back(Bytes::from_static(b": keep-alive\n\n"));
                continue;
            }
            return Poll::Pending;
        }
    }
}

impl Merged {
    /// Polls every live target once; whether anything changed (output queued, or a
    /// stream ended).
    fn poll_targets(&mut self, cx: &mut Context<'_>) -> bool {
        let n = self.live.len();
        let start = self.next % n;
        self.next = self.next.wrapping_add(1);
        for k in 0..n {
            let at = (start + k) % n;
            match Pin::new(&mut self.live[at].body).poll_frame(cx) {
                Poll::Pending => {}
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        self.take(at, &data);
                    }
                    return true;
                }
                Poll::Ready(other) => {
                    let target = self.live[at].index;
                    if let Some(Err(e)) = other {
                        tracing::debug!(target, error = %e, "an MCP target's GET stream failed");
                    }
                    self.end(at);
                    return true;
                }
            }
        }
        false
    }

    /// Parses `data` of live stream `at` and queues its events, relabelled.
    fn take(&mut self, at: usize, data: &[u8]) {
        let (index, slot) = (self.live[at].index, self.live[at].slot);
        let events: Vec<SseEvent> = self.live[at].parser.push(data).collect();
        for event in events {
            let events = match &mut self.listen {
                Some(listen) => listen.event(slot, event),
                None => vec![event],
            };
            for event in events {
                let bytes = self.relabel(index, event);
                self.out.push_back(Bytes::from(bytes));
            }
        }
        if let Some(limit) = self.live[at].parser.exceeded() {
            tracing::warn!(
                target = index,
                bound = limit.as_str(),
                "an MCP target's stream went over a bound; dropped"
            );
            self.end(at);
        }
    }

    /// Live stream `at` ended (or was cut); with `listen`, what that releases.
    fn end(&mut self, at: usize) {
        let gone = self.live.swap_remove(at);
        let Some(listen) = &mut self.listen else {
            return;
        };
        for event in listen.ended(gone.slot, self.live.is_empty()) {
            self.out.push_back(Bytes::from(event.to_bytes()));
        }
    }

    fn relabel(&mut self, index: usize, mut event: SseEvent) -> Vec<u8> {
        if self.targets == 1 {
            return event.to_bytes();
        }
        if let Some(id) = event.id.take() {
            self.last_ids[index] = Some(id);
            event.id = Some(join_event_ids(&self.last_ids));
        }
        if let Ok(mut message) = serde_json::from_str::<Value>(&event.data) {
            if relay::tag_request(&mut message, index) {
                event.data = message.to_string();
            }
        }
        event.to_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composite_event_ids_round_trip() {
        let ids = vec![Some("7".to_string()), None, Some("a:b".to_string())];
        let joined = join_event_ids(&ids);
        assert!(joined.starts_with("tge."));
        assert_eq!(split_event_id(&joined, 3), Some(ids));
        assert_eq!(split_event_id(&joined, 2), None, "another target set");
        assert_eq!(split_event_id("42", 3), None);
        assert_eq!(split_event_id("tge.!!", 3), None);
    }
}
