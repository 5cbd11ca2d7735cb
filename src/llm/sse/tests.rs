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
    // Comments, unknown fields, retry; id with NUL is ignored; a field without colon.
    let got = parse(&[b": keep-alive\nretry: 10\nfoo: bar\nid: a\0b\ndata: z\n\n"]);
    assert_eq!(got, vec![ev(None, "z", None)]);
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
