//! Prefill/decode disaggregation over `tollgate sim` instances in both roles (one
//! `prefill`, two `decode`), through tollgate's own proxy and through a real Envoy: a
//! long uncached prompt is decoded on a decode instance that pulled its prefill from the
//! prefill instance (both named in the simulator's response headers); a short prompt,
//! or the long one again (now cached on its decode instance), runs aggregated.

use serde_json::json;

use crate::support::client::{self, Req};
use crate::support::epp_envoy::{start_gateway, Forwarding};
use crate::support::free_port;
use crate::support::sim::Sim;
use crate::support::tollgate::Tollgate;

/// The picker's config over `sim` (instance 0 prefills): roles and a threshold of 256
/// uncached tokens.
fn picker(sim: &Sim) -> (String, Vec<String>) {
    let endpoints: Vec<String> = sim.addrs.iter().map(|a| a.to_string()).collect();
    let yaml = format!(
        "endpoints: {endpoints:?}\nroles: {{\"{}\": prefill}}\ndisaggregation: {{nonCachedTokens: 256}}",
        endpoints[0]
    );
    (yaml, endpoints)
}

fn chat(prompt: &str) -> Req {
    Req::post(
        "/v1/chat/completions",
        json!({"model": "m", "max_tokens": 3, "messages": [{"role": "user", "content": prompt}]})
            .to_string(),
    )
    .header("content-type", "application/json")
}

/// Sends the three requests and checks where each one ran.
async fn long_prompts_split_and_short_ones_do_not(port: u16, endpoints: &[String]) {
    let long = format!(
        "{} Summarise the above.",
        "The quarterly report lists revenue, costs and margins by region. ".repeat(30)
    );
    let prefill = endpoints[0].as_str();
    let reply = client::must(port, chat(&long)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let decode = reply.header("x-sim-endpoint").unwrap().to_string();
    assert!(endpoints[1..].contains(&decode), "decoded on {decode}");
    assert_eq!(
        reply.header("x-sim-prefill-endpoint"),
        Some(prefill),
        "the long prompt was prefilled on the prefill instance"
    );
    assert_eq!(
        reply.json()["choices"][0]["message"]["content"],
        "tok1 tok2 tok3"
    );

    let again = client::must(port, chat(&long)).await;
    assert_eq!(again.header("x-sim-endpoint"), Some(decode.as_str()));
    assert_eq!(
        again.header("x-sim-prefill-endpoint"),
        None,
        "cached on its decode instance: aggregated"
    );
    assert_ne!(again.header("x-sim-cached-tokens"), Some("0"));

    let short = client::must(port, chat("What is 2+2?")).await;
    assert_eq!(short.status, 200);
    let served = short.header("x-sim-endpoint").unwrap();
    assert!(endpoints[1..].iter().any(|e| e == served), "{served}");
    assert_eq!(short.header("x-sim-prefill-endpoint"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_disaggregates_long_prompts() {
    let sim = Sim::start(3, &["--prefill-instances", "1", "--role", "decode"]);
    let (picker, endpoints) = picker(&sim);
    let port = free_port();
    let indented = picker.replace('\n', "\n          ");
    let _tollgate = Tollgate::start(&format!(
        "binds:\n- port: {port}\n  listeners:\n  - routes:\n    - name: pd\n      policies:\n        endpointPicker:\n          {indented}\n"
    ))
    .await;
    long_prompts_split_and_short_ones_do_not(port, &endpoints).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_disaggregates_long_prompts() {
    let sim = Sim::start(3, &["--prefill-instances", "1", "--role", "decode"]);
    let (picker, endpoints) = picker(&sim);
    let ext_proc = free_port();
    let indented = picker.replace('\n', "\n    ");
    let _tollgate = Tollgate::start(&format!(
        "extProc: {{ address: \"127.0.0.1:{ext_proc}\" }}\npolicies:\n  endpointPicker:\n    {indented}\n"
    ))
    .await;
    let envoy = start_gateway(ext_proc, &endpoints, Forwarding::OverrideHost, false).await;
    long_prompts_split_and_short_ones_do_not(envoy.port(0), &endpoints).await;
}
