//! Exchange tests: processor order, local replies, failure modes, body modes (stream,
//! buffer, truncated, overflow) and the exactly-once `on_complete` guarantee. Everything
//! runs through `testing::exchange_with` and scripted processors that journal the phases
//! they see.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};

use crate::config::FailureMode;
use crate::metrics::{ProcessorLabels, RequestLabels};
use crate::pipeline::testing::{entries, exchange_with, scripted, scripted_into, Script};
use crate::pipeline::{BodyMode, BodyOutput, Exchange, Headers, LocalReply, Outcome, Verdict};

type Journal = Arc<Mutex<Vec<String>>>;

fn journal() -> Journal {
    Arc::new(Mutex::new(Vec::new()))
}

fn headers() -> Headers {
    Headers::new(HeaderMap::new())
}

fn out(data: &'static str, end_of_stream: bool, changed: bool) -> BodyOutput {
    BodyOutput {
        data: Bytes::from_static(data.as_bytes()),
        end_of_stream,
        changed,
    }
}

fn continued<T: std::fmt::Debug>(v: Verdict<T>) -> T {
    match v {
        Verdict::Continue(t) => t,
        Verdict::Respond(r) => panic!("expected Continue, got a local reply {r:?}"),
    }
}

fn responded<T: std::fmt::Debug>(v: Verdict<T>) -> LocalReply {
    match v {
        Verdict::Respond(r) => r,
        Verdict::Continue(t) => panic!("expected a local reply, got Continue({t:?})"),
    }
}

fn json(reply: &LocalReply) -> serde_json::Value {
    serde_json::from_slice(&reply.body).expect("error body is JSON")
}

async fn req_body(ex: &mut Exchange, data: &'static str, eos: bool) -> Verdict<BodyOutput> {
    ex.request_body(Bytes::from_static(data.as_bytes()), eos, false)
        .await
}

async fn resp_body(ex: &mut Exchange, data: &'static str, eos: bool) -> Verdict<BodyOutput> {
    ex.response_body(Bytes::from_static(data.as_bytes()), eos, false)
        .await
}

/// Runs request headers, then (status 200) response headers.
async fn through_headers(ex: &mut Exchange) {
    continued(ex.request_headers(&mut headers()).await);
    ex.cx.response_status = Some(200);
    continued(ex.response_headers(&mut headers()).await);
}

/// An exchange over processors `a` and `b` sharing one journal.
fn two(a: Script, b: Script) -> (Exchange, Journal) {
    let j = journal();
    let a = scripted_into(Script { tag: "a", ..a }, &j);
    let b = scripted_into(Script { tag: "b", ..b }, &j);
    (exchange_with(vec![a, b]), j)
}

fn stream() -> Option<BodyMode> {
    Some(BodyMode::Stream)
}

fn buffer(limit: usize) -> Option<BodyMode> {
    Some(BodyMode::Buffer { limit })
}

fn completions(j: &Journal) -> Vec<String> {
    entries(j)
        .into_iter()
        .filter(|e| e.contains("complete:"))
        .collect()
}

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
    assert_eq!(
        body["error"]["message"],
        "policy scripted failed: scripted failure at request_headers"
    );
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

// --- on_complete exactly once ---

fn requests_recorded(ex: &Exchange, status: u16, outcome: &'static str) -> u64 {
    ex.pipeline()
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            route: "test".into(),
            adapter: "ext_proc",
            status,
            outcome,
        })
        .get()
}

#[tokio::test]
async fn on_complete_runs_once_on_finish() {
    let (mut ex, j) = two(Script::default(), Script::default());
    through_headers(&mut ex).await;
    ex.finish(Outcome::Completed { status: 200 });
    assert_eq!(
        completions(&j),
        ["a:complete:completed", "b:complete:completed"]
    );
    assert_eq!(requests_recorded(&ex, 200, "completed"), 1);
}

#[tokio::test]
async fn on_complete_runs_once_when_finish_is_called_twice() {
    let (f, j) = scripted(Script::default());
    let mut ex = exchange_with(vec![f]);
    through_headers(&mut ex).await;
    ex.finish(Outcome::Completed { status: 200 });
    ex.finish(Outcome::Failed {
        reason: "late".into(),
    });
    let pipeline = ex.pipeline().clone();
    assert_eq!(requests_recorded(&ex, 200, "completed"), 1);
    drop(ex);
    assert_eq!(completions(&j), ["complete:completed"]);
    let failed = pipeline
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            route: "test".into(),
            adapter: "ext_proc",
            status: 0,
            outcome: "failed",
        })
        .get();
    assert_eq!(failed, 0);
}

#[tokio::test]
async fn dropping_an_unfinished_exchange_reports_client_gone() {
    let (mut ex, j) = two(
        Script {
            request_body: stream(),
            ..Default::default()
        },
        Script::default(),
    );
    continued(ex.request_headers(&mut headers()).await);
    continued(req_body(&mut ex, "part", false).await);
    let pipeline = ex.pipeline().clone();
    drop(ex);
    assert_eq!(
        completions(&j),
        ["a:complete:client_gone", "b:complete:client_gone"]
    );
    let gone = pipeline
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            route: "test".into(),
            adapter: "ext_proc",
            status: 0,
            outcome: "client_gone",
        })
        .get();
    assert_eq!(gone, 1);
}

#[tokio::test]
async fn dropping_before_any_phase_still_completes() {
    let (f, j) = scripted(Script::default());
    drop(exchange_with(vec![f]));
    assert_eq!(entries(&j), ["complete:client_gone"]);
}

#[tokio::test]
async fn local_reply_then_drop_completes_once() {
    let (f, j) = scripted(Script {
        respond_at: Some("request_headers"),
        ..Default::default()
    });
    let mut ex = exchange_with(vec![f]);
    let reply = responded(ex.request_headers(&mut headers()).await);
    ex.finish(Outcome::LocalReply {
        status: reply.status.as_u16(),
    });
    drop(ex);
    assert_eq!(completions(&j), ["complete:local_reply"]);
}
