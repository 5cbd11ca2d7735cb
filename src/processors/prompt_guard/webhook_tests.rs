//! The guard webhook against a local mock service: pass, mask and reject answers on the
//! prompt and on JSON completions, and each failure (down, slow, off-protocol) under
//! both failure modes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use crate::pipeline::testing::{metric, receive, send};
use crate::pipeline::Adapter;

use super::tests::{exchange, pipeline, EMAIL};

type Answer = Arc<dyn Fn(&str, &serde_json::Value) -> String + Send + Sync>;

/// A mock guard service: records `(path, body)` of each call and answers with
/// `answer(path, body)` after `delay`.
struct MockGuard {
    port: u16,
    calls: Arc<Mutex<Vec<(String, serde_json::Value)>>>,
    /// The `authorization` header of each call.
    auth: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MockGuard {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn mock(delay: Duration, answer: Answer) -> MockGuard {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let calls = Arc::new(Mutex::new(Vec::new()));
    let auth = Arc::new(Mutex::new(Vec::new()));
    let (seen, auth_seen) = (calls.clone(), auth.clone());
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (seen, auth_seen, answer) = (seen.clone(), auth_seen.clone(), answer.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                    let (seen, auth_seen, answer) =
                        (seen.clone(), auth_seen.clone(), answer.clone());
                    async move {
                        let path = req.uri().path().to_string();
                        let header = req.headers().get("authorization");
                        let header = header.map(|v| v.to_str().unwrap().to_string());
                        auth_seen.lock().unwrap().push(header.unwrap_or_default());
                        let body = req.into_body().collect().await?.to_bytes();
                        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
                        seen.lock().unwrap().push((path.clone(), body.clone()));
                        tokio::time::sleep(delay).await;
                        let text = answer(&path, &body);
                        Ok::<_, hyper::Error>(http::Response::new(Full::new(Bytes::from(text))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    MockGuard {
        port,
        calls,
        auth,
        task,
    }
}

fn policies(port: u16, side: &str, failure_mode: &str, timeout: &str) -> String {
    format!(
        r#"        promptGuard:
          {side}:
            rules:
            - {{ name: pii, builtins: [email], action: mask }}
            webhook: {{ url: "http://127.0.0.1:{port}/guard/", timeout: {timeout}, failureMode: {failure_mode} }}
"#
    )
}

/// Replaces `Paris` with `[city]` in every text of the call, keeping its shape.
fn mask_paris(_: &str, body: &serde_json::Value) -> String {
    let text = body["body"].to_string().replace("Paris", "[city]");
    format!(r#"{{"action":{{"body":{text},"reason":"cities are private"}}}}"#)
}

const CHAT: &[u8] = br#"{"model":"gpt-4o","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"mail jane.doe+billing@example.co.uk about Paris"}]}"#;

#[tokio::test]
async fn a_pass_leaves_the_prompt_and_the_service_sees_the_rules_masks() {
    let guard = mock(
        Duration::ZERO,
        Arc::new(|_, _| r#"{"action":{"reason":"ok"}}"#.into()),
    )
    .await;
    let p = pipeline(&policies(guard.port, "request", "failClosed", "1s"));
    let mut ex = exchange(&p, Adapter::Proxy, "/v1/chat/completions");
    let sent = send(&mut ex, &[], CHAT).await.unwrap();
    let sent = String::from_utf8(sent.to_vec()).unwrap();
    assert!(sent.contains("mail <EMAIL> about Paris"), "{sent}");
    let calls = guard.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].0, "/guard/request");
    assert_eq!(
        calls[0].1,
        serde_json::json!({"body": {"messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "mail <EMAIL> about Paris"}
        ]}})
    );
    assert!(!calls[0].1.to_string().contains(EMAIL));
}

#[tokio::test]
async fn a_mask_answer_rewrites_the_prompt_in_place() {
    let guard = mock(Duration::ZERO, Arc::new(mask_paris)).await;
    let p = pipeline(&policies(guard.port, "request", "failClosed", "1s"));
    let mut ex = exchange(&p, Adapter::Proxy, "/v1/chat/completions");
    let sent = send(&mut ex, &[], CHAT).await.unwrap();
    let v: serde_json::Value = serde_json::from_slice(&sent).unwrap();
    assert_eq!(v["messages"][1]["content"], "mail <EMAIL> about [city]");
    assert_eq!(v["messages"][0]["content"], "be brief");
    assert_eq!(
        metric(
            &p,
            r#"tollgate_guard_findings_total{route="llm",side="request",rule="webhook",action="mask"}"#
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn a_reject_answer_refuses_in_the_apis_format() {
    let guard = mock(
        Duration::ZERO,
        Arc::new(|_, _| r#"{"action":{"body":"not today","status_code":422}}"#.into()),
    )
    .await;
    let p = pipeline(&policies(guard.port, "request", "failClosed", "1s"));
    let mut ex = exchange(&p, Adapter::Proxy, "/v1/messages");
    let body = br#"{"model":"claude","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#;
    let reply = send(&mut ex, &[], body).await.unwrap_err();
    assert_eq!(reply.status, 422);
    let v: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"type": "error", "error": {"type": "invalid_request_error", "message": "not today"}})
    );
}

#[tokio::test]
async fn a_service_that_is_down_slow_or_off_protocol_gets_the_failure_mode() {
    let slow = mock(
        Duration::from_millis(400),
        Arc::new(|_, _| r#"{"action":{}}"#.into()),
    )
    .await;
    let odd = mock(
        Duration::ZERO,
        Arc::new(|_, _| r#"{"verdict":true}"#.into()),
    )
    .await;
    let bad_mask = mock(
        Duration::ZERO,
        Arc::new(|_, _| r#"{"action":{"body":{"texts":["x"]}}}"#.into()),
    )
    .await;
    let short = mock(
        Duration::ZERO,
        Arc::new(|_, _| r#"{"action":{"body":{"messages":[]}}}"#.into()),
    )
    .await;
    let down = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port() // closed when `l` drops
    };
    for port in [slow.port, odd.port, bad_mask.port, short.port, down] {
        let p = pipeline(&policies(port, "request", "failClosed", "100ms"));
        let mut ex = exchange(&p, Adapter::Proxy, "/v1/chat/completions");
        let reply = send(&mut ex, &[], CHAT).await.unwrap_err();
        assert_eq!(reply.status, 503, "port {port}");
        let v: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(v["error"]["code"], "guard_unavailable");

        let p = pipeline(&policies(port, "request", "failOpen", "100ms"));
        let mut ex = exchange(&p, Adapter::Proxy, "/v1/chat/completions");
        let sent = send(&mut ex, &[], CHAT).await.unwrap();
        // The rules still applied.
        assert!(String::from_utf8_lossy(&sent).contains("mail <EMAIL> about Paris"));
    }
}

#[tokio::test]
async fn json_completions_go_to_the_response_endpoint() {
    let guard = mock(Duration::ZERO, Arc::new(mask_paris)).await;
    let p = pipeline(&policies(guard.port, "response", "failClosed", "1s"));
    let mut ex = exchange(&p, Adapter::Proxy, "/v1/chat/completions");
    send(&mut ex, &[], CHAT).await.unwrap();
    let completion = format!(
        r#"{{"choices":[{{"index":0,"message":{{"role":"assistant","content":"Paris, says {EMAIL}"}}}}],"usage":{{"total_tokens":3}}}}"#
    );
    let out = receive(&mut ex, "application/json", &[completion.as_bytes()])
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "[city], says <EMAIL>"
    );
    assert_eq!(v["usage"]["total_tokens"], 3);
    let calls = guard.calls.lock().unwrap().clone();
    assert_eq!(calls[0].0, "/guard/response");
    assert_eq!(
        calls[0].1,
        serde_json::json!({"body": {"choices": [{"message": {"role": "assistant", "content": "Paris, says <EMAIL>"}}]}})
    );

    let guard = mock(
        Duration::ZERO,
        Arc::new(|_, _| r#"{"action":{"body":"withheld","status_code":403}}"#.into()),
    )
    .await;
    let p = pipeline(&policies(guard.port, "response", "failClosed", "1s"));
    let mut ex = exchange(&p, Adapter::Proxy, "/v1/chat/completions");
    send(&mut ex, &[], CHAT).await.unwrap();
    let (_, reply) = receive(&mut ex, "application/json", &[completion.as_bytes()])
        .await
        .unwrap_err();
    assert_eq!(reply.status, 403);
    let v: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(v["error"]["message"], "withheld");
    assert_eq!(v["error"]["code"], "response_rejected");
}

fn moderation(port: u16, extra: &str) -> String {
    format!(
        r#"        promptGuard:
          request:
            rules:
            - {{ name: pii, builtins: [email], action: mask }}
            moderation: {{ url: "http://127.0.0.1:{port}/v1/moderations", apiKey: sk-mod, timeout: 200ms{extra} }}
"#
    )
}

fn flagged(categories: &'static str) -> Answer {
    Arc::new(move |_, _| {
        format!(
            r#"{{"id":"modr-1","model":"omni-moderation-latest","results":[{{"flagged":true,"categories":{categories},"category_scores":{{}}}}]}}"#
        )
    })
}

#[tokio::test]
async fn an_openai_compatible_moderation_endpoint_rejects_flagged_prompts() {
    let m = mock(Duration::ZERO, flagged(r#"{"violence":true,"hate":false}"#)).await;
    let p = pipeline(&moderation(m.port, ""));
    let mut ex = exchange(&p, Adapter::Proxy, "/v1/chat/completions");
    let reply = send(&mut ex, &[], CHAT).await.unwrap_err();
    assert_eq!(reply.status, 403);
    let v: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(
        v["error"]["message"],
        "request flagged by moderation: violence"
    );
    assert_eq!(v["error"]["code"], "prompt_rejected");
    let calls = m.calls.lock().unwrap().clone();
    assert_eq!(calls[0].0, "/v1/moderations");
    assert_eq!(
        calls[0].1,
        serde_json::json!({"model": "omni-moderation-latest",
            "input": ["be brief", "mail <EMAIL> about Paris"]})
    );
    assert_eq!(m.auth.lock().unwrap()[0], "Bearer sk-mod");
    assert_eq!(
        metric(
            &p,
            r#"tollgate_guard_findings_total{route="llm",side="request",rule="moderation",action="reject"}"#
        ),
        Some(1.0)
    );

    // Only the listed categories reject.
    let p = pipeline(&moderation(m.port, ", categories: [self-harm]"));
    let mut ex = exchange(&p, Adapter::Proxy, "/v1/chat/completions");
    assert!(send(&mut ex, &[], CHAT).await.is_ok());

    // Not flagged: passes (masked by the rules).
    let clean = mock(
        Duration::ZERO,
        Arc::new(|_, _| {
            r#"{"results":[{"flagged":false,"categories":{"violence":false}}]}"#.into()
        }),
    )
    .await;
    let p = pipeline(&moderation(clean.port, ""));
    let mut ex = exchange(&p, Adapter::Proxy, "/v1/chat/completions");
    let sent = send(&mut ex, &[], CHAT).await.unwrap();
    assert!(String::from_utf8_lossy(&sent).contains("<EMAIL>"));

    // Slow: the failure mode.
    let slow = mock(Duration::from_millis(500), flagged("{}")).await;
    let p = pipeline(&moderation(slow.port, ""));
    let mut ex = exchange(&p, Adapter::Proxy, "/v1/chat/completions");
    assert_eq!(send(&mut ex, &[], CHAT).await.unwrap_err().status, 503);
    let p = pipeline(&moderation(slow.port, ", failureMode: failOpen"));
    let mut ex = exchange(&p, Adapter::Proxy, "/v1/chat/completions");
    assert!(send(&mut ex, &[], CHAT).await.is_ok());
}
