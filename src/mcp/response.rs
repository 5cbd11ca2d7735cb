//! Reading a target's answer to one request: a JSON body, or an SSE stream in which the
//! answer is the first message whose id is the request's. Priming events (empty `data`,
//! 2025-11-25), notifications and server requests on the stream are skipped. Every read
//! is bounded: the JSON body and each SSE line and event by the configured JSON body
//! limit.

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::Response;
use http_body::Body;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::Value;

use super::upstream::CallError;
use crate::llm::{SseLimits, SseParser};

/// The `result` of the JSON-RPC message answering request `id` in `response`; a
/// JSON-RPC `error` answer is [`CallError::Rpc`].
pub async fn read_answer<B>(
    response: Response<B>,
    id: &Value,
    limit: usize,
) -> Result<Value, CallError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let status = response.status();
    if !status.is_success() {
        return Err(CallError::Status(status.as_u16()));
    }
    let sse = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("text/event-stream")
        });
    let message = if sse {
        read_sse(response.into_body(), id, limit).await?
    } else {
        read_json(response.into_body(), limit).await?
    };
    answer(message)
}

/// The `result` of an answering message; its `error` as [`CallError::Rpc`]; anything
/// else (not an object, neither member) as [`CallError::NoAnswer`].
fn answer(mut message: Value) -> Result<Value, CallError> {
    if let Some(result) = message.get_mut("result") {
        return Ok(result.take());
    }
    match message.get("error") {
        None => Err(CallError::NoAnswer),
        Some(error) => Err(CallError::Rpc {
            code: error.get("code").and_then(Value::as_i64).unwrap_or(-32603),
            message: error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("error without a message")
                .to_string(),
        }),
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn read_json<B>(body: B, limit: usize) -> Result<Value, CallError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let bytes = Limited::new(body, limit)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<LengthLimitError>().is_some() {
                CallError::TooLarge(limit)
            } else {
                CallError::Body(e.to_string())
            }
        })?
        .to_bytes();
    serde_json::from_slice(&bytes).map_err(|e| CallError::Body(format!("not JSON: {e}")))
}

async fn read_sse<B>(mut body: B, id: &Value, limit: usize) -> Result<Value, CallError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let mut parser = SseParser::with_limits(SseLimits {
        line_bytes: limit,
        event_bytes: limit,
    });
    loop {
        let frame = body.frame().await;
        let data = match frame {
            None => {
                let last = parser.finish();
                return last
                    .and_then(|e| answering(&e.data, id))
                    .ok_or(CallError::NoAnswer);
            }
            Some(Err(e)) => return Err(CallError::Body(e.into().to_string())),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                Err(_) => continue,
            },
        };
        if let Some(found) = parser.push(&data).find_map(|e| answering(&e.data, id)) {
            return Ok(found);
        }
        if parser.exceeded().is_some() {
            return Err(CallError::TooLarge(limit));
        }
    }
}

/// The message in an event's data when it answers request `id`.
fn answering(data: &str, id: &Value) -> Option<Value> {
    if data.trim().is_empty() {
        return None;
    }
    let message: Value = serde_json::from_str(data).ok()?;
    let is_answer = message.get("id") == Some(id)
        && (message.get("result").is_some() || message.get("error").is_some());
    is_answer.then_some(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_the_answer_to_the_id_is_taken() {
        let id = json!(7);
        assert_eq!(answering("", &id), None);
        assert_eq!(answering("  \n", &id), None);
        assert_eq!(
            answering(
                r#"{"jsonrpc":"2.0","method":"notifications/progress"}"#,
                &id
            ),
            None
        );
        // A server request with the same id is not the answer.
        assert_eq!(
            answering(
                r#"{"jsonrpc":"2.0","id":7,"method":"sampling/createMessage"}"#,
                &id
            ),
            None
        );
        assert_eq!(
            answering(r#"{"jsonrpc":"2.0","id":"7","result":{}}"#, &id),
            None
        );
        assert_eq!(
            answering(r#"{"jsonrpc":"2.0","id":7,"result":{"a":1}}"#, &id),
            Some(json!({"jsonrpc":"2.0","id":7,"result":{"a":1}}))
        );
    }

    /// A body of chunks, as an upstream sends them.
    type Chunks = http_body_util::StreamBody<
        futures::stream::Iter<
            std::vec::IntoIter<Result<http_body::Frame<Bytes>, std::convert::Infallible>>,
        >,
    >;

    fn sse(chunks: &[&'static str]) -> Response<Chunks> {
        let frames: Vec<_> = chunks
            .iter()
            .map(|c| Ok(http_body::Frame::data(Bytes::from_static(c.as_bytes()))))
            .collect();
        let body = http_body_util::StreamBody::new(futures::stream::iter(frames));
        Response::builder()
            .header(CONTENT_TYPE, "text/event-stream")
            .body(body)
            .unwrap()
    }

    #[tokio::test]
    async fn sse_skips_priming_events_and_notifications() {
        let response = sse(&[
            "id: p1\ndata:\n\n",
            "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{}}\n\n",
            "data: {\"jsonrpc\":\"2.0\",\"id\":3,\"res",
            "ult\":{\"tools\":[]}}\n\ndata: {\"jsonrpc\":\"2.0\",\"id\":4,\"result\":{}}\n\n",
        ]);
        let found = read_answer(response, &json!(3), 1024).await.unwrap();
        assert_eq!(found, json!({"tools":[]}));
        let response = sse(&[
            "data:\n\n",
            "data: {\"jsonrpc\":\"2.0\",\"id\":9,\"result\":{}}\n\n",
        ]);
        assert!(matches!(
            read_answer(response, &json!(3), 1024).await,
            Err(CallError::NoAnswer)
        ));
        let long: &'static str =
            Box::leak(format!("data: {}\n\n", "x".repeat(300)).into_boxed_str());
        let response = sse(&[long]);
        assert!(matches!(
            read_answer(response, &json!(3), 100).await,
            Err(CallError::TooLarge(100))
        ));
    }

    #[tokio::test]
    async fn json_bodies_are_bounded() {
        let body = http_body_util::Full::new(Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":1,"result":{"x":1}}"#,
        ));
        let ok = Response::new(body.clone());
        assert_eq!(read_answer(ok, &json!(1), 1024).await.unwrap()["x"], 1);
        let small = Response::new(body);
        assert!(matches!(
            read_answer(small, &json!(1), 10).await,
            Err(CallError::TooLarge(10))
        ));
        let mut failed = Response::new(http_body_util::Full::new(Bytes::new()));
        *failed.status_mut() = http::StatusCode::NOT_FOUND;
        assert!(matches!(
            read_answer(failed, &json!(1), 10).await,
            Err(CallError::Status(404))
        ));
    }

    #[test]
    fn an_error_answer_is_an_rpc_error() {
        let e = answer(json!({"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"bad"}}))
            .unwrap_err();
        assert!(matches!(e, CallError::Rpc { code: -32602, ref message } if message == "bad"));
        assert_eq!(
            answer(json!({"id":1,"result":{"a":1}})).unwrap(),
            json!({"a":1})
        );
        for odd in [json!([1, 2]), json!("x"), json!({"id": 1})] {
            assert!(matches!(answer(odd), Err(CallError::NoAnswer)));
        }
    }
}
