//! The shared scenario: a tollgate config whose `chat` route sets, adds and removes
//! request and response headers, a large chat request that exercises it, and the
//! assertions of what the upstream and the client must see. Every adapter test (Envoy in
//! each mode, the standalone proxy, the parity test) runs this same scenario.

use super::client::{Reply, Req};
use super::upstream::{MockUpstream, Recorded};

/// Ports of one tollgate.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    pub ext_proc: u16,
    pub proxy: u16,
}

impl Ports {
    pub fn free() -> Self {
        Ports {
            ext_proc: super::free_port(),
            proxy: super::free_port(),
        }
    }
}

/// The scenario's tollgate config (all but the admin section).
///
/// Routes, in match order: `named_by_envoy` (matches only a header nobody sends, so it is
/// chosen only through Envoy's `xds.route_name`), `chat` (POST under `/v1`, the header
/// policies under test) and `fallback` (everything else).
pub fn config(ports: Ports, upstream: u16, mode_override: bool) -> String {
    format!(
        r#"extProc:
  address: "127.0.0.1:{ext_proc}"
  modeOverride: {mode_override}
logging: {{ format: json }}
shutdown: {{ gracePeriod: 5s }}
upstream: {{ connectTimeout: 1s, requestTimeout: 10s }}
binds:
- port: {proxy}
  listeners:
  - name: e2e
    routes:
    - name: named_by_envoy
      matches:
      - headers: [ {{ name: x-never-sent }} ]
      policies:
        responseHeaderModifier: {{ set: {{ x-tollgate-route: named_by_envoy }} }}
      backends: [ {{ host: "127.0.0.1:{upstream}" }} ]
    - name: chat
      matches:
      - path: {{ pathPrefix: /v1 }}
        method: POST
      policies:
        requestHeaderModifier:
          set: {{ x-set: set-value, x-overwrite: new }}
          add: {{ x-multi: added }}
          remove: [x-drop]
        responseHeaderModifier:
          set: {{ x-tollgate: "1", x-tollgate-route: chat }}
          add: {{ x-resp-multi: tollgate }}
          remove: [x-upstream-secret]
      backends: [ {{ host: "127.0.0.1:{upstream}" }} ]
    - name: fallback
      policies:
        responseHeaderModifier: {{ set: {{ x-tollgate-route: fallback }} }}
      backends: [ {{ host: "127.0.0.1:{upstream}" }} ]
"#,
        ext_proc = ports.ext_proc,
        proxy = ports.proxy,
    )
}

/// A chat request body of about 100 KB (several transport chunks), every word distinct
/// so that a lost, doubled or reordered chunk shows.
pub fn chat_body(stream: bool) -> String {
    let words: String = (0..12_000).map(|i| format!("w{i} ")).collect();
    serde_json::json!({
        "model": "gpt-e2e",
        "stream": stream,
        "messages": [{"role": "user", "content": words}],
    })
    .to_string()
}

/// The scenario's request: it carries headers the `chat` route's policy overwrites,
/// appends to and removes.
pub fn chat_request(id: &str) -> Req {
    Req::post("/v1/chat/completions", chat_body(false))
        .header("x-test-id", id)
        .header("x-overwrite", "old")
        .header("x-multi", "original")
        .header("x-drop", "please")
}

/// A streaming chat request: `events` SSE events `interval_ms` apart.
pub fn sse_request(id: &str, events: u32, interval_ms: u64) -> Req {
    Req::post("/v1/chat/completions", chat_body(true))
        .header("x-test-id", id)
        .header("x-mock-events", &events.to_string())
        .header("x-mock-interval-ms", &interval_ms.to_string())
}

/// Header values as a list, whether sent as repeated lines or comma-joined (equivalent
/// by RFC 9110 §5.3).
pub fn flat(values: Vec<String>) -> Vec<String> {
    values
        .iter()
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_string())
        .collect()
}

/// What the upstream must have received for `sent` on the `chat` route.
pub fn assert_upstream_request(seen: &Recorded, sent: &Req) {
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.path, "/v1/chat/completions");
    assert!(
        seen.body == sent.body,
        "the request body changed on the way ({} bytes sent, {} received)",
        sent.body.len(),
        seen.body.len()
    );
    assert_eq!(flat(seen.header_all("x-set")), ["set-value"], "set");
    assert_eq!(
        flat(seen.header_all("x-overwrite")),
        ["new"],
        "set overwrites"
    );
    assert_eq!(
        flat(seen.header_all("x-multi")),
        ["original", "added"],
        "add appends"
    );
    assert!(
        seen.header_all("x-drop").is_empty(),
        "remove: {:?}",
        seen.headers
    );
}

/// What the client must see in the `chat` route's answer to `sent`.
pub fn assert_client_response(reply: &Reply, sent: &Req) {
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(flat(reply.header_all("x-tollgate")), ["1"], "set");
    assert_eq!(flat(reply.header_all("x-tollgate-route")), ["chat"]);
    assert_eq!(
        flat(reply.header_all("x-resp-multi")),
        ["upstream", "tollgate"],
        "add appends"
    );
    assert!(
        reply.header_all("x-upstream-secret").is_empty(),
        "remove: {:?}",
        reply.headers
    );
    assert_eq!(
        reply.header("x-upstream"),
        Some("mock"),
        "untouched headers pass"
    );
    let body = reply.json();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        format!("received {} bytes", sent.body.len())
    );
}

/// Streams `events` SSE events `interval_ms` apart through `port` and asserts they reach
/// the client one by one: each event arrives before the upstream sends the next.
/// Returns the events' data.
pub async fn assert_sse_one_by_one(port: u16, upstream: &MockUpstream, id: &str) -> Vec<String> {
    const EVENTS: u32 = 6;
    let mut stream = super::client::open(port, sse_request(id, EVENTS, 150))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stream.status, 200);
    assert_eq!(
        stream
            .headers
            .get("content-type")
            .map(|v| v.to_str().unwrap()),
        Some("text/event-stream")
    );
    assert_eq!(
        stream
            .headers
            .get("x-tollgate")
            .map(|v| v.to_str().unwrap()),
        Some("1"),
        "the response policy applies to streams too"
    );
    let events = stream.all_events().await.unwrap_or_else(|e| panic!("{e}"));
    let data: Vec<String> = events.iter().map(|e| e.data.clone()).collect();
    assert_eq!(events.len(), EVENTS as usize + 1, "{data:#?}");
    for (i, d) in data.iter().take(EVENTS as usize).enumerate() {
        let v: serde_json::Value = serde_json::from_str(d).unwrap();
        assert_eq!(v["choices"][0]["delta"]["content"], format!("token{i} "));
    }
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let sent = upstream.sse_sent(id);
    assert_eq!(sent.len(), events.len());
    for i in 0..EVENTS as usize {
        assert!(
            events[i].at < sent[i + 1],
            "event {i} reached the client {:?} after the upstream sent event {} (held back, not streamed)",
            events[i].at - sent[i + 1],
            i + 1
        );
    }
    data
}
