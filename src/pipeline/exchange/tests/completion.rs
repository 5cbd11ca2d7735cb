//! on_complete runs exactly once on every path.

use super::*;

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
