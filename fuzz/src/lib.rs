//! What the fuzz targets share: the input layout most of them use (a flags byte, the
//! cut points of a split, the payload), splitting one payload into chunks, and a JSON
//! duplicate-key check for targets that compare a parser against `serde_json::Value`
//! (which keeps only the last of duplicate keys).
//!
//! Input layout: `[flags] [n] [n split bytes] [payload…]`. Each split byte is the length
//! of the next chunk (0 gives an empty chunk); the payload's rest after the last cut is
//! the final chunk. Seeds are written in this layout (see `seeds/README.md`).

use std::collections::HashSet;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// Most split bytes one input may give.
const MAX_SPLITS: usize = 64;

/// One decoded fuzz input.
#[derive(Debug)]
pub struct Input<'a> {
    pub flags: u8,
    pub splits: &'a [u8],
    pub payload: &'a [u8],
}

impl<'a> Input<'a> {
    /// `None` for inputs shorter than the two header bytes.
    pub fn parse(data: &'a [u8]) -> Option<Input<'a>> {
        let (&flags, rest) = data.split_first()?;
        let (&n, rest) = rest.split_first()?;
        let n = (n as usize % (MAX_SPLITS + 1)).min(rest.len());
        let (splits, payload) = rest.split_at(n);
        Some(Input {
            flags,
            splits,
            payload,
        })
    }

    /// The payload cut into chunks by the split bytes.
    pub fn chunks(&self) -> Vec<&'a [u8]> {
        let mut out = Vec::with_capacity(self.splits.len() + 1);
        let mut at = 0;
        for &len in self.splits {
            let end = (at + len as usize).min(self.payload.len());
            out.push(&self.payload[at..end]);
            at = end;
        }
        out.push(&self.payload[at..]);
        out
    }
}

/// `text` cut by `splits` like [`Input::chunks`], each cut moved forward to a character
/// boundary.
pub fn str_chunks<'t>(splits: &[u8], text: &'t str) -> Vec<&'t str> {
    let mut out = Vec::with_capacity(splits.len() + 1);
    let mut at = 0;
    for &len in splits {
        let mut end = (at + len as usize).min(text.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        out.push(&text[at..end]);
        at = end;
    }
    out.push(&text[at..]);
    out
}

/// Whether `json` is a JSON document with an object that repeats a key (at any depth).
/// `false` for anything that is not JSON.
pub fn has_duplicate_keys(json: &[u8]) -> bool {
    let mut de = serde_json::Deserializer::from_slice(json);
    match NoDuplicates::deserialize(&mut de) {
        Ok(_) => false,
        Err(e) => e.to_string().starts_with(DUPLICATE),
    }
}

const DUPLICATE: &str = "duplicate key";

/// Deserializes any JSON value, failing on the first repeated key.
struct NoDuplicates;

impl<'de> Deserialize<'de> for NoDuplicates {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NoDuplicatesVisitor)
    }
}

struct NoDuplicatesVisitor;

impl<'de> Visitor<'de> for NoDuplicatesVisitor {
    type Value = NoDuplicates;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_i64<E>(self, _: i64) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_u64<E>(self, _: u64) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_f64<E>(self, _: f64) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_str<E>(self, _: &str) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_unit<E>(self) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NoDuplicates, A::Error> {
        while seq.next_element::<NoDuplicates>()?.is_some() {}
        Ok(NoDuplicates)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NoDuplicates, A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key) {
                return Err(serde::de::Error::custom(DUPLICATE));
            }
            map.next_value::<NoDuplicates>()?;
        }
        Ok(NoDuplicates)
    }
}

/// The API a selector byte names (all six, in turn).
pub fn api(selector: u8) -> tollgate::llm::Api {
    use tollgate::llm::Api;
    const ALL: [Api; 6] = [
        Api::ChatCompletions,
        Api::Completions,
        Api::Embeddings,
        Api::Responses,
        Api::Messages,
        Api::CountTokens,
    ];
    ALL[usize::from(selector) % ALL.len()]
}
