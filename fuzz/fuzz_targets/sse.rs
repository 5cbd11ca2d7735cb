//! The SSE push parser: any split of the same bytes gives the same events, and every
//! event re-encoded with `to_bytes` parses back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::llm::{SseEvent, SseParser};
use tollgate_fuzz::Input;

fuzz_target!(|data: &[u8]| {
    let Some(input) = Input::parse(data) else {
        return;
    };
    let whole = parse(&[input.payload]);
    assert_eq!(parse(&input.chunks()), whole, "split differs");
    if input.payload.len() <= 1024 {
        let bytes: Vec<&[u8]> = input.payload.chunks(1).collect();
        assert_eq!(parse(&bytes), whole, "byte-at-a-time differs");
    }
    let mut encoded = Vec::new();
    for event in &whole {
        assert_eq!(
            parse(&[&event.to_bytes()]),
            std::slice::from_ref(event),
            "round trip"
        );
        event.write_to(&mut encoded);
    }
    assert_eq!(parse(&[&encoded]), whole, "stream round trip");
});

fn parse(chunks: &[&[u8]]) -> Vec<SseEvent> {
    let mut parser = SseParser::new();
    let mut events = Vec::new();
    let mut pushed = 0;
    for chunk in chunks {
        events.extend(parser.push(chunk));
        pushed += chunk.len();
        // Held text (decoded lossily: an invalid byte may become three) is bounded by
        // what was pushed.
        assert!(parser.buffered() <= 3 * pushed, "buffered more than pushed");
    }
    events.extend(parser.finish());
    events
}
