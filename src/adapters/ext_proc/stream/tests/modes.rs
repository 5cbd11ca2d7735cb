//! `mode_override` that Envoy may ignore (`allow_mode_override: false`): the body
//! messages tell which mode Envoy is in, and each is answered for that mode.

use super::*;

fn buffering(failure_mode: FailureMode) -> Script {
    Script {
        request_body: Some(BodyMode::Buffer { limit: 1024 }),
        failure_mode,
        ..Default::default()
    }
}

/// A POST declaring `len` body bytes.
fn post_with_length(len: usize) -> ProcessingRequest {
    let len = len.to_string();
    request_headers(
        &[
            (":method", "POST"),
            (":path", "/v1/chat/completions"),
            (":authority", "gateway.local"),
            ("content-type", "application/json"),
            ("content-length", &len),
        ],
        false,
    )
}

#[tokio::test]
async fn streamed_chunks_after_an_ignored_override_are_buffered_by_tollgate() {
    let (mut s, j) = scripted_stream("", buffering(FailureMode::FailClosed));
    let r = send_one(&mut s, first(Streamed, NoBody)).await;
    assert_eq!(override_modes(&r), Some((Buffered, NoBody)), "asked");
    // Envoy did not switch: the body comes in pieces.
    let r = send_one(&mut s, request_body(br#"{"a":"#, false)).await;
    assert_eq!(kind(&r), "request_body");
    assert_eq!(body_mutation(&r), Some(&Mutation::ClearBody(true)), "held");
    let r = send_one(&mut s, request_body(b"1", false)).await;
    assert_eq!(body_mutation(&r), Some(&Mutation::ClearBody(true)), "held");
    let r = send_one(&mut s, request_body(b"}", true)).await;
    assert_eq!(
        body_mutation(&r),
        Some(&Mutation::Body(br#"{"a":1}"#.to_vec()))
    );
    // STREAMED: no content-length to fix (Envoy removed it).
    assert!(common(&r).header_mutation.is_none());
    let bodies: Vec<String> = entries(&j)
        .into_iter()
        .filter(|e| e.starts_with("request_body"))
        .collect();
    assert_eq!(
        bodies,
        [r#"request_body({"a":1},eos,whole)"#],
        "seen once, whole"
    );
    let metrics = s.pipeline.metrics.encode();
    assert!(
        metrics.contains("tollgate_ext_proc_mode_override_ignored_total 1\n"),
        "counted once per stream: {metrics}"
    );
}

#[tokio::test]
async fn an_ignored_override_is_not_sent_again_on_the_response() {
    let (mut s, _j) = scripted_stream(
        "",
        Script {
            request_body: Some(BodyMode::Buffer { limit: 1024 }),
            response_body: Some(BodyMode::Buffer { limit: 1024 }),
            ..Default::default()
        },
    );
    send_one(&mut s, first(Streamed, Streamed)).await;
    send_one(&mut s, request_body(b"a", false)).await;
    send_one(&mut s, request_body(b"b", true)).await;
    let r = send_one(&mut s, response_headers("200", false)).await;
    assert_eq!(override_modes(&r), None, "Envoy ignores overrides");
    let r = send_one(&mut s, response_body(b"x", false)).await;
    assert_eq!(body_mutation(&r), Some(&Mutation::ClearBody(true)));
    let r = send_one(&mut s, response_body(b"y", true)).await;
    assert_eq!(body_mutation(&r), Some(&Mutation::Body(b"xy".to_vec())));
}

#[tokio::test]
async fn a_chunk_shorter_than_the_declared_length_is_a_piece() {
    let (mut s, j) = scripted_stream("", buffering(FailureMode::FailClosed));
    let r = send_one(&mut s, with_modes(post_with_length(4), Streamed, NoBody)).await;
    assert!(r.mode_override.is_some());
    let r = send_one(&mut s, request_body(b"ab", false)).await;
    assert_eq!(body_mutation(&r), Some(&Mutation::ClearBody(true)));
    let r = send_one(&mut s, request_body(b"cd", true)).await;
    assert_eq!(body_mutation(&r), Some(&Mutation::Body(b"abcd".to_vec())));
    assert_eq!(entries(&j).last().unwrap(), "request_body(abcd,eos,whole)");
}

#[tokio::test]
async fn the_whole_declared_body_before_trailers_is_one_buffered_body() {
    let (mut s, j) = scripted_stream(
        "",
        Script {
            uppercase: true,
            ..buffering(FailureMode::FailClosed)
        },
    );
    send_one(&mut s, with_modes(post_with_length(4), Streamed, NoBody)).await;
    // BUFFERED with trailers to follow: the whole body without end_of_stream.
    let r = send_one(&mut s, request_body(b"abcd", false)).await;
    assert_eq!(body_mutation(&r), Some(&Mutation::Body(b"ABCD".to_vec())));
    assert_eq!(header_set(&r, "content-length").as_deref(), Some("4"));
    assert_eq!(entries(&j).last().unwrap(), "request_body(abcd,eos,whole)");
    // Had Envoy streamed after all, a closing empty chunk passes untouched: the
    // processors never see a second "whole" body.
    let r = send_one(&mut s, request_body(b"", true)).await;
    assert!(body_mutation(&r).is_none());
    let seen = entries(&j)
        .iter()
        .filter(|e| e.starts_with("request_body"))
        .count();
    assert_eq!(seen, 1);
}

#[tokio::test]
async fn a_whole_body_where_chunks_were_asked_for_gets_its_length_back() {
    let (mut s, _j) = scripted_stream(
        "",
        Script {
            response_body: Some(BodyMode::Stream),
            uppercase: true,
            ..Default::default()
        },
    );
    send_one(&mut s, first(NoBody, Buffered)).await;
    let mut headers = response_headers("200", false);
    if let Some(In::ResponseHeaders(h)) = headers.request.as_mut() {
        h.headers.as_mut().unwrap().headers.push(ProtoHeaderValue {
            key: "content-length".into(),
            value: String::new(),
            raw_value: b"5".to_vec(),
        });
    }
    let r = send_one(&mut s, headers).await;
    assert_eq!(override_modes(&r), Some((NoBody, Streamed)));
    let m = common(&r).header_mutation.as_ref().unwrap();
    assert!(m.remove_headers.contains(&"content-length".to_string()));
    // Envoy stayed BUFFERED: one message with the whole body, its headers still held.
    let r = send_one(&mut s, response_body(b"hello", true)).await;
    assert_eq!(body_mutation(&r), Some(&Mutation::Body(b"HELLO".to_vec())));
    assert_eq!(header_set(&r, "content-length").as_deref(), Some("5"));
}

#[tokio::test]
async fn an_unchanged_whole_body_restores_the_removed_length() {
    let (mut s, _j) = scripted_stream(
        "",
        Script {
            response_body: Some(BodyMode::Stream),
            ..Default::default()
        },
    );
    send_one(&mut s, first(NoBody, Buffered)).await;
    send_one(&mut s, response_headers("200", false)).await;
    let r = send_one(&mut s, response_body(b"hello", true)).await;
    assert!(body_mutation(&r).is_none());
    assert_eq!(header_set(&r, "content-length").as_deref(), Some("5"));
}

#[tokio::test]
async fn a_request_body_that_never_came_fails_a_fail_closed_processor() {
    let (mut s, j) = scripted_stream("", buffering(FailureMode::FailClosed));
    let r = send_one(&mut s, first(NoBody, NoBody)).await;
    assert_eq!(override_modes(&r), Some((Buffered, NoBody)));
    // Envoy kept its static NONE: the response comes without any request body.
    let r = send_one(&mut s, response_headers("200", false)).await;
    let i = immediate(&r);
    assert_eq!(i.status.as_ref().unwrap().code, 500);
    assert_eq!(i.details, "scripted_body_unseen");
    let body: serde_json::Value = serde_json::from_slice(&i.body).unwrap();
    assert_eq!(body["error"]["type"], "server_error");
    assert_eq!(completions(&j), ["complete:local_reply"]);
    let metrics = s.pipeline.metrics.encode();
    assert!(
        metrics.contains("tollgate_ext_proc_mode_override_ignored_total 1\n"),
        "a body that never came counts too: {metrics}"
    );
}

#[tokio::test]
async fn a_request_body_that_never_came_is_skipped_by_a_fail_open_processor() {
    let (mut s, j) = scripted_stream("", buffering(FailureMode::FailOpen));
    send_one(&mut s, first(NoBody, NoBody)).await;
    let r = send_one(&mut s, response_headers("200", false)).await;
    assert_eq!(kind(&r), "response_headers");
    assert_eq!(override_modes(&r), None, "known to be ignored now");
    drop(s);
    assert_eq!(completions(&j), ["complete:completed"]);
}

#[tokio::test]
async fn an_honoured_override_is_trusted_for_the_response() {
    let (mut s, j) = scripted_stream(
        "",
        Script {
            request_body: Some(BodyMode::Buffer { limit: 1024 }),
            response_body: Some(BodyMode::Buffer { limit: 1024 }),
            ..Default::default()
        },
    );
    send_one(&mut s, first(NoBody, NoBody)).await;
    // A body from a static NONE mode: the override worked.
    send_one(&mut s, request_body(b"ab", true)).await;
    let r = send_one(&mut s, response_headers("200", false)).await;
    assert_eq!(override_modes(&r), Some((Buffered, Buffered)));
    let r = send_one(&mut s, response_body(b"whole", false)).await;
    // Trusted as BUFFERED: a body without end_of_stream is the whole body.
    assert!(body_mutation(&r).is_none());
    assert_eq!(
        entries(&j).last().unwrap(),
        "response_body(whole,eos,whole)"
    );
    let metrics = s.pipeline.metrics.encode();
    assert!(
        metrics.contains("tollgate_ext_proc_mode_override_ignored_total 0\n"),
        "an honoured override is not counted: {metrics}"
    );
}
