//! What one chunk of a guarded stream becomes, assembled before it is written: events
//! going out as they came, events whose text strings are replaced, and raw bytes. The
//! rewrites are deferred so that a chunk which masked nothing and left no text held
//! back can go out as the bytes that came in (`StreamGuard::push`), without re-encoding
//! any event — and without a body mutation for Envoy to apply. A text stream's flush
//! event is built only when the chunk is rendered, for the same reason.

use serde_json::{json, Value};

use crate::llm::{Api, SseEvent};

use super::json::{rewrite_str_values, Seg};
use super::rules::Matcher;
use super::stream_events::{Key, Path};

/// The pieces of one chunk's output, in order.
#[derive(Default)]
pub(super) struct Emitted {
    pieces: Vec<Piece>,
    /// Some rewrite masks whole `text` strings (a Responses `*.done` event).
    whole: bool,
}

enum Piece {
    Event(SseEvent),
    Rewrite(Rewrite),
    Bytes(Vec<u8>),
    /// What a text stream's masker held at its end, in an event shaped like its deltas
    /// (built only when rendered: a chunk that goes out unchanged never needs it).
    Flush(Box<Flush>),
}

struct Flush {
    api: Api,
    key: Key,
    template: Option<SseEvent>,
    text: String,
}

/// An event whose text strings at `slots`' paths are replaced by what the maskers
/// released, and — when `whole` — whose other `text` strings are masked whole.
struct Rewrite {
    event: SseEvent,
    slots: Vec<(Path, String)>,
    whole: bool,
}

impl Emitted {
    pub fn with_capacity(pieces: usize) -> Self {
        Emitted {
            pieces: Vec::with_capacity(pieces),
            whole: false,
        }
    }

    /// An event, as it is.
    pub fn event(&mut self, event: SseEvent) {
        self.pieces.push(Piece::Event(event));
    }

    /// The text a stream's masker held at its end, for stream `key` of `api`, in an event
    /// shaped like `template` (the stream's last delta).
    pub fn flush(&mut self, api: Api, key: Key, template: Option<SseEvent>, text: String) {
        self.pieces.push(Piece::Flush(Box::new(Flush {
            api,
            key,
            template,
            text,
        })));
    }

    /// Bytes, as they are.
    pub fn bytes(&mut self, bytes: Vec<u8>) {
        self.pieces.push(Piece::Bytes(bytes));
    }

    /// `event` with the string at each slot path replaced by its text.
    pub fn rewrite(&mut self, event: SseEvent, slots: Vec<(Path, String)>, whole: bool) {
        self.whole |= whole;
        self.pieces.push(Piece::Rewrite(Rewrite {
            event,
            slots,
            whole,
        }));
    }

    /// Whether a rewrite masks whole texts (its outcome is only known once rendered).
    pub fn masks_whole_texts(&self) -> bool {
        self.whole
    }

    /// The bytes, `enforce` masking the whole texts.
    pub fn render(self, enforce: Option<&Matcher>) -> Vec<u8> {
        let mut out = Vec::new();
        for piece in self.pieces {
            match piece {
                Piece::Event(event) => event.write_to(&mut out),
                Piece::Bytes(bytes) => out.extend_from_slice(&bytes),
                Piece::Rewrite(r) => r.render(enforce, &mut out),
                Piece::Flush(f) => {
                    if let Some(event) = flush_event(f.api, f.key, f.template.as_ref(), f.text) {
                        event.write_to(&mut out);
                    }
                }
            }
        }
        out
    }
}

impl Rewrite {
    fn render(mut self, enforce: Option<&Matcher>, out: &mut Vec<u8>) {
        let whole = self.whole;
        let rewritten = rewrite_str_values(&self.event.data, |path, token| {
            if let Some(slot) = self.slots.iter_mut().find(|(p, _)| **p == *path) {
                return Some(std::mem::take(&mut slot.1));
            }
            let m = enforce.filter(|_| whole && path.last().and_then(Seg::key) == Some("text"))?;
            let text = token.text().ok()?;
            let masked = m.scanner.mask(&text);
            (masked != text).then_some(masked)
        });
        match rewritten {
            Ok(Some(data)) => SseEvent {
                data: String::from_utf8(data).expect("rewritten from a str"),
                ..self.event
            }
            .write_to(out),
            _ => self.event.write_to(out),
        }
    }
}

/// An event carrying `text` for stream `key`, shaped like the stream's deltas.
fn flush_event(api: Api, key: Key, template: Option<&SseEvent>, text: String) -> Option<SseEvent> {
    let base = || -> Value {
        template
            .and_then(|t| serde_json::from_str::<Value>(&t.data).ok())
            .filter(Value::is_object)
            .unwrap_or_else(|| json!({}))
    };
    let (event, data) = match api {
        Api::ChatCompletions | Api::Completions | Api::Embeddings => {
            let mut v = base();
            let obj = v.as_object_mut()?;
            obj.remove("usage");
            let choice = if api == Api::ChatCompletions {
                json!({"index": key.0, "delta": {"content": text}, "finish_reason": null})
            } else {
                json!({"index": key.0, "text": text, "finish_reason": null})
            };
            obj.insert("choices".into(), json!([choice]));
            (None, v)
        }
        Api::Responses => {
            let mut v = base();
            let obj = v.as_object_mut()?;
            obj.insert("type".into(), json!("response.output_text.delta"));
            obj.insert("output_index".into(), json!(key.0));
            obj.insert("content_index".into(), json!(key.1));
            obj.insert("delta".into(), json!(text));
            (Some("response.output_text.delta".to_string()), v)
        }
        Api::Messages | Api::CountTokens => (
            Some("content_block_delta".to_string()),
            json!({"type": "content_block_delta", "index": key.0, "delta": {"type": "text_delta", "text": text}}),
        ),
    };
    Some(SseEvent {
        event: event.or_else(|| template.and_then(|t| t.event.clone())),
        data: data.to_string(),
        id: None,
        retry: None,
    })
}
