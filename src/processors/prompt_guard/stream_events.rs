//! Where an SSE event of a completion stream carries answer text, and which text streams
//! it ends (see `stream.rs` for the table per API).
//!
//! Every event of a stream is read here, so the common shapes are deserialized into
//! borrowed structs, without building a `serde_json::Value`; an event those structs do
//! not fit (a field of an unexpected type, a duplicate key) is read again as a `Value`,
//! whose reading is the reference: the two agree wherever the structs fit.

use std::borrow::Cow;

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::Value;

use crate::llm::Api;

use super::json::Seg;

/// Identifies one text stream within a response: (choice or block or output index,
/// content index).
pub(super) type Key = (u64, u64);

/// Where a text string sits in an event: a static path for the common shapes, so
/// reading an event allocates none.
pub(super) type Path = Cow<'static, [Seg<'static>]>;

/// Where one event carries text of one stream.
pub(super) struct Slot<'a> {
    pub key: Key,
    pub path: Path,
    /// The text, borrowed from the event's data unless it had escapes.
    pub text: Cow<'a, str>,
}

/// What an event means for the text streams.
#[derive(Default)]
pub(super) struct Parsed<'a> {
    pub slots: Vec<Slot<'a>>,
    /// Streams that end with this event.
    pub ending: Vec<Key>,
    /// Every stream ends before this event.
    pub terminal: bool,
    /// The event repeats whole texts in `text` strings, to be masked whole.
    pub whole: bool,
}

/// Where the event `data` of `api` carries text, and which streams it ends; `None` when
/// `data` is not JSON.
pub(super) fn parse(api: Api, data: &str) -> Option<Parsed<'_>> {
    if let Some(parsed) = parse_fast(api, data) {
        return Some(parsed);
    }
    let value = serde_json::from_str::<Value>(data).ok()?;
    Some(parse_value(api, &value))
}

fn key(s: &'static str) -> Seg<'static> {
    Seg::Key(Cow::Borrowed(s))
}

const fn seg(s: &'static str) -> Seg<'static> {
    Seg::Key(Cow::Borrowed(s))
}

/// The paths of the common shapes.
const CHAT_FIRST: &[Seg<'static>] = &[seg("choices"), Seg::Index(0), seg("delta"), seg("content")];
const COMPLETION_FIRST: &[Seg<'static>] = &[seg("choices"), Seg::Index(0), seg("text")];
const DELTA: &[Seg<'static>] = &[seg("delta")];
const DELTA_TEXT: &[Seg<'static>] = &[seg("delta"), seg("text")];
const BLOCK_TEXT: &[Seg<'static>] = &[seg("content_block"), seg("text")];

#[derive(Deserialize)]
struct ChatEvent<'a> {
    #[serde(borrow, default)]
    choices: Option<Vec<ChatChoice<'a>>>,
}

#[derive(Deserialize)]
struct ChatChoice<'a> {
    #[serde(default)]
    index: Option<u64>,
    #[serde(borrow, default)]
    delta: Option<ChatDelta<'a>>,
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(default)]
    finish_reason: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct ChatDelta<'a> {
    #[serde(borrow, default)]
    content: Option<Cow<'a, str>>,
}

/// An Anthropic object whose `text` string may carry text.
#[derive(Deserialize)]
struct TextHolder<'a> {
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ResponsesEvent<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(default)]
    output_index: Option<u64>,
    #[serde(default)]
    content_index: Option<u64>,
    #[serde(borrow, default)]
    delta: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct MessagesEvent<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(default)]
    index: Option<u64>,
    #[serde(borrow, default)]
    delta: Option<TextHolder<'a>>,
    #[serde(borrow, default)]
    content_block: Option<TextHolder<'a>>,
}

/// [`parse`] through the borrowed structs; `None` when the event does not fit them.
fn parse_fast(api: Api, data: &str) -> Option<Parsed<'_>> {
    let mut p = Parsed::default();
    match api {
        Api::ChatCompletions | Api::Completions | Api::Embeddings => {
            let event: ChatEvent = serde_json::from_str(data).ok()?;
            for (pos, choice) in event.choices.unwrap_or_default().into_iter().enumerate() {
                let index = choice.index.unwrap_or(pos as u64);
                let (text, path) = if api == Api::ChatCompletions {
                    let path = match pos {
                        0 => Cow::Borrowed(CHAT_FIRST),
                        _ => Cow::Owned(vec![
                            key("choices"),
                            Seg::Index(pos),
                            key("delta"),
                            key("content"),
                        ]),
                    };
                    (choice.delta.and_then(|d| d.content), path)
                } else {
                    let path = match pos {
                        0 => Cow::Borrowed(COMPLETION_FIRST),
                        _ => Cow::Owned(vec![key("choices"), Seg::Index(pos), key("text")]),
                    };
                    (choice.text, path)
                };
                if let Some(text) = text {
                    p.slots.push(Slot {
                        key: (index, 0),
                        path,
                        text,
                    });
                }
                if choice.finish_reason.is_some() {
                    p.ending.push((index, 0));
                }
            }
        }
        Api::Responses => {
            let event: ResponsesEvent = serde_json::from_str(data).ok()?;
            let kind = event.kind.as_deref().unwrap_or("");
            let k = (
                event.output_index.unwrap_or(0),
                event.content_index.unwrap_or(0),
            );
            match kind {
                "response.output_text.delta" => {
                    if let Some(text) = event.delta {
                        p.slots.push(Slot {
                            key: k,
                            path: Cow::Borrowed(DELTA),
                            text,
                        });
                    }
                }
                _ => responses_flags(kind, k, &mut p),
            }
        }
        Api::Messages | Api::CountTokens => {
            let event: MessagesEvent = serde_json::from_str(data).ok()?;
            let kind = event.kind.as_deref().unwrap_or("");
            let k = (event.index.unwrap_or(0), 0);
            match kind {
                "content_block_delta" => {
                    if let Some(text) = event.delta.and_then(|d| d.text) {
                        let path = Cow::Borrowed(DELTA_TEXT);
                        p.slots.push(Slot { key: k, path, text });
                    }
                }
                "content_block_start" => {
                    if let Some(text) = event.content_block.and_then(|b| b.text) {
                        if !text.is_empty() {
                            let path = Cow::Borrowed(BLOCK_TEXT);
                            p.slots.push(Slot { key: k, path, text });
                        }
                    }
                }
                _ => messages_flags(kind, k, &mut p),
            }
        }
    }
    Some(p)
}

/// What a Responses event other than a text delta means for the text streams.
fn responses_flags(kind: &str, k: Key, p: &mut Parsed<'_>) {
    match kind {
        "response.output_text.done" => {
            p.ending.push(k);
            p.whole = true;
        }
        "response.completed" | "response.incomplete" | "response.failed" => {
            p.terminal = true;
            p.whole = true;
        }
        _ => p.whole = !kind.ends_with(".delta"),
    }
}

/// What a Messages event other than a text delta or block start means.
fn messages_flags(kind: &str, k: Key, p: &mut Parsed<'_>) {
    match kind {
        "content_block_stop" => p.ending.push(k),
        "message_delta" | "message_stop" => p.terminal = true,
        _ => {}
    }
}

/// [`parse`] on a parsed document: any shape, fields of unexpected types ignored.
fn parse_value(api: Api, v: &Value) -> Parsed<'static> {
    let mut p = Parsed::default();
    let key = |s: &'static str| Seg::Key(Cow::Borrowed(s));
    match api {
        Api::ChatCompletions | Api::Completions | Api::Embeddings => {
            let Some(choices) = v.get("choices").and_then(Value::as_array) else {
                return p;
            };
            for (pos, choice) in choices.iter().enumerate() {
                let index = choice
                    .get("index")
                    .and_then(Value::as_u64)
                    .unwrap_or(pos as u64);
                let (text, path) = if api == Api::ChatCompletions {
                    (
                        choice.pointer("/delta/content"),
                        vec![
                            key("choices"),
                            Seg::Index(pos),
                            key("delta"),
                            key("content"),
                        ],
                    )
                } else {
                    (
                        choice.get("text"),
                        vec![key("choices"), Seg::Index(pos), key("text")],
                    )
                };
                if let Some(text) = text.and_then(Value::as_str) {
                    p.slots.push(Slot {
                        key: (index, 0),
                        path: path.into(),
                        text: Cow::Owned(text.to_owned()),
                    });
                }
                if choice.get("finish_reason").is_some_and(|f| !f.is_null()) {
                    p.ending.push((index, 0));
                }
            }
        }
        Api::Responses => {
            let kind = v.get("type").and_then(Value::as_str).unwrap_or("");
            let index = |name: &str| v.get(name).and_then(Value::as_u64).unwrap_or(0);
            let k = (index("output_index"), index("content_index"));
            match kind {
                "response.output_text.delta" => {
                    if let Some(text) = v.get("delta").and_then(Value::as_str) {
                        p.slots.push(Slot {
                            key: k,
                            path: Cow::Borrowed(DELTA),
                            text: Cow::Owned(text.to_owned()),
                        });
                    }
                }
                "response.output_text.done" => {
                    p.ending.push(k);
                    p.whole = true;
                }
                "response.completed" | "response.incomplete" | "response.failed" => {
                    p.terminal = true;
                    p.whole = true;
                }
                _ => p.whole = !kind.ends_with(".delta"),
            }
        }
        Api::Messages | Api::CountTokens => {
            let kind = v.get("type").and_then(Value::as_str).unwrap_or("");
            let k = (v.get("index").and_then(Value::as_u64).unwrap_or(0), 0);
            match kind {
                "content_block_delta" => {
                    if let Some(text) = v.pointer("/delta/text").and_then(Value::as_str) {
                        p.slots.push(Slot {
                            key: k,
                            path: Cow::Borrowed(DELTA_TEXT),
                            text: Cow::Owned(text.to_owned()),
                        });
                    }
                }
                "content_block_start" => {
                    if let Some(text) = v.pointer("/content_block/text").and_then(Value::as_str) {
                        if !text.is_empty() {
                            p.slots.push(Slot {
                                key: k,
                                path: Cow::Borrowed(BLOCK_TEXT),
                                text: Cow::Owned(text.to_owned()),
                            });
                        }
                    }
                }
                "content_block_stop" => p.ending.push(k),
                "message_delta" | "message_stop" => p.terminal = true,
                _ => {}
            }
        }
    }
    p
}
