//! The WHATWG framing rules, one by one, and re-emission.

use super::*;

fn parse(chunks: &[&[u8]]) -> Vec<SseEvent> {
    let mut p = SseParser::new();
    let mut out = Vec::new();
    for c in chunks {
        out.extend(p.push(c));
    }
    out.extend(p.finish());
    out
}

fn ev(event: Option<&str>, data: &str, id: Option<&str>) -> SseEvent {
    SseEvent {
        event: event.map(str::to_owned),
        data: data.to_owned(),
        id: id.map(str::to_owned),
        retry: None,
    }
}

#[test]
fn line_endings_lf_crlf_cr() {
    let want = vec![ev(None, "a", None), ev(None, "b", None)];
    assert_eq!(parse(&[b"data: a\n\ndata: b\n\n"]), want);
    assert_eq!(parse(&[b"data: a\r\n\r\ndata: b\r\n\r\n"]), want);
    assert_eq!(parse(&[b"data: a\r\rdata: b\r\r"]), want);
    assert_eq!(parse(&[b"data: a\r\n\rdata: b\n\r\n"]), want);
}

#[test]
fn cr_at_a_chunk_end_then_lf_is_one_line_end() {
    // Were the \r and \n two line ends, the \n would be a blank line dispatching "a" early
    // and "b" would join a new event; as one, "a" and "b" are one event.
    let got = parse(&[b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"]);
    assert_eq!(got, vec![ev(None, "a\nb", None)]);
    // A \r alone at a chunk end, followed by something else, is a line end by itself.
    let got = parse(&[b"data: a\r", b"\r"]);
    assert_eq!(got, vec![ev(None, "a", None)]);
    // Empty chunks in between change nothing.
    let got = parse(&[b"data: a\r", b"", b"\n", b"", b"\n"]);
    assert_eq!(got, vec![ev(None, "a", None)]);
}

#[test]
fn fields_and_values() {
    let got = parse(&[b"event: delta\nid: 7\ndata:no-space\ndata:  two spaces\ndata\n\n"]);
    assert_eq!(
        got,
        vec![ev(Some("delta"), "no-space\n two spaces\n", Some("7"))]
    );
    // Empty data line dispatches an empty data string; a block with no data line does not
    // dispatch, and its event type does not leak into the next event.
    let got = parse(&[b"data:\n\nevent: x\n\ndata: y\n\n"]);
    assert_eq!(got, vec![ev(None, "", None), ev(None, "y", None)]);
    // Comments and unknown fields are ignored, so is an id with NUL; retry is kept.
    let got = parse(&[b": keep-alive\nretry: 10\nfoo: bar\nid: a\0b\ndata: z\n\n"]);
    let z = SseEvent {
        retry: Some(10),
        ..ev(None, "z", None)
    };
    assert_eq!(got, vec![z]);
    // Only the first colon splits; the value keeps the rest.
    let got = parse(&[b"data: {\"a\":\"b:c\"}\n\n"]);
    assert_eq!(got, vec![ev(None, r#"{"a":"b:c"}"#, None)]);
}

#[test]
fn bom_is_dropped_even_when_split() {
    let got = parse(&[b"\xEF\xBB", b"\xBFdata: a\n\n"]);
    assert_eq!(got, vec![ev(None, "a", None)]);
    // Only at the start of the stream.
    let got = parse(&[b"data: a\n\n\xEF\xBB\xBFdata: b\n\n"]);
    assert_eq!(got, vec![ev(None, "a", None)]);
}

#[test]
fn utf8_split_across_chunks_decodes_whole() {
    let text = "data: héllo 😀\n\n".as_bytes();
    for cut in 0..text.len() {
        let got = parse(&[&text[..cut], &text[cut..]]);
        assert_eq!(got, vec![ev(None, "héllo 😀", None)], "cut at {cut}");
    }
    assert_eq!(
        parse(&[b"data: \xFF\n\n"]),
        vec![ev(None, "\u{FFFD}", None)]
    );
}

#[test]
fn finish_hands_out_an_unterminated_event() {
    assert_eq!(parse(&[b"data: last"]), vec![ev(None, "last", None)]);
    assert_eq!(parse(&[b"data: last\n"]), vec![ev(None, "last", None)]);
    assert_eq!(parse(&[b"event: x\n"]), vec![]);
}

#[test]
fn holds_only_the_current_event() {
    let mut p = SseParser::new();
    assert_eq!(p.push(b"data: aaaa\n\ndata: bb").count(), 1);
    assert_eq!(p.buffered(), "data: bb".len());
    assert_eq!(p.push(b"\n").count(), 0);
    assert_eq!(p.buffered(), "bb\n".len());
    assert_eq!(p.push(b"\n").count(), 1);
    assert_eq!(p.buffered(), 0);
}

#[test]
fn to_bytes_round_trips() {
    let events = [
        ev(Some("message_start"), r#"{"type":"message_start"}"#, None),
        ev(None, "line1\nline2\n", Some("42")),
        ev(None, "", None),
        ev(None, " leading space", None),
    ];
    let mut bytes = Vec::new();
    for e in &events {
        e.write_to(&mut bytes);
    }
    assert_eq!(parse(&[&bytes]), events);
    assert_eq!(
        events[0].to_bytes(),
        b"event: message_start\ndata: {\"type\":\"message_start\"}\n\n"
    );
}

// === limits ===

const SMALL: SseLimits = SseLimits {
    line_bytes: 64,
    event_bytes: 128,
};

/// Feeds `chunks` one by one; the events handed out, and the unparsed bytes once the
/// parser stopped followed by every later chunk (what a caller passes through).
fn parse_limited(chunks: &[&[u8]]) -> (Vec<SseEvent>, Option<SseLimit>, Vec<u8>) {
    let mut p = SseParser::with_limits(SMALL);
    let mut events = Vec::new();
    let mut passed = Vec::new();
    for c in chunks {
        if p.exceeded().is_some() {
            passed.extend_from_slice(c);
            continue;
        }
        events.extend(p.push(c));
        if p.exceeded().is_some() {
            passed.extend(p.take_unparsed());
        }
        assert!(p.buffered() <= SMALL.line_bytes + SMALL.event_bytes);
    }
    if p.exceeded().is_none() {
        events.extend(p.finish());
    }
    (events, p.exceeded(), passed)
}

#[test]
fn a_long_line_stops_the_parser_at_any_split() {
    let long = format!("data: {}\n\n", "x".repeat(200));
    let stream = format!("data: a\n\n{long}data: b\n\n");
    let bytes = stream.as_bytes();
    for cut in 0..=bytes.len() {
        let (events, exceeded, passed) = parse_limited(&[&bytes[..cut], &bytes[cut..]]);
        assert_eq!(exceeded, Some(SseLimit::Line), "cut {cut}");
        assert_eq!(events, vec![ev(None, "a", None)], "cut {cut}");
        // What was not handed out is passed on intact: the parse of it is the rest.
        assert_eq!(passed, &bytes[9..], "cut {cut}");
    }
    // Byte by byte: the buffer never grows past the line bound.
    let pieces: Vec<&[u8]> = bytes.chunks(1).collect();
    let (events, exceeded, passed) = parse_limited(&pieces);
    assert_eq!((events.len(), exceeded), (1, Some(SseLimit::Line)));
    assert_eq!(passed, &bytes[9..]);
}

#[test]
fn a_large_event_of_short_lines_stops_the_parser() {
    let line = format!("data: {}\n", "y".repeat(40));
    let stream = format!("event: big\nid: 3\n{}\ndata: z\n\n", line.repeat(5));
    let bytes = stream.as_bytes();
    for cut in 0..=bytes.len() {
        let (events, exceeded, passed) = parse_limited(&[&bytes[..cut], &bytes[cut..]]);
        assert_eq!(exceeded, Some(SseLimit::Event), "cut {cut}");
        assert!(events.is_empty());
        // Re-encoded fields, then the raw rest: parsing it unlimited gives the events.
        let mut whole = SseParser::new();
        let mut reparsed: Vec<SseEvent> = whole.push(&passed).collect();
        reparsed.extend(whole.finish());
        let data = vec!["y".repeat(40); 5].join("\n");
        assert_eq!(
            reparsed,
            vec![ev(Some("big"), &data, Some("3")), ev(None, "z", None)],
            "cut {cut}"
        );
    }
}

#[test]
fn within_limits_nothing_changes_and_a_stopped_parser_ignores_input() {
    let ok = format!("data: {}\n\n", "x".repeat(50));
    let (events, exceeded, passed) = parse_limited(&[ok.as_bytes(), ok.as_bytes()]);
    assert_eq!((events.len(), exceeded, passed.len()), (2, None, 0));
    let mut p = SseParser::with_limits(SMALL);
    assert_eq!(p.push(&[b'x'; 100]).count(), 0);
    assert_eq!(p.exceeded(), Some(SseLimit::Line));
    assert_eq!(p.take_unparsed().len(), 100);
    assert_eq!(p.push(b"\n\ndata: a\n\n").count(), 0);
    assert_eq!(p.finish(), None);
    assert_eq!(p.buffered(), 0);
    // Taking what a running parser holds stops it too.
    let mut p = SseParser::new();
    assert_eq!(p.push(b"event: e\ndata: a\ndata: b\ndat").count(), 0);
    assert_eq!(p.take_unparsed(), b"event: e\ndata: a\ndata: b\ndat");
    assert_eq!((p.exceeded(), p.push(b"a: c\n\n").count()), (None, 0));
    assert_eq!(SseParser::new().limits, SseLimits::DEFAULT);
}

/// `retry` belongs to its event and is written back, so a proxy that re-encodes a
/// stream keeps the server's reconnection delay; an invalid one is ignored.
#[test]
fn retry_is_kept_with_its_event() {
    let mut p = SseParser::new();
    let events: Vec<SseEvent> = p
        .push(b"id: e1\nretry: 1500\ndata: \n\nretry: soon\ndata: x\n\n")
        .collect();
    assert_eq!(events[0].retry, Some(1500));
    assert_eq!(events[1].retry, None);
    let again: Vec<SseEvent> = SseParser::new().push(&events[0].to_bytes()).collect();
    assert_eq!(again, vec![events[0].clone()]);
    assert!(String::from_utf8(events[0].to_bytes())
        .unwrap()
        .contains("retry: 1500\n"));
}

/// A stream that ends inside a last line which would take its event over the bound
/// stops the parser: the event is not handed out without that line.
#[test]
fn a_last_line_over_the_event_bound_stops_the_parser() {
    let limits = SseLimits {
        line_bytes: 64,
        event_bytes: 16,
    };
    let mut p = SseParser::with_limits(limits);
    assert_eq!(p.push(b"data: 0123456789\ndata: abcdefgh").count(), 0);
    assert_eq!(p.finish(), None);
    assert_eq!(p.exceeded(), Some(SseLimit::Event));
    let rest = String::from_utf8(p.take_unparsed()).unwrap();
    assert!(rest.ends_with("data: abcdefgh"), "{rest}");
}
