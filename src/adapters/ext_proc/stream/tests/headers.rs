//! Header-only exchanges and mode_override.

use super::*;

// === header-only ===

#[tokio::test]
async fn header_only_request_headers_get_one_reply_with_raw_value_mutation() {
    let mut s = stream_for(HEADER_ONLY);
    let r = send_one(&mut s, post("/v1/chat/completions")).await;
    assert_eq!(kind(&r), "request_headers");
    let m = common(&r)
        .header_mutation
        .as_ref()
        .expect("a header mutation");
    assert_eq!(
        set_headers(m),
        [("x-tollgate".to_string(), "v1".to_string())]
    );
    assert_eq!(m.remove_headers, ["x-drop"]);
    assert!(r.mode_override.is_none());
    assert!(common(&r).body_mutation.is_none());
    assert!(!common(&r).clear_route_cache);
}

#[tokio::test]
async fn header_only_response_headers_get_one_reply() {
    let mut s = stream_for(HEADER_ONLY);
    send_one(&mut s, post("/v1/chat/completions")).await;
    let r = send_one(&mut s, response_headers("200", false)).await;
    assert_eq!(kind(&r), "response_headers");
    assert_eq!(header_set(&r, "x-served-by").as_deref(), Some("tollgate"));
    assert!(r.mode_override.is_none());
}

#[tokio::test]
async fn headers_without_changes_still_get_a_full_reply() {
    let mut s = stream_for(
        "binds:\n- port: 1\n  listeners:\n  - routes:\n    - policies: {responseHeaderModifier: {set: {x-a: b}}}\n",
    );
    let r = send_one(&mut s, post("/")).await;
    assert_eq!(kind(&r), "request_headers");
    assert!(common(&r).header_mutation.is_none());
}

#[tokio::test]
async fn get_without_body_then_response_without_body() {
    let mut s = stream_for(HEADER_ONLY);
    let get = with_modes(
        request_headers(&[(":method", "GET"), (":path", "/v1/models")], true),
        Buffered,
        Buffered,
    );
    let r = send_one(&mut s, get).await;
    assert_eq!(kind(&r), "request_headers");
    // No body follows: nothing to override.
    assert!(r.mode_override.is_none());
    let r = send_one(&mut s, response_headers("204", true)).await;
    assert_eq!(kind(&r), "response_headers");
    assert!(r.mode_override.is_none());
}

#[tokio::test]
async fn no_route_still_answers_every_phase() {
    let mut s = stream_for("{}");
    let r = send_one(&mut s, first(Streamed, Streamed)).await;
    assert_eq!(kind(&r), "request_headers");
    assert!(common(&r).header_mutation.is_none());
    let r = send_one(&mut s, request_body(b"{}", true)).await;
    assert_eq!(kind(&r), "request_body");
    let r = send_one(&mut s, response_headers("200", false)).await;
    assert_eq!(kind(&r), "response_headers");
    let r = send_one(&mut s, response_body(b"ok", true)).await;
    assert_eq!(kind(&r), "response_body");
    assert!(body_mutation(&r).is_none());
}

#[tokio::test]
async fn response_phases_without_request_headers_are_answered() {
    // Envoy with request_header_mode SKIP sends the response side only.
    let mut s = stream_for(HEADER_ONLY);
    let r = send_one(
        &mut s,
        with_modes(response_headers("200", false), NoBody, Streamed),
    )
    .await;
    assert_eq!(kind(&r), "response_headers");
    let r = send_one(&mut s, response_body(b"x", true)).await;
    assert_eq!(kind(&r), "response_body");
}

#[tokio::test]
async fn observability_mode_gets_no_replies() {
    let mut s = stream_for(HEADER_ONLY);
    let mut m = post("/");
    m.observability_mode = true;
    assert!(send(&mut s, m).await.is_empty());
}

// === mode_override ===

#[tokio::test]
async fn buffered_static_mode_with_header_only_route_overrides_body_to_none() {
    let mut s = stream_for(HEADER_ONLY);
    let r = send_one(&mut s, first(Buffered, Streamed)).await;
    assert_eq!(kind(&r), "request_headers");
    // Request body not needed; the response mode stays as configured.
    assert_eq!(override_modes(&r), Some((NoBody, Streamed)));
    // The response side then gets its own override.
    let r = send_one(&mut s, response_headers("200", false)).await;
    assert_eq!(override_modes(&r), Some((NoBody, NoBody)));
}

#[tokio::test]
async fn streamed_static_mode_with_header_only_route_overrides_body_to_none() {
    let mut s = stream_for(HEADER_ONLY);
    let r = send_one(&mut s, first(Streamed, Buffered)).await;
    assert_eq!(override_modes(&r), Some((NoBody, Buffered)));
}

#[tokio::test]
async fn override_only_for_sides_that_differ() {
    let mut s = stream_for(HEADER_ONLY);
    let r = send_one(&mut s, first(NoBody, Streamed)).await;
    assert!(r.mode_override.is_none());
    let r = send_one(&mut s, response_headers("200", false)).await;
    assert_eq!(override_modes(&r), Some((NoBody, NoBody)));
}

#[tokio::test]
async fn mode_override_disabled_sends_no_override() {
    let mut s = stream_for(HEADER_ONLY_NO_OVERRIDE);
    let r = send_one(&mut s, first(Buffered, Streamed)).await;
    assert_eq!(kind(&r), "request_headers");
    assert!(r.mode_override.is_none());
    assert_eq!(header_set(&r, "x-tollgate").as_deref(), Some("v1"));
    let r = send_one(&mut s, response_headers("200", false)).await;
    assert!(r.mode_override.is_none());
}

#[tokio::test]
async fn full_duplex_never_gets_an_override() {
    let mut s = stream_for(HEADER_ONLY);
    let r = send_one(&mut s, first(FullDuplex, FullDuplex)).await;
    assert!(r.mode_override.is_none());
    let r = send_one(&mut s, response_headers("200", false)).await;
    assert!(r.mode_override.is_none());
}

#[tokio::test]
async fn full_duplex_with_processors_needing_bodies_gets_no_override() {
    let (mut s, _j) = scripted_stream(
        "",
        Script {
            request_body: Some(BodyMode::Stream),
            response_body: Some(BodyMode::Buffer { limit: 1024 }),
            ..Default::default()
        },
    );
    let r = send_one(&mut s, first(FullDuplex, FullDuplex)).await;
    assert!(r.mode_override.is_none());
    send_one(&mut s, request_body(b"x", true)).await;
    // Buffering in FULL_DUPLEX defers the header reply instead of overriding.
    assert!(send(&mut s, response_headers("200", false))
        .await
        .is_empty());
}

#[tokio::test]
async fn streaming_processor_overrides_none_to_streamed() {
    let (mut s, _j) = scripted_stream(
        "",
        Script {
            request_body: Some(BodyMode::Stream),
            ..Default::default()
        },
    );
    let r = send_one(&mut s, first(NoBody, NoBody)).await;
    assert_eq!(override_modes(&r), Some((Streamed, NoBody)));
}

#[tokio::test]
async fn buffering_processor_overrides_streamed_to_buffered() {
    let (mut s, _j) = scripted_stream(
        "",
        Script {
            request_body: Some(BodyMode::Buffer { limit: 1 << 20 }),
            ..Default::default()
        },
    );
    let r = send_one(&mut s, first(Streamed, NoBody)).await;
    assert_eq!(override_modes(&r), Some((Buffered, NoBody)));
}

#[tokio::test]
async fn buffering_processor_keeps_buffered_partial() {
    let (mut s, _j) = scripted_stream(
        "",
        Script {
            request_body: Some(BodyMode::Buffer { limit: 1 << 20 }),
            ..Default::default()
        },
    );
    let r = send_one(&mut s, first(BufferedPartial, NoBody)).await;
    assert!(r.mode_override.is_none());
}
