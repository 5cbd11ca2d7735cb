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
//! - `id` and `retry` are the fields of *this* event (for faithful re-emission: a proxy
//!   that re-encodes a stream keeps the server's reconnection delay), not the last ones
//!   seen on the stream. A `retry` on an event without data is not handed out.
//! - [`SseParser::finish`] can hand out an event the stream ended without a blank line
//!   for (browsers drop it): an upstream that forgets the final blank line still gets
//!   its last chunk — usually the one with usage — counted.
//!
//! Memory is bounded by the event being read: the parser holds the incomplete line and
//! the current event's fields, nothing else (a carried-over line buffer of more than
//! 64 KiB is freed once its line completes), and [`SseLimits`] caps both. A line or an
//! event over its cap stops the parser ([`SseParser::exceeded`]): it hands back what it
//! held, re-encoded, with the rest of that chunk ([`SseParser::take_unparsed`]), so a
//! caller can pass the stream on uninspected, or end it.
//!
//! Why not `eventsource-stream`: it adapts a `futures::Stream` of byte chunks into a
//! stream of events and has no public push API, while a processor is *handed* chunks
//! one call at a time (ext_proc body messages, proxy frames) and must answer each before
//! the next arrives. Its parser is also private. The framing rules are ~150 lines.

use std::mem;

use memchr::{memchr, memchr2};

/// A carried-over line buffer up to this size is reused; a larger one is freed.
const KEEP_LINE_CAPACITY: usize = 64 * 1024;

/// The most one parser holds. [`SseLimits::DEFAULT`]: a 1 MiB line, a 4 MiB event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SseLimits {
    /// Longest line (complete, or carried over between chunks), in bytes.
    pub line_bytes: usize,
    /// Largest event: its `data` lines joined, plus `event` and `id`, in bytes.
    pub event_bytes: usize,
}

/// Which bound a stream went over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SseLimit {
    Line,
    Event,
}

/// One dispatched event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event` field; `None` when absent or empty (the default type, `message`).
    pub event: Option<String>,
    /// The `data` lines joined with `\n`.
    pub data: String,
    /// The `id` field of this event, if it had one.
    pub id: Option<String>,
    /// The `retry` field (reconnection time, ms) of this event, if it had a valid one.
    pub retry: Option<u64>,
}

/// An incremental event-stream parser.
#[derive(Debug)]
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
    retry: Option<u64>,
    /// Events parsed from the current chunk, handed out by `push`.
    ready: Vec<SseEvent>,
    limits: SseLimits,
    /// The parser has stopped: a bound was exceeded, or the caller took what it held.
    stopped: bool,
    /// The bound that stopped it.
    exceeded: Option<SseLimit>,
    /// What the parser held when it stopped, re-encoded, and the rest of that chunk.
    unparsed: Vec<u8>,
}

// === impl SseLimits ===

impl SseLimits {
    pub const DEFAULT: SseLimits = SseLimits {
        line_bytes: 1024 * 1024,
        event_bytes: 4 * 1024 * 1024,
    };
}

impl Default for SseLimits {
    fn default() -> Self {
        SseLimits::DEFAULT
    }
}

impl SseLimit {
    /// The bound's name, for metric labels and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            SseLimit::Line => "sse_line",
            SseLimit::Event => "sse_event",
        }
    }
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
        if let Some(retry) = self.retry {
            out.extend_from_slice(format!("retry: {retry}\n").as_bytes());
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

impl Default for SseParser {
    fn default() -> Self {
        SseParser::new()
    }
}

impl SseParser {
    /// A parser with the default limits.
    pub fn new() -> Self {
        SseParser::with_limits(SseLimits::DEFAULT)
    }

    pub fn with_limits(limits: SseLimits) -> Self {
        SseParser {
            line: Vec::new(),
            skip_lf: false,
            started: false,
            event: None,
            data: String::new(),
            id: None,
            retry: None,
            ready: Vec::new(),
            limits,
            stopped: false,
            exceeded: None,
            unparsed: Vec::new(),
        }
    }

    /// Feeds the next chunk; the events it completes, in order. Events the caller does
    /// not take from the iterator are dropped with it. Once a bound is exceeded (see
    /// [`exceeded`](Self::exceeded)) or the unparsed bytes taken, the parser has
    /// stopped: chunks are ignored.
    pub fn push(&mut self, chunk: &[u8]) -> std::vec::Drain<'_, SseEvent> {
        self.ready.clear();
        if self.stopped {
            return self.ready.drain(..);
        }
        let mut rest = chunk;
        if self.skip_lf && !rest.is_empty() {
            self.skip_lf = false;
            if rest[0] == b'\n' {
                rest = &rest[1..];
            }
        }
        while let Some(end) = memchr2(b'\n', b'\r', rest) {
            if self.line.len() + end > self.limits.line_bytes {
                self.stop(Some(SseLimit::Line), rest);
                return self.ready.drain(..);
            }
            let fits = if self.line.is_empty() {
                self.line_done(&rest[..end])
            } else {
                let mut line = mem::take(&mut self.line);
                let carried = line.len();
                line.extend_from_slice(&rest[..end]);
                let fits = self.line_done(&line);
                // Keep a small buffer for the next split line; let a huge one go.
                if !fits || line.capacity() <= KEEP_LINE_CAPACITY {
                    line.truncate(if fits { 0 } else { carried });
                    self.line = line;
                }
                fits
            };
            if !fits {
                self.stop(Some(SseLimit::Event), rest);
                return self.ready.drain(..);
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
        if self.line.len() + rest.len() > self.limits.line_bytes {
            self.stop(Some(SseLimit::Line), rest);
        } else {
            self.line.extend_from_slice(rest);
        }
        self.ready.drain(..)
    }

    /// The bound this stream went over, if any: the parser has stopped.
    pub fn exceeded(&self) -> Option<SseLimit> {
        self.exceeded
    }

    /// Stops the parser (if a bound has not already) and hands back what it held: the
    /// event being read (its fields re-encoded), the incomplete line, and the rest of
    /// the chunk a bound stopped it in. These bytes, then the rest of the stream as it
    /// comes, are the stream from the end of the last event handed out. Empty when
    /// taken already.
    pub fn take_unparsed(&mut self) -> Vec<u8> {
        if !self.stopped {
            self.stop(None, &[]);
        }
        mem::take(&mut self.unparsed)
    }

    /// Stops the parser: what it held and `rest` (of the current chunk, from the start
    /// of the line that did not fit) become the unparsed bytes.
    fn stop(&mut self, limit: Option<SseLimit>, rest: &[u8]) {
        self.stopped = true;
        self.exceeded = limit;
        let mut raw = Vec::with_capacity(self.buffered() + rest.len() + 32);
        if let Some(event) = self.event.take() {
            raw.extend_from_slice(b"event: ");
            raw.extend_from_slice(event.as_bytes());
            raw.push(b'\n');
        }
        if let Some(id) = self.id.take() {
            raw.extend_from_slice(b"id: ");
            raw.extend_from_slice(id.as_bytes());
            raw.push(b'\n');
        }
        if let Some(retry) = self.retry.take() {
            raw.extend_from_slice(format!("retry: {retry}\n").as_bytes());
        }
        for line in self.data.split_terminator('\n') {
            raw.extend_from_slice(b"data: ");
            raw.extend_from_slice(line.as_bytes());
            raw.push(b'\n');
        }
        raw.extend_from_slice(&self.line);
        raw.extend_from_slice(rest);
        self.data = String::new();
        self.line = Vec::new();
        self.unparsed = raw;
    }

    /// Ends the stream. An event that has data but no closing blank line is handed out
    /// (see the module doc); an incomplete last line counts as a line. A last line that
    /// would take the event over its bound stops the parser instead ([`Self::exceeded`]),
    /// never an event handed out without it.
    pub fn finish(&mut self) -> Option<SseEvent> {
        if self.stopped {
            return None;
        }
        if !self.line.is_empty() {
            let line = mem::take(&mut self.line);
            if !self.line_done(&line) {
                self.stop(Some(SseLimit::Event), &line);
                return None;
            }
        }
        self.skip_lf = false;
        self.dispatch();
        self.ready.pop()
    }

    /// Bytes held for the incomplete line and event (a caller's limit to check).
    pub fn buffered(&self) -> usize {
        self.line.len() + self.event_len()
    }

    /// Bytes held for the current event's fields.
    fn event_len(&self) -> usize {
        self.data.len()
            + self.event.as_ref().map_or(0, String::len)
            + self.id.as_ref().map_or(0, String::len)
            + if self.retry.is_some() { 20 } else { 0 }
    }

    /// Applies one complete line; `false` (and nothing applied) when its data would
    /// make the event larger than its bound.
    fn line_done(&mut self, mut line: &[u8]) -> bool {
        if !self.started {
            self.started = true;
            line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
        }
        if line.is_empty() {
            self.dispatch();
            return true;
        }
        let (field, value) = match memchr(b':', line) {
            Some(0) => return true, // a comment
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                if self.event_len() + value.len() + 1 > self.limits.event_bytes {
                    return false;
                }
                self.data.reserve(value.len() + 1); // one allocation for the line and its `\n`
                push_utf8(&mut self.data, value);
                self.data.push('\n');
            }
            b"event" => self.event = (!value.is_empty()).then(|| utf8(value)),
            b"id" if memchr(0, value).is_none() => self.id = Some(utf8(value)),
            // WHATWG: only ASCII digits make a reconnection time; anything else is ignored.
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                self.retry = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
            }
            _ => {}
        }
        true
    }

    fn dispatch(&mut self) {
        if self.data.is_empty() {
            self.event = None;
            self.id = None;
            self.retry = None;
            return;
        }
        self.data.pop(); // the last line's `\n`
        self.ready.push(SseEvent {
            event: self.event.take(),
            data: mem::take(&mut self.data),
            id: self.id.take(),
            retry: self.retry.take(),
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
