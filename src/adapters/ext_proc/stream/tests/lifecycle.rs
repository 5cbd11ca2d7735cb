//! Out-of-order and malformed messages, immediate responses, resets and cancels.

use super::*;

// === out of order and malformed ===

#[tokio::test]
async fn second_request_headers_is_out_of_order() {
    let mut s = stream_for(HEADER_ONLY);
    send_one(&mut s, post("/")).await;
    let err = s.on_message(post("/")).await.unwrap_err();
    assert!(
        matches!(
            err,
            StreamError::OutOfOrder {
                got: "request_headers",
                after: "headers"
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn request_body_after_request_trailers_is_out_of_order() {
    let mut s = stream_for(HEADER_ONLY);
    send_one(&mut s, first(Streamed, NoBody)).await;
    send_one(&mut s, request_body(b"a", false)).await;
    send_one(&mut s, request_trailers()).await;
    let err = s.on_message(request_body(b"b", false)).await.unwrap_err();
    assert!(
        matches!(
            err,
            StreamError::OutOfOrder {
                got: "request_body",
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn body_after_the_last_chunk_and_repeated_trailers_are_out_of_order() {
    let mut s = stream_for(HEADER_ONLY);
    send_one(&mut s, first(Streamed, Streamed)).await;
    send_one(&mut s, request_body(b"a", true)).await;
    assert!(matches!(
        s.on_message(request_body(b"b", false)).await,
        Err(StreamError::OutOfOrder { .. })
    ));
    send_one(&mut s, response_headers("200", false)).await;
    send_one(&mut s, response_trailers()).await;
    assert!(matches!(
        s.on_message(response_trailers()).await,
        Err(StreamError::OutOfOrder {
            got: "response_trailers",
            ..
        })
    ));
    assert!(matches!(
        s.on_message(response_headers("200", false)).await,
        Err(StreamError::OutOfOrder {
            got: "response_headers",
            ..
        })
    ));
}

#[tokio::test]
async fn message_without_a_request_is_empty() {
    let mut s = stream_for(HEADER_ONLY);
    let err = s
        .on_message(ProcessingRequest::default())
        .await
        .unwrap_err();
    assert!(matches!(err, StreamError::Empty), "{err:?}");
    // The stream is still usable.
    send_one(&mut s, post("/")).await;
}

// === immediate responses ===

#[tokio::test]
async fn nothing_is_sent_after_an_immediate_response() {
    let (mut s, j) = scripted_stream(
        "",
        Script {
            respond_at: Some("request_headers"),
            ..Default::default()
        },
    );
    let r = send_one(&mut s, first(Streamed, Streamed)).await;
    let imm = immediate(&r);
    assert_eq!(imm.status.as_ref().unwrap().code, 403);
    assert_eq!(imm.details, "scripted");
    let body: serde_json::Value = serde_json::from_slice(&imm.body).unwrap();
    assert_eq!(body["error"]["code"], 403);
    let hdrs = set_headers(imm.headers.as_ref().unwrap());
    assert!(hdrs.contains(&("content-type".into(), "application/json".into())));
    assert_eq!(completions(&j), ["complete:local_reply"]);
    // Whatever Envoy still sends gets no reply, and no error either.
    for m in [
        request_body(b"x", true),
        request_trailers(),
        response_headers("200", false),
        response_body(b"y", true),
        response_trailers(),
        post("/"),
        ProcessingRequest::default(),
    ] {
        assert!(s.on_message(m).await.unwrap().is_empty());
    }
    s.end();
    drop(s);
    assert_eq!(completions(&j), ["complete:local_reply"]);
}

#[tokio::test]
async fn immediate_response_from_a_body_phase() {
    let (mut s, j) = scripted_stream(
        "",
        Script {
            request_body: Some(BodyMode::Stream),
            respond_at: Some("request_body"),
            ..Default::default()
        },
    );
    send_one(&mut s, first(Streamed, NoBody)).await;
    let r = send_one(&mut s, request_body(b"x", false)).await;
    assert_eq!(immediate(&r).status.as_ref().unwrap().code, 403);
    assert!(send(&mut s, request_body(b"y", true)).await.is_empty());
    assert_eq!(completions(&j), ["complete:local_reply"]);
}

#[tokio::test]
async fn fail_closed_error_becomes_an_immediate_500() {
    let (mut s, j) = scripted_stream(
        "",
        Script {
            fail_at: Some("response_headers"),
            failure_mode: FailureMode::FailClosed,
            ..Default::default()
        },
    );
    send_one(&mut s, post("/")).await;
    let r = send_one(&mut s, response_headers("200", false)).await;
    let imm = immediate(&r);
    assert_eq!(imm.status.as_ref().unwrap().code, 500);
    assert_eq!(imm.details, "scripted_failed");
    assert_eq!(completions(&j), ["complete:local_reply"]);
}

#[tokio::test]
async fn full_duplex_immediate_response_drops_the_deferred_header_reply() {
    let (mut s, _j) = scripted_stream(
        "",
        Script {
            request_body: Some(BodyMode::Buffer { limit: 1024 }),
            respond_at: Some("request_body"),
            ..Default::default()
        },
    );
    assert!(send(&mut s, first(FullDuplex, FullDuplex)).await.is_empty());
    let replies = send(&mut s, request_body(b"x", true)).await;
    assert_eq!(kinds(&replies), ["immediate_response"]);
}

#[tokio::test]
async fn buffer_overflow_answers_413_as_an_immediate_response() {
    let (mut s, _j) = scripted_stream(
        NO_OVERRIDE,
        Script {
            request_body: Some(BodyMode::Buffer { limit: 4 }),
            ..Default::default()
        },
    );
    send_one(&mut s, first(Streamed, NoBody)).await;
    send_one(&mut s, request_body(b"abc", false)).await;
    let r = send_one(&mut s, request_body(b"de", true)).await;
    assert_eq!(immediate(&r).status.as_ref().unwrap().code, 413);
}

// === reset / cancel ===

#[tokio::test]
async fn dropping_the_stream_mid_way_completes_once_as_client_gone() {
    let (mut s, j) = scripted_stream(
        "",
        Script {
            request_body: Some(BodyMode::Stream),
            ..Default::default()
        },
    );
    send_one(&mut s, first(Streamed, NoBody)).await;
    send_one(&mut s, request_body(b"part", false)).await;
    assert!(completions(&j).is_empty());
    drop(s);
    assert_eq!(completions(&j), ["complete:client_gone"]);
}

#[tokio::test]
async fn end_mid_stream_then_drop_completes_once() {
    let (mut s, j) = scripted_stream(
        "",
        Script {
            response_body: Some(BodyMode::Stream),
            ..Default::default()
        },
    );
    send_one(&mut s, post("/")).await;
    send_one(&mut s, response_headers("200", false)).await;
    send_one(&mut s, response_body(b"data: 1\n\n", false)).await;
    s.end();
    s.end();
    drop(s);
    assert_eq!(completions(&j), ["complete:client_gone"]);
}

#[tokio::test]
async fn end_after_the_full_response_reports_completed_once() {
    let (mut s, j) = scripted_stream(
        "",
        Script {
            response_body: Some(BodyMode::Stream),
            ..Default::default()
        },
    );
    send_one(&mut s, post("/")).await;
    send_one(&mut s, response_headers("200", false)).await;
    send_one(&mut s, response_body(b"done", true)).await;
    assert_eq!(completions(&j), ["complete:completed"]);
    s.end();
    drop(s);
    assert_eq!(completions(&j), ["complete:completed"]);
}

#[tokio::test]
async fn response_headers_ending_the_stream_complete_it() {
    let (mut s, j) = scripted_stream("", Script::default());
    send_one(&mut s, post("/")).await;
    send_one(&mut s, response_headers("304", true)).await;
    assert_eq!(completions(&j), ["complete:completed"]);
    drop(s);
    assert_eq!(completions(&j), ["complete:completed"]);
}

#[tokio::test]
async fn end_after_response_headers_of_a_header_only_route_is_completed() {
    let (mut s, j) = scripted_stream("", Script::default());
    send_one(&mut s, post("/")).await;
    send_one(&mut s, response_headers("200", false)).await;
    s.end();
    assert_eq!(completions(&j), ["complete:completed"]);
}

#[tokio::test]
async fn response_trailers_complete_the_exchange() {
    let (mut s, j) = scripted_stream("", Script::default());
    send_one(&mut s, first(NoBody, Streamed)).await;
    send_one(&mut s, response_headers("200", false)).await;
    send_one(&mut s, response_body(b"x", false)).await;
    send_one(&mut s, response_trailers()).await;
    assert_eq!(completions(&j), ["complete:completed"]);
}

#[tokio::test]
async fn end_before_any_message_does_nothing() {
    let (mut s, j) = scripted_stream("", Script::default());
    s.end();
    drop(s);
    assert!(entries(&j).is_empty());
}
