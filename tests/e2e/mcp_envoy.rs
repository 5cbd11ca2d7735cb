//! The MCP gateway behind a real Envoy, with the shipped configs (ports changed): the
//! official Python SDK clients (1.x and 2.x) talk to Envoy. With
//! `deploy/envoy/tollgate-mcp-gateway.yaml` every MCP message, the merged GET stream and
//! the server requests relayed over it included, passes through Envoy to tollgate's MCP
//! listener and on to the targets; with `deploy/envoy/tollgate-mcp-direct.yaml` and
//! `mcp.direct`, tollgate's ext_proc sends single-target calls through Envoy straight to
//! their target, and the rest goes to the listener.

use jsonwebtoken::get_current_timestamp;
use serde_json::json;
use tollgate::auth::Issuer;

use crate::support::client::{self, Req};

use crate::support::envoy::Envoy;
use crate::support::mcp::{gateway_yaml, post, run_clients, McpServer, Sdk, INITIALIZE};
use crate::support::tollgate::Tollgate;
use crate::support::{free_port, metric, repo_root};

/// Envoy from the shipped config `name` (`deploy/envoy/<name>`) with its admin and
/// listener ports, then each `(shipped port, port)` of `ports`, replaced; addresses
/// `127.0.0.1:<shipped port>` (host rewrites) follow their port.
async fn shipped_envoy(name: &str, ports: &[(u16, u16)]) -> Envoy {
    let path = repo_root().join("deploy/envoy").join(name);
    let shipped = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
    let ports = ports.to_vec();
    Envoy::start_with(1, move |admin, listeners, _log| {
        let mut yaml = shipped;
        for (from, to) in [(9901, admin), (10000, listeners[0])]
            .into_iter()
            .chain(ports)
        {
            let port = format!("port_value: {from} ");
            assert!(yaml.contains(&port), "{port} not in {name}");
            yaml = yaml.replace(&port, &format!("port_value: {to} "));
            yaml = yaml.replace(&format!("127.0.0.1:{from}"), &format!("127.0.0.1:{to}"));
        }
        yaml.replace("0.0.0.0", "127.0.0.1")
    })
    .await
}

/// The shipped all-to-the-listener config in front of tollgate's MCP listener.
async fn envoy_for(tollgate_port: u16) -> Envoy {
    shipped_envoy("tollgate-mcp-gateway.yaml", &[(8080, tollgate_port)]).await
}

#[tokio::test]
async fn sdk_clients_use_the_gateway_through_envoy() {
    let weather = McpServer::start_asking("weather").await;
    let calendar = McpServer::start(Sdk::V2, "calendar", false).await;
    let port = free_port();
    let _tollgate = Tollgate::start(&gateway_yaml(port, &[&weather, &calendar], "")).await;
    let envoy = envoy_for(port).await;
    let url = format!("http://127.0.0.1:{}/mcp", envoy.port(0));

    let calls = json!([
        {"name": "weather__echo", "arguments": {"text": "hi"}},
        {"name": "calendar__echo", "arguments": {"text": "hi"}},
        {"name": "weather__ask", "arguments": {"question": "rain?"}},
        {"name": "weather__ask", "arguments": {"question": "later?", "standalone": true}},
        {"name": "weather__announce", "arguments": {}},
    ]);
    let job = json!({"sdk": "1", "url": url, "calls": calls, "answers": true});
    let results = run_clients(Sdk::V1, vec![job]).await;
    let texts: Vec<&serde_json::Value> = results[0]["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["text"])
        .collect();
    assert_eq!(
        texts,
        [
            "weather:hi",
            "calendar:hi",
            "weather heard yes to rain?",
            "weather heard yes to later?",
            "weather announced"
        ],
        "{results:?}"
    );
    assert!(
        results[0]["notifications"]
            .as_array()
            .unwrap()
            .contains(&json!("notifications/tools/list_changed")),
        "the GET stream passed Envoy: {results:?}"
    );

    let calls = json!([{"name": "calendar__calendar_only", "arguments": {}}]);
    let job = json!({"sdk": "2", "url": url, "calls": calls});
    let results = run_clients(Sdk::V2, vec![job]).await;
    assert_eq!(
        results[0]["tools"].as_array().unwrap().len(),
        7,
        "{results:?}"
    );
    assert_eq!(results[0]["calls"][0]["text"], "calendar", "{results:?}");
}

/// The shipped direct-routing config: tollgate's ext_proc and MCP listener, and the
/// two targets.
async fn direct_envoy(ext_proc: u16, listener: u16, weather: u16, calendar: u16) -> Envoy {
    let ports = [
        (50051, ext_proc),
        (8080, listener),
        (9101, weather),
        (9102, calendar),
    ];
    shipped_envoy("tollgate-mcp-direct.yaml", &ports).await
}

#[tokio::test]
async fn single_target_calls_go_straight_to_their_target_through_envoy() {
    let weather = McpServer::start_asking("weather").await;
    let calendar = McpServer::start(Sdk::V1, "calendar", true).await;
    let (listener, ext_proc) = (free_port(), free_port());
    let yaml = format!(
        "{}extProc: {{ address: \"127.0.0.1:{ext_proc}\" }}\n",
        gateway_yaml(listener, &[&weather, &calendar], "        direct: {}\n")
    );
    let tollgate = Tollgate::start(&yaml).await;
    let envoy = direct_envoy(ext_proc, listener, weather.port, calendar.port).await;
    let url = format!("http://127.0.0.1:{}/mcp", envoy.port(0));
    let calls = json!([
        {"name": "weather__echo", "arguments": {"text": "hi"}},
        {"name": "calendar__echo", "arguments": {"text": "hi"}},
        {"name": "weather__ask", "arguments": {"question": "rain?"}},
        {"name": "weather__ask", "arguments": {"question": "later?", "standalone": true}},
        {"name": "nope__echo", "arguments": {}},
        {"name": "calendar__calendar_only", "arguments": {}},
    ]);
    let job = json!({"sdk": "1", "url": url, "calls": calls, "answers": true});
    let results = run_clients(Sdk::V1, vec![job]).await;
    let calls = &results[0]["calls"];
    assert_eq!(calls[0]["text"], "weather:hi", "{results:?}");
    assert_eq!(calls[1]["text"], "calendar:hi", "{results:?}");
    // The elicitation came on the call's stream, straight from the target through
    // Envoy, its id tagged by tollgate's ext_proc; the client's answer went to the
    // listener, which routed it to the target by that tag.
    assert_eq!(
        calls[2]["text"], "weather heard yes to rain?",
        "{results:?}"
    );
    assert_eq!(
        calls[3]["text"], "weather heard yes to later?",
        "{results:?}"
    );
    assert_eq!(
        calls[4]["error"]["code"], -32602,
        "answered by ext_proc: {results:?}"
    );
    assert_eq!(
        calls[5]["text"], "calendar",
        "the session went on: {results:?}"
    );
    // Envoy sent the four calls to the targets itself; the listener forwarded none.
    assert_eq!(
        envoy.counter("cluster.mcp_weather.upstream_rq_total").await,
        3
    );
    assert_eq!(
        envoy
            .counter("cluster.mcp_calendar.upstream_rq_total")
            .await,
        2
    );
    // A client that names a target itself does not get Envoy's route to it: ext_proc
    // removes the header and the listener answers (here: initialize, a GET stream).
    let forged = post(INITIALIZE).header("x-tollgate-mcp-target", "weather");
    let forged = client::must(envoy.port(0), forged).await;
    assert_eq!(forged.status, 200, "{}", forged.text());
    assert_eq!(forged.json()["result"]["serverInfo"]["name"], "tollgate");
    let get = Req::get("/mcp")
        .header("accept", "text/event-stream")
        .header("x-tollgate-mcp-target", "weather");
    let get = client::must(envoy.port(0), get).await;
    assert_eq!(
        get.status,
        400,
        "no session, the listener's answer: {}",
        get.text()
    );
    let weather_calls = envoy.counter("cluster.mcp_weather.upstream_rq_total").await;
    assert_eq!(
        weather_calls, 3,
        "nothing more reached weather through Envoy"
    );
    let metrics = tollgate.metrics().await;
    let routed =
        r#"tollgate_mcp_tool_calls_total{route="tools",target="weather",tool="ask",result="ok"}"#;
    assert_eq!(metric(&metrics, routed), Some(2.0), "{metrics}");
}

/// Behind Envoy with `mcp.direct`, tollgate's ext_proc authenticates, authorizes and
/// counts the calls it sends to their targets: the target gets its own credential and
/// never the client's token; a call a rule refuses or a limit stops never leaves Envoy.
#[tokio::test]
async fn direct_calls_are_authenticated_authorized_and_limited_by_ext_proc() {
    // weather answers 400 to any Authorization header and 401 without its own key.
    let weather = McpServer::start_requiring("weather", "x-target-key=weather-secret").await;
    let calendar = McpServer::start(Sdk::V1, "calendar", true).await;
    let (listener, ext_proc) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    let key = Issuer::new("k1");
    std::fs::write(&jwks, Issuer::jwks(&[&key]).to_string()).unwrap();
    let audience = "https://mcp.test/mcp";
    let policies = format!(
        "      policies:\n        mcpAuthentication:\n          issuer: https://idp.test\n          audiences: [\"{audience}\"]\n          jwks: {{file: \"{}\"}}\n        mcpAuthorization:\n          rules:\n          - 'jwt.role == \"admin\"'\n          - 'has(mcp.tool) && mcp.tool.name == \"echo\"'\n        mcpToolLimit:\n          limits:\n          - {{name: echoes, key: jwt.sub, callsPerMinute: 2, tools: [calendar__echo]}}\n",
        jwks.display()
    );
    let yaml = gateway_yaml(listener, &[&weather, &calendar], "        direct: {}\n")
        .replace("      mcp:\n", &format!("{policies}      mcp:\n"))
        .replace(
            "{name: weather, url:",
            "{name: weather, headers: {x-target-key: weather-secret}, url:",
        );
    let yaml = format!("{yaml}extProc: {{ address: \"127.0.0.1:{ext_proc}\" }}\n");
    let _tollgate = Tollgate::start(&yaml).await;
    let envoy = direct_envoy(ext_proc, listener, weather.port, calendar.port).await;
    let claims = json!({"iss": "https://idp.test", "aud": audience, "sub": "ann",
                        "role": "intern", "exp": get_current_timestamp() + 600});
    let token = key.sign(&claims);
    let echo =
        |target: &str| json!({"name": format!("{target}__echo"), "arguments": {"text": "hi"}});
    let calls = json!([
        echo("weather"),
        echo("calendar"),
        echo("calendar"),
        echo("calendar"),
    ]);
    let url = format!("http://127.0.0.1:{}/mcp", envoy.port(0));
    let job = json!({"sdk": "1", "url": url, "calls": calls, "token": token});
    let results = run_clients(Sdk::V1, vec![job]).await;
    let result = &results[0];
    // The list came from the listener, which checked the token again and filtered it.
    assert_eq!(
        result["tools"],
        json!(["weather__echo", "calendar__echo"]),
        "{result}"
    );
    let calls = &result["calls"];
    assert_eq!(
        calls[0]["text"], "weather:hi",
        "own key, no client token: {result}"
    );
    assert_eq!(calls[1]["text"], "calendar:hi", "{result}");
    assert_eq!(calls[2]["text"], "calendar:hi", "{result}");
    assert_eq!(calls[3]["error"]["code"], -32000, "the limit: {result}");
    assert_eq!(
        envoy.counter("cluster.mcp_weather.upstream_rq_total").await,
        1
    );
    assert_eq!(
        envoy
            .counter("cluster.mcp_calendar.upstream_rq_total")
            .await,
        2
    );
    // A call no rule allows (a stateless 2026-07-28 request: no session needed) is
    // refused by ext_proc, 403 with JSON-RPC -32001.
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                      "io.modelcontextprotocol/clientCapabilities": {}});
    let body = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {
        "name": "calendar__calendar_only", "arguments": {}, "_meta": meta}});
    let forbidden = post(&body.to_string())
        .header("authorization", &format!("Bearer {token}"))
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "calendar__calendar_only");
    let forbidden = client::must(envoy.port(0), forbidden).await;
    assert_eq!(forbidden.status, 403, "{}", forbidden.text());
    assert_eq!(forbidden.json()["error"]["code"], -32001);
    assert_eq!(
        envoy
            .counter("cluster.mcp_calendar.upstream_rq_total")
            .await,
        2
    );
    // No token: 401 from ext_proc with the metadata challenge, before any routing.
    let unauthenticated = client::must(
        envoy.port(0),
        post(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"weather__echo"}}"#),
    )
    .await;
    assert_eq!(unauthenticated.status, 401, "{}", unauthenticated.text());
    assert!(unauthenticated
        .header("www-authenticate")
        .is_some_and(|h| h.contains("resource_metadata=")));
}
