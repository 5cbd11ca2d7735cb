//! Serde shapes that request bodies share: content that is a string, an array of parts or
//! null; prompt inputs that are strings or token ids; and any JSON value re-written as
//! compact JSON text in its original key order (tool-call inputs).
//!
//! These are hand-written visitors rather than `#[serde(untagged)]` enums: untagged
//! enums buffer every value into an intermediate tree first, cannot say which shapes
//! were expected, and would copy a 1 MiB string instead of borrowing it.

use std::borrow::Cow;
use std::fmt;
use std::fmt::Write as _;
use std::marker::PhantomData;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

// === Content ===

/// A `content` (or `system`, `input`, `output`) field: a string, an array of parts, or
/// null / absent.
#[derive(Debug, Default)]
pub(super) enum Content<'a, P> {
    #[default]
    None,
    Text(Cow<'a, str>),
    Parts(Vec<P>),
}

impl<'de: 'a, 'a, P: Deserialize<'de>> Deserialize<'de> for Content<'a, P> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a, P>(PhantomData<(Cow<'a, str>, P)>);

        impl<'de: 'a, 'a, P: Deserialize<'de>> Visitor<'de> for V<'a, P> {
            type Value = Content<'a, P>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, an array of content parts, or null")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Content::Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Content::Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Content::Text(Cow::Owned(v)))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Content::None)
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(Content::None)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut parts = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                while let Some(part) = seq.next_element()? {
                    parts.push(part);
                }
                Ok(Content::Parts(parts))
            }
        }

        d.deserialize_any(V(PhantomData))
    }
}

// === PromptInput ===

/// Completions `prompt` / Embeddings `input`: a string, an array of strings, an array of
/// token ids, or an array of such arrays.
#[derive(Debug, Default)]
pub(super) struct PromptInput<'a> {
    pub texts: Vec<Cow<'a, str>>,
    pub token_ids: u64,
}

impl<'de: 'a, 'a> Deserialize<'de> for PromptInput<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<Cow<'a, str>>);

        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = PromptInput<'a>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, an array of strings, or an array of token ids")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(PromptInput {
                    texts: vec![Cow::Borrowed(v)],
                    token_ids: 0,
                })
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(PromptInput {
                    texts: vec![Cow::Owned(v.to_owned())],
                    token_ids: 0,
                })
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(PromptInput {
                    texts: vec![Cow::Owned(v)],
                    token_ids: 0,
                })
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(PromptInput::default())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut input = PromptInput::default();
                while let Some(item) = seq.next_element::<InputItem<'a>>()? {
                    match item {
                        InputItem::Text(t) => input.texts.push(t),
                        InputItem::Tokens(n) => input.token_ids += n,
                    }
                }
                Ok(input)
            }
        }

        d.deserialize_any(V(PhantomData))
    }
}

/// One element of a [`PromptInput`] array.
enum InputItem<'a> {
    Text(Cow<'a, str>),
    Tokens(u64),
}

impl<'de: 'a, 'a> Deserialize<'de> for InputItem<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<Cow<'a, str>>);

        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = InputItem<'a>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, a token id, or an array of token ids")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(InputItem::Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(InputItem::Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(InputItem::Text(Cow::Owned(v)))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(InputItem::Tokens(1))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut n = 0;
                while seq.next_element::<u64>()?.is_some() {
                    n += 1;
                }
                Ok(InputItem::Tokens(n))
            }
        }

        d.deserialize_any(V(PhantomData))
    }
}

// === JsonText ===

/// Any JSON value, re-written as compact JSON text with its keys in body order.
/// (`serde_json::Value` would sort keys, and `RawValue` needs a feature this crate does
/// not enable.)
#[derive(Debug, Default)]
pub(super) struct JsonText(pub String);

impl<'de> Deserialize<'de> for JsonText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut out = String::new();
        Emit {
            out: &mut out,
            comma: false,
        }
        .deserialize(d)?;
        Ok(JsonText(out))
    }
}

/// Writes the value it visits to `out`, preceded by `,` when `comma`.
struct Emit<'s> {
    out: &'s mut String,
    comma: bool,
}

impl<'de> DeserializeSeed<'de> for Emit<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        if self.comma {
            self.out.push(',');
        }
        d.deserialize_any(self)
    }
}

fn push_json_str(out: &mut String, s: &str) {
    out.push_str(&serde_json::to_string(s).expect("a str always serializes"));
}

impl<'de> Visitor<'de> for Emit<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.out.push_str(if v { "true" } else { "false" });
        Ok(())
    }
    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        let _ = write!(self.out, "{v}");
        Ok(())
    }
    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        let _ = write!(self.out, "{v}");
        Ok(())
    }
    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        match serde_json::Number::from_f64(v) {
            Some(n) => {
                let _ = write!(self.out, "{n}");
            }
            None => self.out.push_str("null"),
        }
        Ok(())
    }
    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        push_json_str(self.out, v);
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        self.out.push_str("null");
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.out.push('[');
        let mut comma = false;
        while seq
            .next_element_seed(Emit {
                out: self.out,
                comma,
            })?
            .is_some()
        {
            comma = true;
        }
        self.out.push(']');
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.out.push('{');
        let mut first = true;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if !first {
                self.out.push(',');
            }
            first = false;
            push_json_str(self.out, &key);
            self.out.push(':');
            map.next_value_seed(Emit {
                out: self.out,
                comma: false,
            })?;
        }
        self.out.push('}');
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::IgnoredAny;

    #[test]
    fn json_text_keeps_key_order_and_values() {
        let src = r#" { "z" : 1, "a" : [true, null, -2, 1.5, "q\"\u00e9"], "m": {} } "#;
        let JsonText(text) = serde_json::from_str(src).unwrap();
        assert_eq!(text, r#"{"z":1,"a":[true,null,-2,1.5,"q\"é"],"m":{}}"#);
    }

    #[test]
    fn content_borrows_unescaped_strings() {
        let c: Content<'_, IgnoredAny> = serde_json::from_str(r#""plain""#).unwrap();
        assert!(matches!(c, Content::Text(Cow::Borrowed("plain"))));
        let c: Content<'_, IgnoredAny> = serde_json::from_str(r#""a\nb""#).unwrap();
        assert!(matches!(c, Content::Text(Cow::Owned(ref s)) if s == "a\nb"));
        let c: Content<'_, IgnoredAny> = serde_json::from_str("null").unwrap();
        assert!(matches!(c, Content::None));
        let err = serde_json::from_str::<Content<'_, IgnoredAny>>("5").unwrap_err();
        assert!(err
            .to_string()
            .contains("a string, an array of content parts, or null"));
    }

    #[test]
    fn prompt_input_shapes() {
        let p: PromptInput = serde_json::from_str(r#"["a", "b"]"#).unwrap();
        assert_eq!((p.texts.len(), p.token_ids), (2, 0));
        let p: PromptInput = serde_json::from_str("[1, 2, 3]").unwrap();
        assert_eq!((p.texts.len(), p.token_ids), (0, 3));
        let p: PromptInput = serde_json::from_str("[[1, 2], [3]]").unwrap();
        assert_eq!((p.texts.len(), p.token_ids), (0, 3));
        let p: PromptInput = serde_json::from_str(r#""x""#).unwrap();
        assert_eq!(p.texts, vec!["x"]);
    }
}
