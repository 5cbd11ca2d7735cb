//! A black-box suite of the endpoint-picker protocol: each test drives an EPP over gRPC
//! exactly as a gateway would and checks only what goes over the wire. Point it at any
//! picker with `TOLLGATE_EPP_TARGET` (see `tests/support/epp.rs` for the pool it expects);
//! by default it runs against a tollgate it starts, reached over TLS to its self-signed
//! certificate as gateways reach pickers.
//!
//! Run against another picker:
//! `TOLLGATE_EPP_TARGET=127.0.0.1:9002 TOLLGATE_EPP_TLS=1 TOLLGATE_EPP_ENDPOINTS=… \
//!  TOLLGATE_EPP_SHEDDABLE_OBJECTIVE=… TOLLGATE_EPP_FALLBACKS=2 cargo test --test e2e epp_protocol`

use std::time::Duration;

use envoy_types::pb::envoy::extensions::filters::http::ext_proc::v3::processing_mode::BodySendMode;

use crate::support::epp::*;

const FULL_DUPLEX: BodySendMode = BodySendMode::FullDuplexStreamed;

/// Checks a pick reply: header and metadata carry the same value, the route cache is
/// cleared, every entry is a pool endpoint, as many as the pool returns per pick.
fn assert_pick(target: &Target, r: &ProcessingResponse) -> Vec<String> {
    let header = header_set(r, "x-gateway-destination-endpoint")
        .unwrap_or_else(|| panic!("no pick header in {r:?}"));
    assert_eq!(
        metadata_pick(r).as_deref(),
        Some(header.as_str()),
        "envoy.lb metadata equals the header"
    );
    assert!(
        common(r).is_some_and(|c| c.clear_route_cache),
        "clear_route_cache on the pick reply"
    );
    let picks: Vec<String> = header.split(',').map(|s| s.trim().to_string()).collect();
    for p in &picks {
        assert!(target.endpoints.contains(p), "{p} is not a pool endpoint");
    }
    let mut distinct = picks.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        picks.len(),
        "fallbacks are distinct: {header}"
    );
    assert_eq!(
        picks.len(),
        target.fallbacks.min(target.endpoints.len()),
        "{header}"
    );
    picks
}

use envoy_types::pb::envoy::service::ext_proc::v3::ProcessingResponse;

/// Sends a whole FULL_DUPLEX_STREAMED request body in `chunk`-byte pieces; the replies.
async fn full_duplex(
    target: &Target,
    extra: &[(&str, &str)],
    metadata: Option<envoy_types::pb::envoy::config::core::v3::Metadata>,
    body: &[u8],
    chunk: usize,
) -> (Stream, Vec<ProcessingResponse>) {
    let mut s = target.stream().await;
    s.send(request_headers(extra, false, FULL_DUPLEX, metadata))
        .await;
    let pieces: Vec<&[u8]> = body.chunks(chunk).collect();
    for (i, p) in pieces.iter().enumerate() {
        s.send(request_body(p, i + 1 == pieces.len())).await;
    }
    let mut out = Vec::new();
    loop {
        let r = s.expect().await;
        let done = immediate(&r).is_some() || streamed(&r).is_some_and(|(_, eos)| eos);
        out.push(r);
        if done {
            break;
        }
    }
    (s, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_services_answer() {
    let target = Target::get().await;
    crate::support::assert_serving(
        target.channel().await,
        &[
            "",
            "liveness",
            "readiness",
            "envoy.service.ext_proc.v3.ExternalProcessor",
        ],
    )
    .await;
}

/// FULL_DUPLEX_STREAMED: no reply until the body ends, then the header reply with the
/// pick, then the body back as streamed chunks, unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_duplex_sequence_and_spoofed_destination() {
    let target = Target::get().await;
    let body = chat("m", "hello there");
    let mut s = target.stream().await;
    s.send(request_headers(
        &[("x-gateway-destination-endpoint", "6.6.6.6:6666")],
        false,
        FULL_DUPLEX,
        None,
    ))
    .await;
    assert!(
        s.recv(Duration::from_millis(300)).await.is_none(),
        "the header reply waits for the body"
    );
    s.send(request_body(&body[..7], false)).await;
    s.send(request_body(&body[7..], true)).await;
    let h = s.expect().await;
    assert_eq!(kind(&h), "request_headers");
    let picks = assert_pick(&target, &h);
    assert!(!picks.contains(&"6.6.6.6:6666".to_string()));
    let mut back = Vec::new();
    loop {
        let r = s.expect().await;
        assert_eq!(kind(&r), "request_body");
        let (data, eos) = streamed(&r).expect("streamed_response");
        back.extend(data);
        if eos {
            break;
        }
    }
    assert_eq!(back, body, "the body goes on unchanged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffered_sequence_puts_the_pick_on_the_body_reply() {
    let target = Target::get().await;
    let mut s = target.stream().await;
    s.send(request_headers(&[], false, BodySendMode::Buffered, None))
        .await;
    let h = s.expect().await;
    assert_eq!(kind(&h), "request_headers");
    s.send(request_body(&chat("m", "hi"), true)).await;
    let b = s.expect().await;
    assert_eq!(kind(&b), "request_body");
    assert_pick(&target, &b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_only_request_is_picked_at_once() {
    let target = Target::get().await;
    let mut s = target.stream().await;
    s.send(request_headers(&[], true, FULL_DUPLEX, None)).await;
    let h = s.expect().await;
    assert_eq!(kind(&h), "request_headers");
    assert_pick(&target, &h);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_are_re_chunked() {
    let target = Target::get().await;
    let body = chat("m", &"lorem ipsum ".repeat(30_000));
    let (_s, out) = full_duplex(&target, &[], None, &body, 50_000).await;
    assert_eq!(kind(&out[0]), "request_headers");
    assert_pick(&target, &out[0]);
    let mut back = Vec::new();
    for r in &out[1..] {
        let (data, _) = streamed(r).expect("streamed_response");
        assert!(data.len() <= 62_000, "a chunk of {} bytes", data.len());
        back.extend(data);
    }
    assert!(
        out.len() > 6,
        "{} bytes in {} replies",
        body.len(),
        out.len()
    );
    assert_eq!(back, body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subset_hint_in_both_forms() {
    let target = Target::get().await;
    let only = target.endpoints[target.endpoints.len() - 1].clone();
    for hint in [list(&[&only]), string(&format!("192.0.2.1:1, {only}"))] {
        let md = metadata(
            "envoy.lb.subset_hint",
            "x-gateway-destination-endpoint-subset",
            hint,
        );
        let (_s, out) = full_duplex(&target, &[], Some(md), &chat("m", "x"), 1 << 20).await;
        let header = header_set(&out[0], "x-gateway-destination-endpoint").unwrap();
        assert_eq!(header, only, "only the subset's endpoint");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_subset_gets_503() {
    let target = Target::get().await;
    for hint in [list(&[]), string("192.0.2.1:1")] {
        let md = metadata(
            "envoy.lb.subset_hint",
            "x-gateway-destination-endpoint-subset",
            hint,
        );
        let (_s, out) = full_duplex(&target, &[], Some(md), &chat("m", "x"), 1 << 20).await;
        let (status, reason) = immediate_status(out.last().unwrap()).expect("immediate");
        assert_eq!(status, 503);
        assert_eq!(reason.as_deref(), Some("rejected-no-endpoints"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_body_gets_400() {
    let target = Target::get().await;
    for body in [&b"{not json"[..], br#"{"messages":[]}"#] {
        let (_s, out) = full_duplex(&target, &[], None, body, 1 << 20).await;
        let (status, _) = immediate_status(out.last().unwrap()).expect("immediate");
        assert_eq!(status, 400, "{}", String::from_utf8_lossy(body));
    }
}

/// A sheddable request (negative-priority objective) to a saturated pool gets 429;
/// the same request with no objective is still served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sheddable_requests_are_shed_while_saturated() {
    let target = Target::get().await;
    let objective = target.sheddable_objective.clone();
    for header in [
        "x-gateway-inference-objective",
        "x-llm-d-inference-objective",
    ] {
        let (_s, out) = full_duplex(
            &target,
            &[(header, &objective)],
            None,
            &chat("m", "x"),
            1 << 20,
        )
        .await;
        let (status, reason) = immediate_status(out.last().unwrap())
            .unwrap_or_else(|| panic!("{header}: no immediate response: {out:?}"));
        assert_eq!(status, 429, "{header}");
        assert_eq!(reason.as_deref(), Some("rejected-saturated"));
    }
    let (_s, out) = full_duplex(&target, &[], None, &chat("m", "x"), 1 << 20).await;
    assert_pick(&target, &out[0]);
}

/// The gateway's model rewrite header: the body goes on with the new model and the
/// header reply carries its length; the response names the model the client asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_rewrite_round_trip() {
    let target = Target::get().await;
    let (mut s, out) = full_duplex(
        &target,
        &[("x-gateway-model-name-rewrite", "m-large-v2")],
        None,
        &chat("m", "hello"),
        1 << 20,
    )
    .await;
    assert_pick(&target, &out[0]);
    assert!(
        removed(&out[0]).contains(&"x-gateway-model-name-rewrite".to_string()),
        "control header stripped"
    );
    let mut sent = Vec::new();
    for r in &out[1..] {
        sent.extend(streamed(r).unwrap().0);
    }
    let v: serde_json::Value = serde_json::from_slice(&sent).unwrap();
    assert_eq!(v["model"], "m-large-v2");
    assert_eq!(
        header_set(&out[0], "content-length"),
        Some(sent.len().to_string())
    );
    let picked = header_set(&out[0], "x-gateway-destination-endpoint").unwrap();
    let served = picked.split(',').next().unwrap().to_string();
    s.send(response_headers("200", Some(&served))).await;
    let rh = s.expect().await;
    assert_eq!(kind(&rh), "response_headers");
    s.send(response_body(
        br#"{"id":"c1","model":"m-large-v2","choices":[]}"#,
        true,
    ))
    .await;
    let mut got = Vec::new();
    loop {
        let r = s.expect().await;
        let (data, eos) = streamed(&r).expect("streamed response body");
        got.extend(data);
        if eos {
            break;
        }
    }
    assert_eq!(got, br#"{"id":"c1","model":"m","choices":[]}"#);
}

/// The served-endpoint feedback on the response path is taken (and, for the tollgate
/// this suite starts, counted as served by the pick or by a fallback).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_feedback_on_the_response_path() {
    let target = Target::get().await;
    let mut fallbacks_used = 0;
    for use_fallback in [false, true] {
        let (mut s, out) = full_duplex(&target, &[], None, &chat("m", "q"), 1 << 20).await;
        let picks = assert_pick(&target, &out[0]);
        let served = if use_fallback && picks.len() > 1 {
            fallbacks_used += 1;
            picks[1].clone()
        } else {
            picks[0].clone()
        };
        s.send(response_headers("200", Some(&served))).await;
        let r = s.expect().await;
        assert_eq!(kind(&r), "response_headers");
        assert!(immediate(&r).is_none());
    }
    if let Some(t) = &target.tollgate {
        let text = t.metrics().await;
        let count = |as_picked: &str| -> f64 {
            text.lines()
                .filter(|l| {
                    l.starts_with("tollgate_epp_served_total{pool=\"gateway\"")
                        && l.contains(&format!("as_picked=\"{as_picked}\""))
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        };
        assert_eq!(count("true"), (2 - fallbacks_used) as f64, "{text}");
        assert_eq!(count("false"), fallbacks_used as f64, "{text}");
    }
}
