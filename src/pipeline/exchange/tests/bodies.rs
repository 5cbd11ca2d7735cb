//! Body modes (skip, stream, buffer, truncated, overflow) and their negotiation.

use super::*;

// --- body modes ---

#[tokio::test]
async fn skip_mode_passes_body_without_calling_processors() {
    let (f, j) = scripted(Script::default());
    let mut ex = exchange_with(vec![f]);
    continued(ex.request_headers(&mut headers()).await);
    assert_eq!(ex.request_body_mode(), BodyMode::Skip);
    assert_eq!(
        continued(req_body(&mut ex, "a", false).await),
        out("a", false, false)
    );
    assert_eq!(
        continued(req_body(&mut ex, "b", true).await),
        out("b", true, false)
    );
    assert_eq!(entries(&j), ["request_headers"]);
}

#[tokio::test]
async fn stream_mode_passes_each_chunk() {
    let (f, j) = scripted(Script {
        request_body: stream(),
        ..Default::default()
    });
    let mut ex = exchange_with(vec![f]);
    continued(ex.request_headers(&mut headers()).await);
    assert_eq!(ex.request_body_mode(), BodyMode::Stream);
    assert_eq!(
        continued(req_body(&mut ex, "ab", false).await),
        out("ab", false, false)
    );
    assert_eq!(
        continued(req_body(&mut ex, "", false).await),
        out("", false, false)
    );
    assert_eq!(
        continued(req_body(&mut ex, "cd", true).await),
        out("cd", true, false)
    );
    assert_eq!(
        entries(&j),
        [
            "request_headers",
            "request_body(ab)",
            "request_body()",
            "request_body(cd,eos)"
        ]
    );
}

#[tokio::test]
async fn stream_mode_reports_changed_chunks() {
    let (f, _j) = scripted(Script {
        response_body: stream(),
        uppercase: true,
        ..Default::default()
    });
    let mut ex = exchange_with(vec![f]);
    through_headers(&mut ex).await;
    assert_eq!(
        continued(resp_body(&mut ex, "data: x\n\n", false).await),
        out("DATA: X\n\n", false, true)
    );
    assert_eq!(
        continued(resp_body(&mut ex, "end", true).await),
        out("END", true, true)
    );
}

#[tokio::test]
async fn buffer_mode_holds_chunks_and_delivers_the_whole_body_once() {
    let (f, j) = scripted(Script {
        request_body: buffer(100),
        ..Default::default()
    });
    let mut ex = exchange_with(vec![f]);
    continued(ex.request_headers(&mut headers()).await);
    assert_eq!(ex.request_body_mode(), BodyMode::Buffer { limit: 100 });
    // Held: nothing to forward, and the chunk is "changed" (it must be cleared).
    assert_eq!(
        continued(req_body(&mut ex, "ab", false).await),
        out("", false, true)
    );
    assert_eq!(
        continued(req_body(&mut ex, "cd", false).await),
        out("", false, true)
    );
    // The last chunk carries the whole body, changed because it replaces that chunk.
    assert_eq!(
        continued(req_body(&mut ex, "ef", true).await),
        out("abcdef", true, true)
    );
    assert_eq!(
        entries(&j),
        ["request_headers", "request_body(abcdef,eos,whole)"]
    );
}

#[tokio::test]
async fn buffer_mode_empty_held_chunk_is_not_changed() {
    let (f, _j) = scripted(Script {
        request_body: buffer(100),
        ..Default::default()
    });
    let mut ex = exchange_with(vec![f]);
    continued(ex.request_headers(&mut headers()).await);
    assert_eq!(
        continued(req_body(&mut ex, "", false).await),
        out("", false, false)
    );
    assert_eq!(
        continued(req_body(&mut ex, "x", true).await),
        out("x", true, false)
    );
}

#[tokio::test]
async fn buffer_mode_single_unchanged_chunk_is_not_changed() {
    let (f, j) = scripted(Script {
        response_body: buffer(100),
        ..Default::default()
    });
    let mut ex = exchange_with(vec![f]);
    through_headers(&mut ex).await;
    // Envoy BUFFERED: one message with the whole body; an untouched body needs no mutation.
    assert_eq!(
        continued(resp_body(&mut ex, "{\"a\":1}", true).await),
        out("{\"a\":1}", true, false)
    );
    assert_eq!(
        entries(&j).last().unwrap(),
        "response_body({\"a\":1},eos,whole)"
    );
}

#[tokio::test]
async fn buffer_mode_changed_whole_body() {
    let (f, _j) = scripted(Script {
        request_body: buffer(100),
        uppercase: true,
        ..Default::default()
    });
    let mut ex = exchange_with(vec![f]);
    continued(ex.request_headers(&mut headers()).await);
    assert_eq!(
        continued(req_body(&mut ex, "ab", true).await),
        out("AB", true, true)
    );
}

#[tokio::test]
async fn truncated_body_delivers_what_it_has() {
    let (f, j) = scripted(Script {
        request_body: buffer(100),
        ..Default::default()
    });
    let mut ex = exchange_with(vec![f]);
    continued(ex.request_headers(&mut headers()).await);
    // Envoy BUFFERED_PARTIAL over its limit: one message, not the end, nothing more comes.
    let v = ex
        .request_body(Bytes::from_static(b"partial"), false, true)
        .await;
    assert_eq!(continued(v), out("partial", false, false));
    assert_eq!(
        entries(&j),
        ["request_headers", "request_body(partial,whole,truncated)"]
    );
}

#[tokio::test]
async fn truncated_after_held_chunks_delivers_all_of_it() {
    let (f, j) = scripted(Script {
        request_body: buffer(100),
        ..Default::default()
    });
    let mut ex = exchange_with(vec![f]);
    continued(ex.request_headers(&mut headers()).await);
    assert_eq!(
        continued(req_body(&mut ex, "ab", false).await),
        out("", false, true)
    );
    let v = ex
        .request_body(Bytes::from_static(b"cd"), false, true)
        .await;
    assert_eq!(continued(v), out("abcd", false, true));
    assert_eq!(
        entries(&j).last().unwrap(),
        "request_body(abcd,whole,truncated)"
    );
}

#[tokio::test]
async fn request_overflow_fail_closed_answers_413() {
    let (f, j) = scripted(Script {
        request_body: buffer(4),
        failure_mode: FailureMode::FailClosed,
        ..Default::default()
    });
    let mut ex = exchange_with(vec![f]);
    continued(ex.request_headers(&mut headers()).await);
    assert_eq!(
        continued(req_body(&mut ex, "abc", false).await),
        out("", false, true)
    );
    let reply = responded(req_body(&mut ex, "de", false).await);
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    let body = json(&reply);
    assert_eq!(body["error"]["type"], "request_too_large");
    assert_eq!(body["error"]["code"], 413);
    assert_eq!(
        body["error"]["message"],
        "request body exceeds the 4-byte limit of policy scripted"
    );
    assert_eq!(entries(&j), ["request_headers"]);
}

#[tokio::test]
async fn body_at_exactly_the_limit_is_buffered() {
    let (f, j) = scripted(Script {
        request_body: buffer(4),
        ..Default::default()
    });
    let mut ex = exchange_with(vec![f]);
    continued(ex.request_headers(&mut headers()).await);
    continued(req_body(&mut ex, "ab", false).await);
    assert_eq!(
        continued(req_body(&mut ex, "cd", true).await),
        out("abcd", true, true)
    );
    assert_eq!(entries(&j).last().unwrap(), "request_body(abcd,eos,whole)");
}

#[tokio::test]
async fn response_overflow_fail_closed_answers_502() {
    let (f, _j) = scripted(Script {
        response_body: buffer(2),
        ..Default::default()
    });
    let mut ex = exchange_with(vec![f]);
    through_headers(&mut ex).await;
    let reply = responded(resp_body(&mut ex, "abc", true).await);
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert_eq!(json(&reply)["error"]["type"], "upstream_error");
}

#[tokio::test]
async fn overflow_fail_open_passes_everything_through() {
    let (f, j) = scripted(Script {
        request_body: buffer(4),
        failure_mode: FailureMode::FailOpen,
        ..Default::default()
    });
    let mut ex = exchange_with(vec![f]);
    continued(ex.request_headers(&mut headers()).await);
    assert_eq!(
        continued(req_body(&mut ex, "abc", false).await),
        out("", false, true)
    );
    // Over the limit: what was held goes out with this chunk, unseen.
    assert_eq!(
        continued(req_body(&mut ex, "de", false).await),
        out("abcde", false, true)
    );
    assert_eq!(ex.request_body_mode(), BodyMode::Skip);
    assert_eq!(
        continued(req_body(&mut ex, "f", true).await),
        out("f", true, false)
    );
    assert_eq!(entries(&j), ["request_headers"]);
}

#[tokio::test]
async fn overflow_fail_open_still_feeds_streaming_processors() {
    let (mut ex, j) = two(
        Script {
            request_body: buffer(4),
            failure_mode: FailureMode::FailOpen,
            ..Default::default()
        },
        Script {
            request_body: stream(),
            ..Default::default()
        },
    );
    continued(ex.request_headers(&mut headers()).await);
    assert_eq!(ex.request_body_mode(), BodyMode::Buffer { limit: 4 });
    continued(req_body(&mut ex, "abc", false).await);
    assert_eq!(
        continued(req_body(&mut ex, "de", false).await),
        out("abcde", false, true)
    );
    assert_eq!(ex.request_body_mode(), BodyMode::Stream);
    assert_eq!(
        continued(req_body(&mut ex, "f", true).await),
        out("f", true, false)
    );
    let seen: Vec<_> = entries(&j)
        .into_iter()
        .filter(|e| e.contains("body"))
        .collect();
    assert_eq!(seen, ["b:request_body(abcde)", "b:request_body(f,eos)"]);
}

/// A fail-open processor with a small limit must not make a fail-closed processor whose
/// own (larger) limit holds answer 413, nor stop it from getting the whole body.
#[tokio::test]
async fn overflow_only_affects_processors_whose_own_limit_was_exceeded() {
    let (mut ex, j) = two(
        Script {
            request_body: buffer(4),
            failure_mode: FailureMode::FailOpen,
            ..Default::default()
        },
        Script {
            request_body: buffer(100),
            failure_mode: FailureMode::FailClosed,
            ..Default::default()
        },
    );
    continued(ex.request_headers(&mut headers()).await);
    let v = req_body(&mut ex, "abcdef", true).await;
    assert_eq!(continued(v), out("abcdef", true, false));
    assert_eq!(
        entries(&j).last().unwrap(),
        "b:request_body(abcdef,eos,whole)"
    );
}

// --- body mode negotiation ---

#[tokio::test]
async fn strongest_body_mode_across_processors() {
    let j = journal();
    let f = |request_body, response_body| {
        scripted_into(
            Script {
                request_body,
                response_body,
                ..Default::default()
            },
            &j,
        )
    };
    let mut ex = exchange_with(vec![
        f(stream(), None),
        f(buffer(10), stream()),
        f(buffer(5), None),
        f(None, None),
    ]);
    // Nothing known before the header phases.
    assert_eq!(ex.request_body_mode(), BodyMode::Skip);
    assert_eq!(ex.response_body_mode(), BodyMode::Skip);
    continued(ex.request_headers(&mut headers()).await);
    assert_eq!(ex.request_body_mode(), BodyMode::Buffer { limit: 5 });
    assert_eq!(ex.response_body_mode(), BodyMode::Skip);
    ex.cx.response_status = Some(200);
    continued(ex.response_headers(&mut headers()).await);
    assert_eq!(ex.response_body_mode(), BodyMode::Stream);
}

#[tokio::test]
async fn buffer_and_stream_processors_both_see_the_whole_body() {
    let (mut ex, j) = two(
        Script {
            request_body: stream(),
            ..Default::default()
        },
        Script {
            request_body: buffer(64),
            ..Default::default()
        },
    );
    continued(ex.request_headers(&mut headers()).await);
    continued(req_body(&mut ex, "ab", false).await);
    continued(req_body(&mut ex, "c", true).await);
    let seen: Vec<_> = entries(&j)
        .into_iter()
        .filter(|e| e.contains("body"))
        .collect();
    assert_eq!(
        seen,
        [
            "a:request_body(abc,eos,whole)",
            "b:request_body(abc,eos,whole)"
        ]
    );
}

#[tokio::test]
async fn no_processors_means_empty_exchange() {
    let mut ex = exchange_with(Vec::new());
    assert!(ex.is_empty());
    continued(ex.request_headers(&mut headers()).await);
    assert_eq!(
        continued(req_body(&mut ex, "x", true).await),
        out("x", true, false)
    );
}

// --- ending a body early ---

#[tokio::test]
async fn a_processor_ending_the_body_drops_every_later_chunk() {
    let (mut ex, j) = two(
        Script {
            response_body: stream(),
            end_stream_at: Some("response_body"),
            ..Default::default()
        },
        Script {
            response_body: stream(),
            ..Default::default()
        },
    );
    through_headers(&mut ex).await;
    let first = continued(resp_body(&mut ex, "a", false).await);
    assert_eq!(
        first,
        BodyOutput {
            ends_stream: true,
            ..out("END", false, true)
        }
    );
    // Later chunks reach no processor and are forwarded empty.
    assert_eq!(
        continued(resp_body(&mut ex, "b", false).await),
        out("", false, true)
    );
    assert_eq!(
        continued(resp_body(&mut ex, "", true).await),
        out("", true, false)
    );
    let bodies: Vec<String> = entries(&j)
        .into_iter()
        .filter(|e| e.contains("response_body"))
        .collect();
    assert_eq!(bodies, ["a:response_body(a)", "b:response_body(END)"]);
}

#[tokio::test]
async fn a_whole_body_is_delivered_once_even_if_the_transport_sends_more() {
    let (f, j) = scripted(Script {
        request_body: buffer(64),
        ..Default::default()
    });
    let mut ex = exchange_with(vec![f]);
    continued(ex.request_headers(&mut headers()).await);
    continued(req_body(&mut ex, "ab", true).await);
    assert_eq!(
        continued(req_body(&mut ex, "c", true).await),
        out("c", true, false)
    );
    let bodies: Vec<String> = entries(&j)
        .into_iter()
        .filter(|e| e.starts_with("request_body"))
        .collect();
    assert_eq!(bodies, ["request_body(ab,eos,whole)"]);
}
