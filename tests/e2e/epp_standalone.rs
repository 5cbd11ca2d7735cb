//! The endpoint picker in tollgate's own proxy, with no Envoy and no separate picker: a
//! route without backends sends each inference request to the endpoint it picks among
//! simulated model servers; a tenant's shared prompt keeps landing where it is cached; a
//! rewritten model is answered under the name the client asked for.

use std::collections::{HashMap, HashSet};

use crate::support::client::{self, Req};
use crate::support::free_port;
use crate::support::sim::Sim;
use crate::support::tollgate::Tollgate;

fn chat(prompt: &str, stream: bool) -> Req {
    Req::post(
        "/v1/chat/completions",
        serde_json::json!({
            "model": "m",
            "stream": stream,
            "max_tokens": 4,
            "messages": [{"role": "user", "content": prompt}],
        })
        .to_string(),
    )
    .header("content-type", "application/json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_forwards_to_the_pick() {
    let sim = Sim::start(3, &[]);
    let endpoints: Vec<String> = sim.addrs.iter().map(|a| a.to_string()).collect();
    let port = free_port();
    let yaml = format!(
        r#"
binds:
- port: {port}
  listeners:
  - routes:
    - name: pool
      policies:
        endpointPicker:
          endpoints: {endpoints:?}
          modelRewrites: [{{model: m, targets: [{{model: m-v2}}]}}]
"#
    );
    let tollgate = Tollgate::start(&yaml).await;
    let mut by_tenant: HashMap<usize, HashSet<String>> = HashMap::new();
    for i in 0..9 {
        let tenant = i % 3;
        let system = format!("You answer for tenant {tenant}, briefly and kindly. ").repeat(4);
        let stream = i % 2 == 0;
        let reply = client::must(port, chat(&format!("{system} question {i}"), stream)).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        let served = reply
            .header("x-sim-endpoint")
            .expect("a simulated server answered")
            .to_string();
        assert!(endpoints.contains(&served), "{served}");
        let text = reply.text();
        if stream {
            let events: Vec<&str> = text
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .filter(|d| *d != "[DONE]")
                .collect();
            assert!(!events.is_empty(), "{text}");
            for e in events {
                let v: serde_json::Value = serde_json::from_str(e).unwrap();
                assert_eq!(v["model"], "m", "every event names the client's model: {e}");
            }
        } else {
            assert_eq!(reply.json()["model"], "m", "{text}");
        }
        by_tenant.entry(tenant).or_default().insert(served);
    }
    for (tenant, served) in &by_tenant {
        assert_eq!(served.len(), 1, "tenant {tenant} stays put: {served:?}");
    }
    let metrics = tollgate.metrics().await;
    assert!(
        metrics.contains(
            "inference_objective_request_total{model_name=\"m\",target_model_name=\"m-v2\"} 9"
        ),
        "{metrics}"
    );
}
