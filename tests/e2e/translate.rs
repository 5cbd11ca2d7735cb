//! `llmProvider` translation end to end: the official `openai` SDK against a route whose
//! provider is Anthropic (the mock answers Messages), and the official `anthropic` SDK
//! against a route whose provider is OpenAI-compatible (the mock answers Chat
//! Completions), streamed and not, with a tool round and a new tool call, through the
//! standalone proxy and through Envoy (ext_proc, FULL_DUPLEX_STREAMED).
//!
//! For every request: the SDK parses what it gets (text, tool call, finish reason); its
//! usage is what the mock reported, in the client's API's terms (cache reads moved
//! between `prompt_tokens` and `input_tokens`); the mock received the provider's API on
//! the provider's path (system prompt, tool use and tool result carried over); tollgate
//! counted the exchange once, with the same numbers; and an upstream error reaches the
//! SDK as an error of its own API with the provider's message.

use serde_json::{json, Value};

use crate::support::envoy::{Envoy, ListenerSpec, Mode};
use crate::support::llm;
use crate::support::scenario::Ports;
use crate::support::tollgate::Tollgate;
use crate::support::upstream::{MockUpstream, Recorded, TOOL_ARGUMENTS, TOOL_CALL_ID};

/// Two translating routes on one proxy port (and on Envoy's when there is one).
fn config(ports: Ports, upstream: u16) -> String {
    format!(
        r#"extProc:
  address: "127.0.0.1:{ext_proc}"
logging: {{ format: json }}
upstream: {{ connectTimeout: 1s, requestTimeout: 10s }}
binds:
- port: {proxy}
  listeners:
  - name: llm
    routes:
    - name: to-anthropic
      matches: [ {{ path: {{ pathPrefix: /to-anthropic/ }}, method: POST }} ]
      policies:
        llmProvider: {{ provider: anthropic }}
        tokenAccounting: {{}}
      backends: [ {{ host: "127.0.0.1:{upstream}" }} ]
    - name: to-openai
      matches: [ {{ path: {{ pathPrefix: /to-openai/ }}, method: POST }} ]
      policies:
        llmProvider: {{ provider: openAI }}
        tokenAccounting: {{}}
      backends: [ {{ host: "127.0.0.1:{upstream}" }} ]
"#,
        ext_proc = ports.ext_proc,
        proxy = ports.proxy,
    )
}

/// One SDK request.
#[derive(Clone, Debug)]
struct Case {
    id: String,
    /// The client is the `openai` SDK (provider Anthropic); else the `anthropic` SDK.
    openai_client: bool,
    stream: bool,
    tools: bool,
}

impl Case {
    fn all(tag: &str) -> Vec<Case> {
        let mut cases = Vec::new();
        for openai_client in [true, false] {
            for stream in [false, true] {
                for tools in [false, true] {
                    let who = if openai_client { "oa2an" } else { "an2oa" };
                    cases.push(Case {
                        id: format!("tr-{tag}-{who}-s{}-t{}", stream as u8, tools as u8),
                        openai_client,
                        stream,
                        tools,
                    });
                }
            }
        }
        cases
    }

    /// The mock's usage headers: provider-side counts, distinct per case.
    fn mock_headers(&self, n: u64) -> Value {
        let mut h = json!({"x-test-id": self.id, "x-mock-events": "4", "x-mock-interval-ms": "5"});
        if self.openai_client {
            // The mock is Anthropic: input excludes cache reads and writes.
            h["x-mock-input-tokens"] = (20 + n).to_string().into();
            h["x-mock-output-tokens"] = (7 + n).to_string().into();
            h["x-mock-cache-read-tokens"] = (100 + n).to_string().into();
            h["x-mock-cache-creation-tokens"] = "5".into();
        } else {
            h["x-mock-prompt-tokens"] = (130 + n).to_string().into();
            h["x-mock-completion-tokens"] = (9 + n).to_string().into();
            h["x-mock-cached-tokens"] = (30 + n).to_string().into();
        }
        h
    }

    fn job(&self, base: &str, n: u64) -> Value {
        let mut job = json!({
            "model": self.id,
            "prompt": format!("And in Oslo? ({})", self.id),
            "stream": self.stream,
            "tools": self.tools,
            "headers": self.mock_headers(n),
        });
        if self.openai_client {
            job["base_url"] = format!("{base}/to-anthropic/v1").into();
            if self.stream {
                job["include_usage"] = true.into();
            }
        } else {
            job["base_url"] = format!("{base}/to-openai").into();
        }
        job
    }
}

async fn translated_sdks(envoy_mode: Option<Mode>, tag: &str) {
    let upstream = MockUpstream::start().await;
    let ports = Ports::free();
    let tollgate = Tollgate::start(&config(ports, upstream.port)).await;
    let envoy = match envoy_mode {
        Some(mode) => {
            Some(Envoy::start(&[ListenerSpec::new(ports.ext_proc, upstream.port, mode)]).await)
        }
        None => None,
    };
    let port = envoy.as_ref().map_or(ports.proxy, |e| e.port(0));
    let base = format!("http://127.0.0.1:{port}");
    let cases = Case::all(tag);
    let jobs = |openai: bool| -> Vec<Value> {
        cases
            .iter()
            .enumerate()
            .filter(|(_, c)| c.openai_client == openai)
            .map(|(n, c)| c.job(&base, n as u64))
            .collect()
    };
    let (openai, anthropic) = tokio::join!(
        llm::run_sdk("openai_client.py", jobs(true)),
        llm::run_sdk("anthropic_client.py", jobs(false)),
    );
    let (mut openai, mut anthropic) = (openai.into_iter(), anthropic.into_iter());
    for (n, case) in cases.iter().enumerate() {
        let got = if case.openai_client {
            openai.next()
        } else {
            anthropic.next()
        }
        .unwrap();
        let seen = upstream.request(&case.id);
        let counts = if case.openai_client {
            assert_openai_client(case, n as u64, &got, &seen)
        } else {
            assert_anthropic_client(case, n as u64, &got, &seen)
        };
        assert_counted_once(&tollgate, case, counts).await;
    }
    upstream_errors_take_the_clients_shape(&base).await;
}

/// (input, output, cached) as tollgate should count them: the client's API's view.
type Counts = (u64, u64, u64);

fn assert_openai_client(case: &Case, n: u64, got: &Value, seen: &Recorded) -> Counts {
    let id = &case.id;
    assert!(
        got.get("exception").is_none() && got.get("error").is_none(),
        "{id}: {got}"
    );
    // The upstream got Messages on Anthropic's path.
    assert_eq!(seen.path, "/v1/messages", "{id}");
    assert_eq!(
        seen.header("anthropic-version").as_deref(),
        Some("2023-06-01"),
        "{id}"
    );
    let body: Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(body["model"], case.id.as_str(), "{id}");
    assert_eq!(
        body["max_tokens"], 4096,
        "{id}: Messages requires max_tokens"
    );
    assert_eq!(
        body["stream"].as_bool().unwrap_or(false),
        case.stream,
        "{id}"
    );
    assert!(body.get("stream_options").is_none(), "{id}: {body}");
    if case.tools {
        assert_eq!(body["system"], "You answer with tools.", "{id}");
        assert_eq!(body["tools"][0]["name"], "weather", "{id}");
        assert_eq!(
            body["tools"][0]["input_schema"]["required"],
            json!(["city"]),
            "{id}"
        );
        assert_eq!(
            body["messages"][1]["content"][0],
            json!({"type": "tool_use", "id": "call_paris", "name": "weather", "input": {"city": "Paris"}}),
            "{id}"
        );
        assert_eq!(
            body["messages"][2]["content"][0],
            json!({"type": "tool_result", "tool_use_id": "call_paris", "content": "12 C, cloudy"}),
            "{id}"
        );
        assert_eq!(
            got["tool_calls"],
            json!([{"id": TOOL_CALL_ID, "name": "weather", "arguments": TOOL_ARGUMENTS}]),
            "{id}"
        );
        assert_eq!(got["finish_reason"], "tool_calls", "{id}");
    } else {
        assert_eq!(got["tool_calls"], json!([]), "{id}");
        assert_eq!(got["finish_reason"], "stop", "{id}");
    }
    let want_text = if case.stream {
        "token0 token1 token2 token3 ".to_string()
    } else {
        format!("received {} bytes", seen.body.len())
    };
    assert_eq!(got["text"], want_text, "{id}");
    // Anthropic's counts, in OpenAI's terms: cache reads and writes are prompt tokens.
    let (input, output, read) = (20 + n, 7 + n, 100 + n);
    let prompt = input + read + 5;
    let usage = &got["usage"];
    assert_eq!(usage["prompt_tokens"], prompt, "{id}: {usage}");
    assert_eq!(usage["completion_tokens"], output, "{id}: {usage}");
    assert_eq!(usage["total_tokens"], prompt + output, "{id}: {usage}");
    assert_eq!(
        usage["prompt_tokens_details"]["cached_tokens"], read,
        "{id}: {usage}"
    );
    if case.stream {
        assert_eq!(got["usage_chunks"], 1, "{id}: {got}");
    }
    (prompt, output, read)
}

fn assert_anthropic_client(case: &Case, n: u64, got: &Value, seen: &Recorded) -> Counts {
    let id = &case.id;
    assert!(
        got.get("exception").is_none() && got.get("error").is_none(),
        "{id}: {got}"
    );
    // The upstream got Chat Completions on OpenAI's path.
    assert_eq!(seen.path, "/v1/chat/completions", "{id}");
    let body: Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(body["model"], case.id.as_str(), "{id}");
    assert_eq!(body["max_tokens"], 64, "{id}");
    if case.stream {
        assert_eq!(
            body["stream_options"]["include_usage"], true,
            "{id}: usage is asked for"
        );
    }
    if case.tools {
        let messages = body["messages"].as_array().unwrap();
        assert_eq!(
            messages[0],
            json!({"role": "system", "content": "You answer with tools."}),
            "{id}"
        );
        assert_eq!(
            messages[2]["tool_calls"][0]["function"]["name"], "weather",
            "{id}: {body}"
        );
        assert_eq!(
            messages[3],
            json!({"role": "tool", "tool_call_id": "toolu_paris", "content": "12 C, cloudy"}),
            "{id}"
        );
        assert_eq!(
            body["tools"][0]["function"]["parameters"]["required"],
            json!(["city"]),
            "{id}"
        );
        assert_eq!(
            got["tool_uses"],
            json!([{"id": TOOL_CALL_ID, "name": "weather", "input": {"city": "Oslo"}}]),
            "{id}"
        );
        assert_eq!(got["stop_reason"], "tool_use", "{id}");
    } else {
        assert_eq!(got["tool_uses"], json!([]), "{id}");
        assert_eq!(got["stop_reason"], "end_turn", "{id}");
    }
    let want_text = if case.stream {
        "token0 token1 token2 token3 ".to_string()
    } else {
        format!("received {} bytes", seen.body.len())
    };
    assert_eq!(got["text"], want_text, "{id}");
    // OpenAI's counts, in Anthropic's terms: cache reads are not input tokens.
    let (prompt, output, cached) = (130 + n, 9 + n, 30 + n);
    let usage = &got["usage"];
    assert_eq!(usage["input_tokens"], prompt - cached, "{id}: {usage}");
    assert_eq!(usage["output_tokens"], output, "{id}: {usage}");
    assert_eq!(usage["cache_read_input_tokens"], cached, "{id}: {usage}");
    (prompt, output, cached)
}

/// tollgate's access line and metrics: the exchange counted once, as the client saw it.
async fn assert_counted_once(tollgate: &Tollgate, case: &Case, (input, output, cached): Counts) {
    let id = &case.id;
    let line = llm::access_line(tollgate, &case.id).await;
    for (field, want) in [
        ("llm.input_tokens", input),
        ("llm.output_tokens", output),
        ("llm.cached_input_tokens", cached),
        ("llm.total_tokens", input + output),
    ] {
        assert_eq!(
            llm::number(&line[field]),
            Some(want as f64),
            "{id}: {field}: {line}"
        );
    }
    assert_eq!(line["llm.usage_reported"], true, "{id}: {line}");
    let provider = if case.openai_client {
        "anthropic"
    } else {
        "openai"
    };
    assert_eq!(
        line["llm.provider"], provider,
        "{id}: the provider called: {line}"
    );
    let metrics = tollgate.metrics().await;
    let usage = llm::token_usage(&metrics, &case.id);
    assert_eq!(usage["input"], (input as f64, 1.0), "{id}: counted once");
    assert_eq!(usage["output"], (output as f64, 1.0), "{id}: counted once");
}

/// A provider's 429 reaches each SDK as its own API's error, with the provider's message.
async fn upstream_errors_take_the_clients_shape(base: &str) {
    let headers = json!({"x-mock-status": "429"});
    let openai = llm::run_sdk(
        "openai_client.py",
        vec![json!({"base_url": format!("{base}/to-anthropic/v1"), "model": "m", "headers": headers})],
    )
    .await;
    let err = &openai[0]["error"];
    assert_eq!(err["status"], 429, "{openai:?}");
    assert_eq!(
        err["body"]["message"], "mock provider error 429",
        "{openai:?}"
    );
    assert_eq!(err["body"]["type"], "rate_limit_error", "{openai:?}");
    let anthropic = llm::run_sdk(
        "anthropic_client.py",
        vec![json!({"base_url": format!("{base}/to-openai"), "model": "m", "headers": headers})],
    )
    .await;
    let err = &anthropic[0]["error"];
    assert_eq!(err["status"], 429, "{anthropic:?}");
    assert_eq!(err["body"]["type"], "error", "{anthropic:?}");
    assert_eq!(
        err["body"]["error"]["type"], "rate_limit_error",
        "{anthropic:?}"
    );
    assert_eq!(
        err["body"]["error"]["message"], "mock provider error 429",
        "{anthropic:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdks_across_providers_through_the_proxy() {
    translated_sdks(None, "proxy").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdks_across_providers_through_envoy_full_duplex() {
    translated_sdks(Some(Mode::FullDuplex), "duplex").await;
}
