//! The model-server simulator (`tollgate sim`) as real clients see it: the official
//! `openai` Python SDK streams chat completions from a simulated instance and reads the
//! usage; the same long prompt again is served from the prefix cache (cached tokens
//! reported, a lower time to first token); `/metrics` is read by the picker's own
//! parser; SIGTERM stops the process cleanly.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::support::llm::python;
use crate::support::sim::Sim;

/// Streams `prompts` (in order) through the `openai` SDK with `include_usage`; prints a
/// JSON list of {ttft, text, usage, endpoint, model}, the time to first token measured
/// from the request's start to the first chunk with content.
const CLIENT: &str = r#"
import json, sys, time
import openai
base_url, system, users = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
client = openai.OpenAI(base_url=base_url, api_key="sk-test", max_retries=0, timeout=30)
out = []
for user in users:
    start = time.perf_counter()
    raw = client.chat.completions.with_raw_response.create(
        model="sim-e2e", stream=True, stream_options={"include_usage": True},
        max_tokens=5,
        messages=[{"role": "system", "content": system}, {"role": "user", "content": user}])
    ttft, text, usage, model = None, [], None, None
    for chunk in raw.parse():
        model = chunk.model
        if chunk.usage is not None:
            usage = chunk.usage.model_dump()
        for c in chunk.choices:
            if c.delta and c.delta.content:
                if ttft is None:
                    ttft = time.perf_counter() - start
                text.append(c.delta.content)
    out.append({"ttft": ttft, "text": "".join(text), "usage": usage, "model": model,
                "endpoint": raw.headers.get("x-sim-endpoint")})
json.dump(out, sys.stdout)
"#;

fn stream_chats(base_url: &str, system: &str, users: &[&str]) -> Vec<Value> {
    let out = Command::new(python())
        .args(["-c", CLIENT, base_url, system])
        .arg(serde_json::to_string(users).unwrap())
        .output()
        .expect("running the openai SDK");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the SDK client failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[tokio::test]
async fn sdk_streams_and_the_second_prompt_hits_the_prefix_cache() {
    // 300 µs per uncached token: the 8,000-character system prompt (2,000 tokens) costs
    // 600 ms of prefill the first time.
    let mut sim = Sim::start(2, &["--prefill-us-per-token", "300"]);
    let system = "You are a careful assistant. ".repeat(276); // 8,004 characters
    let base_url = sim.base_url(1);
    let results = tokio::task::spawn_blocking(move || {
        stream_chats(&base_url, &system, &["What is 2+2?", "What is 2+2?"])
    })
    .await
    .unwrap();
    let (first, second) = (&results[0], &results[1]);
    for r in &results {
        assert_eq!(r["text"], "tok1 tok2 tok3 tok4 tok5", "{r}");
        assert_eq!(r["model"], "sim-e2e");
        assert_eq!(r["endpoint"], sim.addrs[1].to_string());
        // 8,004 + 1 + 12 characters → 2,005 tokens.
        assert_eq!(r["usage"]["prompt_tokens"], 2005, "{r}");
        assert_eq!(r["usage"]["completion_tokens"], 5);
        assert_eq!(r["usage"]["total_tokens"], 2010);
    }
    assert_eq!(first["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    // Every whole 64-character block: 8,017 / 64 = 125 blocks of 16 tokens.
    assert_eq!(
        second["usage"]["prompt_tokens_details"]["cached_tokens"],
        2000
    );
    let (t1, t2) = (
        first["ttft"].as_f64().unwrap(),
        second["ttft"].as_f64().unwrap(),
    );
    assert!(t1 >= 0.6, "an uncached prefill takes 600 ms, TTFT was {t1}");
    assert!(t2 < t1 / 2.0, "cached TTFT {t2} not well below {t1}");

    // The picker's parser reads both instances' metrics; only instance 1 served.
    for (i, hits) in [(0, 0.0), (1, 2000.0)] {
        let text = sim.metrics(i).await;
        let m = tollgate::epp::metrics::parse(&text)
            .expect("vLLM metric families")
            .metrics;
        assert_eq!(
            (m.running, m.waiting, m.kv_cache),
            (0.0, 0.0, 0.0),
            "{text}"
        );
        assert_eq!(
            crate::support::metric(&text, "vllm:prefix_cache_hits_total"),
            Some(hits),
            "{text}"
        );
        assert!(
            text.contains("vllm:cache_config_info{block_size=\"16\",num_gpu_blocks=\"8192\"} 1")
        );
    }

    sim.terminate();
    let status = sim.wait_exit(Duration::from_secs(10)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "exit after SIGTERM: {status:?}"
    );
}
