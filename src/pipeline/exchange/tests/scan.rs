//! Scan mode: chunks reach the processors as they come while the exchange holds them,
//! until the scanning processors are done; then everything held goes out at once and
//! the rest streams.

use super::*;

fn scan(limit: usize, until: &'static str) -> Script {
    Script {
        request_body: Some(BodyMode::Scan { limit }),
        scan_until: Some(until),
        ..Default::default()
    }
}

#[tokio::test]
async fn chunks_are_held_until_the_scan_ends_then_all_go_out_and_the_rest_passes() {
    let (f, j) = scripted(scan(100, "MODEL"));
    let mut ex = exchange_with(vec![f]);
    continued(ex.request_headers(&mut headers()).await);
    assert_eq!(ex.request_body_mode(), BodyMode::Scan { limit: 100 });
    assert_eq!(
        continued(req_body(&mut ex, "ab", false).await),
        out("", false, true)
    );
    assert_eq!(
        continued(req_body(&mut ex, "cMODEL", false).await),
        out("abcMODEL", false, true),
        "the held chunks and this one"
    );
    assert_eq!(ex.request_body_mode(), BodyMode::Skip);
    assert_eq!(
        continued(req_body(&mut ex, "rest", true).await),
        out("rest", true, false)
    );
    assert_eq!(
        entries(&j),
        [
            "request_headers",
            "request_body(ab)",
            "request_body(cMODEL)"
        ],
        "chunks, never a whole body; nothing after the scan"
    );
}

#[tokio::test]
async fn a_scan_that_never_ends_is_released_by_the_end_of_the_body() {
    let (f, j) = scripted(scan(100, "never"));
    let mut ex = exchange_with(vec![f]);
    continued(ex.request_headers(&mut headers()).await);
    assert_eq!(
        continued(req_body(&mut ex, "ab", false).await),
        out("", false, true)
    );
    assert_eq!(
        continued(req_body(&mut ex, "cd", true).await),
        out("abcd", true, true)
    );
    assert_eq!(
        entries(&j),
        [
            "request_headers",
            "request_body(ab)",
            "request_body(cd,eos)"
        ]
    );
}

#[tokio::test]
async fn a_streaming_processor_sees_each_chunk_as_it_comes_and_its_changes_are_held() {
    let (mut ex, j) = two(
        scan(100, "x"),
        Script {
            request_body: stream(),
            uppercase: true,
            ..Default::default()
        },
    );
    continued(ex.request_headers(&mut headers()).await);
    assert_eq!(ex.request_body_mode(), BodyMode::Scan { limit: 100 });
    assert_eq!(
        continued(req_body(&mut ex, "ab", false).await),
        out("", false, true)
    );
    assert_eq!(
        continued(req_body(&mut ex, "x", false).await),
        out("ABX", false, true)
    );
    assert_eq!(ex.request_body_mode(), BodyMode::Stream);
    assert_eq!(
        continued(req_body(&mut ex, "z", true).await),
        out("Z", true, true)
    );
    assert_eq!(
        entries(&j),
        [
            "a:request_headers",
            "b:request_headers",
            "a:request_body(ab)",
            "b:request_body(ab)",
            "a:request_body(x)",
            "b:request_body(x)",
            "b:request_body(z,eos)"
        ]
    );
}

#[tokio::test]
async fn a_buffering_processor_wins_and_the_scanner_gets_the_whole_body() {
    let (mut ex, j) = two(
        scan(100, "x"),
        Script {
            request_body: buffer(100),
            ..Default::default()
        },
    );
    continued(ex.request_headers(&mut headers()).await);
    assert_eq!(ex.request_body_mode(), BodyMode::Buffer { limit: 100 });
    continued(req_body(&mut ex, "ab", false).await);
    assert_eq!(
        continued(req_body(&mut ex, "x", true).await),
        out("abx", true, true)
    );
    assert_eq!(
        entries(&j)[2..],
        [
            "a:request_body(abx,eos,whole)",
            "b:request_body(abx,eos,whole)"
        ]
    );
}

#[tokio::test]
async fn holding_past_the_limit_is_a_413_for_a_fail_closed_scanner() {
    let (f, _j) = scripted(scan(4, "never"));
    let mut ex = exchange_with(vec![f]);
    continued(ex.request_headers(&mut headers()).await);
    continued(req_body(&mut ex, "abc", false).await);
    let reply = responded(req_body(&mut ex, "de", false).await);
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(json(&reply)["error"]["message"]
        .as_str()
        .unwrap()
        .contains("4-byte limit"));
}

#[tokio::test]
async fn holding_past_the_limit_releases_the_body_for_a_fail_open_scanner() {
    let (f, j) = scripted(Script {
        failure_mode: FailureMode::FailOpen,
        ..scan(4, "never")
    });
    let mut ex = exchange_with(vec![f]);
    continued(ex.request_headers(&mut headers()).await);
    assert_eq!(
        continued(req_body(&mut ex, "abc", false).await),
        out("", false, true)
    );
    assert_eq!(
        continued(req_body(&mut ex, "de", false).await),
        out("abcde", false, true),
        "what was held goes on, the processor stops seeing the body"
    );
    assert_eq!(ex.request_body_mode(), BodyMode::Skip);
    assert_eq!(entries(&j), ["request_headers", "request_body(abc)"]);
}
