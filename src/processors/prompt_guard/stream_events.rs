//! Where an SSE event of a completion stream carries answer text, and which text streams
//! it ends (see `stream.rs` for the table per API).
//!
//! Every event of a stream is read here, so the few fields that matter are read straight
//! from the event's text with `llm::skim`, building no document and borrowing the
//! texts. An event the skimmer leaves to `serde_json` (see there) is read as a `Value`,
//! whose reading is the reference: both give the same [`Fields`], and the one step from
//! fields to meaning is shared.

use std::borrow::Cow;

use serde_json::Value;
use smallvec::SmallVec;

use crate::llm::skim::Skim;
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
    /// Events carry one text at most, but for several choices.
    pub slots: SmallVec<[Slot<'a>; 1]>,
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
    let fields = match skim(api, data) {
        Some(fields) => fields,
        None => from_value(api, &serde_json::from_str::<Value>(data).ok()?),
    };
    Some(fields.meaning(api))
}

/// The paths of the common shapes.
const CHAT_FIRST: &[Seg<'static>] = &[seg("choices"), Seg::Index(0), seg("delta"), seg("content")];
const COMPLETION_FIRST: &[Seg<'static>] = &[seg("choices"), Seg::Index(0), seg("text")];
const DELTA: &[Seg<'static>] = &[seg("delta")];
const DELTA_TEXT: &[Seg<'static>] = &[seg("delta"), seg("text")];
const BLOCK_TEXT: &[Seg<'static>] = &[seg("content_block"), seg("text")];

const fn seg(s: &'static str) -> Seg<'static> {
    Seg::Key(Cow::Borrowed(s))
}

fn key(s: &'static str) -> Seg<'static> {
    Seg::Key(Cow::Borrowed(s))
}

/// The fields of one event that carry text or end streams, as a `serde_json::Value`
/// reading sees them: the last of duplicate keys wins, a field of another type is absent.
#[derive(Default)]
#[cfg_attr(any(test, feature = "fuzzing"), derive(Debug, PartialEq))]
struct Fields<'a> {
    /// `type` (Responses, Messages).
    kind: Option<Cow<'a, str>>,
    /// `index` (Messages) or `output_index` (Responses).
    index: Option<u64>,
    /// `content_index` (Responses).
    content_index: Option<u64>,
    /// `delta` as a string (Responses) or `delta.text` (Messages).
    delta: Option<Cow<'a, str>>,
    /// `content_block.text` (Messages).
    block_text: Option<Cow<'a, str>>,
    /// `choices` (Chat Completions, Completions): one, but for `n` > 1.
    choices: SmallVec<[Choice<'a>; 1]>,
}

/// One element of `choices`.
#[derive(Default)]
#[cfg_attr(any(test, feature = "fuzzing"), derive(Debug, PartialEq))]
struct Choice<'a> {
    index: Option<u64>,
    /// `delta.content` (Chat Completions) or `text` (Completions).
    text: Option<Cow<'a, str>>,
    /// `finish_reason` is present and not null.
    finished: bool,
}

impl<'a> Fields<'a> {
    /// What the fields mean for the text streams of `api`.
    fn meaning(self, api: Api) -> Parsed<'a> {
        let mut p = Parsed::default();
        match api {
            Api::ChatCompletions | Api::Completions | Api::Embeddings => {
                for (pos, choice) in self.choices.into_iter().enumerate() {
                    let index = choice.index.unwrap_or(pos as u64);
                    if let Some(text) = choice.text {
                        let path = choice_path(api, pos);
                        p.slots.push(Slot {
                            key: (index, 0),
                            path,
                            text,
                        });
                    }
                    if choice.finished {
                        p.ending.push((index, 0));
                    }
                }
            }
            Api::Responses => {
                let kind = self.kind.as_deref().unwrap_or("");
                let k = (self.index.unwrap_or(0), self.content_index.unwrap_or(0));
                match (kind, self.delta) {
                    ("response.output_text.delta", Some(text)) => p.slots.push(Slot {
                        key: k,
                        path: Cow::Borrowed(DELTA),
                        text,
                    }),
                    ("response.output_text.delta", None) => {}
                    _ => responses_flags(kind, k, &mut p),
                }
            }
            Api::Messages | Api::CountTokens => {
                let kind = self.kind.as_deref().unwrap_or("");
                let k = (self.index.unwrap_or(0), 0);
                let (text, path) = match kind {
                    "content_block_delta" => (self.delta, DELTA_TEXT),
                    "content_block_start" => {
                        (self.block_text.filter(|t| !t.is_empty()), BLOCK_TEXT)
                    }
                    _ => (None, BLOCK_TEXT),
                };
                match text {
                    Some(text) => p.slots.push(Slot {
                        key: k,
                        path: Cow::Borrowed(path),
                        text,
                    }),
                    None => messages_flags(kind, k, &mut p),
                }
            }
        }
        p
    }
}

/// Where the text of the choice at `pos` sits.
fn choice_path(api: Api, pos: usize) -> Path {
    match (api == Api::ChatCompletions, pos) {
        (true, 0) => Cow::Borrowed(CHAT_FIRST),
        (false, 0) => Cow::Borrowed(COMPLETION_FIRST),
        (true, _) => Cow::Owned(vec![
            key("choices"),
            Seg::Index(pos),
            key("delta"),
            key("content"),
        ]),
        (false, _) => Cow::Owned(vec![key("choices"), Seg::Index(pos), key("text")]),
    }
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

/// [`Fields`] read straight from the text, building no document; `None` when the text
/// is not JSON or the skimmer leaves it to `serde_json` (see `llm::skim`).
fn skim(api: Api, data: &str) -> Option<Fields<'_>> {
    let mut f = Fields::default();
    let mut s = Skim::new(data);
    if s.peek()? != b'{' {
        s.skip()?;
        s.finish()?;
        return Some(f);
    }
    let chat = matches!(
        api,
        Api::ChatCompletions | Api::Completions | Api::Embeddings
    );
    let index_key = if api == Api::Responses {
        "output_index"
    } else {
        "index"
    };
    s.object(|s, key| {
        match &*key {
            "choices" if chat => {
                f.choices.clear();
                if s.peek()? != b'[' {
                    return s.skip();
                }
                s.array(|s, _| {
                    f.choices.push(skim_choice(api, s)?);
                    Some(())
                })?;
            }
            _ if chat => s.skip()?,
            "type" => f.kind = s.str_or_skip()?,
            k if k == index_key => f.index = s.u64_or_skip()?,
            "content_index" if api == Api::Responses => f.content_index = s.u64_or_skip()?,
            "delta" if api == Api::Responses => f.delta = s.str_or_skip()?,
            "delta" => f.delta = skim_member(s, "text")?,
            "content_block" if api != Api::Responses => f.block_text = skim_member(s, "text")?,
            _ => s.skip()?,
        }
        Some(())
    })?;
    s.finish()?;
    Some(f)
}

/// One element of `choices`.
fn skim_choice<'a>(api: Api, s: &mut Skim<'a>) -> Option<Choice<'a>> {
    let mut c = Choice::default();
    if s.peek()? != b'{' {
        s.skip()?;
        return Some(c);
    }
    s.object(|s, key| {
        match &*key {
            "index" => c.index = s.u64_or_skip()?,
            "finish_reason" => c.finished = s.skip_non_null()?,
            "delta" if api == Api::ChatCompletions => c.text = skim_member(s, "content")?,
            "text" if api != Api::ChatCompletions => c.text = s.str_or_skip()?,
            _ => s.skip()?,
        }
        Some(())
    })?;
    Some(c)
}

/// The string member `name` of the object at the cursor, if it is an object with one.
fn skim_member<'a>(s: &mut Skim<'a>, name: &str) -> Option<Option<Cow<'a, str>>> {
    if s.peek()? != b'{' {
        return s.skip().map(|()| None);
    }
    let mut found = None;
    s.object(|s, key| {
        if key == name {
            found = s.str_or_skip()?;
            Some(())
        } else {
            s.skip()
        }
    })?;
    Some(found)
}

/// [`Fields`] from a parsed document: the reference reading.
fn from_value<'a>(api: Api, v: &Value) -> Fields<'a> {
    let owned = |v: Option<&Value>| v.and_then(Value::as_str).map(|t| Cow::Owned(t.to_owned()));
    let int = |name: &str| v.get(name).and_then(Value::as_u64);
    let chat = api == Api::ChatCompletions;
    let choices = v.get("choices").and_then(Value::as_array);
    let choice = |c: &Value| Choice {
        index: c.get("index").and_then(Value::as_u64),
        text: owned(if chat {
            c.pointer("/delta/content")
        } else {
            c.get("text")
        }),
        finished: c.get("finish_reason").is_some_and(|f| !f.is_null()),
    };
    match api {
        Api::ChatCompletions | Api::Completions | Api::Embeddings => Fields {
            choices: choices
                .map(|cs| cs.iter().map(choice).collect())
                .unwrap_or_default(),
            ..Fields::default()
        },
        Api::Responses => Fields {
            kind: owned(v.get("type")),
            index: int("output_index"),
            content_index: int("content_index"),
            delta: owned(v.get("delta")),
            ..Fields::default()
        },
        Api::Messages | Api::CountTokens => Fields {
            kind: owned(v.get("type")),
            index: int("index"),
            delta: owned(v.pointer("/delta/text")),
            block_text: owned(v.pointer("/content_block/text")),
            ..Fields::default()
        },
    }
}

/// Panics unless the skimmed reading of `data` is the `Value` reading, for every API
/// (the unit tests and the fuzz targets drive it).
#[cfg(any(test, feature = "fuzzing"))]
pub fn check_readings_agree(data: &str) {
    let value = serde_json::from_str::<Value>(data).ok();
    let apis = [
        Api::ChatCompletions,
        Api::Completions,
        Api::Responses,
        Api::Messages,
    ];
    for api in apis {
        match (skim(api, data), &value) {
            (Some(fast), Some(v)) => assert_eq!(fast, from_value(api, v), "{api:?}: {data}"),
            (Some(_), None) => panic!("skimmed what serde_json refuses: {data}"),
            (None, _) => {}
        }
    }
}

#[cfg(test)]
mod tests;
