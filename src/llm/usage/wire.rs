//! The usage objects providers send, as one lenient serde shape, and their
//! normalization into [`Usage`].

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserializer, IgnoredAny, Visitor};
use serde::Deserialize;

use super::Usage;

/// The top level of a whole JSON response: every API names `model` and `usage` there.
#[derive(Deserialize)]
pub(super) struct Whole<'a> {
    #[serde(borrow, default)]
    pub model: Option<Cow<'a, str>>,
    #[serde(default)]
    pub usage: Option<WireUsage>,
}

/// Any provider's usage object: OpenAI Chat / Completions / Embeddings
/// (`prompt_tokens`…), OpenAI Responses (`input_tokens`…, `*_details`) and Anthropic
/// (`input_tokens`, `cache_read_input_tokens`…).
#[derive(Clone, Debug, Default, Deserialize)]
pub(super) struct WireUsage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
    #[serde(default)]
    total_tokens: Option<u64>,
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    prompt_tokens_details: Option<Details>,
    #[serde(default)]
    completion_tokens_details: Option<Details>,
    #[serde(default)]
    input_tokens_details: Option<Details>,
    #[serde(default)]
    output_tokens_details: Option<Details>,
}

/// `*_tokens_details`. `cache_write_tokens` is OpenAI's name for cache writes on the
/// models that bill them.
#[derive(Clone, Debug, Default, Deserialize)]
struct Details {
    #[serde(default)]
    cached_tokens: Option<u64>,
    #[serde(default)]
    cache_write_tokens: Option<u64>,
    #[serde(default)]
    reasoning_tokens: Option<u64>,
}

impl WireUsage {
    /// OpenAI's usage, whichever of its two shapes.
    pub fn openai(&self) -> Usage {
        let input = self.prompt_tokens.or(self.input_tokens).unwrap_or(0);
        let output = self.completion_tokens.or(self.output_tokens).unwrap_or(0);
        let in_details = self
            .prompt_tokens_details
            .as_ref()
            .or(self.input_tokens_details.as_ref());
        let out_details = self
            .completion_tokens_details
            .as_ref()
            .or(self.output_tokens_details.as_ref());
        Usage {
            input_tokens: input,
            output_tokens: output,
            cached_input_tokens: in_details.and_then(|d| d.cached_tokens).unwrap_or(0),
            cache_creation_input_tokens: in_details.and_then(|d| d.cache_write_tokens).unwrap_or(0),
            reasoning_tokens: out_details.and_then(|d| d.reasoning_tokens).unwrap_or(0),
            total_tokens: match self.total_tokens {
                Some(total) if total > 0 => total,
                _ => input.saturating_add(output),
            },
        }
    }
}

/// Anthropic's four counts, as sent (`input` excludes cache reads and writes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct AnthropicCounts {
    input: u64,
    output: u64,
    cache_read: u64,
    cache_creation: u64,
}

impl AnthropicCounts {
    /// Takes each count the object has and is non-zero: `message_start` brings input and
    /// cache counts, `message_delta` the final output count (and, from some backends,
    /// input and cache counts too).
    pub fn merge(&mut self, wire: &WireUsage) {
        fn take(slot: &mut u64, value: Option<u64>) {
            if let Some(v) = value.filter(|&v| v > 0) {
                *slot = v;
            }
        }
        take(&mut self.input, wire.input_tokens);
        take(&mut self.output, wire.output_tokens);
        take(&mut self.cache_read, wire.cache_read_input_tokens);
        take(&mut self.cache_creation, wire.cache_creation_input_tokens);
    }

    pub fn usage(&self) -> Usage {
        // Saturating: the counts are the upstream's, and a hostile one sends u64::MAX.
        let input = self
            .input
            .saturating_add(self.cache_read)
            .saturating_add(self.cache_creation);
        Usage {
            input_tokens: input,
            output_tokens: self.output,
            cached_input_tokens: self.cache_read,
            cache_creation_input_tokens: self.cache_creation,
            reasoning_tokens: 0,
            total_tokens: input.saturating_add(self.output),
        }
    }
}

/// A string field that is read when it is a string and skipped when it is anything else
/// (event payloads whose `delta` is an object in some event types).
#[derive(Debug, Default)]
pub(super) struct Text<'a>(pub Option<Cow<'a, str>>);

impl<'a> Text<'a> {
    /// The text, if non-empty.
    pub fn non_empty(&self) -> Option<&str> {
        self.0.as_deref().filter(|s| !s.is_empty())
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<Cow<'a, str>>);

        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Text<'a>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Some(Cow::Owned(v.to_owned()))))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Text(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Text(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Text(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Text(None))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Text(None))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut s: A,
            ) -> Result<Self::Value, A::Error> {
                while s.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Text(None))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<Self::Value, A::Error> {
                while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Text(None))
            }
        }

        d.deserialize_any(V(PhantomData))
    }
}
