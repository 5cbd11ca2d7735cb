//! vLLM's KV-event wire format, decoded into typed events.
//!
//! A message is three ZeroMQ frames: the topic, an 8-byte big-endian sequence number and
//! a msgpack payload. The payload is an `EventBatch` as msgspec writes it with
//! `array_like=True`: `[ts, events, data_parallel_rank]` (trailing defaults may be left
//! out). Each event is a tagged struct, accepted in both encodings:
//! - array form: `["BlockStored", block_hashes, parent_block_hash, token_ids,
//!   block_size, lora_id, medium, lora_name, extra_keys, group_idx, …]`,
//!   `["BlockRemoved", block_hashes, medium, …]`, `["AllBlocksCleared"]`;
//! - map form: `{"type": "BlockStored", "block_hashes": …, …}` with the same names,
//!   in any order (fields an event does not have are ignored).
//!
//! A block hash is an unsigned int (vLLM's default) or bytes (a sha256 digest: its
//! last 8 bytes, big-endian). Every list is bounded ([`MAX_EVENTS`], [`MAX_BLOCKS`],
//! [`MAX_TOKENS`]); anything else — a wrong shape, type or tag, a length beyond a bound,
//! token ids that do not fill the blocks — is a [`DecodeError`], never a panic.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// Most events in one batch.
pub const MAX_EVENTS: usize = 65_536;
/// Most block hashes in one event.
pub const MAX_BLOCKS: usize = 65_536;
/// Most token ids in one event.
pub const MAX_TOKENS: usize = 1 << 20;
/// Largest payload decoded.
pub const MAX_PAYLOAD: usize = 64 << 20;

/// One message of the stream.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub seq: u64,
    pub batch: Batch,
}

/// An `EventBatch`.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// The publisher's clock (seconds since the epoch).
    pub ts: f64,
    pub events: Vec<Event>,
    pub data_parallel_rank: Option<i64>,
}

/// One KV-cache event.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    Stored(BlockStored),
    Removed {
        block_hashes: Vec<u64>,
        medium: Option<String>,
    },
    AllCleared,
}

/// Blocks that entered the cache: `token_ids` holds `block_size` ids per block, in
/// order; the first block's parent is `parent_block_hash` (none at the prompt's start).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BlockStored {
    pub block_hashes: Vec<u64>,
    pub parent_block_hash: Option<u64>,
    pub token_ids: Vec<u32>,
    pub block_size: u32,
    pub lora_id: Option<i64>,
    pub medium: Option<String>,
    pub lora_name: Option<String>,
}

/// Why a message was dropped.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("{0} frames, expected 3 (topic, sequence, payload)")]
    Frames(usize),
    #[error("sequence frame of {0} bytes, expected 8")]
    Sequence(usize),
    #[error("payload of {0} bytes is over the {MAX_PAYLOAD}-byte bound")]
    TooLarge(usize),
    #[error("payload: {0}")]
    Payload(String),
    #[error("event {index}: {token_ids} token ids for {blocks} blocks of {block_size}")]
    TokenCount {
        index: usize,
        token_ids: usize,
        blocks: usize,
        block_size: u32,
    },
}

/// Decodes one message from its frames.
pub fn decode_message<F: AsRef<[u8]>>(frames: &[F]) -> Result<Message, DecodeError> {
    let [_topic, seq, payload] = frames else {
        return Err(DecodeError::Frames(frames.len()));
    };
    let seq: [u8; 8] = seq
        .as_ref()
        .try_into()
        .map_err(|_| DecodeError::Sequence(seq.as_ref().len()))?;
    Ok(Message {
        seq: u64::from_be_bytes(seq),
        batch: decode_batch(payload.as_ref())?,
    })
}

/// Decodes an `EventBatch` payload and checks that each stored event's token ids fill
/// its blocks.
pub fn decode_batch(payload: &[u8]) -> Result<Batch, DecodeError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(DecodeError::TooLarge(payload.len()));
    }
    let batch: Batch =
        rmp_serde::from_slice(payload).map_err(|e| DecodeError::Payload(e.to_string()))?;
    for (index, e) in batch.events.iter().enumerate() {
        if let Event::Stored(s) = e {
            let want = s.block_hashes.len().checked_mul(s.block_size as usize);
            if s.block_size == 0 || want != Some(s.token_ids.len()) {
                return Err(DecodeError::TokenCount {
                    index,
                    token_ids: s.token_ids.len(),
                    blocks: s.block_hashes.len(),
                    block_size: s.block_size,
                });
            }
        }
    }
    Ok(batch)
}

// === impl Batch ===

impl<'de> Deserialize<'de> for Batch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Batch;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an EventBatch array [ts, events, data_parallel_rank]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Batch, A::Error> {
                let ts: f64 = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let events: Bounded<Event, MAX_EVENTS> = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(1, &self))?;
                let rank: Option<i64> = seq.next_element::<Option<i64>>()?.flatten();
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Batch {
                    ts,
                    events: events.0,
                    data_parallel_rank: rank,
                })
            }
        }
        d.deserialize_seq(V)
    }
}

// === impl Event ===

/// The tag of an event.
#[derive(Clone, Copy, PartialEq)]
enum Tag {
    Stored,
    Removed,
    Cleared,
}

fn tag<E: de::Error>(name: &str) -> Result<Tag, E> {
    match name {
        "BlockStored" => Ok(Tag::Stored),
        "BlockRemoved" => Ok(Tag::Removed),
        "AllBlocksCleared" => Ok(Tag::Cleared),
        other => Err(E::custom(format_args!("unknown event type {other:?}"))),
    }
}

/// Fields in the order of the array form, after the tag.
const STORED_FIELDS: [&str; 7] = [
    "block_hashes",
    "parent_block_hash",
    "token_ids",
    "block_size",
    "lora_id",
    "medium",
    "lora_name",
];
const REMOVED_FIELDS: [&str; 2] = ["block_hashes", "medium"];

/// An event's fields as they come, checked when the event is complete.
#[derive(Default)]
struct Fields {
    stored: BlockStored,
    /// Bits of the `STORED_FIELDS` read.
    seen: u8,
}

impl Fields {
    fn names(tag: Tag) -> &'static [&'static str] {
        match tag {
            Tag::Stored => &STORED_FIELDS,
            Tag::Removed => &REMOVED_FIELDS,
            Tag::Cleared => &[],
        }
    }

    /// Sets field `name` to `got`.
    fn apply<E: de::Error>(&mut self, name: &str, got: Got) -> Result<(), E> {
        if let Some(i) = STORED_FIELDS.iter().position(|n| *n == name) {
            self.seen |= 1 << i;
        }
        let s = &mut self.stored;
        match (name, got) {
            ("block_hashes", Got::Hashes(h)) => s.block_hashes = h,
            ("parent_block_hash", Got::Hash(h)) => s.parent_block_hash = h,
            ("token_ids", Got::Tokens(t)) => s.token_ids = t,
            ("block_size", Got::Int(n)) => {
                s.block_size = n
                    .try_into()
                    .map_err(|_| E::custom("block_size out of range"))?
            }
            ("lora_id", Got::Int(n)) => s.lora_id = Some(n),
            ("medium", Got::Text(t)) => s.medium = t,
            ("lora_name", Got::Text(t)) => s.lora_name = t,
            (_, Got::Nil) => {}
            (name, _) => return Err(E::custom(format_args!("bad value for {name}"))),
        }
        Ok(())
    }

    fn finish<E: de::Error>(self, tag: Tag) -> Result<Event, E> {
        let need = match tag {
            Tag::Stored => 0b1111u8, // hashes, parent, token ids, block size
            Tag::Removed => 0b1,
            Tag::Cleared => 0,
        };
        if self.seen & need != need {
            return Err(E::custom("an event lacks a required field"));
        }
        Ok(match tag {
            Tag::Stored => Event::Stored(self.stored),
            Tag::Removed => Event::Removed {
                block_hashes: self.stored.block_hashes,
                medium: self.stored.medium,
            },
            Tag::Cleared => Event::AllCleared,
        })
    }
}

/// What a field is read as.
#[derive(Clone, Copy)]
enum Want {
    Hashes,
    Hash,
    Tokens,
    Int,
    Text,
}

enum Got {
    Hashes(Vec<u64>),
    Hash(Option<u64>),
    Tokens(Vec<u32>),
    Int(i64),
    Text(Option<String>),
    Nil,
}

fn want_of(name: &str) -> Want {
    match name {
        "block_hashes" => Want::Hashes,
        "parent_block_hash" => Want::Hash,
        "token_ids" => Want::Tokens,
        "block_size" | "lora_id" => Want::Int,
        _ => Want::Text,
    }
}

/// A field's value, typed by what is wanted of it.
impl<'de> de::DeserializeSeed<'de> for Want {
    type Value = Got;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Got, D::Error> {
        Ok(match self {
            Want::Hashes => {
                let v = Bounded::<Hash, MAX_BLOCKS>::deserialize(d)?;
                Got::Hashes(v.0.into_iter().map(|h| h.0).collect())
            }
            Want::Hash => Got::Hash(Option::<Hash>::deserialize(d)?.map(|h| h.0)),
            Want::Tokens => Got::Tokens(Bounded::<u32, MAX_TOKENS>::deserialize(d)?.0),
            Want::Int => Option::<i64>::deserialize(d)?.map_or(Got::Nil, Got::Int),
            Want::Text => Got::Text(Option::<String>::deserialize(d)?),
        })
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Event;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a tagged KV event (array or map)")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Event, A::Error> {
                let name: String = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let tag = tag(&name)?;
                let mut fields = Fields::default();
                let mut ended = false;
                for name in Fields::names(tag) {
                    // Trailing fields may be left out.
                    match seq.next_element_seed(want_of(name))? {
                        Some(got) => fields.apply(name, got)?,
                        None => {
                            ended = true;
                            break;
                        }
                    }
                }
                if !ended {
                    while seq.next_element::<IgnoredAny>()?.is_some() {}
                }
                fields.finish(tag)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Event, A::Error> {
                // msgspec writes the tag first, but any order is read.
                let mut tag_of: Option<Tag> = None;
                let mut fields = Fields::default();
                while let Some(key) = map.next_key::<String>()? {
                    if key == "type" {
                        if tag_of.is_some() {
                            return Err(de::Error::duplicate_field("type"));
                        }
                        tag_of = Some(tag(&map.next_value::<String>()?)?);
                    } else if STORED_FIELDS.contains(&key.as_str()) {
                        let got = map.next_value_seed(want_of(&key))?;
                        fields.apply(&key, got)?;
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                fields.finish(tag_of.ok_or_else(|| de::Error::missing_field("type"))?)
            }
        }
        d.deserialize_any(V)
    }
}

// === impl Hash ===

/// A block hash: an int, or bytes whose last 8 are read big-endian.
struct Hash(u64);

impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Hash;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a block hash (int or bytes)")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Hash, E> {
                Ok(Hash(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Hash, E> {
                Ok(Hash(v as u64))
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Hash, E> {
                if v.is_empty() {
                    return Err(E::custom("an empty block hash"));
                }
                let tail = &v[v.len().saturating_sub(8)..];
                let mut buf = [0u8; 8];
                buf[8 - tail.len()..].copy_from_slice(tail);
                Ok(Hash(u64::from_be_bytes(buf)))
            }
        }
        d.deserialize_any(V)
    }
}

// === impl Bounded ===

/// A list of at most `N` items (the allocation follows the items read, not the
/// length the input claims).
struct Bounded<T, const N: usize>(Vec<T>);

impl<'de, T: Deserialize<'de>, const N: usize> Deserialize<'de> for Bounded<T, N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T, const N: usize>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>, const N: usize> Visitor<'de> for V<T, N> {
            type Value = Bounded<T, N>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "a list of at most {N} items")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                if seq.size_hint().is_some_and(|n| n > N) {
                    return Err(de::Error::custom(format_args!(
                        "a list of more than {N} items"
                    )));
                }
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
                while let Some(item) = seq.next_element()? {
                    if out.len() == N {
                        return Err(de::Error::custom(format_args!(
                            "a list of more than {N} items"
                        )));
                    }
                    out.push(item);
                }
                Ok(Bounded(out))
            }
        }
        d.deserialize_seq(V(PhantomData))
    }
}

#[cfg(test)]
#[path = "decode_tests.rs"]
mod tests;
