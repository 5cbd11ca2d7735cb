//! The exchange's side of the access-log capture (`crate::access_log::Capture`): it
//! sees each header block after the processors ran on it, each body chunk as it goes
//! on, and a local reply as the response; and it asks for a streamed body when an
//! access-log field reads one. Nothing happens when no field reads headers or bodies.

use super::Exchange;
use crate::pipeline::{BodyMode, Direction, Headers, LocalReply};

impl Exchange {
    pub(super) fn capture_headers(&mut self, dir: Direction, headers: &Headers) {
        if let Some(c) = self.capture.as_mut() {
            c.headers(dir, headers.map(), &self.pipeline.access_log);
        }
    }

    pub(super) fn capture_body_mode(&self, dir: Direction) -> BodyMode {
        self.capture
            .as_ref()
            .map_or(BodyMode::Skip, |c| c.body_mode(dir))
    }

    pub(super) fn capture_body(&mut self, dir: Direction, data: &[u8]) {
        if let Some(c) = self.capture.as_mut() {
            c.body(dir, data);
        }
    }

    pub(super) fn capture_reply(&mut self, reply: &LocalReply) {
        if let Some(c) = self.capture.as_mut() {
            c.local_reply(reply, &self.pipeline.access_log);
        }
    }
}
