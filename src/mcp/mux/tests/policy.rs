//! Policy: refusals before any target is asked, authorization rules, tool-call limits
//! and the tool-call metrics.

use super::*;

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
