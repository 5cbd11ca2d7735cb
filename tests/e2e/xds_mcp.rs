//! MCP routes served to Envoy over ADS: a real Envoy 1.40 bootstrapped from tollgate
//! carries the official Python SDK client's session to tollgate's MCP listener
//! (`xds.mcpAddress`), which multiplexes the targets; with `mcp.direct`, Envoy sends
//! the calls tollgate's ext_proc marks straight to their target over the routes and
//! clusters tollgate generated for them.

use std::time::Duration;

use serde_json::json;

use crate::support::client;
use crate::support::envoy::Envoy;
use crate::support::mcp::{gateway_yaml, post, run_clients, McpServer, Sdk, INITIALIZE};
use crate::support::tollgate::Tollgate;
use crate::support::{eventually, free_port};

/// The MCP gateway route `tools` on Envoy's listener `listen`, served over ADS on
/// `ext_proc`, with tollgate's MCP listener on `mcp`.
fn xds_gateway(
    listen: u16,
    ext_proc: u16,
    mcp: u16,
    servers: &[&McpServer],
    extra: &str,
) -> String {
    format!(
        "{}extProc: {{ address: \"127.0.0.1:{ext_proc}\" }}\nxds: {{ mcpAddress: \"127.0.0.1:{mcp}\" }}\n",
        gateway_yaml(listen, servers, extra)
    )
}

/// Waits until Envoy's listener `port` carries an MCP `initialize` to tollgate.
async fn until_served(port: u16) {
    eventually(
        "Envoy serving the MCP route tollgate sent",
        Duration::from_secs(15),
        || async move {
            let r = client::send(port, post(INITIALIZE)).await.ok()?;
            (r.status == 200).then_some(())
        },
    )
    .await
}

fn texts(result: &serde_json::Value) -> Vec<serde_json::Value> {
    result["calls"]
        .as_array()
        .expect("calls")
        .iter()
        .map(|c| c["text"].clone())
        .collect()
}

#[tokio::test]
async fn sdk_client_uses_the_mcp_gateway_through_an_ads_envoy() {
    let weather = McpServer::start_asking("weather").await;
    let calendar = McpServer::start(Sdk::V2, "calendar", false).await;
    let (listen, ext_proc, mcp) = (free_port(), free_port(), free_port());
    let yaml = xds_gateway(listen, ext_proc, mcp, &[&weather, &calendar], "");
    let tollgate = Tollgate::start(&yaml).await;
    let envoy = Envoy::start_ads("mcp-1", ext_proc, false).await;
    until_served(listen).await;

    let calls = json!([
        {"name": "weather__echo", "arguments": {"text": "hi"}},
        {"name": "calendar__echo", "arguments": {"text": "hi"}},
        {"name": "weather__ask", "arguments": {"question": "rain?"}},
    ]);
    let url = format!("http://127.0.0.1:{listen}/mcp");
    let job = json!({"sdk": "1", "url": url, "calls": calls, "answers": true});
    let results = run_clients(Sdk::V1, vec![job]).await;
    assert_eq!(
        texts(&results[0]),
        [
            json!("weather:hi"),
            json!("calendar:hi"),
            json!("weather heard yes to rain?")
        ],
        "{results:?}"
    );
    let tools = results[0]["tools"].as_array().expect("tools").len();
    assert!(tools >= 6, "both targets' tools, merged: {results:?}");
    // Every message went through Envoy's generated route to the MCP listener, with
    // ext_proc off on that route (the listener ran the route's policies).
    let sent = envoy
        .counter("cluster.tollgate_mcp.upstream_rq_total")
        .await;
    assert!(sent >= 5, "initialize, list, 3 calls, an answer: {sent}");
    let ext_proc_streams = format!("http.bind_{listen}.ext_proc.streams_started");
    assert_eq!(envoy.counter(&ext_proc_streams).await, 0);
    let metrics = tollgate.metrics().await;
    assert!(
        metrics.contains(r#"route="tools""#) && metrics.contains(r#"adapter="proxy""#),
        "{metrics}"
    );

    // A client's own route header is overwritten by Envoy's; the MCP listener itself
    // serves only the `mcp` route a request names.
    let forged = post(INITIALIZE).header("x-tollgate-route", "elsewhere");
    let forged = client::must(listen, forged).await;
    assert_eq!(forged.status, 200, "{}", forged.text());
    let unnamed = client::must(mcp, post(INITIALIZE)).await;
    assert_eq!(unnamed.status, 404, "{}", unnamed.text());
    let named = client::must(mcp, post(INITIALIZE).header("x-tollgate-route", "tools")).await;
    assert_eq!(named.status, 200, "{}", named.text());
}

#[tokio::test]
async fn direct_mcp_calls_take_the_target_routes_tollgate_generated() {
    let weather = McpServer::start_asking("weather").await;
    let calendar = McpServer::start(Sdk::V1, "calendar", true).await;
    let (listen, ext_proc, mcp) = (free_port(), free_port(), free_port());
    let yaml = xds_gateway(
        listen,
        ext_proc,
        mcp,
        &[&weather, &calendar],
        "        direct: {}\n",
    );
    let _tollgate = Tollgate::start(&yaml).await;
    let envoy = Envoy::start_ads("mcp-direct", ext_proc, true).await;
    until_served(listen).await;

    let calls = json!([
        {"name": "weather__echo", "arguments": {"text": "hi"}},
        {"name": "calendar__echo", "arguments": {"text": "hi"}},
        {"name": "weather__ask", "arguments": {"question": "rain?"}},
        {"name": "calendar__calendar_only", "arguments": {}},
    ]);
    let url = format!("http://127.0.0.1:{listen}/mcp");
    let job = json!({"sdk": "1", "url": url, "calls": calls, "answers": true});
    let results = run_clients(Sdk::V1, vec![job]).await;
    assert_eq!(
        texts(&results[0]),
        [
            json!("weather:hi"),
            json!("calendar:hi"),
            json!("weather heard yes to rain?"),
            json!("calendar")
        ],
        "{results:?}"
    );
    // Envoy sent the single-target calls to the targets over the generated clusters;
    // everything else went to the MCP listener.
    let to = |port: u16| format!("cluster.backend_127.0.0.1_{port}.upstream_rq_total");
    assert_eq!(envoy.counter(&to(weather.port)).await, 2);
    assert_eq!(envoy.counter(&to(calendar.port)).await, 2);
    assert!(
        envoy
            .counter("cluster.tollgate_mcp.upstream_rq_total")
            .await
            >= 2
    );
    // A client naming a target itself gets the listener, not the target's route.
    let forged = post(INITIALIZE).header("x-tollgate-mcp-target", "weather");
    let forged = client::must(listen, forged).await;
    assert_eq!(forged.status, 200, "{}", forged.text());
    assert_eq!(forged.json()["result"]["serverInfo"]["name"], "tollgate");
    assert_eq!(envoy.counter(&to(weather.port)).await, 2);
}
