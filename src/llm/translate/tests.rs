use serde_json::Value;

use super::*;

#[test]
fn only_chat_and_messages_pairs_translate() {
    assert_eq!(
        Translation::between(Api::ChatCompletions, Api::Messages),
        Some(Translation::ChatViaMessages)
    );
    assert_eq!(
        Translation::between(Api::Messages, Api::ChatCompletions),
        Some(Translation::MessagesViaChat)
    );
    assert_eq!(Translation::between(Api::Messages, Api::Messages), None);
    assert_eq!(Translation::between(Api::Embeddings, Api::Messages), None);
    for t in [Translation::ChatViaMessages, Translation::MessagesViaChat] {
        assert_eq!(
            Translation::between(t.client_api(), t.upstream_api()),
            Some(t)
        );
    }
}

#[test]
fn upstream_errors_take_the_clients_shape_and_keep_the_message() {
    let anthropic =
        br#"{"type":"error","error":{"type":"rate_limit_error","message":"Slow down"}}"#;
    let out: Value =
        serde_json::from_slice(&Translation::ChatViaMessages.error(429, anthropic)).unwrap();
    assert_eq!(out["error"]["message"], "Slow down");
    assert_eq!(out["error"]["type"], "rate_limit_error");
    assert_eq!(out["error"]["code"], "upstream_error");

    let openai = br#"{"error":{"message":"No such model","type":"invalid_request_error","param":null,"code":"model_not_found"}}"#;
    let out: Value =
        serde_json::from_slice(&Translation::MessagesViaChat.error(404, openai)).unwrap();
    assert_eq!(out["type"], "error");
    assert_eq!(out["error"]["type"], "not_found_error");
    assert_eq!(out["error"]["message"], "No such model");

    let html = b"<html>502 Bad Gateway</html>";
    let out: Value =
        serde_json::from_slice(&Translation::MessagesViaChat.error(502, html)).unwrap();
    assert_eq!(out["error"]["message"], "<html>502 Bad Gateway</html>");
    let out: Value = serde_json::from_slice(&Translation::ChatViaMessages.error(503, b"")).unwrap();
    assert!(out["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no body"));
    let long = vec![b'x'; 4000];
    let out: Value =
        serde_json::from_slice(&Translation::ChatViaMessages.error(500, &long)).unwrap();
    assert_eq!(out["error"]["message"].as_str().unwrap().len(), 512);
}
