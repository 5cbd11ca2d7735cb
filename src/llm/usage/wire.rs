//! The usage objects providers send, as one lenient serde shape, and their
//! normalization into [`Usage`].

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::Usage;

/// The top level of a whole JSON response: every API names `model` and `usage` there.
#[derive(Deserialize)]
pub(super) struct Whole<'a> {
    #[serde(borrow, default)]
    pub model: Option<Cow<'a, str>>,
    #[serde(default)]
    pub usage: Option<Object<WireUsage>>,
}

/// The most tokens one count of one exchange may claim: a thousand times the largest
/// context window offered today. More is a broken or hostile upstream, and would make
/// costs and limits absurd.
pub const MAX_TOKENS: u64 = 1_000_000_000;

/// Why a usage object was not believed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UsageInvalid {
    /// `usage` or a `*_details` is not a JSON object (`"usage": [1,2,3]`).
    NotAnObject,
    /// A count is not a non-negative integer (a string, a float, -1 …).
    NotACount,
    /// A count is over [`MAX_TOKENS`].
    OutOfRange,
    /// Counts contradict each other: cached or cache-write tokens over the input, or
    /// reasoning tokens over the output.
    Inconsistent,
}

impl UsageInvalid {
    /// The reason's name, for metric labels and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            UsageInvalid::NotAnObject => "not_an_object",
            UsageInvalid::NotACount => "not_a_count",
            UsageInvalid::OutOfRange => "out_of_range",
            UsageInvalid::Inconsistent => "inconsistent",
        }
    }
}

/// A value that must be a JSON object: read as `T` when it is one, kept as
/// [`Object::Other`] when it is anything else (serde would read an array into a struct
/// by position).
#[derive(Clone, Debug)]
pub(super) enum Object<T> {
    Is(T),
    Other,
}

/// A token count as sent: a non-negative integer, or anything else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Count {
    Valid(u64),
    Invalid,
}

/// Any provider's usage object: OpenAI Chat / Completions / Embeddings
/// (`prompt_tokens`…), OpenAI Responses (`input_tokens`…, `*_details`) and Anthropic
/// (`input_tokens`, `cache_read_input_tokens`…). A `null` count is an absent one.
#[derive(Clone, Debug, Default, Deserialize)]
pub(super) struct WireUsage {
    #[serde(default)]
    prompt_tokens: Option<Count>,
    #[serde(default)]
    completion_tokens: Option<Count>,
    #[serde(default)]
    total_tokens: Option<Count>,
    #[serde(default)]
    input_tokens: Option<Count>,
    #[serde(default)]
    output_tokens: Option<Count>,
    #[serde(default)]
    cache_read_input_tokens: Option<Count>,
    #[serde(default)]
    cache_creation_input_tokens: Option<Count>,
    #[serde(default)]
    prompt_tokens_details: Option<Object<Details>>,
    #[serde(default)]
    completion_tokens_details: Option<Object<Details>>,
    #[serde(default)]
    input_tokens_details: Option<Object<Details>>,
    #[serde(default)]
    output_tokens_details: Option<Object<Details>>,
}

/// `*_tokens_details`. `cache_write_tokens` is OpenAI's name for cache writes on the
/// models that bill them.
#[derive(Clone, Debug, Default, Deserialize)]
struct Details {
    #[serde(default)]
    cached_tokens: Option<Count>,
    #[serde(default)]
    cache_write_tokens: Option<Count>,
    #[serde(default)]
    reasoning_tokens: Option<Count>,
}

/// A count's value; 0 when absent (validation has already refused invalid ones).
fn n(count: Option<Count>) -> u64 {
    match count {
        Some(Count::Valid(v)) => v,
        _ => 0,
    }
}

// === impl WireUsage ===

impl WireUsage {
    /// Checks the types and ranges of every count; for OpenAI shapes also that cached
    /// and cache-write tokens fit in the input and reasoning tokens in the output
    /// (Anthropic's `input_tokens` excludes its cache counts, so there is no such
    /// relation to check).
    pub fn validate(&self) -> Result<(), UsageInvalid> {
        let mut details = Vec::with_capacity(4);
        for d in [
            &self.prompt_tokens_details,
            &self.completion_tokens_details,
            &self.input_tokens_details,
            &self.output_tokens_details,
        ] {
            match d {
                Some(Object::Is(d)) => details.push(d),
                Some(Object::Other) => return Err(UsageInvalid::NotAnObject),
                None => {}
            }
        }
        let counts = [
            self.prompt_tokens,
            self.completion_tokens,
            self.total_tokens,
            self.input_tokens,
            self.output_tokens,
            self.cache_read_input_tokens,
            self.cache_creation_input_tokens,
        ]
        .into_iter()
        .chain(
            details
                .iter()
                .flat_map(|d| [d.cached_tokens, d.cache_write_tokens, d.reasoning_tokens]),
        )
        .flatten();
        for count in counts {
            match count {
                Count::Invalid => return Err(UsageInvalid::NotACount),
                Count::Valid(v) if v > MAX_TOKENS => return Err(UsageInvalid::OutOfRange),
                Count::Valid(_) => {}
            }
        }
        let u = self.openai();
        let cache = u
            .cached_input_tokens
            .saturating_add(u.cache_creation_input_tokens);
        if cache > u.input_tokens || u.reasoning_tokens > u.output_tokens {
            return Err(UsageInvalid::Inconsistent);
        }
        Ok(())
    }

    fn details(d: &Option<Object<Details>>) -> Option<&Details> {
        match d {
            Some(Object::Is(d)) => Some(d),
            _ => None,
        }
    }

    /// OpenAI's usage, whichever of its two shapes.
    pub fn openai(&self) -> Usage {
        let input = n(self.prompt_tokens.or(self.input_tokens));
        let output = n(self.completion_tokens.or(self.output_tokens));
        let in_details = Self::details(&self.prompt_tokens_details)
            .or(Self::details(&self.input_tokens_details));
        let out_details = Self::details(&self.completion_tokens_details)
            .or(Self::details(&self.output_tokens_details));
        Usage {
            input_tokens: input,
            output_tokens: output,
            cached_input_tokens: n(in_details.and_then(|d| d.cached_tokens)),
            cache_creation_input_tokens: n(in_details.and_then(|d| d.cache_write_tokens)),
            reasoning_tokens: n(out_details.and_then(|d| d.reasoning_tokens)),
            total_tokens: match n(self.total_tokens) {
                0 => input.saturating_add(output),
                total => total,
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
        fn take(slot: &mut u64, value: Option<Count>) {
            if let v @ 1.. = n(value) {
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

// === impl Count, Object: lenient deserialization ===

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;

        impl<'de> Visitor<'de> for V {
            type Value = Count;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_u64<E>(self, v: u64) -> Result<Count, E> {
                Ok(Count::Valid(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Count, E> {
                Ok(u64::try_from(v).map_or(Count::Invalid, Count::Valid))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Count, E> {
                Ok(Count::Invalid)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Count, E> {
                Ok(Count::Invalid)
            }
            fn visit_str<E>(self, _: &str) -> Result<Count, E> {
                Ok(Count::Invalid)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Count, A::Error> {
                while s.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Count::Invalid)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Count, A::Error> {
                while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Count::Invalid)
            }
        }

        d.deserialize_any(V)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Object<T>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, m: A) -> Result<Object<T>, A::Error> {
                T::deserialize(MapAccessDeserializer::new(m)).map(Object::Is)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Object<T>, A::Error> {
                while s.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Object::Other)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Object<T>, E> {
                Ok(Object::Other)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Object<T>, E> {
                Ok(Object::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Object<T>, E> {
                Ok(Object::Other)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Object<T>, E> {
                Ok(Object::Other)
            }
            fn visit_str<E>(self, _: &str) -> Result<Object<T>, E> {
                Ok(Object::Other)
            }
        }

        d.deserialize_any(V(PhantomData))
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
