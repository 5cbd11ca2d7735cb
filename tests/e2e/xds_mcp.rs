//! MCP routes served to Envoy over ADS: a real Envoy 1.40 bootstrapped from tollgate
//! carries the official Python SDK client's session to tollgate's MCP listener
//! (`xds.mcpAddress`), which multiplexes the targets; with `mcp.direct`, Envoy sends
//! the calls tollgate's ext_proc marks straight to their target over the routes and
//! clusters tollgate generated for them.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::client;
use crate::support::envoy::Envoy;
use crate::support::mcp::{gateway_yaml, post, run_clients, McpServer, Sdk, INITIALIZE};
use crate::support::tollgate::Tollgate;
use crate::support::{eventually, free_port};

/// tollgate serving the MCP gateway route `tools` over `weather` (a 1.x server that
/// asks back) and `calendar` to an ADS Envoy, `extra` appended to the route's `mcp`
/// section; ready once Envoy carries an `initialize`.
struct Gateway {
    weather: McpServer,
    calendar: McpServer,
    tollgate: Tollgate,
    envoy: Envoy,
    /// Envoy's listener.
    listen: u16,
    /// tollgate's MCP listener (`xds.mcpAddress`).
    mcp: u16,
}

impl Gateway {
    async fn start(calendar: McpServer, extra: &str, node: &str, delta: bool) -> Self {
        let weather = McpServer::start_asking("weather").await;
        let (listen, ext_proc, mcp) = (free_port(), free_port(), free_port());
        let yaml = format!(
            "{}extProc: {{ address: \"127.0.0.1:{ext_proc}\" }}\nxds: {{ mcpAddress: \"127.0.0.1:{mcp}\" }}\n",
            gateway_yaml(listen, &[&weather, &calendar], extra)
        );
        let tollgate = Tollgate::start(&yaml).await;
        let envoy = Envoy::start_ads(node, ext_proc, delta).await;
        eventually(
            "Envoy serving the MCP route tollgate sent",
            Duration::from_secs(15),
            || async move {
                let r = client::send(listen, post(INITIALIZE)).await.ok()?;
                (r.status == 200).then_some(())
            },
        )
        .await;
        Gateway {
            weather,
            calendar,
            tollgate,
            envoy,
            listen,
            mcp,
        }
    }

    /// The 1.x SDK client's session through Envoy making `calls`: its result, and the
    /// text of each call's answer.
    async fn session(&self, calls: Value) -> (Value, Vec<Value>) {
        let url = format!("http://127.0.0.1:{}/mcp", self.listen);
        let job = json!({"sdk": "1", "url": url, "calls": calls, "answers": true});
        let result = run_clients(Sdk::V1, vec![job]).await.remove(0);
        let texts = result["calls"]
            .as_array()
            .expect("calls")
            .iter()
            .map(|c| c["text"].clone())
            .collect();
        (result, texts)
    }

    async fn counter(&self, stat: &str) -> u64 {
        self.envoy.counter(stat).await
    }
}

#[tokio::test]
async fn sdk_client_uses_the_mcp_gateway_through_an_ads_envoy() {
    let calendar = McpServer::start(Sdk::V2, "calendar", false).await;
    let gw = Gateway::start(calendar, "", "mcp-1", false).await;
    let (result, texts) = gw
        .session(json!([
            {"name": "weather__echo", "arguments": {"text": "hi"}},
            {"name": "calendar__echo", "arguments": {"text": "hi"}},
            {"name": "weather__ask", "arguments": {"question": "rain?"}},
        ]))
        .await;
    assert_eq!(
        texts,
        ["weather:hi", "calendar:hi", "weather heard yes to rain?"],
        "{result}"
    );
    let tools = result["tools"].as_array().expect("tools").len();
    assert!(tools >= 6, "both targets' tools, merged: {result}");
    // Every message went through Envoy's generated route to the MCP listener, with
    // ext_proc off on that route (the listener ran the route's policies).
    let sent = gw.counter("cluster.tollgate_mcp.upstream_rq_total").await;
    assert!(sent >= 5, "initialize, list, 3 calls, an answer: {sent}");
    let ext_proc_streams = format!("http.bind_{}.ext_proc.streams_started", gw.listen);
    assert_eq!(gw.counter(&ext_proc_streams).await, 0);
    let metrics = gw.tollgate.metrics().await;
    assert!(
        metrics.contains(r#"route="tools""#) && metrics.contains(r#"adapter="proxy""#),
        "{metrics}"
    );

    // A client's own route header is overwritten by Envoy's; the MCP listener itself
    // serves only the `mcp` route a request names.
    let forged = post(INITIALIZE).header("x-tollgate-route", "elsewhere");
    let forged = client::must(gw.listen, forged).await;
    assert_eq!(forged.status, 200, "{}", forged.text());
    let unnamed = client::must(gw.mcp, post(INITIALIZE)).await;
    assert_eq!(unnamed.status, 404, "{}", unnamed.text());
    let named = post(INITIALIZE).header("x-tollgate-route", "tools");
    let named = client::must(gw.mcp, named).await;
    assert_eq!(named.status, 200, "{}", named.text());
}

#[tokio::test]
async fn direct_mcp_calls_take_the_target_routes_tollgate_generated() {
    let calendar = McpServer::start(Sdk::V1, "calendar", true).await;
    let gw = Gateway::start(calendar, "        direct: {}\n", "mcp-direct", true).await;
    let (result, texts) = gw
        .session(json!([
            {"name": "weather__echo", "arguments": {"text": "hi"}},
            {"name": "calendar__echo", "arguments": {"text": "hi"}},
            {"name": "weather__ask", "arguments": {"question": "rain?"}},
            {"name": "calendar__calendar_only", "arguments": {}},
        ]))
        .await;
    assert_eq!(
        texts,
        [
            "weather:hi",
            "calendar:hi",
            "weather heard yes to rain?",
            "calendar"
        ],
        "{result}"
    );
    // Envoy sent the single-target calls to the targets over the generated clusters;
    // everything else went to the MCP listener.
    let to = |port: u16| format!("cluster.backend_127.0.0.1_{port}.upstream_rq_total");
    assert_eq!(gw.counter(&to(gw.weather.port)).await, 2);
    assert_eq!(gw.counter(&to(gw.calendar.port)).await, 2);
    assert!(gw.counter("cluster.tollgate_mcp.upstream_rq_total").await >= 2);
    // A client naming a target itself gets the listener, not the target's route.
    let forged = post(INITIALIZE).header("x-tollgate-mcp-target", "weather");
    let forged = client::must(gw.listen, forged).await;
    assert_eq!(forged.status, 200, "{}", forged.text());
    assert_eq!(forged.json()["result"]["serverInfo"]["name"], "tollgate");
    assert_eq!(gw.counter(&to(gw.weather.port)).await, 2);
}
