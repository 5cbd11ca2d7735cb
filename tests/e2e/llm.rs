//! Token accounting end to end, driven by the official Python SDKs (`openai`,
//! `anthropic`) against the mock upstream, through Envoy (ext_proc, STREAMED and
//! FULL_DUPLEX_STREAMED) and through the standalone proxy.
//!
//! For every request the usage the mock reported (set per request by `x-mock-*`
//! headers, different for every case) must be exactly what tollgate exports: the GenAI
//! metrics, its JSON access line, and — through Envoy — the `io.envoy.ai_gateway`
//! dynamic metadata, read back from Envoy's own access log. A streamed OpenAI client that
//! did not ask for usage (or said `include_usage: false`) gets no usage chunk while the
//! upstream was asked for one; SSE still arrives event by event with accounting on; and
//! malformed request JSON gets a 400 in the API's own error format.
//!
//! Also: `examples/token-accounting.yaml` runs and counts as written (its prices and CEL
//! entries included), and a stream the `openai` SDK closes right after `[DONE]` — before
//! the upstream's end of stream — is still exported as a success, metadata included.
//!
//! Each test starts one tollgate (and at most one Envoy) and runs its SDK requests in
//! one Python process per SDK (`tests/sdk/*.py --jobs`), as the SDK imports cost seconds
//! of CPU.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::client::{self, Req, SseEvent};
use crate::support::envoy::{Envoy, ListenerSpec, Mode};
use crate::support::llm::{self, Api, Case};
use crate::support::scenario::Ports;
use crate::support::tollgate::Tollgate;
use crate::support::upstream::{MockUpstream, MockUsage, Recorded};

/// One tollgate with the LLM routes, the mock behind it, and Envoy in front when asked.
struct Rig {
    upstream: MockUpstream,
    ports: Ports,
    tollgate: Tollgate,
    envoy: Option<Envoy>,
}

impl Rig {
    async fn start(envoy_modes: &[Mode]) -> Self {
        let upstream = MockUpstream::start().await;
        let ports = Ports::free();
        let tollgate = Tollgate::start(&llm::config(ports, upstream.port)).await;
        let envoy = match envoy_modes {
            [] => None,
            modes => {
                let specs: Vec<_> = modes
                    .iter()
                    .map(|m| ListenerSpec::new(ports.ext_proc, upstream.port, *m))
                    .collect();
                Some(Envoy::start(&specs).await)
            }
        };
        Rig {
            upstream,
            ports,
            tollgate,
            envoy,
        }
    }

    /// Where clients connect: Envoy's first listener, else the proxy.
    fn port(&self) -> u16 {
        self.envoy.as_ref().map_or(self.ports.proxy, |e| e.port(0))
    }

    fn adapter(&self) -> &'static str {
        match self.envoy {
            Some(_) => "ext_proc",
            None => "proxy",
        }
    }
}

/// Every SDK case through one surface, then SSE timing with accounting on.
async fn sdk_accounting(envoy_mode: Option<Mode>, tag: &str) {
    let rig = Rig::start(envoy_mode.as_slice()).await;
    let cases = llm::sdk_cases(tag);
    let results = llm::run_cases(&cases, &format!("http://127.0.0.1:{}", rig.port())).await;
    for (case, result) in cases.iter().zip(&results) {
        assert_client(case, result);
        assert_upstream(case, &rig.upstream.request(&case.id));
        assert_exported(&rig, case).await;
    }
    sse_one_by_one(&rig, tag).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdks_through_envoy_streamed() {
    sdk_accounting(Some(Mode::Streamed), "streamed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdks_through_envoy_full_duplex() {
    sdk_accounting(Some(Mode::FullDuplex), "duplex").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdks_through_the_proxy() {
    sdk_accounting(None, "proxy").await;
}

/// What the SDK saw: the mock's usage exactly as the provider sends it, the streamed
/// text, and for OpenAI streams a usage chunk exactly when the client asked for one.
fn assert_client(case: &Case, got: &Value) {
    let id = &case.id;
    assert!(
        got.get("exception").is_none() && got.get("error").is_none(),
        "{id}: the SDK failed: {got}"
    );
    let u = &case.usage;
    let provider_usage = match case.api {
        Api::OpenAi => json!({
            "prompt_tokens": u.input,
            "completion_tokens": u.output,
            "total_tokens": u.input + u.output,
            "cached_tokens": u.cached,
            "reasoning_tokens": u.reasoning,
        }),
        Api::Anthropic => json!({
            "input_tokens": u.input,
            "output_tokens": u.output,
            "cache_read_input_tokens": u.cached,
            "cache_creation_input_tokens": u.cache_creation,
        }),
    };
    let seen_usage = |usage: &Value| match case.api {
        Api::OpenAi => json!({
            "prompt_tokens": usage["prompt_tokens"],
            "completion_tokens": usage["completion_tokens"],
            "total_tokens": usage["total_tokens"],
            "cached_tokens": usage["prompt_tokens_details"]["cached_tokens"],
            "reasoning_tokens": usage["completion_tokens_details"]["reasoning_tokens"],
        }),
        Api::Anthropic => json!({
            "input_tokens": usage["input_tokens"],
            "output_tokens": usage["output_tokens"],
            "cache_read_input_tokens": usage["cache_read_input_tokens"],
            "cache_creation_input_tokens": usage["cache_creation_input_tokens"],
        }),
    };
    if !case.stream {
        assert!(
            got["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("received ")),
            "{id}: {got}"
        );
        assert_eq!(seen_usage(&got["usage"]), provider_usage, "{id}: {got}");
        return;
    }
    assert_eq!(got["text"], case.streamed_text(), "{id}: {got}");
    match case.api {
        Api::OpenAi if case.include_usage == Some(true) => {
            assert_eq!(got["usage_chunks"], 1, "{id}: asked for usage: {got}");
            assert_eq!(got["chunks"], case.events + 1, "{id}: {got}");
            assert_eq!(seen_usage(&got["usage"]), provider_usage, "{id}: {got}");
        }
        Api::OpenAi => {
            assert_eq!(
                got["usage_chunks"], 0,
                "{id}: the client did not ask for usage, yet got it: {got}"
            );
            assert_eq!(got["usage"], Value::Null, "{id}: {got}");
            assert_eq!(got["chunks"], case.events, "{id}: {got}");
        }
        Api::Anthropic => {
            assert_eq!(seen_usage(&got["usage"]), provider_usage, "{id}: {got}");
            let events = got["events"].as_array().expect("event types");
            assert_eq!(events.first(), Some(&json!("message_start")), "{id}: {got}");
            assert_eq!(events.last(), Some(&json!("message_stop")), "{id}: {got}");
        }
    }
}

/// What the upstream got: every OpenAI stream asks for usage, whatever the client said.
fn assert_upstream(case: &Case, seen: &Recorded) {
    assert_eq!(seen.path, case.api.path(), "{}", case.id);
    let body: Value = serde_json::from_slice(&seen.body).expect("the upstream got JSON");
    assert_eq!(body["model"], case.model(), "{}", case.id);
    let want = match (case.api, case.stream) {
        (Api::OpenAi, true) => json!({"include_usage": true}),
        _ => Value::Null,
    };
    assert_eq!(body["stream_options"], want, "{}: {body}", case.id);
}

/// What tollgate exported for the case: metrics, its access line, and (through Envoy)
/// the dynamic metadata in Envoy's access log.
async fn assert_exported(rig: &Rig, case: &Case) {
    let id = &case.id;
    let model = case.model();
    let expected = case.expected();

    let provider = match case.api {
        Api::OpenAi => "openai",
        Api::Anthropic => "anthropic",
    };
    let line = llm::access_line(&rig.tollgate, model).await;
    for (field, want) in [
        ("llm.input_tokens", expected.input),
        ("llm.output_tokens", expected.output),
        ("llm.cached_input_tokens", expected.cached_input),
        ("llm.reasoning_tokens", expected.reasoning),
        ("llm.total_tokens", expected.total),
    ] {
        assert_eq!(
            llm::number(&line[field]),
            Some(want as f64),
            "{id}: access log {field}: {line}"
        );
    }
    assert_eq!(line["adapter"], rig.adapter(), "{id}: {line}");
    assert_eq!(line["route"], case.api.route(), "{id}: {line}");
    // The openai SDK closes a stream once it has read `[DONE]`: whether tollgate saw the
    // upstream's end of stream first is a race, so how such an exchange ended (outcome,
    // status, error.type) is not asserted here but in
    // `openai_stream_closed_by_the_sdk_after_done_is_exported`, which forces the race.
    let sdk_hangs_up = case.api == Api::OpenAi && case.stream;
    if !sdk_hangs_up {
        assert_eq!(line["status"], 200, "{id}: {line}");
        assert_eq!(line["outcome"], "completed", "{id}: {line}");
    }
    assert_eq!(line["llm.provider"], provider, "{id}: {line}");
    assert_eq!(line["llm.stream"], case.stream, "{id}: {line}");
    assert_eq!(line["llm.usage_reported"], true, "{id}: {line}");

    // The access line is written when the exchange is over, after the export: the
    // metrics are complete by then.
    let metrics = rig.tollgate.metrics().await;
    let want: std::collections::BTreeMap<String, (f64, f64)> = expected
        .by_token_type()
        .into_iter()
        .map(|(kind, n)| (kind.to_string(), (n as f64, 1.0)))
        .collect();
    assert_eq!(
        llm::token_usage(&metrics, model),
        want,
        "{id}: gen_ai_client_token_usage (sum, count) by gen_ai_token_type"
    );
    let labels = [
        ("gen_ai_request_model", model),
        ("gen_ai_response_model", model),
        ("gen_ai_operation_name", "chat"),
        ("gen_ai_provider_name", provider),
        ("route", case.api.route()),
    ];
    let usage = llm::matching(&metrics, "gen_ai_client_token_usage_count", &labels);
    assert_eq!(
        usage.len(),
        want.len(),
        "{id}: labels {labels:?}:\n{metrics}"
    );
    let durations: Vec<(String, f64)> =
        llm::matching(&metrics, "gen_ai_server_request_duration_count", &labels)
            .into_iter()
            .map(|s| (s.labels["error_type"].clone(), s.value))
            .collect();
    assert_eq!(
        durations.len(),
        1,
        "{id}: one request duration: {durations:?}"
    );
    assert_eq!(
        durations[0].1, 1.0,
        "{id}: one request duration: {durations:?}"
    );
    if !sdk_hangs_up {
        assert_eq!(durations[0].0, "", "{id}: a success has no error_type");
    }
    let ttft = llm::matching(&metrics, "gen_ai_server_time_to_first_token_count", &labels);
    assert_eq!(
        ttft.iter().map(|s| s.value).collect::<Vec<_>>(),
        if case.stream { vec![1.0] } else { vec![] },
        "{id}: time to first token (streams only)"
    );

    if let Some(envoy) = &rig.envoy {
        let entry = envoy.access_log_entry(id).await;
        assert_eq!(entry["code"], 200, "{id}: {entry}");
        for (key, want) in expected.metadata() {
            assert_eq!(
                llm::number(&entry[format!("md_{key}")]),
                Some(want as f64),
                "{id}: %DYNAMIC_METADATA(io.envoy.ai_gateway:{key})% in Envoy's access log: {entry}"
            );
        }
    }
}

/// A streamed request with accounting on (OpenAI without `include_usage`, so tollgate
/// also removes the usage chunk; Anthropic): each event reaches the client before the
/// upstream sends the next one.
async fn sse_one_by_one(rig: &Rig, tag: &str) {
    const INTERVAL_MS: u64 = 150;
    let request = |api: Api, id: &str, events: u64| {
        Req::post(
            api.path(),
            json!({
                "model": id,
                "stream": true,
                "max_tokens": 64,
                "messages": [{"role": "user", "content": "Stream, please."}],
            })
            .to_string(),
        )
        .header("x-test-id", id)
        .header("x-mock-events", &events.to_string())
        .header("x-mock-interval-ms", &INTERVAL_MS.to_string())
    };
    let stream = |req: Req| async move {
        let mut s = client::open(rig.port(), req)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.status, 200);
        s.all_events().await.unwrap_or_else(|e| panic!("{e}"))
    };
    let openai_id = format!("gpt-{tag}-timing");
    let anthropic_id = format!("claude-{tag}-timing");
    let (openai, anthropic) = tokio::join!(
        stream(request(Api::OpenAi, &openai_id, 6)),
        stream(request(Api::Anthropic, &anthropic_id, 4)),
    );

    // OpenAI: 6 content chunks and [DONE] reach the client; the upstream also sent the
    // usage chunk tollgate asked for, which the client never sees.
    let data: Vec<&str> = openai.iter().map(|e| e.data.as_str()).collect();
    assert_eq!(data.len(), 7, "{data:#?}");
    assert_eq!(data.last(), Some(&"[DONE]"));
    assert!(
        data.iter().all(|d| !d.contains("\"usage\"")),
        "no usage chunk for a client that did not ask: {data:#?}"
    );
    let sent = rig.upstream.sse_sent(&openai_id);
    assert_eq!(sent.len(), 8, "6 content chunks, the usage chunk, [DONE]");
    assert_arrived_one_by_one(&openai[..6], &sent, &openai_id);

    // Anthropic: every event passes (message_start, content_block_start, ping, 4 deltas,
    // content_block_stop, message_delta, message_stop).
    let sent = rig.upstream.sse_sent(&anthropic_id);
    assert_eq!(anthropic.len(), 10);
    assert_eq!(sent.len(), anthropic.len());
    assert_arrived_one_by_one(&anthropic[..9], &sent, &anthropic_id);

    // And both were counted.
    for (model, output) in [(&openai_id, 6.0), (&anthropic_id, 4.0)] {
        let metrics = llm::metrics_with(&rig.tollgate, model).await;
        assert_eq!(
            llm::token_usage(&metrics, model).get("output").map(|v| v.0),
            Some(output),
            "{model}"
        );
    }
}

/// Event `i` reached the client before the upstream sent event `i + 1`.
fn assert_arrived_one_by_one(events: &[SseEvent], sent: &[std::time::Instant], id: &str) {
    for (i, e) in events.iter().enumerate() {
        assert!(
            e.at < sent[i + 1],
            "{id}: event {i} reached the client {:?} after the upstream sent event {} (held back, not streamed)",
            e.at - sent[i + 1],
            i + 1
        );
    }
}

/// Malformed request JSON on an accounting route: 400 in the API's own error format,
/// from the proxy and through Envoy in both streamed modes; nothing reaches the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_is_a_400_in_the_apis_format() {
    let rig = Rig::start(&[Mode::Streamed, Mode::FullDuplex]).await;
    let envoy = rig.envoy.as_ref().unwrap();
    let surfaces = [
        ("proxy", rig.ports.proxy),
        ("envoy-streamed", envoy.port(0)),
        ("envoy-duplex", envoy.port(1)),
    ];
    for (surface, port) in surfaces {
        for api in [Api::OpenAi, Api::Anthropic] {
            let id = format!("bad-json-{surface}-{}", api.route());
            let reply = client::must(
                port,
                Req::post(api.path(), r#"{"model": "gpt-4o", "messages": [tru"#)
                    .header("x-test-id", &id),
            )
            .await;
            assert_eq!(reply.status, 400, "{id}: {}", reply.text());
            assert_eq!(
                reply.header("content-type"),
                Some("application/json"),
                "{id}"
            );
            let body = reply.json();
            let message = match api {
                Api::OpenAi => {
                    assert_eq!(
                        body["error"]["type"], "invalid_request_error",
                        "{id}: {body}"
                    );
                    assert_eq!(
                        body["error"]["code"], "invalid_request_error",
                        "{id}: {body}"
                    );
                    assert_eq!(body["error"]["param"], Value::Null, "{id}: {body}");
                    assert_eq!(
                        body.as_object().unwrap().len(),
                        1,
                        "{id}: only `error`: {body}"
                    );
                    &body["error"]["message"]
                }
                Api::Anthropic => {
                    assert_eq!(body["type"], "error", "{id}: {body}");
                    assert_eq!(
                        body["error"]["type"], "invalid_request_error",
                        "{id}: {body}"
                    );
                    &body["error"]["message"]
                }
            };
            assert!(
                message.as_str().is_some_and(|m| !m.is_empty()),
                "{id}: {body}"
            );
            if surface != "proxy" {
                let entry = envoy.access_log_entry(&id).await;
                assert_eq!(entry["code"], 400, "{id}: {entry}");
            }
        }
    }
    assert!(
        rig.upstream.requests().is_empty(),
        "a malformed request must not reach the upstream: {:#?}",
        rig.upstream.requests()
    );
    // tollgate counted each refusal.
    crate::support::eventually(
        "six 400s in tollgate_requests_total",
        Duration::from_secs(5),
        || async {
            let metrics = rig.tollgate.metrics().await;
            let refused: f64 = llm::samples(&metrics, "tollgate_requests_total")
                .iter()
                .filter(|s| s.labels.get("status").map(String::as_str) == Some("400"))
                .map(|s| s.value)
                .sum();
            (refused == 6.0).then_some(())
        },
    )
    .await;
}

/// `examples/token-accounting.yaml` as written, on free ports with the mock as both
/// backends, behind Envoy: both routes count, the price table prices, and every
/// metadata entry — the CEL ones included — reaches Envoy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_accounting_example_counts() {
    let upstream = MockUpstream::start().await;
    let ports = Ports::free();
    let tollgate = Tollgate::start(&example_on(ports, upstream.port)).await;
    let envoy = Envoy::start(&[ListenerSpec::new(
        ports.ext_proc,
        upstream.port,
        Mode::Streamed,
    )])
    .await;

    let openai = Req::post(
        "/v1/chat/completions",
        json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]})
            .to_string(),
    )
    .header("x-test-id", "example-openai")
    .header("x-mock-prompt-tokens", "1000")
    .header("x-mock-cached-tokens", "400")
    .header("x-mock-completion-tokens", "200")
    .header("x-mock-reasoning-tokens", "50");
    let reply = client::must(envoy.port(0), openai).await;
    assert_eq!(reply.status, 200, "{}", reply.text());

    let anthropic = Req::post(
        "/v1/messages",
        json!({"model": "claude-sonnet-4-5", "max_tokens": 64, "stream": true,
               "messages": [{"role": "user", "content": "Hi"}]})
        .to_string(),
    )
    .header("x-test-id", "example-anthropic")
    .header("x-mock-events", "4")
    .header("x-mock-interval-ms", "1")
    .header("x-mock-input-tokens", "100")
    .header("x-mock-cache-read-tokens", "1000")
    .header("x-mock-cache-creation-tokens", "200")
    .header("x-mock-output-tokens", "50");
    let mut stream = client::open(envoy.port(0), anthropic)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stream.status, 200);
    assert_eq!(stream.all_events().await.unwrap().len(), 10);

    // (id, model, Envoy metadata, cost in US dollars from the example's price table)
    let cases = [
        (
            "example-openai",
            "gpt-4o-mini",
            vec![
                ("llm_input_token", 1000),
                ("llm_cached_input_token", 400),
                ("llm_output_token", 200),
                ("llm_reasoning_token", 50),
                ("llm_total_token", 1200),
                // input - cached + cached / 10 + output * 4
                ("llm_weighted_token", 600 + 40 + 800),
            ],
            (600.0 * 0.15 + 400.0 * 0.075 + 200.0 * 0.60) / 1e6,
        ),
        (
            "example-anthropic",
            "claude-sonnet-4-5",
            vec![
                ("llm_input_token", 1300),
                ("llm_cached_input_token", 1000),
                ("llm_cache_creation_input_token", 200),
                ("llm_output_token", 50),
                ("llm_total_token", 1350),
                // not claude-opus: total tokens
                ("llm_weighted_token", 1350),
            ],
            (100.0 * 3.00 + 1000.0 * 0.30 + 200.0 * 3.75 + 50.0 * 15.00) / 1e6,
        ),
    ];
    for (id, model, metadata, cost) in cases {
        let entry = envoy.access_log_entry(id).await;
        for (key, want) in metadata {
            assert_eq!(
                llm::number(&entry[format!("md_{key}")]),
                Some(want as f64),
                "{id}: {key}: {entry}"
            );
        }
        let line = llm::access_line(&tollgate, model).await;
        let logged = llm::number(&line["llm.cost_usd"]).unwrap_or(-1.0);
        assert!(
            (logged - cost).abs() < 1e-12,
            "{id}: cost {logged} != {cost}: {line}"
        );
        let metrics = llm::metrics_with(&tollgate, model).await;
        let counted: f64 = llm::matching(
            &metrics,
            "tollgate_llm_cost_usd_total",
            &[("gen_ai_request_model", model)],
        )
        .iter()
        .map(|s| s.value)
        .sum();
        assert!(
            (counted - cost).abs() < 1e-12,
            "{id}: cost metric {counted} != {cost}"
        );
    }
    assert!(
        !tollgate.log().contains("metadata expression failed"),
        "{}",
        tollgate.log()
    );
}

/// The example with its ports replaced: the proxy and ext_proc on `ports`, both
/// backends on `upstream`, its `admin` section dropped (`Tollgate::start` adds one).
fn example_on(ports: Ports, upstream: u16) -> String {
    let path = crate::support::repo_root().join("examples/token-accounting.yaml");
    let text = std::fs::read_to_string(&path).expect("reading the example");
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.starts_with("admin:") {
            while lines.peek().is_some_and(|l| l.starts_with(' ')) {
                lines.next();
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    for (from, to) in [
        (
            "- port: 8080".to_string(),
            format!("- port: {}", ports.proxy),
        ),
        (
            "127.0.0.1:50051".to_string(),
            format!("127.0.0.1:{}", ports.ext_proc),
        ),
        (
            "127.0.0.1:8000".to_string(),
            format!("127.0.0.1:{upstream}"),
        ),
        (
            "127.0.0.1:8001".to_string(),
            format!("127.0.0.1:{upstream}"),
        ),
    ] {
        assert!(out.contains(&from), "the example no longer has {from:?}");
        out = out.replace(&from, &to);
    }
    out
}

/// The `openai` SDK closes a stream as soon as it has read `data: [DONE]`. When the
/// upstream's end of stream comes later than that (here it keeps the stream open for a
/// second after `[DONE]`), the exchange is still one whose whole response was delivered:
/// its usage must be exported as a success, and through Envoy the dynamic metadata must
/// reach Envoy (a rate limit with `apply_on_stream_done` reads it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_stream_closed_by_the_sdk_after_done_is_exported() {
    let rig = Rig::start(&[Mode::Streamed]).await;
    let envoy = rig.envoy.as_ref().unwrap();
    let surfaces = [("proxy", rig.ports.proxy), ("envoy", envoy.port(0))];
    let cases: Vec<Case> = surfaces
        .iter()
        .enumerate()
        .map(|(i, (surface, _))| Case {
            id: format!("gpt-after-done-{surface}"),
            api: Api::OpenAi,
            stream: true,
            include_usage: None,
            usage: MockUsage {
                input: 70 + i as u64,
                output: 7 + i as u64,
                cached: 3,
                cache_creation: 0,
                reasoning: 2,
            },
            events: 3,
        })
        .collect();
    let jobs = cases
        .iter()
        .zip(surfaces)
        .map(|(case, (_, port))| {
            let mut job = case.job(&format!("http://127.0.0.1:{port}"));
            job["headers"]["x-mock-linger-ms"] = "1000".into();
            job
        })
        .collect();
    let results = llm::run_sdk("openai_client.py", jobs).await;
    for (case, result) in cases.iter().zip(&results) {
        let id = &case.id;
        assert_client(case, result);
        let expected = case.expected();
        let line = llm::access_line(&rig.tollgate, case.model()).await;
        assert_eq!(
            llm::number(&line["llm.total_tokens"]),
            Some(expected.total as f64),
            "{id}: {line}"
        );
        let metrics = rig.tollgate.metrics().await;
        let durations = llm::matching(
            &metrics,
            "gen_ai_server_request_duration_count",
            &[("gen_ai_request_model", case.model())],
        );
        assert_eq!(
            durations
                .iter()
                .map(|s| (s.labels["error_type"].as_str(), s.value))
                .collect::<Vec<_>>(),
            [("", 1.0)],
            "{id}: the whole stream, [DONE] included, reached the client: no error.type"
        );
        if id.ends_with("envoy") {
            let entry = envoy.access_log_entry(id).await;
            for (key, want) in expected.metadata() {
                assert_eq!(
                    llm::number(&entry[format!("md_{key}")]),
                    Some(want as f64),
                    "{id}: %DYNAMIC_METADATA(io.envoy.ai_gateway:{key})% in Envoy's access log: {entry}"
                );
            }
        }
    }
}

/// `responseHeaders: true`: a non-streamed completion carries its usage as
/// `x-tollgate-*` headers, through the proxy and through Envoy (STREAMED static mode,
/// which tollgate overrides to BUFFERED for the response so the headers can follow the
/// body); a stream carries none and still streams.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_headers_on_non_streamed_responses() {
    let upstream = MockUpstream::start().await;
    let ports = Ports::free();
    let yaml = llm::config(ports, upstream.port).replace(
        "tokenAccounting:\n",
        "tokenAccounting:\n          responseHeaders: true\n",
    );
    assert!(yaml.contains("responseHeaders: true"));
    let tollgate = Tollgate::start(&yaml).await;
    let envoy = Envoy::start(&[ListenerSpec::new(
        ports.ext_proc,
        upstream.port,
        Mode::Streamed,
    )])
    .await;
    let body = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hello"}]}"#;
    for (surface, port) in [("proxy", ports.proxy), ("envoy", envoy.port(0))] {
        let id = format!("usage-headers-{surface}");
        let reply = client::must(
            port,
            Req::post("/v1/chat/completions", body)
                .header("x-test-id", &id)
                .header("x-mock-prompt-tokens", "21")
                .header("x-mock-completion-tokens", "8"),
        )
        .await;
        assert_eq!(reply.status, 200, "{surface}: {}", reply.text());
        let usage = &reply.json()["usage"];
        let (prompt, completion) = (
            usage["prompt_tokens"].as_u64().unwrap(),
            usage["completion_tokens"].as_u64().unwrap(),
        );
        assert_eq!(
            reply.header("x-tollgate-input-tokens"),
            Some(prompt.to_string().as_str()),
            "{surface}"
        );
        assert_eq!(
            reply.header("x-tollgate-output-tokens"),
            Some(completion.to_string().as_str()),
            "{surface}"
        );
        assert_eq!(
            reply.header("x-tollgate-total-tokens"),
            Some((prompt + completion).to_string().as_str()),
            "{surface}"
        );
        let streamed = client::must(
            port,
            Req::post(
                "/v1/chat/completions",
                r#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
            )
            .header("x-test-id", &format!("{id}-stream")),
        )
        .await;
        assert_eq!(streamed.status, 200, "{surface}");
        assert!(
            streamed.header("x-tollgate-total-tokens").is_none(),
            "{surface}: no usage headers on a stream"
        );
        assert!(streamed.text().contains("data: [DONE]"), "{surface}");
    }
    drop(tollgate);
}
