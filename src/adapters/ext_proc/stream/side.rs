//! One direction of an ext_proc stream: how far its messages got, and which body mode
//! Envoy is really in.
//!
//! Envoy states its static body modes once (`protocol_config` on the first message).
//! tollgate may ask for another with `mode_override`, but Envoy honours that only with
//! `allow_mode_override: true`, and nothing in the protocol says whether it did. So an
//! override stays *pending* until the body messages tell: a BUFFERED body arrives as one
//! message (with `end_of_stream`, or without it when trailers follow and then as the
//! whole declared length), STREAMED chunks arrive piecewise, and a body in a mode Envoy
//! had not been asked for proves the override was ignored. Each body message is answered
//! for the mode it actually came in.

use envoy_types::pb::envoy::extensions::filters::http::ext_proc::v3::processing_mode::BodySendMode;

/// What body messages showed about Envoy's handling of `mode_override` on this stream
/// (one setting for the whole filter, so both directions share it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Overrides {
    /// No override was put to the test yet.
    Unknown,
    Honoured,
    /// Envoy keeps its static modes (`allow_mode_override: false`).
    Ignored,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Stage {
    None,
    Headers,
    Body,
    Trailers,
    Done,
}

/// A message Envoy should not have sent at this point.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("ext_proc message without a request phase")]
    Empty,
    #[error("ext_proc {got} received after {after}")]
    OutOfOrder {
        got: &'static str,
        after: &'static str,
    },
}

/// One direction's progress.
pub(super) struct SideState {
    pub stage: Stage,
    /// Envoy's static body mode (`protocol_config`).
    configured: BodySendMode,
    /// The body mode Envoy is in, as far as tollgate knows.
    pub mode: BodySendMode,
    /// A mode asked for with `mode_override` that no body message confirmed yet.
    pending: Option<BodySendMode>,
    /// Body messages received.
    messages: u32,
    /// The `content-length` of this direction's headers.
    pub declared_len: Option<u64>,
    /// The header reply removed `content-length` (a body tollgate streams and may
    /// rewrite); a body that turns out buffered gets it back.
    pub dropped_length: bool,
    /// FULL_DUPLEX_STREAMED: the header reply held back until the body is processed.
    pub deferred: Option<envoy_types::pb::envoy::service::ext_proc::v3::ProcessingResponse>,
}

impl SideState {
    pub fn new() -> Self {
        SideState {
            stage: Stage::None,
            configured: BodySendMode::None,
            mode: BodySendMode::None,
            pending: None,
            messages: 0,
            declared_len: None,
            dropped_length: false,
            deferred: None,
        }
    }

    /// Envoy's static mode, from the first message's `protocol_config`.
    pub fn configure(&mut self, raw: i32) {
        self.configured = BodySendMode::try_from(raw).unwrap_or(BodySendMode::None);
        self.mode = self.configured;
    }

    /// Moves to `to`, refusing messages that come out of order.
    pub fn advance(&mut self, to: Stage, got: &'static str) -> Result<(), StreamError> {
        let ok = match to {
            Stage::Body => self.stage <= Stage::Body,
            _ => self.stage < to,
        };
        if !ok {
            let after = match self.stage {
                Stage::None => "nothing",
                Stage::Headers => "headers",
                Stage::Body => "body",
                Stage::Trailers => "trailers",
                Stage::Done => "the end of stream",
            };
            return Err(StreamError::OutOfOrder { got, after });
        }
        self.stage = to;
        Ok(())
    }

    /// The mode to ask Envoy for so that processors get `wanted`, if it differs from
    /// the mode Envoy is in; recorded as pending. Never when overrides are known to be
    /// ignored, nor out of FULL_DUPLEX_STREAMED (Envoy does not allow it).
    pub fn request_override(
        &mut self,
        wanted: BodySendMode,
        overrides: Overrides,
    ) -> Option<BodySendMode> {
        if overrides == Overrides::Ignored
            || self.mode == BodySendMode::FullDuplexStreamed
            || wanted == self.mode
        {
            return None;
        }
        if overrides == Overrides::Honoured {
            self.mode = wanted;
        } else {
            self.pending = Some(wanted);
        }
        Some(wanted)
    }

    /// The mode Envoy would send this direction's body in if it honours the override
    /// just asked for (what the override message must state).
    pub fn intended(&self) -> BodySendMode {
        self.pending.unwrap_or(self.mode)
    }

    /// The mode the body message of `len` bytes (`end_of_stream` as given) came in,
    /// settling a pending override on the way (`overrides` is updated).
    pub fn classify(
        &mut self,
        len: usize,
        end_of_stream: bool,
        overrides: &mut Overrides,
    ) -> BodySendMode {
        self.messages += 1;
        let Some(asked) = self.pending else {
            return self.mode;
        };
        let verdict = settle(self, asked, len, end_of_stream);
        self.pending = None;
        self.mode = match verdict {
            Overrides::Ignored => self.configured,
            Overrides::Honoured => asked,
            // One message with the whole body, as both modes send it: answered as the
            // buffered one, whose reply must also carry a changed body's length.
            Overrides::Unknown if is_buffered(self.configured) => self.configured,
            Overrides::Unknown => asked,
        };
        if verdict != Overrides::Unknown {
            if *overrides != verdict {
                tracing::debug!(?verdict, mode = ?self.mode, "ext_proc mode_override settled by the body messages");
            }
            *overrides = verdict;
        }
        self.mode
    }

    /// Envoy moved past this direction's body without sending one although an override
    /// asked for it over a static NONE mode: the override was ignored (`overrides` is
    /// updated). True then, once.
    pub fn body_never_came(&mut self, overrides: &mut Overrides) -> bool {
        let asked = self.pending.is_some_and(|m| m != BodySendMode::None);
        if !asked || self.messages > 0 || self.configured != BodySendMode::None {
            return false;
        }
        self.pending = None;
        self.mode = self.configured;
        *overrides = Overrides::Ignored;
        true
    }

    /// Envoy is known to send no body in this direction.
    pub fn sends_no_body(&self) -> bool {
        self.mode == BodySendMode::None && self.pending.is_none()
    }
}

fn is_buffered(mode: BodySendMode) -> bool {
    matches!(mode, BodySendMode::Buffered | BodySendMode::BufferedPartial)
}

/// What the first body message after an override to `asked` says about it.
fn settle(side: &SideState, asked: BodySendMode, len: usize, end_of_stream: bool) -> Overrides {
    use BodySendMode::{None as NoBody, Streamed};
    let configured = side.configured;
    let buffered = is_buffered;
    // Later messages than the first: Envoy streams.
    let first = side.messages == 1;
    // The whole declared body in one message (what BUFFERED sends before trailers).
    let complete = side.declared_len.is_some_and(|n| len as u64 >= n);
    match (configured, asked) {
        // Envoy was told to send nothing unless overridden: a body proves the override.
        (NoBody, _) => Overrides::Honoured,
        // Asked for none (or the same) and a body came anyway.
        (_, NoBody) => Overrides::Ignored,
        (Streamed, a) if buffered(a) => {
            if !first || (!end_of_stream && !complete) {
                // A piece of a body: Envoy streams.
                Overrides::Ignored
            } else {
                // One message with the whole body: both modes send that; not telling.
                Overrides::Unknown
            }
        }
        (c, Streamed) if buffered(c) => {
            if !first || (!end_of_stream && !complete) {
                Overrides::Honoured
            } else {
                Overrides::Unknown
            }
        }
        _ => Overrides::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use BodySendMode::{Buffered, None as NoBody, Streamed};

    fn side(configured: BodySendMode, asked: BodySendMode, overrides: Overrides) -> SideState {
        let mut s = SideState::new();
        s.configure(configured as i32);
        s.request_override(asked, overrides);
        s
    }

    #[test]
    fn a_piece_of_a_body_after_asking_for_buffered_means_envoy_streams() {
        let mut o = Overrides::Unknown;
        let mut s = side(Streamed, Buffered, o);
        assert_eq!(s.intended(), Buffered);
        assert_eq!(s.classify(10, false, &mut o), Streamed);
        assert_eq!(o, Overrides::Ignored);
        assert_eq!(s.classify(10, true, &mut o), Streamed);
        // Known now: no more overrides on this stream.
        let mut other = SideState::new();
        other.configure(Streamed as i32);
        assert_eq!(other.request_override(Buffered, o), None);
    }

    #[test]
    fn the_whole_declared_body_without_end_of_stream_is_buffered() {
        let mut o = Overrides::Unknown;
        let mut s = side(Streamed, Buffered, o);
        s.declared_len = Some(10);
        assert_eq!(s.classify(10, false, &mut o), Buffered);
        assert_eq!(
            o,
            Overrides::Unknown,
            "a whole body in one piece tells nothing"
        );
    }

    #[test]
    fn one_complete_message_keeps_the_asked_mode_and_the_question_open() {
        let mut o = Overrides::Unknown;
        let mut s = side(Streamed, Buffered, o);
        assert_eq!(s.classify(10, true, &mut o), Buffered);
        assert_eq!(o, Overrides::Unknown);
    }

    #[test]
    fn chunks_after_asking_for_streamed_prove_the_override() {
        let mut o = Overrides::Unknown;
        let mut s = side(Buffered, Streamed, o);
        assert_eq!(s.classify(3, false, &mut o), Streamed);
        assert_eq!(o, Overrides::Honoured);
        let mut other = SideState::new();
        other.configure(Buffered as i32);
        assert_eq!(other.request_override(Streamed, o), Some(Streamed));
        assert_eq!(other.mode, Streamed, "trusted at once");
    }

    #[test]
    fn one_whole_message_after_asking_for_streamed_is_answered_as_buffered_when_static() {
        let mut o = Overrides::Unknown;
        let mut s = side(Buffered, Streamed, o);
        s.declared_len = Some(5);
        assert_eq!(s.classify(5, false, &mut o), Buffered);
        assert_eq!(o, Overrides::Unknown);
    }

    #[test]
    fn a_body_where_none_was_asked_for_means_overrides_are_ignored() {
        let mut o = Overrides::Unknown;
        let mut s = side(Streamed, NoBody, o);
        assert_eq!(s.classify(3, false, &mut o), Streamed);
        assert_eq!(o, Overrides::Ignored);
    }

    #[test]
    fn a_body_from_static_none_proves_the_override() {
        let mut o = Overrides::Unknown;
        let mut s = side(NoBody, Buffered, o);
        assert_eq!(s.classify(3, true, &mut o), Buffered);
        assert_eq!(o, Overrides::Honoured);
    }

    #[test]
    fn a_body_that_never_came_from_static_none_means_ignored() {
        let mut o = Overrides::Unknown;
        let mut s = side(NoBody, Buffered, o);
        assert!(s.body_never_came(&mut o));
        assert_eq!(o, Overrides::Ignored);
        assert_eq!(s.mode, NoBody);
        assert!(!s.body_never_came(&mut o), "reported once");
    }
}
