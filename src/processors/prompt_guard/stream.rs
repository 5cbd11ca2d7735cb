//! The response side for a streamed (SSE) completion: each event's output text goes
//! through a per-stream [`StreamMasker`], and the event is re-emitted with its text
//! replaced by what the masker releases — valid SSE and JSON, the same event shape — so
//! that an entity split across events reaches the client masked.
//!
//! One text stream per choice (OpenAI Chat Completions and Completions, by `index`), per
//! content part (Responses, by `output_index` and `content_index`) or per content block
//! (Anthropic, by `index`). Where the text sits:
//!
//! | API | delta | a text stream ends at |
//! |---|---|---|
//! | Chat Completions | `choices[i].delta.content` | its `finish_reason`, `[DONE]` |
//! | Completions | `choices[i].text` | its `finish_reason`, `[DONE]` |
//! | Responses | `response.output_text.delta` → `delta` | `response.output_text.done`, `response.completed` … |
//! | Messages | `content_block_delta` → `delta.text` | `content_block_stop`, `message_delta`, `message_stop` |
//!
//! Text a masker still holds when its stream ends is flushed in an event of the delta's
//! shape placed just before the ending event (or, when the ending event carries text
//! itself, appended to it). Events that repeat the whole text (Responses `*.done`,
//! `response.completed`) have their `text` strings masked whole, which gives the same
//! result as the deltas (`StreamMasker` output equals `Scanner::mask` of the whole).
//!
//! Not guarded: refusals, reasoning and tool-call arguments (not text shown as the
//! answer). Events are re-encoded (`SseEvent::write_to`): comments and the spelling of
//! field lines are not kept; an event is emitted once it is complete.
//!
//! Memory is bounded by `limits.buffers`: the parser's line and event, and — for what the
//! guard itself holds across events (the text its maskers hold back and each text
//! stream's template event) — the event bound again, summed over the text streams. Past
//! a bound the policy's failure mode decides ([`StreamOut::Limit`]): the maskers flush
//! what they held, then fail open passes the rest of the stream on unguarded and fail
//! closed ends the stream with an error event.

use std::sync::Arc;

use smallvec::SmallVec;

use crate::config::{FailureMode, GuardAction};
use crate::guard::{Scanner, StreamMasker};
use crate::llm::{Api, SseEvent, SseLimit, SseLimits, SseParser};

use super::rules::{CompiledSide, Matcher};
use super::stream_emit::Emitted;
use super::stream_events::{parse, Key, Parsed, Path, Slot};
use super::Tally;

/// The SSE side of one response.
pub struct StreamGuard {
    api: Api,
    parser: SseParser,
    texts: Vec<TextStream>,
    /// Most bytes the text streams may hold together (the SSE event bound).
    hold_limit: usize,
    failure_mode: FailureMode,
    /// A reject or a limit ended the stream: nothing more is emitted.
    ended: bool,
    /// A limit was passed in fail-open mode: chunks go on as they come.
    passthrough: bool,
}

struct TextStream {
    key: Key,
    enforce: Option<StreamMasker<Arc<Scanner>>>,
    audit: Option<StreamMasker<Arc<Scanner>>>,
    /// The last event that carried this stream's text, kept while the masker holds text
    /// back (only then is there a flush event to shape like it).
    template: Option<SseEvent>,
}

/// An event's texts as released (each at its path), and whether it repeats whole texts.
type EventRewrite = (Vec<(Path, String)>, bool);

/// What one chunk became.
#[derive(Debug, PartialEq)]
pub enum StreamOut {
    /// Emit the chunk as it was pushed.
    Unchanged,
    /// Emit these bytes.
    Emit(Vec<u8>),
    /// A reject rule fired: emit these bytes (what was released before, then an error
    /// event) and end the stream.
    Reject { bytes: Vec<u8>, rule: usize },
    /// A buffer bound was passed. `ended` (fail closed): emit these bytes, which end
    /// with an error event, and end the stream. Otherwise (fail open) emit them — what
    /// was held, then the rest of the chunk — and the rest of the stream passes as is.
    Limit {
        bytes: Vec<u8>,
        limit: SseLimit,
        ended: bool,
    },
}

// === impl StreamGuard ===

impl StreamGuard {
    pub fn new(api: Api, limits: SseLimits, failure_mode: FailureMode) -> Self {
        StreamGuard {
            api,
            parser: SseParser::with_limits(limits),
            texts: Vec::new(),
            hold_limit: limits.event_bytes,
            failure_mode,
            ended: false,
            passthrough: false,
        }
    }

    /// Takes the next chunk of the (decoded) body.
    pub fn push(
        &mut self,
        side: &CompiledSide,
        chunk: &[u8],
        end_of_stream: bool,
        tally: &mut Tally,
    ) -> StreamOut {
        if self.passthrough {
            return StreamOut::Unchanged;
        }
        if self.ended {
            return StreamOut::Emit(Vec::new());
        }
        let clean_start = self.parser.buffered() == 0 && self.text_held() == 0;
        let found_before = tally.total();
        let mut events: Vec<SseEvent> = self.parser.push(chunk).collect();
        let mut exceeded = self.parser.exceeded();
        if end_of_stream && exceeded.is_none() {
            events.extend(self.parser.finish());
        }
        // About one piece per event, plus the flushes at a stream's end.
        let mut out = Emitted::with_capacity(events.len() + 1);
        for event in events {
            if let Err(rule) = self.on_event(side, event, &mut out, tally) {
                return self.reject(side, out, rule);
            }
            if exceeded.is_none() && self.held() > self.hold_limit {
                exceeded = Some(SseLimit::Event);
            }
        }
        if let Some(limit) = exceeded {
            return self.limit(side, out, limit, tally);
        }
        if end_of_stream {
            if let Err(rule) = self.flush_all(side, &mut out, tally) {
                return self.reject(side, out, rule);
            }
        }
        // Nothing held before or after this chunk and nothing found in it: each text
        // stream's output is its input, so the chunk goes out as it came.
        let unchanged = clean_start
            && tally.total() == found_before
            && self.parser.buffered() == 0
            && self.text_held() == 0
            && !out.masks_whole_texts();
        if unchanged {
            return StreamOut::Unchanged;
        }
        StreamOut::Emit(out.render(side.enforce.as_ref()))
    }

    fn reject(&mut self, side: &CompiledSide, mut out: Emitted, rule: usize) -> StreamOut {
        let r = side.rule(rule);
        out.event(self.end_event(r.status.as_u16(), "response_rejected", &r.message));
        StreamOut::Reject {
            bytes: out.render(side.enforce.as_ref()),
            rule,
        }
    }

    /// Ends the stream: an error event in the API's format goes after `out`, and nothing
    /// after it.
    pub fn end(&mut self, out: &mut Vec<u8>, status: u16, kind: &str, message: &str) {
        self.end_event(status, kind, message).write_to(out);
    }

    /// Ends the stream; returns the error event that says so.
    fn end_event(&mut self, status: u16, kind: &str, message: &str) -> SseEvent {
        self.ended = true;
        self.texts.clear();
        let body = self.api.error_body(status, kind, message);
        SseEvent {
            event: match self.api {
                Api::ChatCompletions | Api::Completions | Api::Embeddings => None,
                _ => Some("error".to_string()),
            },
            data: String::from_utf8(body).expect("serde_json writes UTF-8"),
            id: None,
            retry: None,
        }
    }

    /// A bound was passed: the failure mode decides (see the module doc).
    fn limit(
        &mut self,
        side: &CompiledSide,
        mut out: Emitted,
        limit: SseLimit,
        tally: &mut Tally,
    ) -> StreamOut {
        // What the maskers held was sent before the bound was passed: out it goes.
        if let Err(rule) = self.flush_all(side, &mut out, tally) {
            return self.reject(side, out, rule);
        }
        let ended = self.failure_mode == FailureMode::FailClosed;
        if ended {
            let message = "the upstream response stream exceeds the gateway's buffer limits";
            out.event(self.end_event(502, "upstream_error", message));
        } else {
            out.bytes(self.parser.take_unparsed());
            self.passthrough = true;
        }
        StreamOut::Limit {
            bytes: out.render(side.enforce.as_ref()),
            limit,
            ended,
        }
    }

    /// Bytes the maskers hold back.
    fn text_held(&self) -> usize {
        self.texts
            .iter()
            .flat_map(|t| [&t.enforce, &t.audit])
            .map(|m| m.as_ref().map_or(0, StreamMasker::held))
            .sum()
    }

    /// Bytes the text streams hold: text held back, and template events.
    fn held(&self) -> usize {
        self.texts
            .iter()
            .map(|t| {
                let masker = |m: &Option<StreamMasker<Arc<Scanner>>>| {
                    m.as_ref().map_or(0, StreamMasker::held)
                };
                masker(&t.enforce)
                    + masker(&t.audit)
                    + t.template.as_ref().map_or(0, |e| e.data.len())
            })
            .sum()
    }

    fn on_event(
        &mut self,
        side: &CompiledSide,
        event: SseEvent,
        out: &mut Emitted,
        tally: &mut Tally,
    ) -> Result<(), usize> {
        let data = event.data.trim_ascii();
        if data == "[DONE]" {
            self.flush_all(side, out, tally)?;
            out.event(event);
            return Ok(());
        }
        // Not JSON: no text a client shows.
        let rewrite = match parse(self.api, data) {
            Some(parsed) => self.on_texts(side, parsed, &event, out, tally)?,
            None => None,
        };
        match rewrite {
            Some((slots, whole)) => out.rewrite(event, slots, whole),
            None => out.event(event),
        }
        Ok(())
    }

    /// The texts of one event through their streams: the event's rewrite, or `None` when
    /// it goes out as it came (nothing masked or held back in it).
    fn on_texts(
        &mut self,
        side: &CompiledSide,
        parsed: Parsed<'_>,
        event: &SseEvent,
        out: &mut Emitted,
        tally: &mut Tally,
    ) -> Result<Option<EventRewrite>, usize> {
        if parsed.terminal {
            self.flush_all(side, out, tally)?;
        }
        // Streams ending here without text in this event are flushed before it.
        for key in &parsed.ending {
            if !parsed.slots.iter().any(|s| s.key == *key) {
                self.flush(side, *key, out, tally)?;
            }
        }
        if parsed.slots.is_empty() && !parsed.whole {
            return Ok(None);
        }
        let mut slots: SmallVec<[(Path, String); 1]> = SmallVec::new();
        let mut unchanged = true;
        for slot in parsed.slots {
            let ends = parsed.ending.contains(&slot.key);
            let text = self.release(side, &slot, ends, event, tally)?;
            unchanged &= text == slot.text;
            slots.push((slot.path, text));
        }
        Ok((!unchanged || parsed.whole).then(|| (slots.into_vec(), parsed.whole)))
    }

    /// One slot's text through its stream's maskers: what may be emitted now (all of
    /// it when the stream `ends` here).
    fn release(
        &mut self,
        side: &CompiledSide,
        slot: &Slot<'_>,
        ends: bool,
        event: &SseEvent,
        tally: &mut Tally,
    ) -> Result<String, usize> {
        let stream = self.stream(side, slot.key);
        let mut text = String::new();
        if let Some(m) = &mut stream.enforce {
            m.push_into(&slot.text, &mut text);
            if ends {
                m.finish_into(&mut text);
            }
        } else {
            text.push_str(&slot.text);
        }
        if let Some(a) = &mut stream.audit {
            a.push(&slot.text);
            if ends {
                a.finish();
            }
        }
        // The flush event's shape: the last event that carried this stream's text. It is
        // only needed while text is held back, and the last text-carrying event is then
        // one that left text held, so other events need not be copied.
        stream.template = match &stream.enforce {
            Some(m) if m.held() > 0 => Some(event.clone()),
            _ => None,
        };
        count(side, stream, tally)?;
        if ends {
            self.texts.retain(|t| t.key != slot.key);
        }
        Ok(text)
    }

    /// The text stream for `key`, made on first use.
    fn stream(&mut self, side: &CompiledSide, key: Key) -> &mut TextStream {
        let i = match self.texts.iter().position(|t| t.key == key) {
            Some(i) => i,
            None => {
                let masker =
                    |m: &Option<Matcher>| m.as_ref().map(|m| StreamMasker::new(m.scanner.clone()));
                self.texts.push(TextStream {
                    key,
                    enforce: masker(&side.enforce),
                    audit: masker(&side.audit),
                    template: None,
                });
                self.texts.len() - 1
            }
        };
        &mut self.texts[i]
    }

    fn flush_all(
        &mut self,
        side: &CompiledSide,
        out: &mut Emitted,
        tally: &mut Tally,
    ) -> Result<(), usize> {
        while let Some(key) = self.texts.first().map(|t| t.key) {
            self.flush(side, key, out, tally)?;
        }
        Ok(())
    }

    /// Ends one text stream: what its masker held goes out in an event of the delta's
    /// shape.
    fn flush(
        &mut self,
        side: &CompiledSide,
        key: Key,
        out: &mut Emitted,
        tally: &mut Tally,
    ) -> Result<(), usize> {
        let Some(i) = self.texts.iter().position(|t| t.key == key) else {
            return Ok(());
        };
        let mut stream = self.texts.remove(i);
        let text = stream
            .enforce
            .as_mut()
            .map(|m| m.finish())
            .unwrap_or_default();
        if let Some(a) = &mut stream.audit {
            a.finish();
        }
        count(side, &mut stream, tally)?;
        if text.is_empty() {
            return Ok(());
        }
        out.flush(self.api, key, stream.template.take(), text);
        Ok(())
    }
}

/// Counts the findings the maskers released; `Err(rule)` when one is a reject rule's.
fn count(side: &CompiledSide, stream: &mut TextStream, tally: &mut Tally) -> Result<(), usize> {
    let mut rejected = None;
    for (masker, matcher) in [
        (&mut stream.enforce, &side.enforce),
        (&mut stream.audit, &side.audit),
    ] {
        let (Some(masker), Some(matcher)) = (masker.as_mut(), matcher.as_ref()) else {
            continue;
        };
        for f in masker.take_findings() {
            let rule = matcher.owner(f.rule);
            tally.add(rule, 1);
            if side.rule(rule).action == GuardAction::Reject {
                rejected.get_or_insert(rule);
            }
        }
    }
    rejected.map_or(Ok(()), Err)
}
