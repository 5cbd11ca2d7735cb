//! Putting the access line's CEL fields (`logging.fields.add`) into the line as fields of
//! their own.
//!
//! `tracing` names an event's fields at compile time, and these names come from the
//! config. So the access event records them all as one field, [`ACCESS_FIELDS`], whose
//! value is a JSON object's text, and the formatter spreads it out:
//!
//! - JSON: [`SpliceJson`] formats the access event as usual into a buffer, then
//!   replaces `"access_fields":"<escaped object>"` with the object's members, so each
//!   added field is a top-level key (`"llm.system":"openai"`). The value is a JSON
//!   string written by serde_json, so reading it back is exact; no other key can match,
//!   as quotes inside strings are escaped. Other events are formatted untouched.
//! - text: [`TextFields`] formats fields as `tracing-subscriber` does, except that
//!   field, written as `name=value` pairs (strings quoted and escaped like other
//!   string fields, other values as JSON).
//!
//! Both run inside the formatter, before the `RedactingWriter`, which therefore still
//! sees each final line. Emitting the access line by hand instead would have meant
//! copying the formatter's timestamp, level, span and ANSI handling; a custom
//! `Layer` would have needed both formats written again.

use std::borrow::Cow;
use std::fmt;

use serde_json::Value;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::field::{RecordFields, VisitFmt, VisitOutput};
use tracing_subscriber::fmt::format::{DefaultVisitor, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::access_log::ACCESS_FIELDS;

/// The access line's target.
const ACCESS_TARGET: &str = "tollgate::access";

/// A JSON event formatter that spreads the access event's [`ACCESS_FIELDS`] object into
/// top-level keys.
pub struct SpliceJson<F>(pub F);

impl<S, N, F> FormatEvent<S, N> for SpliceJson<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        if event.metadata().target() != ACCESS_TARGET {
            return self.0.format_event(ctx, writer, event);
        }
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        writer.write_str(&splice_json(&line))
    }
}

/// `line` with `"access_fields":"{…}"` replaced by the object's members.
pub fn splice_json(line: &str) -> Cow<'_, str> {
    let key = format!("\"{ACCESS_FIELDS}\":");
    let Some(at) = line.find(&key) else {
        return Cow::Borrowed(line);
    };
    let value_at = at + key.len();
    let mut values = serde_json::Deserializer::from_str(&line[value_at..]).into_iter::<String>();
    let Some(Ok(object)) = values.next() else {
        return Cow::Borrowed(line);
    };
    let end = value_at + values.byte_offset();
    let members = object
        .trim()
        .strip_prefix('{')
        .and_then(|o| o.strip_suffix('}'))
        .map(str::trim);
    match members {
        Some(m) if !m.is_empty() => Cow::Owned(format!("{}{m}{}", &line[..at], &line[end..])),
        // Never recorded empty; dropped with a separating comma if it were.
        Some(_) => {
            let (before, after) = (&line[..at], &line[end..]);
            Cow::Owned(match after.strip_prefix(',') {
                Some(after) => format!("{before}{after}"),
                None => format!("{}{after}", before.strip_suffix(',').unwrap_or(before)),
            })
        }
        None => Cow::Borrowed(line),
    }
}

/// Text field formatting: `tracing-subscriber`'s own, with [`ACCESS_FIELDS`] written
/// as `name=value` pairs.
pub struct TextFields;

impl<'w> FormatFields<'w> for TextFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
        let ansi = writer.has_ansi_escapes();
        let mut visitor = TextVisitor {
            inner: DefaultVisitor::new(writer, true),
            ansi,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result?;
        visitor.inner.finish()
    }
}

struct TextVisitor<'a> {
    inner: DefaultVisitor<'a>,
    ansi: bool,
    result: fmt::Result,
}

impl TextVisitor<'_> {
    fn spread(&mut self, object: &str) {
        let Ok(Value::Object(map)) = serde_json::from_str::<Value>(object) else {
            return;
        };
        let (italic, dimmed, reset) = match self.ansi {
            true => ("\x1b[3m", "\x1b[2m", "\x1b[0m"),
            false => ("", "", ""),
        };
        let w = self.inner.writer();
        for (name, value) in &map {
            let value = match value {
                Value::String(s) => format!("{s:?}"),
                other => other.to_string(),
            };
            self.result = self
                .result
                .and_then(|()| write!(w, " {italic}{name}{reset}{dimmed}={reset}{value}"));
        }
    }
}

impl Visit for TextVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() == ACCESS_FIELDS {
            true => self.spread(value),
            false => self.inner.record_str(field, value),
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.inner.record_error(field, value)
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() == ACCESS_FIELDS {
            true => self.spread(&format!("{value:?}")),
            false => self.inner.record_debug(field, value),
        }
    }
}

#[cfg(test)]
mod tests;
