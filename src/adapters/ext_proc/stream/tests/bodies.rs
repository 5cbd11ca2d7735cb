//! Body messages: BUFFERED, BUFFERED_PARTIAL, STREAMED and FULL_DUPLEX_STREAMED.

use super::*;

// === BUFFERED / STREAMED bodies arriving anyway ===

#[tokio::test]
async fn buffered_body_messages_get_one_unchanged_reply_each() {
    let mut s = stream_for(HEADER_ONLY_NO_OVERRIDE);
    send_one(&mut s, first(Buffered, Buffered)).await;
    let r = send_one(&mut s, request_body(br#"{"model":"m"}"#, true)).await;
    assert_eq!(kind(&r), "request_body");
    assert!(common(&r).body_mutation.is_none());
    assert!(common(&r).header_mutation.is_none());
    send_one(&mut s, response_headers("200", false)).await;
    let r = send_one(&mut s, response_body(b"{}", true)).await;
    assert_eq!(kind(&r), "response_body");
    assert!(common(&r).body_mutation.is_none());
}

#[tokio::test]
async fn streamed_body_messages_get_one_reply_each_in_order() {
    let mut s = stream_for(HEADER_ONLY_NO_OVERRIDE);
    send_one(&mut s, first(Streamed, Streamed)).await;
    for (chunk, eos) in [(&b"a"[..], false), (b"", false), (b"bc", true)] {
        let r = send_one(&mut s, request_body(chunk, eos)).await;
        assert_eq!(kind(&r), "request_body");
        assert!(common(&r).body_mutation.is_none());
    }
    send_one(&mut s, response_headers("200", false)).await;
    for i in 0..5 {
        let event = format!("data: {i}\n\n");
        let r = send_one(&mut s, response_body(event.as_bytes(), i == 4)).await;
        assert_eq!(kind(&r), "response_body");
        assert!(common(&r).body_mutation.is_none());
    }
}

#[tokio::test]
async fn buffered_partial_body_gets_one_unchanged_reply() {
    let mut s = stream_for(HEADER_ONLY_NO_OVERRIDE);
    send_one(&mut s, first(BufferedPartial, NoBody)).await;
    let r = send_one(&mut s, request_body(b"first part", false)).await;
    assert_eq!(kind(&r), "request_body");
    assert!(common(&r).body_mutation.is_none());
}

#[tokio::test]
async fn streamed_mode_with_a_buffering_processor_clears_chunks_then_sends_the_whole_body() {
    let (mut s, j) = scripted_stream(
        NO_OVERRIDE,
        Script {
            request_body: Some(BodyMode::Buffer { limit: 1024 }),
            ..Default::default()
        },
    );
    send_one(&mut s, first(Streamed, NoBody)).await;
    let r = send_one(&mut s, request_body(b"ab", false)).await;
    assert_eq!(body_mutation(&r), Some(&Mutation::ClearBody(true)));
    let r = send_one(&mut s, request_body(b"cd", true)).await;
    assert_eq!(body_mutation(&r), Some(&Mutation::Body(b"abcd".to_vec())));
    // STREAMED: Envoy removed content-length itself.
    assert!(common(&r).header_mutation.is_none());
    assert_eq!(entries(&j).last().unwrap(), "request_body(abcd,eos,whole)");
}

#[tokio::test]
async fn buffered_mode_changed_body_sets_content_length() {
    let (mut s, _j) = scripted_stream(
        "",
        Script {
            request_body: Some(BodyMode::Buffer { limit: 1024 }),
            uppercase: true,
            ..Default::default()
        },
    );
    let r = send_one(&mut s, first(Buffered, NoBody)).await;
    assert!(r.mode_override.is_none());
    let r = send_one(&mut s, request_body(b"hello", true)).await;
    assert_eq!(body_mutation(&r), Some(&Mutation::Body(b"HELLO".to_vec())));
    assert_eq!(header_set(&r, "content-length").as_deref(), Some("5"));
}

/// Envoy BUFFERED with trailers sends the whole body with `end_of_stream: false` (the
/// trailers end the stream). It is still the whole body and the only body message.
#[tokio::test]
async fn buffered_body_followed_by_trailers_is_not_lost() {
    let (mut s, j) = scripted_stream(
        "",
        Script {
            request_body: Some(BodyMode::Buffer { limit: 1024 }),
            ..Default::default()
        },
    );
    send_one(&mut s, first(Buffered, NoBody)).await;
    let r = send_one(&mut s, request_body(b"whole body", false)).await;
    assert_eq!(kind(&r), "request_body");
    assert_ne!(
        body_mutation(&r),
        Some(&Mutation::ClearBody(true)),
        "the body was cleared and will never be sent again"
    );
    assert!(
        entries(&j)
            .iter()
            .any(|e| e.starts_with("request_body(whole body")),
        "the processor never saw the body: {:?}",
        entries(&j)
    );
    let r = send_one(&mut s, request_trailers()).await;
    assert_eq!(kind(&r), "request_trailers");
}

#[tokio::test]
async fn streamed_body_with_a_streaming_processor_changes_each_chunk() {
    let (mut s, _j) = scripted_stream(
        "",
        Script {
            response_body: Some(BodyMode::Stream),
            uppercase: true,
            ..Default::default()
        },
    );
    send_one(&mut s, first(NoBody, Streamed)).await;
    let r = send_one(&mut s, response_headers("200", false)).await;
    assert!(r.mode_override.is_none());
    let r = send_one(&mut s, response_body(b"data: a\n\n", false)).await;
    assert_eq!(
        body_mutation(&r),
        Some(&Mutation::Body(b"DATA: A\n\n".to_vec()))
    );
    let r = send_one(&mut s, response_body(b"data: b\n\n", true)).await;
    assert_eq!(kind(&r), "response_body");
    assert_eq!(
        body_mutation(&r),
        Some(&Mutation::Body(b"DATA: B\n\n".to_vec()))
    );
}

// === FULL_DUPLEX_STREAMED ===

#[tokio::test]
async fn full_duplex_echoes_every_chunk_as_streamed_response() {
    let mut s = stream_for(HEADER_ONLY);
    send_one(&mut s, first(FullDuplex, FullDuplex)).await;
    let chunks: [(&[u8], bool); 3] = [(b"{\"a\":", false), (b"1", false), (b"}", true)];
    for (data, eos) in chunks {
        let r = send_one(&mut s, request_body(data, eos)).await;
        assert_eq!(kind(&r), "request_body");
        assert_eq!(streamed(&r), (data.to_vec(), eos));
    }
    send_one(&mut s, response_headers("200", false)).await;
    for i in 0..3 {
        let event = format!("data: {i}\n\n");
        let r = send_one(&mut s, response_body(event.as_bytes(), i == 2)).await;
        assert_eq!(kind(&r), "response_body");
        assert_eq!(streamed(&r), (event.into_bytes(), i == 2));
    }
}

#[tokio::test]
async fn full_duplex_rechunks_large_bodies() {
    let mut s = stream_for(HEADER_ONLY);
    send_one(&mut s, first(FullDuplex, FullDuplex)).await;
    let body: Vec<u8> = (0..150_000u32).map(|i| (i % 251) as u8).collect();
    let replies = send(&mut s, request_body(&body, true)).await;
    assert_eq!(replies.len(), 3);
    let mut joined = Vec::new();
    for (i, r) in replies.iter().enumerate() {
        assert_eq!(kind(r), "request_body");
        let (data, eos) = streamed(r);
        assert!(data.len() <= MAX_STREAMED_CHUNK, "chunk of {}", data.len());
        assert_eq!(eos, i == replies.len() - 1);
        joined.extend(data);
    }
    assert_eq!(joined, body);
}

#[tokio::test]
async fn full_duplex_chunk_of_exactly_the_maximum_is_not_split() {
    let mut s = stream_for(HEADER_ONLY);
    send_one(&mut s, first(NoBody, FullDuplex)).await;
    send_one(&mut s, response_headers("200", false)).await;
    let body = vec![b'x'; MAX_STREAMED_CHUNK + 1];
    let replies = send(&mut s, response_body(&body[..MAX_STREAMED_CHUNK], false)).await;
    assert_eq!(replies.len(), 1);
    assert_eq!(streamed(&replies[0]).0.len(), MAX_STREAMED_CHUNK);
    let replies = send(&mut s, response_body(&body, false)).await;
    let sizes: Vec<_> = replies.iter().map(|r| streamed(r).0.len()).collect();
    assert_eq!(sizes, [MAX_STREAMED_CHUNK, 1]);
    assert!(replies.iter().all(|r| !streamed(r).1));
}

#[tokio::test]
async fn full_duplex_trailers_get_a_reply_after_the_body() {
    let mut s = stream_for(HEADER_ONLY);
    let mut all = Vec::new();
    all.extend(send(&mut s, first(FullDuplex, FullDuplex)).await);
    all.extend(send(&mut s, request_body(b"ab", false)).await);
    all.extend(send(&mut s, request_body(b"cd", false)).await);
    all.extend(send(&mut s, request_trailers()).await);
    assert_eq!(
        kinds(&all),
        [
            "request_headers",
            "request_body",
            "request_body",
            "request_trailers"
        ]
    );
    assert_eq!(streamed(&all[1]), (b"ab".to_vec(), false));
    assert_eq!(streamed(&all[2]), (b"cd".to_vec(), false));
    // The response side ends the same way.
    send_one(&mut s, response_headers("200", false)).await;
    send_one(&mut s, response_body(b"x", false)).await;
    let r = send_one(&mut s, response_trailers()).await;
    assert_eq!(kind(&r), "response_trailers");
}

#[tokio::test]
async fn full_duplex_buffering_processor_defers_the_header_reply_until_the_body_ends() {
    let (mut s, j) = scripted_stream(
        "",
        Script {
            request_body: Some(BodyMode::Buffer { limit: 1024 }),
            uppercase: true,
            ..Default::default()
        },
    );
    assert!(send(&mut s, first(FullDuplex, FullDuplex)).await.is_empty());
    assert!(send(&mut s, request_body(b"ab", false)).await.is_empty());
    let replies = send(&mut s, request_body(b"cd", true)).await;
    assert_eq!(kinds(&replies), ["request_headers", "request_body"]);
    assert!(replies[0].mode_override.is_none());
    assert_eq!(streamed(&replies[1]), (b"ABCD".to_vec(), true));
    assert_eq!(entries(&j).last().unwrap(), "request_body(abcd,eos,whole)");
}

#[tokio::test]
async fn full_duplex_buffering_processor_flushes_at_trailers() {
    let (mut s, j) = scripted_stream(
        "",
        Script {
            request_body: Some(BodyMode::Buffer { limit: 1024 }),
            ..Default::default()
        },
    );
    assert!(send(&mut s, first(FullDuplex, FullDuplex)).await.is_empty());
    assert!(send(&mut s, request_body(b"ab", false)).await.is_empty());
    assert!(send(&mut s, request_body(b"cd", false)).await.is_empty());
    let replies = send(&mut s, request_trailers()).await;
    assert_eq!(
        kinds(&replies),
        ["request_headers", "request_body", "request_trailers"]
    );
    assert_eq!(streamed(&replies[1]), (b"abcd".to_vec(), false));
    assert!(entries(&j).contains(&"request_body(abcd,eos,whole)".to_string()));
}
