//! Processor order, local replies and failure modes.

use super::*;

// --- order and local replies ---

#[tokio::test]
async fn processors_run_in_route_order_in_every_phase() {
    let (mut ex, j) = two(
        Script {
            request_body: stream(),
            response_body: stream(),
            ..Default::default()
        },
        Script {
            request_body: stream(),
            response_body: stream(),
            ..Default::default()
        },
    );
    continued(ex.request_headers(&mut headers()).await);
    continued(req_body(&mut ex, "q", true).await);
    continued(ex.request_trailers(&mut headers()).await);
    ex.cx.response_status = Some(200);
    continued(ex.response_headers(&mut headers()).await);
    continued(resp_body(&mut ex, "r", true).await);
    continued(ex.response_trailers(&mut headers()).await);
    ex.finish(Outcome::Completed { status: 200 });
    assert_eq!(
        entries(&j),
        [
            "a:request_headers",
            "b:request_headers",
            "a:request_body(q,eos)",
            "b:request_body(q,eos)",
            "a:request_trailers",
            "b:request_trailers",
            "a:response_headers",
            "b:response_headers",
            "a:response_body(r,eos)",
            "b:response_body(r,eos)",
            "a:response_trailers",
            "b:response_trailers",
            "a:complete:completed",
            "b:complete:completed",
        ]
    );
}

#[tokio::test]
async fn later_processors_see_body_changes_of_earlier_ones() {
    let (mut ex, j) = two(
        Script {
            request_body: stream(),
            uppercase: true,
            ..Default::default()
        },
        Script {
            request_body: stream(),
            ..Default::default()
        },
    );
    continued(ex.request_headers(&mut headers()).await);
    assert_eq!(
        continued(req_body(&mut ex, "hi", true).await),
        out("HI", true, true)
    );
    let seen = entries(&j);
    assert!(
        seen.contains(&"a:request_body(hi,eos)".to_string()),
        "{seen:?}"
    );
    assert!(
        seen.contains(&"b:request_body(HI,eos)".to_string()),
        "{seen:?}"
    );
}

#[tokio::test]
async fn first_local_reply_stops_later_processors() {
    let (mut ex, j) = two(
        Script {
            respond_at: Some("request_headers"),
            ..Default::default()
        },
        Script::default(),
    );
    let reply = responded(ex.request_headers(&mut headers()).await);
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(json(&reply)["error"]["message"], "request_headers");
    assert_eq!(entries(&j), ["a:request_headers"]);
    ex.finish(Outcome::LocalReply { status: 403 });
    // on_complete still runs on every processor, the ones that never ran included.
    assert_eq!(
        completions(&j),
        ["a:complete:local_reply", "b:complete:local_reply"]
    );
}

#[tokio::test]
async fn local_reply_in_a_body_phase_stops_later_processors() {
    let (mut ex, j) = two(
        Script {
            response_body: stream(),
            respond_at: Some("response_body"),
            ..Default::default()
        },
        Script {
            response_body: stream(),
            ..Default::default()
        },
    );
    through_headers(&mut ex).await;
    let reply = responded(resp_body(&mut ex, "x", false).await);
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(entries(&j).last().unwrap(), "a:response_body(x)");
    assert!(!entries(&j).iter().any(|e| e.starts_with("b:response_body")));
}

// --- failure modes ---

#[tokio::test]
async fn fail_open_error_skips_the_processor_for_the_rest_of_the_exchange() {
    let (mut ex, j) = two(
        Script {
            fail_at: Some("request_headers"),
            failure_mode: FailureMode::FailOpen,
            request_body: buffer(1024),
            response_body: stream(),
            ..Default::default()
        },
        Script {
            response_body: stream(),
            ..Default::default()
        },
    );
    continued(ex.request_headers(&mut headers()).await);
    // The failed processor's Buffer wish no longer counts.
    assert_eq!(ex.request_body_mode(), BodyMode::Skip);
    assert_eq!(
        continued(req_body(&mut ex, "body", true).await),
        out("body", true, false)
    );
    continued(ex.request_trailers(&mut headers()).await);
    ex.cx.response_status = Some(200);
    continued(ex.response_headers(&mut headers()).await);
    continued(resp_body(&mut ex, "r", true).await);
    ex.finish(Outcome::Completed { status: 200 });
    assert_eq!(
        entries(&j),
        [
            "a:request_headers",
            "b:request_headers",
            "b:request_trailers",
            "b:response_headers",
            "b:response_body(r,eos)",
            "a:complete:completed",
            "b:complete:completed",
        ]
    );
    let errors = ex
        .pipeline()
        .metrics
        .processor_errors
        .get_or_create(&ProcessorLabels {
            processor: "scripted",
            failure_mode: "fail_open",
        })
        .get();
    assert_eq!(errors, 1);
}

#[tokio::test]
async fn fail_open_error_in_a_body_phase_skips_later_chunks() {
    let (mut ex, j) = two(
        Script {
            fail_at: Some("request_body"),
            failure_mode: FailureMode::FailOpen,
            request_body: stream(),
            ..Default::default()
        },
        Script {
            request_body: stream(),
            ..Default::default()
        },
    );
    continued(ex.request_headers(&mut headers()).await);
    assert_eq!(
        continued(req_body(&mut ex, "one", false).await),
        out("one", false, false)
    );
    assert_eq!(
        continued(req_body(&mut ex, "two", true).await),
        out("two", true, false)
    );
    let seen: Vec<_> = entries(&j)
        .into_iter()
        .filter(|e| e.contains("request_body"))
        .collect();
    assert_eq!(
        seen,
        [
            "a:request_body(one)",
            "b:request_body(one)",
            "b:request_body(two,eos)"
        ]
    );
}

#[tokio::test]
async fn fail_closed_error_answers_with_status_and_openai_json() {
    let (mut ex, j) = two(
        Script {
            fail_at: Some("request_headers"),
            failure_mode: FailureMode::FailClosed,
            ..Default::default()
        },
        Script::default(),
    );
    let reply = responded(ex.request_headers(&mut headers()).await);
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(reply.headers["content-type"], "application/json");
    assert_eq!(reply.details, "scripted_failed");
    let body = json(&reply);
    // The failure's detail goes to the log, not to the client.
    assert_eq!(body["error"]["message"], "policy scripted failed");
    assert_eq!(body["error"]["type"], "server_error");
    assert_eq!(body["error"]["code"], 500);
    assert_eq!(entries(&j), ["a:request_headers"]);
    let errors = ex
        .pipeline()
        .metrics
        .processor_errors
        .get_or_create(&ProcessorLabels {
            processor: "scripted",
            failure_mode: "fail_closed",
        })
        .get();
    assert_eq!(errors, 1);
}

#[tokio::test]
async fn fail_closed_error_in_response_body_answers() {
    let (f, j) = scripted(Script {
        response_body: stream(),
        fail_at: Some("response_body"),
        ..Default::default()
    });
    let mut ex = exchange_with(vec![f]);
    through_headers(&mut ex).await;
    let reply = responded(resp_body(&mut ex, "x", true).await);
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(json(&reply)["error"]["type"], "server_error");
    assert_eq!(entries(&j).last().unwrap(), "response_body(x,eos)");
}
