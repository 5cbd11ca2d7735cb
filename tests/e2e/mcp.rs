//! The MCP gateway end to end: tollgate's proxy multiplexing MCP servers of the official
//! Python SDK (1.x FastMCP and 2.x MCPServer, SSE and JSON answers), driven by the SDK's
//! own clients (1.x `ClientSession`; 2.x `Client` in `auto` mode, which probes
//! `server/discover` and falls back to `initialize` on the gateway's 400), and by a plain
//! HTTP client for the transport's statuses. Every server binds its own loopback port;
//! every process is killed when its test ends.

use serde_json::{json, Value};

use crate::support::client::{self, Req};
use crate::support::mcp::{
    gateway_yaml, post, run_clients, McpServer, Sdk, INITIALIZE, TOOLS_LIST,
};
use crate::support::tollgate::Tollgate;
use crate::support::{free_port, metric};

/// A 32-byte session key, base64url; another for the replica that must not open it.
const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
const OTHER_KEY: &str = "HxweHRwbGhkYFxYVFBMSERAPDg0MCwoJCAcGBQQDAgE";
const KEYED: &str = "        session: {keys: [\"${MCP_SESSION_KEY}\"]}\n";

/// A gateway in front of `servers`, its sessions sealed with `key`; its proxy port.
async fn gateway(servers: &[&McpServer], key: &str) -> (Tollgate, u16) {
    let port = free_port();
    let yaml = gateway_yaml(port, servers, KEYED);
    let tollgate = Tollgate::start_with_env(&yaml, &[("MCP_SESSION_KEY", key)]).await;
    (tollgate, port)
}

fn job(sdk: Sdk, port: u16, calls: &[(&str, Value)]) -> Value {
    let calls: Vec<Value> = calls
        .iter()
        .map(|(name, arguments)| json!({"name": name, "arguments": arguments}))
        .collect();
    let sdk = if sdk == Sdk::V1 { "1" } else { "2" };
    json!({"sdk": sdk, "url": format!("http://127.0.0.1:{port}/mcp"), "calls": calls})
}

fn hi() -> Value {
    json!({"text": "hi"})
}

/// The calls every two-target test makes, and what each must answer.
fn two_target_calls() -> Vec<(&'static str, Value)> {
    vec![
        ("weather__echo", hi()),
        ("calendar__echo", hi()),
        ("calendar__calendar_only", json!({})),
    ]
}

fn assert_two_targets(result: &Value) {
    assert_eq!(
        result["tools"],
        json!([
            "weather__echo",
            "weather__weather_only",
            "calendar__echo",
            "calendar__calendar_only"
        ]),
        "{result}"
    );
    assert_eq!(result["server_name"], "tollgate", "{result}");
    assert_eq!(
        result["calls"],
        json!([
            {"text": "weather:hi", "is_error": false},
            {"text": "calendar:hi", "is_error": false},
            {"text": "calendar", "is_error": false},
        ]),
        "{result}"
    );
}

/// The number of `tools/call`s tollgate made to `target` that succeeded.
async fn tool_calls(tollgate: &Tollgate, target: &str) -> f64 {
    let prefix = format!(
        "tollgate_mcp_target_calls_total{{route=\"tools\",target=\"{target}\",method=\"tools/call\",result=\"ok\"}}"
    );
    metric(&tollgate.metrics().await, &prefix).unwrap_or(0.0)
}

#[tokio::test]
async fn two_targets_list_and_call_py1() {
    // One server answers over SSE, the other with JSON.
    let weather = McpServer::start(Sdk::V1, "weather", false).await;
    let calendar = McpServer::start(Sdk::V1, "calendar", true).await;
    let (tollgate, port) = gateway(&[&weather, &calendar], KEY).await;
    let results = run_clients(Sdk::V1, vec![job(Sdk::V1, port, &two_target_calls())]).await;
    assert_two_targets(&results[0]);
    let session = results[0]["session_id"].as_str().expect("a session id");
    assert!(session.starts_with("t1."), "{session}");
    assert!(
        session.bytes().all(|b| (0x21..=0x7e).contains(&b)),
        "visible ASCII: {session}"
    );
    // The SDK negotiated the lowest version the targets did: both speak its newest.
    assert_eq!(results[0]["protocol_version"], "2025-11-25");
    assert_eq!(tool_calls(&tollgate, "weather").await, 1.0);
    assert_eq!(tool_calls(&tollgate, "calendar").await, 2.0);
    // The session key is in neither the config dump nor the log.
    let dump = tollgate.admin("/config").await.expect("GET /config").text();
    assert!(dump.contains("calendar") && !dump.contains(KEY), "{dump}");
    assert!(!tollgate.log().contains(KEY));
}

#[tokio::test]
async fn two_targets_py2_client_and_servers() {
    let weather = McpServer::start(Sdk::V2, "weather", false).await;
    let calendar = McpServer::start(Sdk::V2, "calendar", true).await;
    let (tollgate, port) = gateway(&[&weather, &calendar], KEY).await;
    let job = with_prompts(job(Sdk::V2, port, &two_target_calls()));
    let results = run_clients(Sdk::V2, vec![job]).await;
    assert_two_targets(&results[0]);
    assert_prompts(&results[0]);
    // Every target offers 2026-07-28 on `server/discover`, so the gateway does, and
    // the client's auto mode took the stateless era: no session, no initialize.
    assert_eq!(
        results[0]["protocol_version"], "2026-07-28",
        "{}",
        results[0]
    );
    assert_eq!(tool_calls(&tollgate, "calendar").await, 2.0);
    let metrics = tollgate.metrics().await;
    let discover = r#"tollgate_mcp_target_calls_total{route="tools",target="weather",method="server/discover",result="ok"}"#;
    assert_eq!(metric(&metrics, discover), Some(1.0), "{metrics}");
    let initialize =
        r#"tollgate_mcp_target_calls_total{route="tools",target="weather",method="initialize""#;
    assert_eq!(metric(&metrics, initialize), None, "{metrics}");
    // The era has no GET stream and no DELETE.
    let get = Req::get("/mcp")
        .header("accept", "text/event-stream")
        .header("mcp-protocol-version", "2026-07-28");
    let get = client::must(port, get).await;
    assert_eq!((get.status, get.header("allow")), (405, Some("POST")));
}

/// A stateless request's routing headers must agree with its body; the gateway says so
/// before any target is asked, in the era's status and code.
#[tokio::test]
async fn stateless_requests_are_checked_and_merged() {
    let weather = McpServer::start(Sdk::V2, "weather", true).await;
    let calendar = McpServer::start(Sdk::V2, "calendar", false).await;
    let (_tollgate, port) = gateway(&[&weather, &calendar], KEY).await;
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
    });
    let modern = |method: &str, name: Option<&str>, params: Value| {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let mut req = post(&body.to_string())
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", method);
        if let Some(name) = name {
            req = req.header("mcp-name", name);
        }
        req
    };
    let list = modern("tools/list", None, json!({"_meta": meta}));
    let list = client::must(port, list).await;
    assert_eq!(list.status, 200, "{}", list.text());
    let result = list.json()["result"].clone();
    assert_eq!(result["tools"][2]["name"], "calendar__echo", "{result}");
    assert_eq!(result["resultType"], "complete", "{result}");
    assert_eq!(result["cacheScope"], "private", "{result}");
    assert_eq!(
        result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"], "tollgate",
        "{result}"
    );
    let params = json!({"name": "calendar__echo", "arguments": {"text": "x"}, "_meta": meta});
    let call = client::must(
        port,
        modern("tools/call", Some("calendar__echo"), params.clone()),
    )
    .await;
    assert_eq!(call.status, 200, "{}", call.text());
    assert_eq!(
        call.json()["result"]["structuredContent"]["result"],
        "calendar:x"
    );
    let wrong = client::must(port, modern("tools/call", Some("weather__echo"), params)).await;
    assert_eq!(
        (wrong.status, wrong.json()["error"]["code"].clone()),
        (400, json!(-32020)),
        "{}",
        wrong.text()
    );
}

/// `job` that also lists the prompts and gets one of each target and an unknown one,
/// and lists the resources and reads one of each target and an unknown one.
fn with_prompts(mut job: Value) -> Value {
    job["prompts"] = json!([
        {"name": "weather__greet", "arguments": {"who": "ann"}},
        {"name": "calendar__greet", "arguments": {"who": "bo"}},
        {"name": "nope__greet", "arguments": {"who": "cy"}},
    ]);
    job["resources"] = json!(["weather://info", "calendar://info", "nope://info"]);
    job
}

fn assert_prompts(result: &Value) {
    assert_eq!(
        result["prompt_names"],
        json!(["weather__greet", "calendar__greet"]),
        "{result}"
    );
    assert_eq!(
        result["got"][0],
        json!({"text": "weather greets ann"}),
        "{result}"
    );
    assert_eq!(
        result["got"][1],
        json!({"text": "calendar greets bo"}),
        "{result}"
    );
    assert_eq!(result["got"][2]["error"]["code"], -32602, "{result}");
    assert_eq!(
        result["resource_uris"],
        json!(["weather://info", "calendar://info"]),
        "{result}"
    );
    assert_eq!(
        result["read"][0],
        json!({"text": "about weather"}),
        "{result}"
    );
    assert_eq!(
        result["read"][1],
        json!({"text": "about calendar"}),
        "{result}"
    );
    assert!(result["read"][2]["error"]["code"].is_i64(), "{result}");
}

#[tokio::test]
async fn mixed_sdks_behind_one_gateway() {
    let weather = McpServer::start(Sdk::V1, "weather", false).await;
    let calendar = McpServer::start(Sdk::V2, "calendar", false).await;
    let (tollgate, port) = gateway(&[&weather, &calendar], KEY).await;
    let (one, two) = tokio::join!(
        run_clients(
            Sdk::V1,
            vec![with_prompts(job(Sdk::V1, port, &two_target_calls()))]
        ),
        run_clients(
            Sdk::V2,
            vec![with_prompts(job(Sdk::V2, port, &two_target_calls()))]
        ),
    );
    for result in [&one[0], &two[0]] {
        assert_two_targets(result);
        assert_prompts(result);
    }
    // A 1.x target does not offer 2026-07-28, so the 2.x client fell back to the
    // handshake era.
    assert_eq!(two[0]["protocol_version"], "2025-11-25", "{}", two[0]);
    assert_eq!(tool_calls(&tollgate, "weather").await, 2.0);
    // Tool calls by the tool's own name, and every target call timed.
    let metrics = tollgate.metrics().await;
    let by_tool =
        r#"tollgate_mcp_tool_calls_total{route="tools",target="calendar",tool="echo",result="ok"}"#;
    assert_eq!(metric(&metrics, by_tool), Some(2.0), "{metrics}");
    let timed = r#"tollgate_mcp_target_call_duration_seconds_count{route="tools",target="weather",method="prompts/get"}"#;
    assert_eq!(metric(&metrics, timed), Some(2.0), "{metrics}");
}

#[tokio::test]
async fn single_target_has_no_prefix() {
    let solo = McpServer::start(Sdk::V1, "solo", false).await;
    let (_tollgate, port) = gateway(&[&solo], KEY).await;
    let calls = [("echo", hi()), ("solo_only", json!({}))];
    let results = run_clients(Sdk::V1, vec![job(Sdk::V1, port, &calls)]).await;
    assert_eq!(results[0]["tools"], json!(["echo", "solo_only"]));
    // One target: its own initialize result, server name included.
    assert_eq!(results[0]["server_name"], "solo");
    assert_eq!(
        results[0]["calls"],
        json!([{"text": "solo:hi", "is_error": false}, {"text": "solo", "is_error": false}])
    );
}

#[tokio::test]
async fn unknown_prefix_is_a_jsonrpc_error() {
    let weather = McpServer::start(Sdk::V1, "weather", true).await;
    let calendar = McpServer::start(Sdk::V2, "calendar", true).await;
    let (_tollgate, port) = gateway(&[&weather, &calendar], KEY).await;
    let calls = [
        ("nope__echo", hi()),
        ("echo", hi()),
        ("weather__echo", hi()),
    ];
    let (one, two) = tokio::join!(
        run_clients(Sdk::V1, vec![job(Sdk::V1, port, &calls)]),
        run_clients(Sdk::V2, vec![job(Sdk::V2, port, &calls)]),
    );
    for result in [&one[0], &two[0]] {
        let calls = &result["calls"];
        assert_eq!(calls[0]["error"]["code"], -32602, "{result}");
        assert_eq!(
            calls[0]["error"]["message"], "unknown tool \"nope__echo\"",
            "{result}"
        );
        assert_eq!(
            calls[1]["error"]["code"], -32602,
            "unprefixed with two targets: {result}"
        );
        // The session still works after the errors.
        assert_eq!(
            calls[2],
            json!({"text": "weather:hi", "is_error": false}),
            "{result}"
        );
    }
}

/// A raw POST to the gateway with `session` (when given).
async fn raw(port: u16, body: &str, session: Option<&str>) -> client::Reply {
    let mut req = post(body);
    if let Some(s) = session {
        req = req.header("mcp-session-id", s);
    }
    client::must(port, req).await
}

#[tokio::test]
async fn raw_statuses() {
    let weather = McpServer::start(Sdk::V1, "weather", false).await;
    let port = free_port();
    let origins = "        allowedOrigins: [\"https://app.example.com\"]\n";
    let yaml = gateway_yaml(port, &[&weather], &format!("{KEYED}{origins}"));
    let _tollgate = Tollgate::start_with_env(&yaml, &[("MCP_SESSION_KEY", KEY)]).await;

    let init = raw(port, INITIALIZE, None).await;
    assert_eq!(init.status, 200, "{}", init.text());
    assert_eq!(init.header("content-type"), Some("application/json"));
    assert_eq!(init.json()["result"]["serverInfo"]["name"], "weather");
    let sid = init
        .header("mcp-session-id")
        .expect("a session id")
        .to_string();
    let note = raw(
        port,
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        Some(&sid),
    )
    .await;
    assert_eq!((note.status, note.body.len()), (202, 0));

    let list = raw(port, TOOLS_LIST, Some(&sid)).await;
    assert_eq!(list.status, 200, "{}", list.text());
    assert_eq!(list.json()["result"]["tools"][0]["name"], "echo");

    let missing = raw(port, TOOLS_LIST, None).await;
    assert_eq!(missing.status, 400);
    assert_eq!(
        (
            missing.json()["id"].clone(),
            missing.json()["error"]["code"].clone()
        ),
        (json!(2), json!(-32600))
    );
    let tampered = format!(
        "{}{}",
        &sid[..sid.len() - 2],
        if sid.ends_with("AA") { "BA" } else { "AA" }
    );
    for bad in [
        tampered.as_str(),
        "t1.c29tZSByYW5kb20gYmFzZTY0IHRleHQgb2YgbGVuZ3Ro",
        "t1.AAAA",
        "abc",
    ] {
        let reply = raw(port, TOOLS_LIST, Some(bad)).await;
        assert_eq!(reply.status, 404, "{bad}: {}", reply.text());
        assert_eq!(reply.json()["error"]["code"], -32600);
    }
    let batch = raw(port, &format!("[{TOOLS_LIST}]"), Some(&sid)).await;
    assert_eq!(
        (batch.status, batch.json()["error"]["code"].clone()),
        (400, json!(-32600))
    );
    let bad_json = raw(port, "{\"jsonrpc\":", Some(&sid)).await;
    assert_eq!(
        (bad_json.status, bad_json.json()["error"]["code"].clone()),
        (400, json!(-32700))
    );

    let json_only = Req::post("/mcp", TOOLS_LIST)
        .header("accept", "application/json")
        .header("mcp-session-id", &sid);
    assert_eq!(client::must(port, json_only).await.status, 406);
    let evil = post(TOOLS_LIST)
        .header("mcp-session-id", &sid)
        .header("origin", "http://evil.example");
    assert_eq!(client::must(port, evil).await.status, 403);
    // An allowed browser origin passes, and is not forwarded: the SDK server on
    // 127.0.0.1 would refuse it (DNS-rebinding protection).
    let app = post(TOOLS_LIST)
        .header("mcp-session-id", &sid)
        .header("origin", "https://app.example.com");
    let app = client::must(port, app).await;
    assert_eq!(app.status, 200, "{}", app.text());
    assert_eq!(app.json()["result"]["tools"][1]["name"], "weather_only");
    let old = post(TOOLS_LIST)
        .header("mcp-session-id", &sid)
        .header("mcp-protocol-version", "1999-01-01");
    assert_eq!(client::must(port, old).await.status, 400);
    // GET opens the server's stream (tests/e2e/mcp_relay.rs); it needs SSE in Accept.
    let get = Req::get("/mcp")
        .header("accept", "application/json")
        .header("mcp-session-id", &sid);
    assert_eq!(client::must(port, get).await.status, 406);
    let mut put = Req::get("/mcp").header("mcp-session-id", &sid);
    put.method = "PUT".into();
    let put = client::must(port, put).await;
    assert_eq!(
        (put.status, put.header("allow")),
        (405, Some("GET, POST, DELETE"))
    );

    let mut delete = Req::get("/mcp").header("mcp-session-id", &sid);
    delete.method = "DELETE".into();
    assert_eq!(client::must(port, delete).await.status, 200);
    // Ended through this replica: unknown, and never renewed.
    let after = raw(port, TOOLS_LIST, Some(&sid)).await;
    assert_eq!(after.status, 404, "{}", after.text());
}

#[tokio::test]
async fn two_replicas_share_sessions_by_key() {
    let weather = McpServer::start(Sdk::V1, "weather", true).await;
    let calendar = McpServer::start(Sdk::V1, "calendar", false).await;
    let (_a, port_a) = gateway(&[&weather, &calendar], KEY).await;
    let (_b, port_b) = gateway(&[&weather, &calendar], KEY).await;
    let (_c, port_c) = gateway(&[&weather, &calendar], OTHER_KEY).await;
    let init = raw(port_a, INITIALIZE, None).await;
    assert_eq!(init.json()["result"]["serverInfo"]["name"], "tollgate");
    let sid = init
        .header("mcp-session-id")
        .expect("a session id")
        .to_string();
    assert_eq!(
        raw(
            port_b,
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            Some(&sid)
        )
        .await
        .status,
        202
    );
    let call = r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"calendar__echo","arguments":{"text":"b"}}}"#;
    let reply = raw(port_b, call, Some(&sid)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.text().contains("calendar:b"), "{}", reply.text());
    let list = raw(port_b, TOOLS_LIST, Some(&sid)).await;
    assert_eq!(
        list.json()["result"]["tools"].as_array().map(Vec::len),
        Some(4),
        "{}",
        list.text()
    );
    assert_eq!(raw(port_c, TOOLS_LIST, Some(&sid)).await.status, 404);
}

#[tokio::test]
async fn dead_targets_and_large_bodies() {
    // Nothing listens on the target's port.
    let port = free_port();
    let dead = free_port();
    let yaml = format!(
        "limits:\n  buffers: {{jsonBodyBytes: 2048}}\nbinds:\n- port: {port}\n  listeners:\n  - routes:\n    - name: tools\n      mcp:\n        targets: [{{name: dead, url: \"http://127.0.0.1:{dead}/mcp\"}}]\n"
    );
    let tollgate = Tollgate::start(&yaml).await;
    let init = raw(port, INITIALIZE, None).await;
    assert_eq!(init.status, 200, "a JSON-RPC error, not an HTTP one");
    assert_eq!(init.header("mcp-session-id"), None);
    assert_eq!(init.json()["id"], 1);
    assert_eq!(init.json()["error"]["code"], -32603);
    assert_eq!(init.json()["error"]["message"], "target dead: unreachable");
    assert!(
        !init.text().contains(&dead.to_string()),
        "no address: {}",
        init.text()
    );
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"pad":"{}"}}}}"#,
        "x".repeat(4096)
    );
    assert_eq!(raw(port, &big, None).await.status, 413);
    let failed = "tollgate_mcp_target_calls_total{route=\"tools\",target=\"dead\",method=\"initialize\",result=\"error\"}";
    assert_eq!(metric(&tollgate.metrics().await, failed), Some(1.0));
    assert!(
        tollgate.log().contains("no MCP session keys configured"),
        "{}",
        tollgate.log()
    );
}

/// A target that restarted lost every session it had: the client's session goes on,
/// tollgate opens the target a new session and sends the request again; the session
/// ends with DELETE, after which it is unknown.
#[tokio::test]
async fn a_restarted_target_gets_a_new_session() {
    let mut weather = McpServer::start(Sdk::V1, "weather", false).await;
    let calendar = McpServer::start(Sdk::V2, "calendar", true).await;
    let (tollgate, port) = gateway(&[&weather, &calendar], KEY).await;
    let init = raw(port, INITIALIZE, None).await;
    assert_eq!(init.status, 200, "{}", init.text());
    let session = init
        .header("mcp-session-id")
        .expect("a session id")
        .to_string();
    let initialized = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    assert_eq!(raw(port, initialized, Some(&session)).await.status, 202);
    let call = r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"weather__echo","arguments":{"text":"hi"}}}"#;
    let before = raw(port, call, Some(&session)).await;
    assert!(before.text().contains("weather:hi"), "{}", before.text());

    weather.restart().await;
    let after = raw(port, call, Some(&session)).await;
    assert_eq!(after.status, 200, "{}", after.text());
    assert!(after.text().contains("weather:hi"), "{}", after.text());
    let list = raw(port, TOOLS_LIST, Some(&session)).await;
    assert!(list.text().contains("weather__echo"), "{}", list.text());
    let metrics = tollgate.metrics().await;
    let inits = r#"tollgate_mcp_target_calls_total{route="tools",target="weather",method="initialize",result="ok"}"#;
    assert_eq!(
        metric(&metrics, inits),
        Some(2.0),
        "the client's and the renewal: {metrics}"
    );
    let calendar_inits = inits.replace("weather", "calendar");
    assert_eq!(metric(&metrics, &calendar_inits), Some(1.0), "{metrics}");
    assert!(tollgate.log().contains("renewed it"), "{}", tollgate.log());

    let mut delete = Req::get("/mcp").header("mcp-session-id", &session);
    delete.method = "DELETE".into();
    assert_eq!(client::must(port, delete).await.status, 200);
    assert_eq!(
        raw(port, TOOLS_LIST, Some(&session)).await.status,
        404,
        "ended here"
    );
}
