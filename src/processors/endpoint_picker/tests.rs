//! The endpoint picker driven through an `Exchange`: the pick goes in a late request
//! header, the `envoy.lb` metadata and a route-cache clear; scores follow the scraped
//! metrics and the prefix index; the subset hint restricts the pick; bad bodies get 400
//! and an empty subset 503.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::{EndpointPickerFactory, DESTINATION, DROPPED_REASON};
use crate::epp::EndpointMetrics;
use crate::pipeline::testing::{
    build_error, exchange_on, header_map, pipeline_with, receive_with, response_headers, send,
};
use crate::pipeline::{Adapter, Exchange, Headers, LocalReply, ProcessorFactory, Verdict};

fn factory(endpoints: &[&str]) -> Arc<EndpointPickerFactory> {
    let yaml = format!("endpoints: {endpoints:?}");
    let policy: crate::config::EndpointPickerPolicy = serde_yaml::from_str(&yaml).unwrap();
    Arc::new(
        EndpointPickerFactory::new(&policy, &crate::services::Services::new(), "epp", "p").unwrap(),
    )
}

fn set(f: &EndpointPickerFactory, i: usize, waiting: f64, kv_cache: f64) {
    f.pool().set_metrics(
        i,
        Ok(EndpointMetrics {
            waiting,
            running: 0.0,
            kv_cache,
        }),
        Instant::now(),
    );
}

fn exchange(f: &Arc<EndpointPickerFactory>, method: &str) -> Exchange {
    let factories: Vec<Arc<dyn ProcessorFactory>> = vec![f.clone()];
    let p = pipeline_with("", "epp", factories);
    exchange_on(&p, "epp", Adapter::Proxy, method, "/v1/chat/completions")
}

fn chat(prompt: &str) -> Bytes {
    Bytes::from(
        serde_json::json!({"model": "m", "messages": [{"role": "user", "content": prompt}]})
            .to_string(),
    )
}

/// Runs the request path; the pick (late header) or the reply.
async fn run(
    ex: &mut Exchange,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Result<String, LocalReply> {
    run_as(ex, headers, body, false).await
}

/// [`run`] with the body whole, or `cut`: only its start, all the transport sends
/// (Envoy's BUFFERED_PARTIAL past its buffer limit).
async fn run_as(
    ex: &mut Exchange,
    headers: &[(&str, &str)],
    body: Bytes,
    cut: bool,
) -> Result<String, LocalReply> {
    let mut h = Headers::new(header_map(headers));
    if let Verdict::Respond(r) = ex.request_headers(&mut h).await {
        return Err(r);
    }
    for k in [
        "x-gateway-destination-endpoint",
        "x-llm-d-inference-objective",
    ] {
        assert!(h.map().get(k).is_none(), "{k} stripped");
    }
    if let Verdict::Respond(r) = ex.request_body(body, !cut, cut).await {
        return Err(r);
    }
    let late = std::mem::take(&mut ex.cx.late_request_headers);
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].0.as_str(), DESTINATION);
    let pick = late[0].1.to_str().unwrap().to_string();
    assert_eq!(
        ex.cx.dynamic_metadata["envoy.lb"][DESTINATION],
        serde_json::json!(pick),
        "metadata equals the header"
    );
    assert!(ex.cx.clear_route_cache);
    Ok(pick)
}

#[tokio::test]
async fn picks_the_least_loaded_and_overwrites_a_spoofed_destination() {
    let f = factory(&["127.0.0.11:8000", "127.0.0.12:8000", "127.0.0.13:8000"]);
    set(&f, 0, 9.0, 0.9);
    set(&f, 1, 0.0, 0.1);
    set(&f, 2, 5.0, 0.5);
    let mut ex = exchange(&f, "POST");
    let pick = run(
        &mut ex,
        &[
            ("x-gateway-destination-endpoint", "6.6.6.6:1"),
            ("x-llm-d-inference-objective", "-1"),
        ],
        chat("hi"),
    )
    .await
    .unwrap();
    assert_eq!(pick, "127.0.0.12:8000");
}

#[tokio::test]
async fn a_shared_prefix_sticks_to_the_endpoint_that_has_it() {
    let f = factory(&[
        "127.0.0.11:8000",
        "127.0.0.12:8000",
        "127.0.0.13:8000",
        "127.0.0.14:8000",
    ]);
    let system = "You are a helpful assistant for the ACME corporation. ".repeat(20);
    let first = run(
        &mut exchange(&f, "POST"),
        &[],
        chat(&format!("{system} question one")),
    )
    .await
    .unwrap();
    for i in 0..10 {
        let again = run(
            &mut exchange(&f, "POST"),
            &[],
            chat(&format!("{system} question {i}")),
        )
        .await
        .unwrap();
        assert_eq!(again, first, "prefix-cache affinity");
    }
}

#[tokio::test]
async fn the_subset_hint_restricts_the_pick() {
    let f = factory(&["127.0.0.11:8000", "127.0.0.12:8000", "[::1]:8000"]);
    set(&f, 0, 0.0, 0.0);
    set(&f, 1, 0.0, 0.0);
    set(&f, 2, 50.0, 0.99);
    let mut ex = exchange(&f, "POST");
    ex.cx.endpoint_subset = Some(vec!["[::1]:8000".into(), "192.168.0.9:1".into()]);
    assert_eq!(run(&mut ex, &[], chat("x")).await.unwrap(), "[::1]:8000");

    let mut ex = exchange(&f, "POST");
    ex.cx.endpoint_subset = Some(vec!["192.168.0.9:1".into()]);
    let reply = run(&mut ex, &[], chat("x")).await.unwrap_err();
    assert_eq!(reply.status, 503);
    assert_eq!(reply.headers[DROPPED_REASON], "rejected-no-endpoints");

    let mut ex = exchange(&f, "POST");
    ex.cx.endpoint_subset = Some(Vec::new());
    assert_eq!(run(&mut ex, &[], chat("x")).await.unwrap_err().status, 503);
}

#[tokio::test]
async fn bad_bodies_get_400() {
    let f = factory(&["127.0.0.11:8000"]);
    for body in [&b"not json"[..], br#"{"messages":[]}"#, br#"{"model":5}"#] {
        let reply = run(&mut exchange(&f, "POST"), &[], Bytes::from_static(body))
            .await
            .unwrap_err();
        assert_eq!(reply.status, 400, "{}", String::from_utf8_lossy(body));
        assert_eq!(reply.headers[DROPPED_REASON], "rejected-invalid-request");
        let json: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(json["error"]["type"], "invalid_request_error", "{json}");
    }
}

#[tokio::test]
async fn a_cut_body_is_picked_on_its_start_unless_that_cannot_do() {
    let prompt = "y".repeat(100_000);
    let first = |body: &Bytes| body.slice(..32_768);
    let model_first = Bytes::from(format!(
        r#"{{"model":"m","messages":[{{"role":"user","content":"{prompt}"}}]}}"#
    ));
    // `chat` writes the model after the messages, as the SDKs do.
    let model_last = chat(&prompt);
    let f = factory(&["127.0.0.11:8000"]);
    for (path, headers) in [
        ("/v1/chat/completions", &[][..]),
        // Model last, named by a router in front.
        ("/v1/chat/completions", &[("x-gateway-model-name", "m")][..]),
        // Not an API tollgate knows: read as bytes.
        ("/v1/custom", &[][..]),
    ] {
        let body = if headers.is_empty() {
            &model_first
        } else {
            &model_last
        };
        let p = pipeline_with("", "epp", vec![f.clone()]);
        let mut ex = exchange_on(&p, "epp", Adapter::Proxy, "POST", path);
        let pick = run_as(&mut ex, headers, first(body), true).await;
        match pick {
            Ok(pick) => assert_eq!(pick, "127.0.0.11:8000"),
            Err(r) => panic!("{path} {headers:?}: {} {:?}", r.status, r.body),
        }
    }
    // Model last and nothing names it: a 413 that says what to do.
    let reply = run_as(&mut exchange(&f, "POST"), &[], first(&model_last), true)
        .await
        .unwrap_err();
    assert_eq!(reply.status, 413);
    assert_eq!(reply.headers[DROPPED_REASON], "rejected-invalid-request");
    let json: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(json["error"]["type"], "request_too_large", "{json}");
    let message = json["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("first 32768 bytes") && message.contains("x-gateway-model-name"),
        "{message}"
    );
    // A model rewrite edits the whole body: a 413 too.
    let f = factory_yaml(
        "{endpoints: ['127.0.0.11:8000'], modelRewrites: [{model: m, targets: [{model: m-v2}]}]}",
    );
    let reply = run_as(&mut exchange(&f, "POST"), &[], first(&model_first), true)
        .await
        .unwrap_err();
    assert_eq!(reply.status, 413);
    assert!(String::from_utf8_lossy(&reply.body).contains("rewrites the model"));
}

#[tokio::test]
async fn a_bodiless_request_is_picked_on_its_headers() {
    let f = factory(&["127.0.0.11:8000"]);
    let mut ex = exchange(&f, "GET");
    let mut h = Headers::new(http::HeaderMap::new());
    assert!(matches!(
        ex.request_headers(&mut h).await,
        Verdict::Continue(())
    ));
    assert_eq!(h.get_str(DESTINATION), Some("127.0.0.11:8000"));
    assert_eq!(ex.request_body_mode(), crate::pipeline::BodyMode::Skip);
    assert!(ex.cx.clear_route_cache);
}

#[test]
fn config_errors_name_the_field() {
    let yaml = r#"
policies:
  endpointPicker: { endpoints: ['127.0.0.1:8001', 'nope'] }
"#;
    let err = build_error(yaml);
    assert!(err.contains("endpointPicker.endpoints[1]"), "{err}");
}

fn factory_yaml(yaml: &str) -> Arc<EndpointPickerFactory> {
    let policy: crate::config::EndpointPickerPolicy = serde_yaml::from_str(yaml).unwrap();
    Arc::new(
        EndpointPickerFactory::new(&policy, &crate::services::Services::new(), "epp", "p").unwrap(),
    )
}

#[tokio::test]
async fn a_post_without_body_is_picked_on_its_headers_and_gets_a_request_id() {
    let f = factory(&["127.0.0.11:8000"]);
    let mut ex = exchange(&f, "POST");
    ex.cx.request_body_empty = true;
    let mut h = Headers::new(http::HeaderMap::new());
    assert!(matches!(
        ex.request_headers(&mut h).await,
        Verdict::Continue(())
    ));
    assert_eq!(h.get_str(DESTINATION), Some("127.0.0.11:8000"));
    assert_eq!(h.get_str("x-request-id"), Some(ex.cx.request_id.as_str()));
    assert_eq!(ex.cx.destination.as_deref(), Some("127.0.0.11:8000"));
}

#[tokio::test]
async fn a_client_request_id_is_kept() {
    let f = factory(&["127.0.0.11:8000"]);
    let mut ex = exchange(&f, "GET");
    let mut map = http::HeaderMap::new();
    map.insert("x-request-id", "abc".parse().unwrap());
    let mut h = Headers::new(map);
    let _ = ex.request_headers(&mut h).await;
    assert_eq!(h.get_str("x-request-id"), Some("abc"));
}

/// Runs a whole exchange with a JSON response; the body the upstream got and the
/// response the client got.
async fn rewrite_round_trip(
    f: &Arc<EndpointPickerFactory>,
    headers: &[(&str, &str)],
    response: &str,
) -> (String, String) {
    let mut ex = exchange(f, "POST");
    let sent = send(&mut ex, headers, &chat("hello"))
        .await
        .expect("request rejected");
    let sent = String::from_utf8(sent.to_vec()).unwrap();
    let bytes = response.as_bytes();
    let (a, b) = bytes.split_at(bytes.len() / 2);
    let got = receive_with(&mut ex, &[], &[a, b])
        .await
        .expect("response rejected");
    (sent, String::from_utf8(got).unwrap())
}

#[tokio::test]
async fn model_rewrite_changes_the_request_and_writes_the_response_model_back() {
    let f = factory_yaml(
        "{endpoints: ['127.0.0.11:8000'], modelRewrites: [{model: m, targets: [{model: m-v2}]}]}",
    );
    let sse = "data: {\"model\":\"m-v2\",\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n";
    let (sent, got) = rewrite_round_trip(&f, &[], sse).await;
    let sent: serde_json::Value = serde_json::from_str(&sent).unwrap();
    assert_eq!(sent["model"], "m-v2");
    assert_eq!(sent["messages"][0]["content"], "hello");
    assert_eq!(got, sse.replace("m-v2", "m"));

    // The gateway's header overrides the configured rewrite.
    let json = r#"{"id":"x","model": "from-header","usage":{}}"#;
    let (sent, got) =
        rewrite_round_trip(&f, &[("x-gateway-model-name-rewrite", "from-header")], json).await;
    assert!(sent.contains(r#""model":"from-header""#), "{sent}");
    assert_eq!(got, r#"{"id":"x","model": "m","usage":{}}"#);

    // No rewrite: the response is not touched.
    let plain = factory(&["127.0.0.11:8000"]);
    let (sent, got) = rewrite_round_trip(&plain, &[], json).await;
    assert!(sent.contains(r#""model":"m""#));
    assert_eq!(got, json);
}

#[tokio::test]
async fn picks_and_outcomes_are_counted_under_the_reference_names() {
    let f = factory(&["127.0.0.11:8000"]);
    let mut ex = exchange(&f, "POST");
    run(&mut ex, &[], chat("x")).await.unwrap();
    ex.finish(crate::pipeline::Outcome::Completed { status: 200 });
    let mut ex = exchange(&f, "POST");
    ex.cx.endpoint_subset = Some(Vec::new());
    run(&mut ex, &[], chat("x")).await.unwrap_err();
    let text = f.shared.services.metrics.encode();
    for line in [
        "inference_objective_request_total{model_name=\"m\",target_model_name=\"m\"} 1",
        "inference_objective_running_requests{model_name=\"m\"} 0",
        "inference_extension_scheduler_attempts_total{status=\"success\"} 1",
        "inference_extension_scheduler_attempts_total{status=\"failure\"} 1",
        "tollgate_epp_picks_total{pool=\"epp\",endpoint=\"127.0.0.11:8000\"} 1",
        "tollgate_epp_dropped_total{pool=\"epp\",reason=\"rejected-no-endpoints\"} 1",
    ] {
        assert!(text.contains(line), "missing {line}\n{text}");
    }
}

#[tokio::test]
async fn the_served_endpoint_learns_the_prefix_and_takes_the_load() {
    let f = factory_yaml(
        "{endpoints: ['127.0.0.11:8000', '127.0.0.12:8000'], scheduling: {profile: default, maxNumOfEndpoints: 2}}",
    );
    let system = "You are the assistant of one tenant; answer in one line. ".repeat(10);
    let mut ex = exchange(&f, "POST");
    let destination = run(&mut ex, &[], chat(&format!("{system} q1")))
        .await
        .unwrap();
    let (picked, fallback) = destination.split_once(',').expect("two endpoints");
    // The gateway used the fallback.
    ex.cx.served_endpoint = Some(fallback.to_string());
    let _ = response_headers(&mut ex, &[]).await;
    let fallback_addr: std::net::SocketAddr = fallback.parse().unwrap();
    let picked_addr: std::net::SocketAddr = picked.parse().unwrap();
    let pool = f.pool();
    let (_, held) = pool.endpoint(&fallback_addr).unwrap().prefix_usage();
    assert!(held > 0, "the endpoint that served it caches the prompt");
    let load = |a: &std::net::SocketAddr| pool.endpoint(a).unwrap().load().snapshot().requests;
    assert_eq!(
        load(&fallback_addr),
        1,
        "the load moved to the served endpoint"
    );
    assert_eq!(load(&picked_addr), 0);
    let text = f.shared.services.metrics.encode();
    assert!(
        text.contains(&format!(
            "tollgate_epp_served_total{{pool=\"epp\",endpoint=\"{fallback}\",as_picked=\"false\"}} 1"
        )),
        "{text}"
    );
}

/// The response headers the picker sets on a 200 served where it picked.
async fn response_headers_set(ex: &mut Exchange) -> Headers {
    ex.cx.response_status = Some(200);
    let mut h = Headers::new(header_map(&[("content-type", "application/json")]));
    let _ = ex.response_headers(&mut h).await;
    h
}

#[tokio::test]
async fn a_session_token_sticks_until_its_endpoint_is_saturated() {
    let f = factory_yaml(
        "{endpoints: ['127.0.0.11:8000', '127.0.0.12:8000'], scheduling: {scorers: [{type: queue}, {type: sessionAffinity, weight: 10}]}}",
    );
    set(&f, 0, 3.0, 0.1);
    set(&f, 1, 0.0, 0.1);
    // No token: the idle endpoint; the response names it in the token.
    let mut ex = exchange(&f, "POST");
    assert_eq!(
        run(&mut ex, &[], chat("a")).await.unwrap(),
        "127.0.0.12:8000"
    );
    let h = response_headers_set(&mut ex).await;
    let token = h.get_str("x-session-token").unwrap().to_string();
    assert_eq!(
        crate::epp::scheduling::session::decode_token(&token),
        Some("127.0.0.12:8000".parse().unwrap())
    );
    // A token naming the busier endpoint wins over the queue scorer.
    let busy = crate::epp::scheduling::session::encode_token("127.0.0.11:8000");
    let mut ex = exchange(&f, "POST");
    let pick = run(&mut ex, &[("x-session-token", &busy)], chat("b")).await;
    assert_eq!(pick.unwrap(), "127.0.0.11:8000");
    // Saturated (queue 5 of 5): the session falls back, and its token moves.
    set(&f, 0, 5.0, 0.1);
    let mut ex = exchange(&f, "POST");
    let pick = run(&mut ex, &[("x-session-token", &busy)], chat("c")).await;
    assert_eq!(pick.unwrap(), "127.0.0.12:8000");
    let h = response_headers_set(&mut ex).await;
    assert_eq!(h.get_str("x-session-token"), Some(token.as_str()));
}

#[tokio::test]
async fn a_session_id_binds_and_rebinds_when_its_endpoint_leaves() {
    let f = factory_yaml(
        "{endpoints: ['127.0.0.11:8000', '127.0.0.12:8000', '127.0.0.13:8000'], scheduling: {filters: [{type: sessionAffinity, strategy: sessionId}], scorers: [{type: queue}]}}",
    );
    let sid = [("x-session-id", "conv-1")];
    let first = run(&mut exchange(&f, "POST"), &sid, chat("x"))
        .await
        .unwrap();
    for i in 0..8 {
        let again = run(&mut exchange(&f, "POST"), &sid, chat(&format!("turn {i}")))
            .await
            .unwrap();
        assert_eq!(again, first, "the session stays");
    }
    let others: Vec<std::net::SocketAddr> =
        ["127.0.0.11:8000", "127.0.0.12:8000", "127.0.0.13:8000"]
            .iter()
            .filter(|a| **a != first)
            .map(|a| a.parse().unwrap())
            .collect();
    f.pool().set_endpoints(others);
    let moved = run(&mut exchange(&f, "POST"), &sid, chat("y"))
        .await
        .unwrap();
    assert_ne!(moved, first, "the bound endpoint is gone: a fallback");
    for i in 0..4 {
        let again = run(&mut exchange(&f, "POST"), &sid, chat(&format!("later {i}")))
            .await
            .unwrap();
        assert_eq!(again, moved, "re-bound to the fallback");
    }
}

/// Runs the request path of a disaggregating picker: the late request headers.
async fn run_pd(f: &Arc<EndpointPickerFactory>, prompt: &str) -> Vec<(String, String)> {
    let mut ex = exchange(f, "POST");
    let mut h = Headers::new(header_map(&[("x-prefiller-host-port", "6.6.6.6:1")]));
    assert!(matches!(
        ex.request_headers(&mut h).await,
        Verdict::Continue(())
    ));
    assert!(
        h.get_str("x-prefiller-host-port").is_none(),
        "a client's is stripped"
    );
    assert!(matches!(
        ex.request_body(chat(prompt), true, false).await,
        Verdict::Continue(_)
    ));
    ex.cx
        .late_request_headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
        .collect()
}

#[tokio::test]
async fn long_uncached_prompts_get_a_prefill_endpoint_and_short_ones_do_not() {
    let f = factory_yaml(
        "{endpoints: ['127.0.0.11:8000', '127.0.0.12:8000', '127.0.0.13:8000'], roles: {'127.0.0.11:8000': prefill, '127.0.0.12:8000': decode}, disaggregation: {nonCachedTokens: 200}}",
    );
    let long = "Summarise this long report about the quarterly numbers. ".repeat(20);
    let late = run_pd(&f, &long).await;
    assert_eq!(late.len(), 2, "{late:?}");
    assert_eq!(late[0].0, DESTINATION);
    assert_ne!(
        late[0].1, "127.0.0.11:8000",
        "a prefill endpoint never decodes"
    );
    assert_eq!(
        late[1],
        ("x-prefiller-host-port".into(), "127.0.0.11:8000".into())
    );
    // The same prompt again: cached on its decode endpoint, so it stays aggregated.
    let again = run_pd(&f, &long).await;
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(again[0].1, late[0].1, "prefix affinity on the decode side");
    let short = run_pd(&f, "hi").await;
    assert_eq!(short.len(), 1, "{short:?}");
    assert_ne!(short[0].1, "127.0.0.11:8000");
}

#[tokio::test]
async fn without_a_prefill_endpoint_the_request_runs_aggregated() {
    let f = factory_yaml(
        "{endpoints: ['127.0.0.12:8000', '127.0.0.13:8000'], disaggregation: {nonCachedTokens: 1}}",
    );
    let late = run_pd(&f, &"x".repeat(4000)).await;
    assert_eq!(late.len(), 1, "{late:?}");
}
