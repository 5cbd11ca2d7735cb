//! Body modes and the body a processor sees. The exchange takes the strongest mode over
//! its processors: `Skip` < `Stream` < `Scan` < `Buffer`; with `Scan` or `Buffer`, the
//! smallest limit wins.

use bytes::Bytes;

/// How much body a processor needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyMode {
    /// Not at all.
    Skip,
    /// Each chunk as it passes (SSE keeps its timing).
    Stream,
    /// Each chunk as it comes, while the exchange holds the body (and, in front of
    /// Envoy, the header reply) until the processor has read what it needs — up to
    /// `limit` bytes held. The processor stops by answering `Skip` (or `Stream`) from its
    /// body-mode method after a chunk; what was held then goes on at once and the rest of
    /// the body streams through. For a decision that needs the start of a large body
    /// (the endpoint picker: the model and the prompt's first blocks) without waiting for
    /// all of it. A `Buffer` processor on the same exchange wins: all get the whole body.
    Scan { limit: usize },
    /// The whole body at once, up to `limit` bytes.
    Buffer { limit: usize },
}

impl BodyMode {
    fn rank(self) -> u8 {
        match self {
            BodyMode::Skip => 0,
            BodyMode::Stream => 1,
            BodyMode::Scan { .. } => 2,
            BodyMode::Buffer { .. } => 3,
        }
    }

    /// The body is held until processors have seen (enough of) it: the transport
    /// holds the header reply with it.
    pub fn holds(self) -> bool {
        matches!(self, BodyMode::Scan { .. } | BodyMode::Buffer { .. })
    }

    /// The bound on what the exchange holds, for the modes that hold.
    pub fn limit(self) -> Option<usize> {
        match self {
            BodyMode::Scan { limit } | BodyMode::Buffer { limit } => Some(limit),
            _ => None,
        }
    }

    /// The mode that satisfies both.
    pub fn strongest(self, other: BodyMode) -> BodyMode {
        match (self, other) {
            (BodyMode::Buffer { limit: a }, BodyMode::Buffer { limit: b }) => {
                BodyMode::Buffer { limit: a.min(b) }
            }
            (BodyMode::Scan { limit: a }, BodyMode::Scan { limit: b }) => {
                BodyMode::Scan { limit: a.min(b) }
            }
            _ if other.rank() > self.rank() => other,
            _ => self,
        }
    }
}

/// A body chunk — or, in `Buffer` mode, the whole body — handed to processors.
#[derive(Debug)]
pub struct Body {
    data: Bytes,
    end_of_stream: bool,
    whole: bool,
    truncated: bool,
    changed: bool,
    ends: bool,
}

impl Body {
    pub fn new(data: Bytes, end_of_stream: bool, whole: bool, truncated: bool) -> Self {
        Body {
            data,
            end_of_stream,
            whole,
            truncated,
            changed: false,
            ends: false,
        }
    }

    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// Replaces this chunk's bytes.
    pub fn replace(&mut self, data: Bytes) {
        self.data = data;
        self.changed = true;
    }

    /// Replaces this chunk with `last` and ends the body there: the adapter sends
    /// `last` as the body's final bytes and nothing more of it (the response keeps the
    /// status that already went out; e.g. an error event that closes a stream).
    pub fn end_stream(&mut self, last: Bytes) {
        self.replace(last);
        self.ends = true;
    }

    /// A processor ended the body with this chunk (`end_stream`).
    pub fn ends_stream(&self) -> bool {
        self.ends
    }

    /// This is the last chunk.
    pub fn end_of_stream(&self) -> bool {
        self.end_of_stream
    }

    /// This is the whole body (Buffer mode), not one chunk of it.
    pub fn is_whole(&self) -> bool {
        self.whole
    }

    /// The transport delivered only the first part of the body (Envoy BUFFERED_PARTIAL
    /// over its limit); the rest passes without being seen.
    pub fn is_truncated(&self) -> bool {
        self.truncated
    }

    pub fn changed(&self) -> bool {
        self.changed
    }

    pub(super) fn into_output(self) -> BodyOutput {
        BodyOutput {
            data: self.data,
            end_of_stream: self.end_of_stream,
            changed: self.changed,
            ends_stream: self.ends,
        }
    }
}

/// What an adapter forwards for one incoming body chunk: possibly nothing (held for
/// buffering), possibly everything held so far.
#[derive(Debug, PartialEq)]
pub struct BodyOutput {
    pub data: Bytes,
    pub end_of_stream: bool,
    /// The bytes differ from the incoming chunk (an adapter can skip a mutation if not).
    pub changed: bool,
    /// A processor ended the body here: these are its last bytes. The exchange drops
    /// every later chunk of it; an adapter that can close the body now does (the proxy),
    /// one that must answer every chunk sends them empty (ext_proc).
    pub ends_stream: bool,
}

#[cfg(test)]
mod tests {
    use super::BodyMode::*;

    #[test]
    fn strongest_mode() {
        assert_eq!(Skip.strongest(Stream), Stream);
        assert_eq!(Stream.strongest(Skip), Stream);
        assert_eq!(Stream.strongest(Buffer { limit: 9 }), Buffer { limit: 9 });
        assert_eq!(
            Buffer { limit: 5 }.strongest(Buffer { limit: 9 }),
            Buffer { limit: 5 }
        );
        assert_eq!(Buffer { limit: 5 }.strongest(Stream), Buffer { limit: 5 });
        assert_eq!(Stream.strongest(Scan { limit: 9 }), Scan { limit: 9 });
        assert_eq!(
            Scan { limit: 5 }.strongest(Scan { limit: 9 }),
            Scan { limit: 5 }
        );
        assert_eq!(
            Scan { limit: 5 }.strongest(Buffer { limit: 9 }),
            Buffer { limit: 9 }
        );
    }
}
