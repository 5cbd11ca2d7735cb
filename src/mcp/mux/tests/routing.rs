//! Routing: tool calls, prompts, resources, lists, completions and subscriptions reach the
//! right target, and a failing target is named in the JSON-RPC error.

use super::*;

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
