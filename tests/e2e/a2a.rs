//! The `a2a` policy through the standalone proxy: an agent's card, fetched through
//! tollgate, names tollgate's address instead of the agent's; A2A JSON-RPC requests
//! reach the agent unchanged and are counted by method.

use serde_json::{json, Value};

use crate::support::client::{self, Req};
use crate::support::tollgate::Tollgate;
use crate::support::upstream::MockUpstream;
use crate::support::{free_port, metric};

#[tokio::test]
async fn agent_cards_point_at_the_gateway_and_requests_are_counted() {
    let agent = MockUpstream::start().await;
    let port = free_port();
    let yaml = format!(
        "binds:\n- port: {port}\n  listeners:\n  - routes:\n    - name: travel\n      matches: [{{path: {{pathPrefix: /travel}}}}]\n      policies: {{a2a: {{}}}}\n      backends: [{{host: \"127.0.0.1:{}\"}}]\n",
        agent.port
    );
    let tollgate = Tollgate::start(&yaml).await;
    let card = client::must(port, Req::get("/travel/.well-known/agent-card.json")).await;
    assert_eq!(card.status, 200, "{}", card.text());
    let card: Value = card.json();
    assert_eq!(card["url"], format!("http://127.0.0.1:{port}/travel"));
    assert_eq!(card["name"], "mock-agent");

    let send = json!({"jsonrpc": "2.0", "id": 1, "method": "message/send",
                      "params": {"message": {"role": "user", "parts": [{"kind": "text", "text": "hi"}], "taskId": "t-1"}}});
    let reply = client::must(port, Req::post("/travel/rpc", send.to_string())).await;
    assert_eq!(reply.status, 200);
    assert_eq!(agent.requests().last().unwrap().body, send.to_string());
    let line = "tollgate_a2a_requests_total{route=\"travel\",method=\"message/send\"}";
    assert_eq!(metric(&tollgate.metrics().await, line), Some(1.0));
}
