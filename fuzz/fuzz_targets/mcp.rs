//! The MCP gateway's readers of client and target bytes: a server stream relabelled
//! for several targets (any split of the same bytes gives the same output; every
//! server request's id is tagged and untags to the original; other messages keep
//! theirs), the client's message classifier, tagged ids and composite event ids,
//! sealed session ids, JWKS documents, and the 2026-07-28 envelope (its checks against
//! headers made from the same bytes, routing headers made from them, and header values
//! that decode back to what was encoded). Nothing may panic.
#![no_main]

use bytes::Bytes;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tollgate::auth::{jwks, JwksSource};
use tollgate::llm::SseParser;
use tollgate::mcp::{envelope, events, jsonrpc, relay, SessionKeys};
use tollgate_fuzz::Input;

fuzz_target!(|data: &[u8]| {
    let Some(input) = Input::parse(data) else {
        return;
    };
    let whole = relabel(&[input.payload]);
    assert_eq!(relabel(&input.chunks()), whole, "split differs");
    if let Some(out) = &whole {
        check_tags(input.payload, out);
    }
    let text = String::from_utf8_lossy(input.payload);
    let _ = jsonrpc::parse(input.payload);
    if let Some((_, id)) = relay::untag_id(&Value::String(text.to_string())) {
        assert!(id.is_string() || id.is_number());
    }
    let _ = events::split_event_id(&text, 1 + (input.flags as usize % 4));
    let _ = SessionKeys::random().open(&text);
    let _ = jwks::parse_set(&JwksSource::File("fuzz".into()), input.payload);
    check_envelope(input.payload, &text);
});

/// The 2026-07-28 envelope over arbitrary bytes: checks and routing headers never
/// panic, and a header value always decodes to the text it was made from.
fn check_envelope(payload: &[u8], text: &str) {
    let routing = envelope::routing_headers(payload);
    let mut headers = http::HeaderMap::new();
    for (name, value) in &routing {
        headers.append(name.clone(), value.clone());
    }
    if let Ok(value) = serde_json::from_slice::<Value>(payload) {
        let _ = envelope::is_modern(&headers, &value);
        let _ = envelope::check(&headers, &value, &Value::Null);
    }
    let encoded = envelope::encode_header_value(text);
    assert_eq!(envelope::decode_header_value(&encoded).as_deref(), Some(text));
}

/// The relabelled stream of target 1 of several, or `None` when it ended in an error.
fn relabel(chunks: &[&[u8]]) -> Option<Vec<u8>> {
    let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = chunks
        .iter()
        .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
        .collect();
    let body = relay::tag_requests(StreamBody::new(futures::stream::iter(frames)), 1, 4096);
    let collected = futures::executor::block_on(body.collect()).ok()?;
    Some(collected.to_bytes().to_vec())
}

/// Every event of `out` is the input's event, a request's id tagged for target 1.
fn check_tags(input: &[u8], out: &[u8]) {
    let parse = |bytes: &[u8]| {
        let mut p = SseParser::new();
        let mut events: Vec<_> = p.push(bytes).collect();
        events.extend(p.finish());
        events
    };
    let (before, after) = (parse(input), parse(out));
    assert_eq!(before.len(), after.len(), "events lost or made");
    for (b, a) in before.iter().zip(&after) {
        assert_eq!((&b.event, &b.id), (&a.event, &a.id));
        if b.data == a.data {
            continue;
        }
        let (Ok(b), Ok(a)) = (
            serde_json::from_str::<Value>(&b.data),
            serde_json::from_str::<Value>(&a.data),
        ) else {
            panic!("rewrote an event that is not JSON");
        };
        assert!(b.get("method").is_some(), "rewrote a message that is not a request");
        assert_eq!(relay::untag_id(&a["id"]), Some((1, b["id"].clone())));
        let (mut a, mut b) = (a, b);
        a["id"] = Value::Null;
        b["id"] = Value::Null;
        assert_eq!(a, b, "only the id changes");
    }
}
