//! Route selection, protocol_config, dynamic metadata and the route cache.

use super::*;

// === route selection ===

async fn route_of(m: ProcessingRequest) -> Option<String> {
    let mut s = stream_for(ROUTES);
    let r = send_one(&mut s, m).await;
    header_set(&r, "x-route")
}

fn get(path: &str, authority: &str, extra: &[(&str, &str)]) -> ProcessingRequest {
    let mut pairs = vec![
        (":method", "GET"),
        (":path", path),
        (":authority", authority),
        (":scheme", "https"),
    ];
    pairs.extend_from_slice(extra);
    request_headers(&pairs, true)
}

#[tokio::test]
async fn xds_route_name_attribute_selects_the_named_route() {
    let m = with_route_name(post("/v1/chat/completions"), "named-only");
    assert_eq!(route_of(m).await.as_deref(), Some("named-only"));
    let m = with_route_name(get("/", "api.example.com", &[]), "chat-post");
    assert_eq!(route_of(m).await.as_deref(), Some("chat-post"));
}

#[tokio::test]
async fn unknown_route_name_falls_back_to_matching() {
    let m = with_route_name(post("/v1/chat/completions"), "not-configured");
    assert_eq!(route_of(m).await.as_deref(), Some("chat-post"));
}

#[tokio::test]
async fn routes_match_on_path_method_headers_and_authority() {
    let cases: Vec<(ProcessingRequest, &str)> = vec![
        (post("/v1/chat/completions"), "chat-post"),
        (post("/v1/chat"), "chat-post"),
        // Prefix at a segment boundary only.
        (post("/v1/chatter"), "fallback"),
        // Wrong method.
        (
            get("/v1/chat/completions", "gateway.local", &[]),
            "fallback",
        ),
        // The query string is not part of the path.
        (post("/v1/chat?stream=true"), "chat-post"),
        (
            get("/v1/models", "gateway.local", &[("x-tenant", "acme")]),
            "by-header",
        ),
        (
            get("/v1/models", "gateway.local", &[("x-tenant", "other")]),
            "fallback",
        ),
        (get("/tenants/acme", "gateway.local", &[]), "by-header"),
        (get("/tenants/acme/x", "gateway.local", &[]), "fallback"),
        // The host picks the listener, with or without a port, in any case.
        (get("/v1/chat", "api.example.com", &[]), "api-host"),
        (get("/v1/chat", "API.example.com:8443", &[]), "api-host"),
        (get("/v1/chat", "www.example.com", &[]), "fallback"),
    ];
    for (m, want) in cases {
        let desc = format!("{:?}", m.request);
        assert_eq!(route_of(m).await.as_deref(), Some(want), "{desc}");
    }
}

#[tokio::test]
async fn host_header_stands_in_for_a_missing_authority() {
    let m = request_headers(
        &[
            (":method", "GET"),
            (":path", "/"),
            ("host", "api.example.com"),
        ],
        true,
    );
    assert_eq!(route_of(m).await.as_deref(), Some("api-host"));
}

#[tokio::test]
async fn route_name_in_the_header_message_attributes_is_honoured() {
    let mut m = post("/v1/chat/completions");
    if let Some(In::RequestHeaders(h)) = m.request.as_mut() {
        let fields = [(
            "xds.route_name".to_string(),
            Value {
                kind: Some(Kind::StringValue("named-only".into())),
            },
        )]
        .into_iter()
        .collect();
        h.attributes
            .insert("envoy.filters.http.ext_proc".into(), Struct { fields });
    }
    assert_eq!(route_of(m).await.as_deref(), Some("named-only"));
}

// === protocol_config ===

#[tokio::test]
async fn only_the_first_protocol_config_counts() {
    let mut s = stream_for(HEADER_ONLY_NO_OVERRIDE);
    send_one(&mut s, first(FullDuplex, FullDuplex)).await;
    // A later protocol_config (Envoy sends one only on the first message) is ignored.
    let body = with_modes(request_body(b"x", true), Streamed, Streamed);
    let r = send_one(&mut s, body).await;
    assert_eq!(streamed(&r), (b"x".to_vec(), true));
}

// === dynamic metadata and route cache ===

/// The keys of the `scripted` namespace in a reply's dynamic metadata.
fn metadata_keys(r: &ProcessingResponse) -> Vec<String> {
    let Some(md) = r.dynamic_metadata.as_ref() else {
        return Vec::new();
    };
    match md.fields.get("scripted").and_then(|v| v.kind.as_ref()) {
        Some(Kind::StructValue(s)) => {
            let mut keys: Vec<String> = s.fields.keys().cloned().collect();
            keys.sort();
            keys
        }
        other => panic!("unexpected metadata {other:?}"),
    }
}

fn all_metadata_keys(replies: &[ProcessingResponse]) -> Vec<String> {
    replies.iter().flat_map(metadata_keys).collect()
}

#[tokio::test]
async fn metadata_rides_on_the_reply_of_its_phase() {
    let (mut s, _j) = scripted_stream(
        "",
        Script {
            metadata_at: Some("request_headers"),
            ..Default::default()
        },
    );
    let r = send_one(&mut s, first(NoBody, NoBody)).await;
    assert_eq!(metadata_keys(&r), ["request_headers"]);
    // Sent once, not again on later replies.
    let r = send_one(&mut s, response_headers("200", false)).await;
    assert!(r.dynamic_metadata.is_none());
}

#[tokio::test]
async fn metadata_from_a_body_chunk_rides_on_its_reply() {
    let (mut s, _j) = scripted_stream(
        "",
        Script {
            response_body: Some(BodyMode::Stream),
            metadata_at: Some("response_body"),
            ..Default::default()
        },
    );
    send_one(&mut s, first(NoBody, Streamed)).await;
    send_one(&mut s, response_headers("200", false)).await;
    let r = send_one(&mut s, response_body(b"a", false)).await;
    assert_eq!(metadata_keys(&r), ["response_body(a)"]);
}

#[tokio::test]
async fn metadata_rides_on_an_immediate_response() {
    let (mut s, _j) = scripted_stream(
        "",
        Script {
            metadata_at: Some("request_headers"),
            respond_at: Some("request_headers"),
            ..Default::default()
        },
    );
    let r = send_one(&mut s, post("/")).await;
    immediate(&r);
    assert_eq!(metadata_keys(&r), ["request_headers"]);
}

#[tokio::test]
async fn full_duplex_rechunked_body_carries_metadata_once_on_the_last_chunk() {
    let (mut s, _j) = scripted_stream(
        "",
        Script {
            request_body: Some(BodyMode::Stream),
            metadata_at: Some("request_body"),
            ..Default::default()
        },
    );
    send_one(&mut s, first(FullDuplex, FullDuplex)).await;
    let body = vec![b'z'; MAX_STREAMED_CHUNK + 10];
    let replies = send(&mut s, request_body(&body, true)).await;
    assert_eq!(replies.len(), 2);
    assert!(replies[0].dynamic_metadata.is_none());
    assert_eq!(metadata_keys(&replies[1]).len(), 1);
}

/// Usage-style metadata computed in the last phase of a response (trailers) must reach
/// Envoy: there is no later reply to carry it.
#[tokio::test]
async fn metadata_set_at_response_trailers_is_sent() {
    let (mut s, _j) = scripted_stream(
        "",
        Script {
            metadata_at: Some("response_trailers"),
            ..Default::default()
        },
    );
    send_one(&mut s, first(NoBody, Streamed)).await;
    send_one(&mut s, response_headers("200", false)).await;
    send_one(&mut s, response_body(b"x", false)).await;
    let r = send_one(&mut s, response_trailers()).await;
    assert_eq!(metadata_keys(&r), ["response_trailers"]);
}

/// FULL_DUPLEX_STREAMED with trailers: the buffered body is processed when the trailers
/// arrive; what the processor records then must be sent.
#[tokio::test]
async fn metadata_from_a_full_duplex_flush_at_trailers_is_sent() {
    let (mut s, _j) = scripted_stream(
        "",
        Script {
            response_body: Some(BodyMode::Buffer { limit: 1024 }),
            metadata_at: Some("response_body"),
            ..Default::default()
        },
    );
    send_one(&mut s, first(NoBody, FullDuplex)).await;
    assert!(send(&mut s, response_headers("200", false))
        .await
        .is_empty());
    assert!(send(&mut s, response_body(b"abc", false)).await.is_empty());
    let replies = send(&mut s, response_trailers()).await;
    assert_eq!(
        kinds(&replies),
        ["response_headers", "response_body", "response_trailers"]
    );
    assert_eq!(
        all_metadata_keys(&replies),
        ["response_body(abc,eos,whole)"]
    );
}

/// FULL_DUPLEX_STREAMED: a chunk that produces no reply (empty, not the last) must not
/// swallow the metadata its processing recorded.
#[tokio::test]
async fn metadata_from_a_chunk_without_reply_is_sent_with_the_next_reply() {
    let (mut s, _j) = scripted_stream(
        "",
        Script {
            request_body: Some(BodyMode::Stream),
            metadata_at: Some("request_body"),
            ..Default::default()
        },
    );
    send_one(&mut s, first(FullDuplex, FullDuplex)).await;
    assert!(send(&mut s, request_body(b"", false)).await.is_empty());
    let r = send_one(&mut s, request_body(b"x", true)).await;
    assert_eq!(metadata_keys(&r), ["request_body()", "request_body(x,eos)"]);
}

#[tokio::test]
async fn routing_header_change_clears_the_route_cache() {
    let yaml = |header: &str, ext: bool| {
        format!(
            "{}binds:\n- port: 1\n  listeners:\n  - routes:\n    - policies: {{requestHeaderModifier: {{set: {{{header}: 10.0.0.1}}}}}}\n",
            if ext { "extProc: {address: '127.0.0.1:50051'}\n" } else { "" }
        )
    };
    for (header, ext, want) in [
        ("x-gateway-destination-endpoint", true, true),
        ("host", false, true),
        ("x-other", true, false),
    ] {
        let mut s = stream_for(&yaml(header, ext));
        let r = send_one(&mut s, post("/")).await;
        assert_eq!(common(&r).clear_route_cache, want, "{header}");
        assert!(header_set(&r, header).is_some());
        // Only the header reply asks for it.
        let r = send_one(&mut s, response_headers("200", false)).await;
        assert!(!common(&r).clear_route_cache);
    }
}
