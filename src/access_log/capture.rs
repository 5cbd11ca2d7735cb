//! What an exchange keeps for access-log fields while it runs, and only what some
//! expression reads ([`Wants`]): the request's and the response's headers as the
//! processors left them (credential values already `"<redacted>"`), and the first
//! [`BODY_LIMIT`] bytes of each body as it passed (after the processors, not decoded).
//! A local reply is the response. Kept by the `Exchange`, which calls these at its
//! phases and asks for a streamed body when one is wanted.

use std::collections::BTreeMap;

use http::HeaderMap;

use super::{AccessLog, Wants, BODY_LIMIT};
use crate::pipeline::{BodyMode, Direction, LocalReply};
use crate::redact::REDACTED;

/// One exchange's captured headers and bodies.
#[derive(Debug, Default)]
pub struct Capture {
    wants: Wants,
    pub(super) request_headers: Option<BTreeMap<String, String>>,
    pub(super) response_headers: Option<BTreeMap<String, String>>,
    pub(super) request_body: Vec<u8>,
    pub(super) response_body: Vec<u8>,
}

impl Capture {
    /// A capture for `log`; `None` when no expression reads headers or bodies.
    pub fn new(log: &AccessLog) -> Option<Box<Capture>> {
        let wants = log.wants();
        let any = wants.request_headers
            || wants.request_body
            || wants.response_headers
            || wants.response_body;
        any.then(|| {
            Box::new(Capture {
                wants,
                ..Capture::default()
            })
        })
    }

    /// The body mode the capture needs on `dir`: each chunk as it passes, when its
    /// body is read.
    pub fn body_mode(&self, dir: Direction) -> BodyMode {
        if self.wants_body(dir) {
            BodyMode::Stream
        } else {
            BodyMode::Skip
        }
    }

    pub(super) fn wants_body(&self, dir: Direction) -> bool {
        dir.pick(self.wants.request_body, self.wants.response_body)
    }

    /// Keeps `dir`'s headers, redacted, when they are read.
    pub fn headers(&mut self, dir: Direction, map: &HeaderMap, log: &AccessLog) {
        let wanted = dir.pick(self.wants.request_headers, self.wants.response_headers);
        if wanted {
            let kept = Some(redacted(map, log));
            match dir {
                Direction::Request => self.request_headers = kept,
                Direction::Response => self.response_headers = kept,
            }
        }
    }

    /// Keeps what fits of a body chunk of `dir`, when that body is read.
    pub fn body(&mut self, dir: Direction, data: &[u8]) {
        if !self.wants_body(dir) {
            return;
        }
        let kept = match dir {
            Direction::Request => &mut self.request_body,
            Direction::Response => &mut self.response_body,
        };
        let room = BODY_LIMIT.saturating_sub(kept.len());
        kept.extend_from_slice(&data[..data.len().min(room)]);
    }

    /// tollgate answered itself: its reply is the response.
    pub fn local_reply(&mut self, reply: &LocalReply, log: &AccessLog) {
        self.headers(Direction::Response, &reply.headers, log);
        if self.wants.response_body {
            self.response_body.clear();
            self.body(Direction::Response, &reply.body);
        }
    }
}

/// Header names to values (repeated ones joined with `,`), secrets redacted.
pub(super) fn redacted(map: &HeaderMap, log: &AccessLog) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in map {
        let text = if log.is_sensitive(name.as_str(), value) {
            REDACTED.to_string()
        } else {
            String::from_utf8_lossy(value.as_bytes()).into_owned()
        };
        out.entry(name.as_str().to_string())
            .and_modify(|v| {
                if text != REDACTED || v != REDACTED {
                    v.push(',');
                    v.push_str(&text);
                }
            })
            .or_insert(text);
    }
    out
}
