use serde_json::json;

use http_body_util::StreamBody;

use super::*;

#[test]
fn ids_round_trip_through_their_tag() {
    for id in [json!(0), json!(17), json!("abc"), json!("tg.1.2")] {
        let tagged = tag_id(3, &id);
        assert_eq!(untag_id(&tagged), Some((3, id)));
    }
    for other in [
        json!(5),
        json!("x"),
        json!("tg.x.1"),
        json!("tg.1.{}"),
        json!("tg.1.null"),
    ] {
        assert_eq!(untag_id(&other), None, "{other}");
    }
}

/// Fractional and huge numeric ids come back bit for bit: a float that does not
/// survive text and back would send the client's answer to no request.
#[test]
fn numeric_ids_keep_every_bit_through_their_tag() {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    for _ in 0..20_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let value = f64::from_bits(state);
        let Some(id) = serde_json::Number::from_f64(value).map(Value::Number) else {
            continue;
        };
        let text = id.to_string();
        let parsed: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            untag_id(&tag_id(1, &parsed)),
            Some((1, parsed.clone())),
            "{text}"
        );
    }
}

#[tokio::test]
async fn only_server_requests_on_a_stream_are_tagged() {
    let input = concat!(
        "id: e1\ndata: \n\n",
        "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progress\":1}}\n\n",
        "data: {\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"sampling/createMessage\",\"params\":{}}\n\n",
        "data: {\"jsonrpc\":\"2.0\",\"id\":5,\"result\":{\"method\":\"x\"}}\n\n",
    );
    // Split across frames at awkward places.
    let chunks: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = input
        .as_bytes()
        .chunks(7)
        .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
        .collect();
    let body = StreamBody::new(futures::stream::iter(chunks));
    let out = tag_requests(body, 2, 1 << 20)
        .collect()
        .await
        .unwrap()
        .to_bytes();
    let mut parser = SseParser::new();
    let events: Vec<SseEvent> = parser.push(&out).collect();
    assert_eq!(events.len(), 4);
    assert_eq!(
        (events[0].id.as_deref(), events[0].data.as_str()),
        (Some("e1"), "")
    );
    assert_eq!(events[1].event.as_deref(), Some("message"));
    let request: Value = serde_json::from_str(&events[2].data).unwrap();
    assert_eq!(request["id"], "tg.2.0");
    assert_eq!(request["method"], "sampling/createMessage");
    let result: Value = serde_json::from_str(&events[3].data).unwrap();
    assert_eq!(
        result["id"], 5,
        "a response to the client's own request keeps its id"
    );
}

#[tokio::test]
async fn an_event_over_the_limit_ends_the_stream_with_an_error() {
    let big = format!("data: {}\n\n", "x".repeat(200));
    let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> =
        vec![Ok(Frame::data(Bytes::from(big)))];
    let body = StreamBody::new(futures::stream::iter(frames));
    let err = tag_requests(body, 0, 64).collect().await.unwrap_err();
    assert!(err.to_string().contains("over the sse_line bound"), "{err}");
}

#[test]
fn only_string_and_number_ids_are_tagged() {
    // Found by the mcp fuzz target: duplicate keys, the last id an object.
    let mut odd = serde_json::from_str::<Value>(r#"{"id":0,"method":"m","id":{}}"#).unwrap();
    assert!(!tag_request(&mut odd, 1));
    assert_eq!(odd["id"], json!({}));
    let mut request = json!({"id": "x", "method": "m"});
    assert!(tag_request(&mut request, 1));
    assert_eq!(untag_id(&request["id"]), Some((1, json!("x"))));
}
