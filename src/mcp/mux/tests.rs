//! The multiplexer's own answers, with targets on closed loopback ports or canned ones:
//! everything it decides before a target answers, and what a failing target turns into.

use super::*;
use crate::mcp::targets::PrefixMode;
use crate::mcp::TargetSession;
use crate::metrics::McpToolLabels;
use http::header::{ACCEPT, ALLOW};

/// A loopback port nothing listens on (bound, then released).
pub(super) fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port()
}

pub(super) fn mux(names: &[&str], origins: &[&str]) -> Multiplexer {
    let ports: Vec<u16> = names.iter().map(|_| dead_port()).collect();
    mux_at(names, &ports, origins, Duration::from_secs(5))
}

/// A target on a loopback port that answers every request with `raw` (a whole HTTP/1.1
/// response), or never when `raw` is empty; its port.
pub(super) async fn canned(raw: &'static str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf).await;
                if raw.is_empty() {
                    std::future::pending::<()>().await;
                }
                let _ = conn.write_all(raw.as_bytes()).await;
            });
        }
    });
    port
}

pub(super) fn mux_at(
    names: &[&str],
    ports: &[u16],
    origins: &[&str],
    timeout: Duration,
) -> Multiplexer {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let urls = ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}/mcp").parse().unwrap())
        .collect();
    let targets = TargetSet::new(names, "__".into(), PrefixMode::Auto).unwrap();
    Multiplexer::new(MuxConfig {
        route: "tools".into(),
        targets,
        urls,
        headers: Vec::new(),
        keys: Arc::new(SessionKeys::random()),
        allowed_origins: origins.iter().map(|o| o.to_string()).collect(),
        timeout,
        stream_idle: Duration::from_secs(300),
        limit: 1 << 20,
        client: Arc::new(crate::outbound::client(&Default::default()).unwrap()),
        metrics: McpMetrics::register(
            &mut prometheus_client::registry::Registry::default(),
            Arc::new(crate::metrics::LabelBounds::default()),
        ),
        renewals: Arc::new(Renewals::default()),
        rules: None,
        tool_limits: None,
        direct: None,
        max_age: Duration::from_secs(3600),
    })
}

/// A session `m` sealed, as `initialize` would have made it.
fn session(m: &Multiplexer) -> String {
    let targets = m
        .targets
        .names()
        .iter()
        .map(|n| TargetSession {
            target: n.clone(),
            session_id: Some(format!("up-{n}")),
            protocol_version: "2025-06-18".into(),
        })
        .collect();
    m.keys.seal(&m.state(targets, "2025-06-18".into()))
}

pub(super) fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        ACCEPT,
        HeaderValue::from_static("application/json, text/event-stream"),
    );
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    for (k, v) in pairs {
        h.insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

pub(super) async fn send(
    m: &Multiplexer,
    method: Method,
    h: &HeaderMap,
    body: &str,
) -> (u16, HeaderMap, Value) {
    send_as(m, method, h, body, None).await
}

pub(super) async fn send_as(
    m: &Multiplexer,
    method: Method,
    h: &HeaderMap,
    body: &str,
    claims: Option<&Value>,
) -> (u16, HeaderMap, Value) {
    let caller = Caller { claims };
    let response = m
        .handle(&method, h, Bytes::from(body.to_string()), caller)
        .await;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (status, headers, value)
}

const LIST: &str = r#"{"jsonrpc":"2.0","id":5,"method":"tools/list"}"#;

#[tokio::test]
async fn refusals_before_any_target_is_asked() {
    let m = mux(&["a", "b"], &["https://app.example.com"]);
    let sid = session(&m);
    let ok = headers(&[("mcp-session-id", &sid)]);
    let (s, h, _) = send(&m, Method::GET, &ok, "").await;
    assert_eq!(
        (s, h.get(ALLOW).unwrap().to_str().unwrap()),
        (405, "GET, POST, DELETE")
    );
    let (s, _, b) = send(&m, Method::POST, &headers(&[]), LIST).await;
    assert_eq!(
        (s, &b["id"], &b["error"]["code"]),
        (400, &json!(5), &json!(-32600))
    );
    for bad in [
        format!("{sid}x"),
        "t1.AAAA".into(),
        "abc".into(),
        sid.replace("t1.", "t2."),
    ] {
        let (s, _, b) = send(
            &m,
            Method::POST,
            &headers(&[("mcp-session-id", &bad)]),
            LIST,
        )
        .await;
        assert_eq!((s, &b["error"]["code"]), (404, &json!(-32600)), "{bad}");
    }
    let (s, _, b) = send(&m, Method::POST, &ok, &format!("[{LIST}]")).await;
    assert_eq!((s, &b["error"]["code"]), (400, &json!(-32600)));
    let (s, _, b) = send(&m, Method::POST, &ok, "{not json").await;
    assert_eq!((s, &b["error"]["code"]), (400, &json!(-32700)));
    let mut json_only = ok.clone();
    json_only.insert(ACCEPT, HeaderValue::from_static("application/json"));
    assert_eq!(send(&m, Method::POST, &json_only, LIST).await.0, 406);
    let mut text = ok.clone();
    text.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    assert_eq!(send(&m, Method::POST, &text, LIST).await.0, 415);
    let evil = headers(&[("mcp-session-id", &sid), ("origin", "http://evil.example")]);
    assert_eq!(send(&m, Method::POST, &evil, LIST).await.0, 403);
    let allowed = headers(&[
        ("mcp-session-id", &sid),
        ("origin", "https://app.example.com"),
    ]);
    let ping = r#"{"jsonrpc":"2.0","id":"p","method":"ping"}"#;
    let (s, _, b) = send(&m, Method::POST, &allowed, ping).await;
    assert_eq!((s, b), (200, json!({"jsonrpc":"2.0","id":"p","result":{}})));
    let old = headers(&[
        ("mcp-session-id", &sid),
        ("mcp-protocol-version", "1999-01-01"),
    ]);
    assert_eq!(send(&m, Method::POST, &old, ping).await.0, 400);
}

/// A session older than `session.maxAge` is unknown (404), so the client initializes
/// again; one just inside it opens.
#[tokio::test]
async fn a_session_past_its_max_age_is_unknown() {
    let m = mux(&["a", "b"], &[]);
    let aged = |seconds: u64| {
        let sid = session(&m);
        let mut state = m.keys.open(&sid).unwrap();
        state.issued_at -= seconds;
        m.keys.seal(&state)
    };
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let young = headers(&[("mcp-session-id", &aged(3590))]);
    assert_eq!(send(&m, Method::POST, &young, ping).await.0, 200);
    let old = headers(&[("mcp-session-id", &aged(3700))]);
    let (s, _, b) = send(&m, Method::POST, &old, ping).await;
    assert_eq!((s, &b["error"]["code"]), (404, &json!(-32600)));
}

#[tokio::test]
async fn a_session_for_another_target_set_is_unknown() {
    let a = mux(&["a", "b"], &[]);
    let mut b = mux(&["a", "c"], &[]);
    b.keys = a.keys.clone();
    let sid = session(&a);
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let h = headers(&[("mcp-session-id", &sid)]);
    assert_eq!(send(&a, Method::POST, &h, ping).await.0, 200);
    assert_eq!(send(&b, Method::POST, &h, ping).await.0, 404);
}

#[tokio::test]
async fn tool_calls_route_by_prefix_and_dead_targets_are_rpc_errors() {
    let m = mux(&["weather", "calendar"], &[]);
    let h = headers(&[("mcp-session-id", &session(&m))]);
    let call = |name: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{{"name":"{name}","arguments":{{}}}}}}"#
        )
    };
    let (s, _, b) = send(&m, Method::POST, &h, &call("nope__echo")).await;
    assert_eq!(
        (s, &b["id"], &b["error"]["code"]),
        (200, &json!(9), &json!(-32602))
    );
    let (s, _, b) = send(&m, Method::POST, &h, &call("echo")).await;
    assert_eq!(
        (s, &b["error"]["code"]),
        (200, &json!(-32602)),
        "no prefix with two targets"
    );
    let (s, _, b) = send(&m, Method::POST, &h, &call("calendar__echo")).await;
    assert_eq!((s, &b["error"]["code"]), (200, &json!(-32603)));
    assert_eq!(b["error"]["message"], "target calendar: unreachable");
    let (s, _, b) = send(&m, Method::POST, &h, LIST).await;
    assert_eq!(
        (s, &b["error"]["message"]),
        (200, &json!("target weather: unreachable"))
    );
    let other = r#"{"jsonrpc":"2.0","id":2,"method":"tasks/list"}"#;
    let (s, _, b) = send(&m, Method::POST, &h, other).await;
    assert_eq!((s, &b["error"]["code"]), (200, &json!(-32601)));
    let other = r#"{"jsonrpc":"2.0","id":2,"method":"completion/complete"}"#;
    let (s, _, b) = send(&m, Method::POST, &h, other).await;
    assert_eq!((s, &b["error"]["code"]), (200, &json!(-32602)));
    let note = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    let (s, _, b) = send(&m, Method::POST, &h, note).await;
    assert_eq!(
        (s, b),
        (202, Value::Null),
        "a notification is taken even when targets fail"
    );
    let (s, _, _) = send(&m, Method::DELETE, &h, "").await;
    assert_eq!(s, 200);
    let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
    let (s, h, b) = send(&m, Method::POST, &headers(&[]), init).await;
    assert_eq!((s, &b["error"]["code"]), (200, &json!(-32603)));
    assert!(h.get(SESSION_ID).is_none());
    let errors = m
        .metrics
        .calls
        .get_or_create(&McpCallLabels {
            route: "tools".into(),
            target: "calendar".into(),
            method: "tools/call",
            result: "error",
        })
        .get();
    assert_eq!(errors, 1);
}

#[tokio::test]
async fn failing_targets_are_named_in_rpc_errors() {
    let broken = canned(
        "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
    )
    .await;
    let odd = canned("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 5\r\nconnection: close\r\n\r\n[1,2]").await;
    let refusing = canned("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 68\r\nconnection: close\r\n\r\n{\"jsonrpc\":\"2.0\",\"id\":5,\"error\":{\"code\":-32001,\"message\":\"no way!\"}}").await;
    let silent = canned("").await;
    let cases = [
        (broken, -32603, "target t: answered HTTP 500"),
        (
            odd,
            -32603,
            "target t: its answer held no response to the request",
        ),
        (refusing, -32001, "target t: no way!"),
        (silent, -32603, "target t: no answer within 300ms"),
    ];
    for (port, code, message) in cases {
        let m = mux_at(&["t"], &[port], &[], Duration::from_millis(300));
        let h = headers(&[("mcp-session-id", &session(&m))]);
        let (s, _, b) = send(&m, Method::POST, &h, LIST).await;
        assert_eq!(
            (s, &b["id"], &b["error"]["code"]),
            (200, &json!(5), &json!(code)),
            "{b}"
        );
        assert_eq!(b["error"]["message"], message);
    }
    // A target that answers a passed-through call with 5xx is named too.
    let m = mux_at(&["t"], &[broken], &[], Duration::from_millis(300));
    let h = headers(&[("mcp-session-id", &session(&m))]);
    let call = r#"{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"echo"}}"#;
    let (s, _, b) = send(&m, Method::POST, &h, call).await;
    assert_eq!(
        (s, &b["error"]["message"]),
        (200, &json!("target t: answered HTTP 500"))
    );
}

/// A canned target's whole HTTP/1.1 answer with a JSON body.
fn json_answer(body: &str) -> &'static str {
    let raw = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    Box::leak(raw.into_boxed_str())
}

#[tokio::test]
async fn prompts_are_listed_under_prefixes_and_got_from_their_target() {
    let a = canned(json_answer(
        r#"{"jsonrpc":"2.0","id":5,"result":{"prompts":[{"name":"greet","description":"from a","arguments":[{"name":"who"}]}]}}"#,
    ))
    .await;
    let b = canned(json_answer(
        r#"{"jsonrpc":"2.0","id":5,"result":{"prompts":[{"name":"greet","description":"from b"}],"messages":[{"role":"user","content":{"type":"text","text":"b says hi"}}]}}"#,
    ))
    .await;
    let m = mux_at(&["a", "b"], &[a, b], &[], Duration::from_secs(5));
    let h = headers(&[("mcp-session-id", &session(&m))]);
    let list = r#"{"jsonrpc":"2.0","id":5,"method":"prompts/list"}"#;
    let (s, _, body) = send(&m, Method::POST, &h, list).await;
    assert_eq!(s, 200, "{body}");
    let prompts = &body["result"]["prompts"];
    assert_eq!(prompts[0]["name"], "a__greet");
    assert_eq!(
        prompts[0]["arguments"][0]["name"], "who",
        "other fields kept"
    );
    assert_eq!(prompts[1]["name"], "b__greet");
    assert_eq!(prompts[1]["description"], "from b");

    let get = r#"{"jsonrpc":"2.0","id":5,"method":"prompts/get","params":{"name":"b__greet"}}"#;
    let (s, _, body) = send(&m, Method::POST, &h, get).await;
    assert_eq!(s, 200);
    assert_eq!(
        body["result"]["messages"][0]["content"]["text"],
        "b says hi"
    );
    let unknown = r#"{"jsonrpc":"2.0","id":7,"method":"prompts/get","params":{"name":"c__greet"}}"#;
    let (s, _, body) = send(&m, Method::POST, &h, unknown).await;
    assert_eq!(
        (s, &body["id"], &body["error"]["code"]),
        (200, &json!(7), &json!(-32602))
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown prompt"),
        "{body}"
    );
}

#[tokio::test]
async fn tool_calls_are_counted_by_bounded_tool_name_and_timed() {
    let a = canned(json_answer(
        r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"ok"}]}}"#,
    ))
    .await;
    // One tool name kept per label, then `other`.
    let bounds = Arc::new(crate::metrics::LabelBounds::default());
    bounds.configure(&crate::config::LabelLimits {
        max_values_per_label: 1,
        max_value_bytes: 64,
    });
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = McpMetrics::register(&mut registry, bounds);
    let m = mux_at(&["a", "b"], &[a, dead_port()], &[], Duration::from_secs(5));
    let m = Multiplexer { metrics, ..m };
    let h = headers(&[("mcp-session-id", &session(&m))]);
    for tool in ["a__echo", "a__echo", "b__echo", "a__client-chosen"] {
        let call = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{tool}"}}}}"#
        );
        let (s, _, _) = send(&m, Method::POST, &h, &call).await;
        assert_eq!(s, 200);
    }
    let count = |target: &str, tool: &str, result| {
        m.metrics
            .tools
            .get_or_create(&McpToolLabels {
                route: "tools".into(),
                target: target.into(),
                tool: tool.into(),
                result,
            })
            .get()
    };
    assert_eq!(count("a", "echo", "ok"), 2);
    assert_eq!(count("b", "echo", "error"), 1);
    assert_eq!(count("a", "other", "ok"), 1);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let timed = r#"tollgate_mcp_target_call_duration_seconds_count{route="tools",target="a",method="tools/call"} 3"#;
    assert!(text.contains(timed), "{text}");
    assert!(!text.contains("client-chosen"), "{text}");
    // Client messages, as the gateway answered them: b's call failed there.
    let requests = |result| {
        m.metrics
            .requests
            .get_or_create(&McpRequestLabels {
                route: "tools".into(),
                method: "tools/call",
                result,
            })
            .get()
    };
    assert_eq!((requests("ok"), requests("error")), (3, 1));
    let answered =
        r#"tollgate_mcp_request_duration_seconds_count{route="tools",method="tools/call"} 4"#;
    assert!(text.contains(answered), "{text}");
}

#[test]
fn renewals_are_bounded_and_an_ended_session_forgets_its_own() {
    let r = Renewals::default();
    for i in 0..renew::MAX_ENTRIES + 5 {
        r.insert(&format!("t{i}"), 1, format!("s{i}"));
    }
    assert_eq!(r.renewed.len(), renew::MAX_ENTRIES);
    r.insert("mine", 0, "s-new".into());
    assert_eq!(r.get("mine", 0).as_deref(), Some("s-new"));
    assert_eq!(r.get("mine", 1), None);
    assert!(!r.ended("mine"));
    r.end("mine", 2);
    assert!(r.ended("mine"));
    assert_eq!(r.get("mine", 0), None);
    for i in 0..renew::MAX_ENTRIES + 5 {
        r.end(&format!("e{i}"), 0);
    }
    assert_eq!(r.ended.len(), renew::MAX_ENTRIES);
}

/// A target on a loopback port answering each request (read in one piece) with
/// `answer(request text)`, a JSON body; its port.
async fn answering(answer: fn(&str) -> String) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 8192];
                let n = conn.read(&mut buf).await.unwrap_or(0);
                let body = answer(&String::from_utf8_lossy(&buf[..n]));
                let _ = conn.write_all(json_answer(&body).as_bytes()).await;
            });
        }
    });
    port
}

#[tokio::test]
async fn lists_follow_every_target_cursor_and_are_not_paged_themselves() {
    let paged = answering(|request| {
        let page = if request.contains(r#""cursor":"p2""#) {
            r#"{"tools":[{"name":"second"}]}"#
        } else {
            r#"{"tools":[{"name":"first"}],"nextCursor":"p2"}"#
        };
        format!(r#"{{"jsonrpc":"2.0","id":5,"result":{page}}}"#)
    })
    .await;
    let endless = answering(|_| {
        r#"{"jsonrpc":"2.0","id":5,"result":{"tools":[{"name":"again"}],"nextCursor":"more"}}"#
            .to_string()
    })
    .await;
    let m = mux_at(&["a", "b"], &[paged, endless], &[], Duration::from_secs(5));
    let h = headers(&[("mcp-session-id", &session(&m))]);
    let (s, _, body) = send(&m, Method::POST, &h, LIST).await;
    assert_eq!(s, 200, "{body}");
    let names: Vec<&str> = body["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(&names[..2], ["a__first", "a__second"]);
    assert_eq!(names.len(), 2 + 16, "the endless target is cut at 16 pages");
    assert!(names[2..].iter().all(|n| *n == "b__again"));
    assert!(body["result"].get("nextCursor").is_none(), "{body}");

    let cursor = r#"{"jsonrpc":"2.0","id":6,"method":"tools/list","params":{"cursor":"x"}}"#;
    let (s, _, body) = send(&m, Method::POST, &h, cursor).await;
    assert_eq!((s, &body["error"]["code"]), (200, &json!(-32602)));
}

#[tokio::test]
async fn resources_are_merged_unchanged_and_read_from_the_target_that_has_them() {
    let a = answering(|request| {
        let result = if request.contains("resources/read") {
            r#"{"jsonrpc":"2.0","id":5,"error":{"code":-32002,"message":"Resource not found"}}"#
        } else if request.contains("templates") {
            r#"{"jsonrpc":"2.0","id":5,"result":{"resourceTemplates":[{"uriTemplate":"a://{x}","name":"ax"}]}}"#
        } else {
            r#"{"jsonrpc":"2.0","id":5,"result":{"resources":[{"uri":"a://one","name":"one"},{"uri":"shared://s","name":"sa"}]}}"#
        };
        result.to_string()
    })
    .await;
    let b = answering(|request| {
        let result = if request.contains("b://two") {
            r#"{"jsonrpc":"2.0","id":5,"result":{"contents":[{"uri":"b://two","text":"from b"}]}}"#
        } else if request.contains("resources/read") {
            r#"{"jsonrpc":"2.0","id":5,"error":{"code":-32002,"message":"Resource not found"}}"#
        } else if request.contains("templates") {
            r#"{"jsonrpc":"2.0","id":5,"result":{"resourceTemplates":[]}}"#
        } else {
            r#"{"jsonrpc":"2.0","id":5,"result":{"resources":[{"uri":"b://two","name":"two"},{"uri":"shared://s","name":"sb"}]}}"#
        };
        result.to_string()
    })
    .await;
    let m = mux_at(&["a", "b"], &[a, b], &[], Duration::from_secs(5));
    let h = headers(&[("mcp-session-id", &session(&m))]);
    let list = r#"{"jsonrpc":"2.0","id":5,"method":"resources/list"}"#;
    let (s, _, body) = send(&m, Method::POST, &h, list).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        body["result"]["resources"],
        json!([
            {"uri": "a://one", "name": "one"},
            {"uri": "shared://s", "name": "sa"},
            {"uri": "b://two", "name": "two"},
        ]),
        "unchanged; a URI listed twice is the first target's"
    );
    let templates = r#"{"jsonrpc":"2.0","id":5,"method":"resources/templates/list"}"#;
    let (_, _, body) = send(&m, Method::POST, &h, templates).await;
    assert_eq!(
        body["result"]["resourceTemplates"][0]["uriTemplate"],
        "a://{x}"
    );

    let read = r#"{"jsonrpc":"2.0","id":5,"method":"resources/read","params":{"uri":"b://two"}}"#;
    let (s, _, body) = send(&m, Method::POST, &h, read).await;
    assert_eq!(
        (s, &body["result"]["contents"][0]["text"]),
        (200, &json!("from b"))
    );
    let missing = r#"{"jsonrpc":"2.0","id":5,"method":"resources/read","params":{"uri":"c://no"}}"#;
    let (s, _, body) = send(&m, Method::POST, &h, missing).await;
    assert_eq!((s, &body["error"]["code"]), (200, &json!(-32002)), "{body}");
}

#[tokio::test]
async fn a_session_opens_only_for_the_user_it_was_made_for() {
    let m = mux(&["a", "b"], &[]);
    let targets = m
        .targets
        .names()
        .iter()
        .map(|n| TargetSession {
            target: n.clone(),
            session_id: None,
            protocol_version: "2025-06-18".into(),
        })
        .collect();
    let mut state = m.state(targets, "2025-06-18".into());
    state.subject = Some("alice".into());
    let sid = m.keys.seal(&state);
    let h = headers(&[("mcp-session-id", &sid)]);
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let alice = json!({"sub": "alice"});
    let bob = json!({"sub": "bob"});
    let (s, _, _) = send_as(&m, Method::POST, &h, ping, Some(&alice)).await;
    assert_eq!(s, 200);
    for caller in [Some(&bob), None] {
        let (s, _, b) = send_as(&m, Method::POST, &h, ping, caller).await;
        assert_eq!(
            (s, &b["error"]["code"]),
            (404, &json!(-32600)),
            "{caller:?}"
        );
    }
}

#[tokio::test]
async fn a_call_the_rules_do_not_allow_is_403_before_any_target_is_asked() {
    let mut m = mux(&["a", "b"], &[]);
    let policy = crate::config::McpAuthorization {
        rules: vec![r#"jwt.role == "admin" && mcp.tool.name == "echo""#.into()],
    };
    m.rules = Some(Arc::new(
        Rules::compile(&policy, "p", &Default::default()).unwrap(),
    ));
    let sid = session(&m);
    let h = headers(&[("mcp-session-id", &sid)]);
    let call = |name: &str| {
        json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name": name}}).to_string()
    };
    // Claims without `sub`, as the session sealed without a subject.
    let bob = json!({"role": "intern"});
    let (s, _, b) = send_as(&m, Method::POST, &h, &call("a__echo"), Some(&bob)).await;
    assert_eq!(
        (s, &b["id"], &b["error"]["code"]),
        (403, &json!(3), &json!(-32001))
    );
    assert_eq!(b["error"]["message"], "not allowed to use tool \"a__echo\"");
    let read = r#"{"jsonrpc":"2.0","id":4,"method":"resources/read","params":{"uri":"a://x"}}"#;
    let (s, _, b) = send_as(&m, Method::POST, &h, read, Some(&bob)).await;
    assert_eq!(
        (s, &b["error"]["message"]),
        (403, &json!("not allowed to use resource \"a://x\""))
    );
    // Allowed: it goes on to the (dead) target, which fails as a JSON-RPC error.
    let alice = json!({"role": "admin"});
    let (s, _, b) = send_as(&m, Method::POST, &h, &call("a__echo"), Some(&alice)).await;
    assert_eq!((s, &b["error"]["code"]), (200, &json!(-32603)));
}

/// `m` with the `mcpToolLimit` of `yaml` (a policy's body).
fn with_tool_limits(mut m: Multiplexer, yaml: &str) -> Multiplexer {
    let policy: crate::config::McpToolLimitPolicy = serde_yaml::from_str(yaml).unwrap();
    let config = crate::config::Config::default();
    let services = crate::services::Services::new();
    let limits = ToolLimits::compile(&policy, "p", "tools", &config, &services).unwrap();
    m.tool_limits = Some(Arc::new(limits));
    m
}

#[tokio::test]
async fn tool_calls_over_a_limit_are_rpc_errors_and_calls_a_target_failed_are_refunded() {
    let ok = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 48\r\nconnection: close\r\n\r\n{\"jsonrpc\":\"2.0\",\"id\":9,\"result\":{\"content\":[]}}";
    let live = canned(ok).await;
    let m = mux_at(
        &["a", "b"],
        &[live, dead_port()],
        &[],
        Duration::from_secs(5),
    );
    let m = with_tool_limits(
        m,
        "limits:\n- {name: per-team, key: 'jwt.team', callsPerMinute: 2, tools: [a__echo, b__echo]}\n",
    );
    let h = headers(&[("mcp-session-id", &session(&m))]);
    let call = |name: &str| {
        json!({"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name": name}}).to_string()
    };
    let red = json!({"team": "red"});
    let blue = json!({"team": "blue"});
    for _ in 0..2 {
        let (s, _, b) = send_as(&m, Method::POST, &h, &call("a__echo"), Some(&red)).await;
        assert_eq!((s, &b["result"]), (200, &json!({"content": []})), "{b}");
    }
    let (s, _, b) = send_as(&m, Method::POST, &h, &call("a__echo"), Some(&red)).await;
    assert_eq!(
        (s, &b["id"], &b["error"]["code"]),
        (200, &json!(9), &json!(-32000)),
        "{b}"
    );
    let message = b["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with(
            "tool call limit \"per-team\" reached (2 calls per minute, 0 left); retry in"
        ),
        "{message}"
    );
    assert!(b["error"]["data"]["retryAfterSeconds"].as_u64().unwrap() >= 1);
    // Another key has its own counter; a tool outside `tools` is not limited.
    let (_, _, b) = send_as(&m, Method::POST, &h, &call("a__echo"), Some(&blue)).await;
    assert_eq!(b["result"], json!({"content": []}));
    let (_, _, b) = send_as(&m, Method::POST, &h, &call("a__other"), Some(&red)).await;
    assert_eq!(b["result"], json!({"content": []}));
    // Calls the (dead) target never took cost nothing: blue's last call still passes.
    for _ in 0..3 {
        let (_, _, b) = send_as(&m, Method::POST, &h, &call("b__echo"), Some(&blue)).await;
        assert_eq!(b["error"]["code"], -32603, "{b}");
    }
    let (_, _, b) = send_as(&m, Method::POST, &h, &call("a__echo"), Some(&blue)).await;
    assert_eq!(b["result"], json!({"content": []}), "{b}");
    let text = {
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = m.tool_limits.as_ref().unwrap().metrics_for_tests();
        registry.register("t", "t", metrics.limit_decisions.clone());
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        out
    };
    assert!(
        text.contains("t_total{route=\"tools\",limit=\"per-team\",decision=\"denied\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn completions_logging_and_subscriptions_reach_the_right_targets() {
    let ok = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 48\r\nconnection: close\r\n\r\n{\"jsonrpc\":\"2.0\",\"id\":9,\"result\":{\"content\":[]}}";
    let live = canned(ok).await;
    let m = mux_at(
        &["a", "b"],
        &[live, dead_port()],
        &[],
        Duration::from_secs(5),
    );
    let h = headers(&[("mcp-session-id", &session(&m))]);
    let rpc = |method: &str, params: Value| {
        json!({"jsonrpc": "2.0", "id": 9, "method": method, "params": params}).to_string()
    };
    let prompt = |name: &str| json!({"ref": {"type": "ref/prompt", "name": name}, "argument": {"name": "x", "value": "y"}});
    let (s, _, b) = send(
        &m,
        Method::POST,
        &h,
        &rpc("completion/complete", prompt("a__greet")),
    )
    .await;
    assert_eq!((s, &b["result"]), (200, &json!({"content": []})), "{b}");
    let (_, _, b) = send(
        &m,
        Method::POST,
        &h,
        &rpc("completion/complete", prompt("b__greet")),
    )
    .await;
    assert_eq!(b["error"]["message"], "target b: unreachable");
    let (_, _, b) = send(
        &m,
        Method::POST,
        &h,
        &rpc("completion/complete", prompt("greet")),
    )
    .await;
    assert_eq!(b["error"]["code"], -32602);
    let template = json!({"ref": {"type": "ref/resource", "uri": "a://{x}"}, "argument": {"name": "x", "value": "1"}});
    for (method, params) in [
        ("completion/complete", template),
        ("logging/setLevel", json!({"level": "debug"})),
        ("resources/subscribe", json!({"uri": "a://info"})),
        ("resources/unsubscribe", json!({"uri": "a://info"})),
    ] {
        let (s, _, b) = send(&m, Method::POST, &h, &rpc(method, params)).await;
        assert_eq!(
            (s, &b["result"]),
            (200, &json!({"content": []})),
            "{method}: {b}"
        );
    }
}

#[tokio::test]
async fn a_session_made_for_a_target_at_another_address_does_not_open() {
    let first = mux_at(&["a"], &[dead_port()], &[], Duration::from_secs(5));
    let mut moved = mux_at(&["a"], &[dead_port()], &[], Duration::from_secs(5));
    moved.keys = first.keys.clone();
    let h = headers(&[("mcp-session-id", &session(&first))]);
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    assert_eq!(send(&first, Method::POST, &h, ping).await.0, 200);
    assert_eq!(send(&moved, Method::POST, &h, ping).await.0, 404);
}
