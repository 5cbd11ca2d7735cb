//! The access event's `access_fields` spread into the line, in both formats, through
//! the same formatter setup `telemetry::init` uses.

use std::io;
use std::sync::{Arc, Mutex};

use super::*;

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl io::Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Buffer {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

const ADDED: &str = r#"{"gen_ai.prompt.0.content":"say \"hi\"\n","llm.system":"openai","n":3}"#;

fn access_event() {
    tracing::info!(
        target: "tollgate::access",
        route = "chat",
        status = 200u16,
        removed = None::<u64>,
        access_fields = tracing::field::display(ADDED),
        "exchange"
    );
    tracing::info!(target: "tollgate::other", note = "untouched", "other");
}

#[test]
fn json_lines_get_the_fields_as_top_level_keys() {
    let out = Buffer::default();
    let writer = out.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .json()
        .flatten_event(true)
        .map_event_format(SpliceJson)
        .finish();
    tracing::subscriber::with_default(subscriber, access_event);
    let text = out.text();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let access = &lines[0];
    assert_eq!(access["llm.system"], "openai", "{text}");
    assert_eq!(access["gen_ai.prompt.0.content"], "say \"hi\"\n");
    assert_eq!(access["n"], 3);
    assert_eq!(access["route"], "chat");
    assert_eq!(access["status"], 200);
    assert!(access.get(ACCESS_FIELDS).is_none(), "{text}");
    assert!(access.get("removed").is_none(), "a None field is left out");
    assert_eq!(lines[1]["note"], "untouched");
}

#[test]
fn text_lines_get_them_as_name_value_pairs() {
    let out = Buffer::default();
    let writer = out.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .fmt_fields(TextFields)
        .finish();
    tracing::subscriber::with_default(subscriber, access_event);
    let text = out.text();
    let first = text.lines().next().unwrap();
    assert!(
        first.ends_with(
            r#"exchange route="chat" status=200 gen_ai.prompt.0.content="say \"hi\"\n" llm.system="openai" n=3"#
        ),
        "{text}"
    );
    assert!(!first.contains(ACCESS_FIELDS), "{text}");
    assert!(text.contains(r#"other note="untouched""#), "{text}");
}

#[test]
fn splicing_leaves_other_lines_and_odd_values_alone() {
    let plain = r#"{"a":"\"access_fields\":\"{}\""}"#;
    assert_eq!(
        splice_json(plain),
        plain,
        "a match inside a string is escaped"
    );
    let empty = r#"{"x":1,"access_fields":"{}","y":2}"#;
    assert_eq!(splice_json(empty), r#"{"x":1,"y":2}"#);
    let last = r#"{"x":1,"access_fields":"{}"}"#;
    assert_eq!(splice_json(last), r#"{"x":1}"#);
    let not_object = r#"{"access_fields":"[1]"}"#;
    assert_eq!(splice_json(not_object), not_object);
}
