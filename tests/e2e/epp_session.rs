//! Session affinity through a real Envoy over `tollgate sim` instances, driven by the
//! official `openai` SDK holding multi-turn conversations: with the `token` strategy the
//! client echoes `x-session-token` and its conversation keeps landing on one instance
//! while other traffic spreads; with the `sessionId` strategy a conversation's
//! `x-session-id` is bound to an instance, and when that instance is killed the session
//! falls back to another and re-binds there.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::envoy::Envoy;
use crate::support::epp_envoy::{start_gateway, Forwarding};
use crate::support::llm::run_sdk;
use crate::support::sim::Sim;
use crate::support::tollgate::Tollgate;
use crate::support::{eventually, free_port, metric};

/// Envoy → tollgate (picking with `scheduling`) → three one-instance simulators (one
/// process each, so one can be killed).
struct Setup {
    envoy: Envoy,
    tollgate: Tollgate,
    sims: Vec<Option<Sim>>,
    endpoints: Vec<String>,
}

async fn setup(scheduling: &str) -> Setup {
    let sims: Vec<Option<Sim>> = (0..3)
        .map(|_| Some(Sim::start(1, &["--default-max-tokens", "3"])))
        .collect();
    let endpoints: Vec<String> = sims
        .iter()
        .map(|s| s.as_ref().unwrap().addrs[0].to_string())
        .collect();
    let ext_proc = free_port();
    let tollgate = Tollgate::start(&format!(
        "extProc: {{ address: \"127.0.0.1:{ext_proc}\" }}\npolicies:\n  endpointPicker:\n    endpoints: {endpoints:?}\n    scheduling: {scheduling}\n"
    ))
    .await;
    let envoy = start_gateway(ext_proc, &endpoints, Forwarding::OriginalDstMetadata, false).await;
    Setup {
        envoy,
        tollgate,
        sims,
        endpoints,
    }
}

impl Setup {
    fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.envoy.port(0))
    }

    /// A conversation job of `turns` turns sending `headers`, echoing `echo`.
    fn conversation(&self, tag: &str, turns: usize, headers: Value, echo: &[&str]) -> Value {
        let turns: Vec<String> = (0..turns).map(|i| format!("{tag}: turn {i}")).collect();
        json!({
            "base_url": self.base_url(), "model": "m", "turns": turns, "headers": headers,
            "response_headers": ["x-sim-endpoint", "x-session-token"], "echo_headers": echo,
        })
    }
}

/// The `x-sim-endpoint` of every turn of a conversation result.
fn served(result: &Value) -> Vec<String> {
    result["turns"]
        .as_array()
        .unwrap_or_else(|| panic!("no turns: {result}"))
        .iter()
        .map(|t| {
            t["headers"]["x-sim-endpoint"]
                .as_str()
                .unwrap_or_else(|| panic!("a turn failed: {result}"))
                .to_string()
        })
        .collect()
}

fn one_endpoint(what: &str, served: &[String]) -> String {
    let set: HashSet<&String> = served.iter().collect();
    assert_eq!(set.len(), 1, "{what} moved: {served:?}");
    served[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_conversation_stays_on_one_instance_while_other_traffic_spreads() {
    let s =
        setup("{scorers: [{type: queue}, {type: kvCache}, {type: sessionAffinity, weight: 10}]}")
            .await;
    let mut jobs = vec![s.conversation("chat", 6, json!({}), &["x-session-token"])];
    for i in 0..12 {
        jobs.push(s.conversation(&format!("other {i}"), 1, json!({}), &[]));
    }
    let results = run_sdk("openai_client.py", jobs).await;
    let conversation = served(&results[0]);
    let home = one_endpoint("the token conversation", &conversation);
    let token = results[0]["turns"][0]["headers"]["x-session-token"]
        .as_str()
        .expect("the response carries the session token");
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token)
        .unwrap();
    assert_eq!(
        String::from_utf8(decoded).unwrap(),
        home,
        "the token names it"
    );
    let others: HashSet<String> = results[1..].iter().flat_map(served).collect();
    assert!(
        others.len() >= 2,
        "requests without a session spread (ties broken at random): {others:?}"
    );
    assert!(others.iter().all(|e| s.endpoints.contains(e)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_id_falls_back_when_its_instance_dies_and_rebinds() {
    let mut s = setup(
        "{filters: [{type: sessionAffinity, strategy: sessionId}], scorers: [{type: queue}, {type: kvCache}]}",
    )
    .await;
    let sid = json!({"x-session-id": "conversation-42"});
    let results = run_sdk(
        "openai_client.py",
        vec![s.conversation("before", 4, sid.clone(), &[])],
    )
    .await;
    let home = one_endpoint("the session", &served(&results[0]));
    let index = s.endpoints.iter().position(|e| *e == home).unwrap();
    drop(s.sims[index].take()); // killed
    eventually(
        "the picker to see the instance gone",
        Duration::from_secs(10),
        || async {
            let text = s.tollgate.metrics().await;
            (metric(&text, "inference_pool_ready_pods") == Some(2.0)).then_some(())
        },
    )
    .await;
    let results = run_sdk(
        "openai_client.py",
        vec![s.conversation("after", 4, sid, &[])],
    )
    .await;
    let new_home = one_endpoint("the re-bound session", &served(&results[0]));
    assert_ne!(new_home, home, "fell back to a live instance");
}
