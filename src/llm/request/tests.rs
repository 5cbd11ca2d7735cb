//! Request parsing against hand-written bodies in the providers' documented shapes
//! (`tests/fixtures/llm/requests/`), and its errors.

use super::*;

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/llm/requests/",
            $name
        ))
    };
}

fn parts(req: &LlmRequest) -> Vec<(Role, PartKind, &str, u32)> {
    req.prompt
        .iter()
        .map(|p| (p.role, p.kind, p.text.as_str(), p.message))
        .collect()
}

#[test]
fn chat_completions() {
    let req = LlmRequest::parse(Api::ChatCompletions, fixture!("chat.json")).unwrap();
    assert_eq!(req.api, Api::ChatCompletions);
    assert_eq!(req.model.as_deref(), Some("gpt-4o"));
    assert!(req.stream);
    assert_eq!(req.include_usage, Some(false));
    assert_eq!(
        req.max_output_tokens,
        Some(256),
        "max_completion_tokens wins"
    );
    assert_eq!(req.messages, 6);
    use PartKind::*;
    use Role::*;
    assert_eq!(
        parts(&req),
        vec![
            (Developer, Text, "You are a terse travel assistant.", 0),
            (User, Name, "alice", 1),
            (User, Text, "What's the weather in Paris?", 1),
            (Assistant, ToolCall, r#"{"location":"Paris"}"#, 2),
            (Tool, ToolResult, r#"{"temp_c":18,"sky":"cloudy"}"#, 3),
            (Assistant, Text, "I can't book flights.", 4),
            (User, Text, "Thanks — and tomorrow?\nBe brief.", 5),
        ]
    );
}

#[test]
fn chat_minimal_and_legacy_shapes() {
    let body = br#"{"model":"gpt-3.5-turbo","messages":[
        {"role":"assistant","content":null,"function_call":{"name":"f","arguments":"{}"}},
        {"role":"function","name":"f","content":"42"}],
        "stream":null,"max_tokens":5,"tool_calls":null}"#;
    let req = LlmRequest::parse(Api::ChatCompletions, body).unwrap();
    assert!(!req.stream);
    assert_eq!(req.include_usage, None);
    assert_eq!(req.max_output_tokens, Some(5));
    assert_eq!(
        parts(&req),
        vec![
            (Role::Assistant, PartKind::ToolCall, "{}", 0),
            (Role::Tool, PartKind::Name, "f", 1),
            (Role::Tool, PartKind::ToolResult, "42", 1),
        ]
    );
    let req = LlmRequest::parse(Api::ChatCompletions, b"{}").unwrap();
    assert_eq!((req.model, req.messages, req.prompt.len()), (None, 0, 0));
}

#[test]
fn completions_and_embeddings() {
    let req = LlmRequest::parse(Api::Completions, fixture!("completions.json")).unwrap();
    assert_eq!(req.model.as_deref(), Some("gpt-3.5-turbo-instruct"));
    assert_eq!(req.max_output_tokens, Some(7));
    assert!(req.stream);
    let texts: Vec<_> = req.prompt.iter().map(|p| p.text.as_str()).collect();
    assert_eq!(texts, ["Say this is a test", "And this"]);

    let req = LlmRequest::parse(Api::Embeddings, fixture!("embeddings.json")).unwrap();
    assert_eq!(req.model.as_deref(), Some("text-embedding-3-small"));
    assert_eq!(
        req.prompt[0].text,
        "The food was delicious and the waiter..."
    );
    assert_eq!(req.prompt[0].role, Role::User);

    let req = LlmRequest::parse(Api::Embeddings, br#"{"input":[[1,2],[3,4,5]]}"#).unwrap();
    assert_eq!((req.prompt.len(), req.prompt_token_ids), (0, 5));
}

#[test]
fn responses() {
    let req = LlmRequest::parse(Api::Responses, fixture!("responses.json")).unwrap();
    assert_eq!(req.model.as_deref(), Some("gpt-4.1"));
    assert_eq!(req.max_output_tokens, Some(1024));
    assert!(req.stream);
    assert_eq!(req.include_usage, None);
    assert_eq!(req.messages, 7, "instructions + 6 items");
    use PartKind::*;
    use Role::*;
    assert_eq!(
        parts(&req),
        vec![
            (System, Text, "Talk like a pirate.", 0),
            (User, Text, "Are semicolons optional in JavaScript?", 1),
            (Assistant, Text, "Arr, mostly!", 2),
            (User, Text, "What is in this image?", 3),
            (Assistant, ToolCall, r#"{"location":"Paris, France"}"#, 4),
            (Tool, ToolResult, r#"{"temperature": 18}"#, 5),
        ]
    );
    let req = LlmRequest::parse(Api::Responses, br#"{"model":"o3","input":"hi"}"#).unwrap();
    assert_eq!(parts(&req), vec![(User, Text, "hi", 0)]);
}

#[test]
fn anthropic_messages() {
    let req = LlmRequest::parse(Api::Messages, fixture!("messages.json")).unwrap();
    assert_eq!(req.model.as_deref(), Some("claude-sonnet-4-5"));
    assert_eq!(req.max_output_tokens, Some(1024));
    assert!(req.stream);
    assert_eq!(req.messages, 4, "system + 3 messages");
    use PartKind::*;
    use Role::*;
    assert_eq!(
        parts(&req),
        vec![
            (System, Text, "You are a helpful assistant.", 0),
            (System, Text, "Here is the handbook: ...", 0),
            (User, Text, "What's the weather like in San Francisco?", 1),
            (Assistant, Text, "Let me check.", 2),
            (
                Assistant,
                ToolCall,
                r#"{"location":"San Francisco, CA","unit":"celsius"}"#,
                2
            ),
            (User, ToolResult, "15 degrees", 3),
            (User, ToolResult, "sunny", 3),
            (User, Text, "Thanks!", 3),
        ]
    );
    let body = br#"{"model":"claude-haiku-4-5","system":"Be kind.","messages":[{"role":"user","content":"Hi"}]}"#;
    let req = LlmRequest::parse(Api::CountTokens, body).unwrap();
    assert_eq!(req.api, Api::CountTokens);
    assert_eq!(req.prompt_text(), "Be kind.\nHi");
}

#[test]
fn errors_name_the_path_and_what_was_expected() {
    let cases: [(Api, &[u8], &str); 7] = [
        (
            Api::ChatCompletions,
            br#"{"messages":[{"role":"user","content":"ok"},{"role":"user","content":5}]}"#,
            "invalid chat completions request body at messages[1].content: invalid type: integer `5`, expected a string, an array of content parts, or null",
        ),
        (
            Api::ChatCompletions,
            br#"{"model":"m","stream":"yes"}"#,
            "at stream: invalid type: string \"yes\", expected a boolean",
        ),
        (Api::ChatCompletions, br#"[1]"#, "at .: invalid type: sequence, expected a chat completions request object"),
        (Api::ChatCompletions, br#"{"model":"m""#, "EOF while parsing an object at line 1 column 12"),
        (Api::ChatCompletions, br#"{"model":"m"} x"#, "at .: trailing characters"),
        (
            Api::Messages,
            br#"{"messages":[{"role":"user","content":[{"type":"text","text":7}]}]}"#,
            "at messages[0].content[0].text: invalid type: integer `7`, expected a string",
        ),
        (
            Api::Embeddings,
            br#"{"input":{"a":1}}"#,
            "at input: invalid type: map, expected a string, an array of strings, or an array of token ids",
        ),
    ];
    for (api, body, want) in cases {
        let err = LlmRequest::parse(api, body).unwrap_err().to_string();
        assert!(err.contains(want), "{err}\nwanted: {want}");
    }
}

#[test]
fn escaped_strings_are_decoded() {
    let body = br#"{"messages":[{"role":"user","content":"caf\u00e9 \"q\" \ud83d\ude00"}]}"#;
    let req = LlmRequest::parse(Api::ChatCompletions, body).unwrap();
    assert_eq!(req.prompt[0].text, "café \"q\" 😀");
}
