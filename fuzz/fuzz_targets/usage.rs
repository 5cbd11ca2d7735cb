//! The usage readers: a whole JSON response or a stream of SSE events. What they read
//! does not depend on how the JSON is written, and the per-event facts keep their
//! invariants (first content once, usage-only implies usage, done stays done).
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tollgate::llm::{EventInfo, ResponseTracker, SseEvent, SseParser};
use tollgate_fuzz::{api, has_duplicate_keys, Input};

// flags: the API (mod 6); bit 7 a stream of events, else a whole JSON body.
fuzz_target!(|data: &[u8]| {
    let Some(input) = Input::parse(data) else {
        return;
    };
    let api = api(input.flags & 0x7f);
    if input.flags & 0x80 == 0 {
        let mut t = ResponseTracker::new(api);
        if t.observe_json(input.payload).is_err() {
            return;
        }
        assert!(t.is_done());
        if let Some(compact) = compact(input.payload) {
            let mut again = ResponseTracker::new(api);
            again
                .observe_json(&compact)
                .expect("the compact body reads");
            assert_eq!((again.usage(), again.model()), (t.usage(), t.model()));
        }
        return;
    }
    let mut parser = SseParser::new();
    let mut events: Vec<SseEvent> = parser.push(input.payload).collect();
    events.extend(parser.finish());
    let mut t = ResponseTracker::new(api);
    let mut again = ResponseTracker::new(api);
    let mut firsts = 0;
    for event in &events {
        let was_done = t.is_done();
        let info = t.observe_event(event);
        check(&info, &t, was_done);
        firsts += usize::from(info.first_content);
        let rewritten = SseEvent {
            data: compact(event.data.as_bytes())
                .map(|c| String::from_utf8(c).unwrap())
                .unwrap_or_else(|| event.data.clone()),
            ..event.clone()
        };
        assert_eq!(again.observe_event(&rewritten), info, "{:?}", event.data);
    }
    assert!(firsts <= 1, "first content seen {firsts} times");
    assert_eq!(firsts == 1, t.saw_content());
    assert_eq!((again.usage(), again.model()), (t.usage(), t.model()));
    assert_eq!(again.malformed_events(), t.malformed_events());
});

fn check(info: &EventInfo, t: &ResponseTracker, was_done: bool) {
    assert!(!info.first_content || info.has_content);
    assert!(!info.usage_only || info.has_usage);
    assert!(
        !info.has_usage || t.usage().is_some() || t.usage_invalid().is_some(),
        "usage seen but neither kept nor counted invalid"
    );
    assert!(!info.done || t.is_done());
    assert!(!was_done || t.is_done(), "done was undone");
}

/// The JSON re-written compactly, when it is JSON without repeated keys (a typed read
/// rejects those; `Value` keeps the last).
fn compact(json: &[u8]) -> Option<Vec<u8>> {
    let value: Value = serde_json::from_slice(json).ok()?;
    (!has_duplicate_keys(json)).then(|| serde_json::to_vec(&value).unwrap())
}
