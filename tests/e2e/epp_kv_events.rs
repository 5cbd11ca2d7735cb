//! The endpoint picker's precise prefix cache (`prefixCache.mode: kvEvents`) in
//! tollgate's proxy over two simulated model servers, one on 127.0.0.1 and one on
//! [::1], whose KV events come from a publisher written in Python with pyzmq and
//! msgpack in vLLM's exact wire format: the pick follows the blocks the events
//! announce (and their removal) against what the approximate index remembers; malformed
//! messages and sequence gaps are counted while tollgate keeps serving; once the
//! publisher is gone and the endpoints go stale, the approximate index decides again.
//! The prompts are tokenized by the servers' own `/tokenize`.

use std::time::Duration;

use serde_json::json;

use crate::support::client::{self, Req};
use crate::support::kv_events::{removed, stored, KvPublisher};
use crate::support::sim::Sim;
use crate::support::tollgate::Tollgate;
use crate::support::{eventually, free_port, metric};

fn chat(prompt: &str) -> Req {
    Req::post(
        "/v1/chat/completions",
        json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": prompt}]})
            .to_string(),
    )
}

/// The pool's `tollgate_epp_kv_events_*` figure `name`.
async fn figure(tollgate: &Tollgate, name: &str) -> f64 {
    let text = tollgate.metrics().await;
    metric(
        &text,
        &format!("tollgate_epp_kv_events_{name}{{name=\"pool\"}}"),
    )
    .unwrap_or_else(|| panic!("no tollgate_epp_kv_events_{name} in:\n{text}"))
}

/// Waits until figure `name` reaches `at_least` (panics with the metrics after 15 s).
async fn reaches(tollgate: &Tollgate, name: &str, at_least: f64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while figure(tollgate, name).await < at_least {
        if std::time::Instant::now() > deadline {
            let text = tollgate.metrics().await;
            let kv: Vec<&str> = text.lines().filter(|l| l.contains("kv_events")).collect();
            panic!("{name} never reached {at_least}:\n{}", kv.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends `prompt` through the proxy `n` times; the endpoints that served it.
async fn serve(port: u16, prompt: &str, n: usize) -> Vec<String> {
    let mut served = Vec::with_capacity(n);
    for _ in 0..n {
        let reply = client::must(port, chat(prompt)).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        served.push(
            reply
                .header("x-sim-endpoint")
                .expect("a sim answered")
                .to_string(),
        );
    }
    served
}

/// The sim's token ids of `prompt` as a chat message (what the picker asks for).
async fn tokens(sim: &Sim, prompt: &str) -> Vec<u32> {
    let reply = client::must(
        sim.addrs[0].port(),
        Req::post(
            "/tokenize",
            json!({"model": "m", "prompt": prompt}).to_string(),
        ),
    )
    .await;
    assert_eq!(reply.status, 200);
    serde_json::from_value(reply.json()["tokens"].clone()).unwrap()
}

/// tollgate's proxy picking between endpoints `a` and `b` on prefix-cache scores only,
/// with `prefix_cache` (flow-style YAML) as its `prefixCache`.
struct Pool {
    tollgate: Tollgate,
    port: u16,
    a: String,
    b: String,
}

impl Pool {
    async fn start(a: String, b: String, prefix_cache: &str) -> Self {
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
          endpoints: ["{a}", "{b}"]
          scheduling: {{scorers: [{{type: prefixCache, weight: 1}}]}}
          prefixCache: {prefix_cache}
"#
        );
        let tollgate = Tollgate::start(&yaml).await;
        Pool {
            tollgate,
            port,
            a,
            b,
        }
    }

    /// Sends `prompt` 3 times; asserts `endpoint` served each.
    async fn lands_on(&self, prompt: &str, endpoint: &str) {
        assert_eq!(serve(self.port, prompt, 3).await, [endpoint; 3], "{prompt}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pick_follows_kv_events_and_falls_back_when_they_stop() {
    let publisher = KvPublisher::start().await;
    let (v4, v6) = (Sim::start(1, &[]), Sim::start_at("[::1]:0", 1, &[]));
    let prefix_cache = format!(
        "{{mode: kvEvents, kvEvents: {{port: {}, staleAfter: 2s}}, tokenizer: {{endpoint: {{timeout: 2s}}}}}}",
        publisher.port()
    );
    let pool = Pool::start(
        v4.addrs[0].to_string(),
        v6.addrs[0].to_string(),
        &prefix_cache,
    )
    .await;
    // Both endpoints heard from (a PUB socket drops what it sends before the
    // subscriber joins: heartbeats until both count as fresh).
    eventually("both endpoints fresh", Duration::from_secs(20), || async {
        publisher.publish("v4", "array", false, json!([])).await;
        publisher.publish("v6", "array", false, json!([])).await;
        (figure(&pool.tollgate, "fresh_endpoints").await == 2.0).then_some(())
    })
    .await;
    garbage_is_counted_and_tollgate_serves(&pool, &publisher).await;
    let batches = figure(&pool.tollgate, "batches_total").await;
    the_pick_follows_the_events(&pool, &publisher, &v4).await;
    the_approximate_index_decides_once_the_events_stop(&pool, publisher, &v4, batches + 3.0).await;
    assert_eq!(figure(&pool.tollgate, "tokenize_failures_total").await, 0.0);
}

async fn garbage_is_counted_and_tollgate_serves(pool: &Pool, publisher: &KvPublisher) {
    let sent = publisher.malformed("v6").await;
    reaches(&pool.tollgate, "malformed_total", sent as f64).await;
    publisher.gap("v6", 3).await;
    publisher.publish("v6", "array", false, json!([])).await;
    reaches(&pool.tollgate, "gaps_total", 1.0).await;
    serve(pool.port, "still serving after garbage", 1).await;
    let log = pool.tollgate.log();
    assert!(
        log.contains("kv events: dropped a malformed message"),
        "{log}"
    );
}

/// P's blocks announced on b (array form, int hashes): P goes to b. Then moved to a
/// (map form, bytes hashes): the events win over the approximate index, which saw P
/// served by b.
async fn the_pick_follows_the_events(pool: &Pool, publisher: &KvPublisher, sim: &Sim) {
    let p = "Precise prefix, tenant P: the system prompt of a long conversation. ".repeat(20);
    let tp = tokens(sim, &p).await;
    let p_blocks = (tp.len() / 16) as f64;
    assert!(p_blocks >= 20.0, "{p_blocks}");
    let batches = figure(&pool.tollgate, "batches_total").await;
    publisher
        .publish("v6", "array", false, stored(&tp, 1000))
        .await;
    reaches(&pool.tollgate, "blocks", p_blocks).await;
    pool.lands_on(&p, &pool.b).await;
    publisher
        .publish("v6", "map", false, removed(&tp, 1000))
        .await;
    publisher
        .publish("v4", "map", true, stored(&tp, 5000))
        .await;
    reaches(&pool.tollgate, "batches_total", batches + 3.0).await;
    assert_eq!(figure(&pool.tollgate, "blocks").await, p_blocks);
    pool.lands_on(&p, &pool.a).await;
}

/// Q announced on a and served there; then the events move it to b, and the publisher
/// dies before Q is sent again. Once both endpoints are stale, the approximate index
/// (Q served by a) decides: a, not b.
async fn the_approximate_index_decides_once_the_events_stop(
    pool: &Pool,
    publisher: KvPublisher,
    sim: &Sim,
    batches: f64,
) {
    let q = "Fallback prefix, tenant Q: another long system prompt to be cached. ".repeat(20);
    let tq = tokens(sim, &q).await;
    publisher
        .publish("v4", "array", true, stored(&tq, 9000))
        .await;
    reaches(&pool.tollgate, "batches_total", batches + 1.0).await;
    pool.lands_on(&q, &pool.a).await;
    publisher
        .publish("v4", "array", true, removed(&tq, 9000))
        .await;
    publisher
        .publish("v6", "array", false, stored(&tq, 9000))
        .await;
    reaches(&pool.tollgate, "batches_total", batches + 3.0).await;
    drop(publisher);
    eventually("both endpoints stale", Duration::from_secs(15), || async {
        (figure(&pool.tollgate, "fresh_endpoints").await == 0.0).then_some(())
    })
    .await;
    pool.lands_on(&q, &pool.a).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulators_own_events_show_blocks_cached_behind_the_pickers_back() {
    // Both instances publish on one port, each on its own IP, as vLLM pods would.
    let kv_port = free_port().to_string();
    let args = ["--kv-events-port", kv_port.as_str(), "--kv-blocks", "512"];
    let (v4, v6) = (Sim::start(1, &args), Sim::start_at("[::1]:0", 1, &args));
    assert_eq!(v6.kv_events, [format!("tcp://[::1]:{kv_port}")]);
    let prefix_cache = format!("{{mode: kvEvents, kvEvents: {{port: {kv_port}}}}}");
    let pool = Pool::start(
        v4.addrs[0].to_string(),
        v6.addrs[0].to_string(),
        &prefix_cache,
    )
    .await;
    let tollgate = &pool.tollgate;
    let a_port = v4.addrs[0].port();
    let direct = |prompt: String| async move {
        // Straight to a, not through the picker: only a's events can tell.
        let reply = client::must(a_port, chat(&prompt)).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    };
    // Until tollgate subscribed, a's events are lost: distinct prompts until one counts.
    let mut k = 0;
    eventually("a's events indexed", Duration::from_secs(20), || {
        k += 1;
        let prompt = format!("warm-up {k}: ").repeat(8);
        let direct = &direct;
        async move {
            direct(prompt).await;
            (figure(tollgate, "blocks").await > 0.0).then_some(())
        }
    })
    .await;
    let before = figure(tollgate, "blocks").await;
    let z = "Cached behind the picker's back by a direct request to a. ".repeat(50);
    direct(z.clone()).await;
    let z_blocks = (z.len() / 64) as f64;
    reaches(tollgate, "blocks", before + z_blocks).await;
    // The approximate index never saw z; a's events say a holds it.
    pool.lands_on(&z, &pool.a).await;
    assert_eq!(figure(tollgate, "malformed_total").await, 0.0);
}
