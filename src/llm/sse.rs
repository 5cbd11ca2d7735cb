//! Server-sent events framing, parsed incrementally from pushed chunks.
//!
//! Follows the WHATWG "event stream interpretation": lines end with `\n`, `\r\n` or `\r`
//! (a `\r` ending one chunk and a `\n` starting the next are one line end); `field:value`
//! with one optional space after the colon; several `data` lines join with `\n`; lines
//! starting with `:` are comments; a blank line dispatches the event, unless it has no
//! `data`. A leading byte-order mark is dropped. Text is decoded as UTF-8 per line, with
//! U+FFFD for invalid bytes, so a character split across chunks decodes whole.
//!
//! Where this differs from a browser, on purpose:
//! - `id` is the id field of *this* event (for faithful re-emission), not the last id
//!   seen on the stream; `retry` is ignored.
//! - [`SseParser::finish`] can hand out an event the stream ended without a blank line
//!   for (browsers drop it): an upstream that forgets the final blank line still gets
//!   its last chunk — usually the one with usage — counted.
//!
//! Memory is bounded by the event being read: the parser holds the incomplete line and
//! the current event's fields, nothing else (a carried-over line buffer of more than
//! 64 KiB is freed once its line completes); [`SseParser::buffered`] tells how much, for
//! a caller that wants a limit.
//!
//! Why not `eventsource-stream`: it adapts a `futures::Stream` of byte chunks into a
//! stream of events and has no public push API, while a processor is *handed* chunks
//! one call at a time (ext_proc body messages, proxy frames) and must answer each before
//! the next arrives. Its parser is also private. The framing rules are ~150 lines.

use std::mem;

use memchr::{memchr, memchr2};

/// A carried-over line buffer up to this size is reused; a larger one is freed.
const KEEP_LINE_CAPACITY: usize = 64 * 1024;

/// One dispatched event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event` field; `None` when absent or empty (the default type, `message`).
    pub event: Option<String>,
    /// The `data` lines joined with `\n`.
    pub data: String,
    /// The `id` field of this event, if it had one.
    pub id: Option<String>,
}

/// An incremental event-stream parser.
#[derive(Debug, Default)]
pub struct SseParser {
    /// The incomplete line carried over from earlier chunks.
    line: Vec<u8>,
    /// The last chunk ended with `\r`: a `\n` starting the next one is part of that end.
    skip_lf: bool,
    /// No line has completed yet (a byte-order mark may still be there).
    started: bool,
    /// The current event's fields. `data` keeps WHATWG's trailing `\n` per line.
    event: Option<String>,
    data: String,
    id: Option<String>,
    /// Events parsed from the current chunk, handed out by `push`.
    ready: Vec<SseEvent>,
}

// === impl SseEvent ===

impl SseEvent {
    /// The event re-encoded: `event:`, `id:`, one `data:` line per line of data, and the
    /// blank line. Parsing the bytes gives this event back.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.data.len() + 32);
        self.write_to(&mut out);
        out
    }

    /// [`to_bytes`](Self::to_bytes), appended to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        if let Some(event) = &self.event {
            out.extend_from_slice(b"event: ");
            out.extend_from_slice(event.as_bytes());
            out.push(b'\n');
        }
        if let Some(id) = &self.id {
            out.extend_from_slice(b"id: ");
            out.extend_from_slice(id.as_bytes());
            out.push(b'\n');
        }
        for line in self.data.split('\n') {
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(line.as_bytes());
            out.push(b'\n');
        }
        out.push(b'\n');
    }
}

// === impl SseParser ===

impl SseParser {
    pub fn new() -> Self {
        SseParser::default()
    }

    /// Feeds the next chunk; the events it completes, in order. Events the caller does
    /// not take from the iterator are dropped with it.
    pub fn push(&mut self, chunk: &[u8]) -> std::vec::Drain<'_, SseEvent> {
        self.ready.clear();
        let mut rest = chunk;
        if self.skip_lf && !rest.is_empty() {
            self.skip_lf = false;
            if rest[0] == b'\n' {
                rest = &rest[1..];
            }
        }
        while let Some(end) = memchr2(b'\n', b'\r', rest) {
            if self.line.is_empty() {
                self.line_done(&rest[..end]);
            } else {
                let mut line = mem::take(&mut self.line);
                line.extend_from_slice(&rest[..end]);
                self.line_done(&line);
                // Keep a small buffer for the next split line; let a huge one go.
                if line.capacity() <= KEEP_LINE_CAPACITY {
                    line.clear();
                    self.line = line;
                }
            }
            let mut next = end + 1;
            if rest[end] == b'\r' {
                match rest.get(next) {
                    Some(b'\n') => next += 1,
                    Some(_) => {}
                    None => self.skip_lf = true,
                }
            }
            rest = &rest[next..];
        }
        self.line.extend_from_slice(rest);
        self.ready.drain(..)
    }

    /// Ends the stream. An event that has data but no closing blank line is handed out
    /// (see the module doc); an incomplete last line counts as a line.
    pub fn finish(&mut self) -> Option<SseEvent> {
        if !self.line.is_empty() {
            let line = mem::take(&mut self.line);
            self.line_done(&line);
        }
        self.skip_lf = false;
        self.dispatch();
        self.ready.pop()
    }

    /// Bytes held for the incomplete line and event (a caller's limit to check).
    pub fn buffered(&self) -> usize {
        self.line.len()
            + self.data.len()
            + self.event.as_ref().map_or(0, String::len)
            + self.id.as_ref().map_or(0, String::len)
    }

    fn line_done(&mut self, mut line: &[u8]) {
        if !self.started {
            self.started = true;
            line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
        }
        if line.is_empty() {
            self.dispatch();
            return;
        }
        let (field, value) = match memchr(b':', line) {
            Some(0) => return, // a comment
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                push_utf8(&mut self.data, value);
                self.data.push('\n');
            }
            b"event" => self.event = (!value.is_empty()).then(|| utf8(value)),
            b"id" if memchr(0, value).is_none() => self.id = Some(utf8(value)),
            _ => {}
        }
    }

    fn dispatch(&mut self) {
        if self.data.is_empty() {
            self.event = None;
            self.id = None;
            return;
        }
        self.data.pop(); // the last line's `\n`
        self.ready.push(SseEvent {
            event: self.event.take(),
            data: mem::take(&mut self.data),
            id: self.id.take(),
        });
    }
}

fn push_utf8(out: &mut String, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(s) => out.push_str(s),
        Err(_) => out.push_str(&String::from_utf8_lossy(bytes)),
    }
}

fn utf8(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests;
