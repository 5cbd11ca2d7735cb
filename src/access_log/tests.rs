//! `logging.fields`: load errors with their paths, `remove`, what expressions read, the
//! variables (secrets redacted however they are selected), flattening, and fields left
//! out.

use std::sync::Arc;

use serde_json::{json, Value};

use super::*;
use crate::config::AccessLogFields;
use crate::llm::{Api, LlmRequest, Usage};
use crate::pipeline::testing::{build_error, header_map, request_head};
use crate::pipeline::{Adapter, Ctx, Direction, LlmFacts};

fn fields(add: &[(&str, &str)], remove: &[&str]) -> AccessLogFields {
    AccessLogFields {
        add: add
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        remove: remove.iter().map(|r| r.to_string()).collect(),
    }
}

fn compile(add: &[(&str, &str)], remove: &[&str]) -> Result<AccessLog, ConfigError> {
    AccessLog::compile(&fields(add, remove), &CelLimits::default(), &[])
}

/// The added fields of an exchange with `cx` and `capture`, as JSON.
fn evaluate(log: &AccessLog, cx: &Ctx, capture: Option<&Capture>) -> Value {
    let input = Input {
        cx,
        capture,
        status: 200,
    };
    log.evaluate(&input)
        .map_or(Value::Null, |text| serde_json::from_str(&text).unwrap())
}

fn chat_cx() -> Ctx {
    let mut cx = Ctx::new(
        Adapter::Proxy,
        request_head("POST", "/v1/chat/completions?x=1"),
        None,
    );
    cx.route = Some("chat".into());
    let body = br#"{"model":"gpt-4o","messages":[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"hello"},{"type":"text","text":"there"}]}]}"#;
    let request = LlmRequest::parse(Api::ChatCompletions, body).unwrap();
    let mut facts = LlmFacts::new(Api::ChatCompletions, Arc::new(request));
    facts.usage = Some(Usage {
        input_tokens: 12,
        output_tokens: 3,
        total_tokens: 15,
        ..Usage::default()
    });
    facts.response_model = Some("gpt-4o-2024".into());
    facts.completion = Some(vec!["hi!".into()]);
    cx.llm = Some(Box::new(facts));
    cx
}

#[test]
fn problems_name_their_field_and_all_are_reported() {
    let err = compile(
        &[
            ("ok", "route"),
            ("bad", "request.headers["),
            ("level", "1"),
            ("has space", "1"),
        ],
        &["llm.ttft_ms", "no_such_field"],
    )
    .err()
    .expect("refused")
    .to_string();
    assert!(err.starts_with("4 problems:"), "{err}");
    assert!(
        err.contains("logging.fields.add.bad: invalid CEL expression"),
        "{err}"
    );
    assert!(err.contains("logging.fields.add.level: the log formatter writes this key"));
    assert!(err.contains("logging.fields.add.has space: a field name is printable"));
    assert!(
        err.contains(
            r#"logging.fields.remove[1]: "no_such_field" is not a built-in access-log field"#
        ),
        "{err}"
    );
}

#[test]
fn the_pipeline_checks_them_at_their_path() {
    let err = build_error(
        "logging:\n  fields:\n    remove: [llm.ttft]\nextProc: { address: \"127.0.0.1:1\" }\n",
    );
    assert!(
        err.starts_with("logging.fields.remove[0]: \"llm.ttft\""),
        "{err}"
    );
    let err = build_error(
        "logging:\n  fields:\n    add: { x: 'llm.' }\nextProc: { address: \"127.0.0.1:1\" }\n",
    );
    assert!(
        err.starts_with("logging.fields.add.x: invalid CEL"),
        "{err}"
    );
}

#[test]
fn remove_and_replacing_names_hide_built_ins() {
    let log = compile(&[("route", r#""mine""#)], &["llm.ttft_ms", "request_id"]).unwrap();
    assert!(!log.keeps("llm.ttft_ms"));
    assert!(!log.keeps("request_id"));
    assert!(!log.keeps("route"), "an added field replaces the built-in");
    assert!(log.keeps("status"));
    assert!(AccessLog::default().keeps("llm.ttft_ms"));
}

#[test]
fn wants_follow_what_expressions_read() {
    let log = compile(&[("a", "request.method"), ("b", "llm.provider")], &[]).unwrap();
    assert_eq!(log.wants(), Wants::default(), "nothing costly is read");
    let log = compile(
        &[
            ("h", "request"),
            ("b", "json(response.body).id"),
            ("p", "flattenRecursive(llm.prompt)"),
            ("t", "llm.params.temperature"),
            ("c", "llm.completion[0]"),
        ],
        &[],
    )
    .unwrap();
    let w = log.wants();
    assert!(
        w.request_headers && !w.request_body,
        "a bare request is not its body"
    );
    assert!(w.response_body && !w.response_headers);
    assert!(w.prompt && w.params && w.completion);
}

#[test]
fn credentials_are_redacted_even_when_the_headers_are_selected_whole() {
    let substituted = [
        "binds[0].listeners[0].routes[0].policies.requestHeaderModifier.set.x-tenant".to_string(),
    ];
    let log = AccessLog::compile(
        &fields(
            &[
                ("request.headers", "request.headers"),
                ("auth", r#"request.headers["authorization"]"#),
                ("text", "toJson(request)"),
            ],
            &[],
        ),
        &CelLimits::default(),
        &substituted,
    )
    .unwrap();
    let mut capture = Capture::new(&log).expect("headers are read");
    let mut map = header_map(&[
        ("authorization", "Bearer client-token"),
        ("proxy-authorization", "Basic cHc="),
        ("x-api-key", "sk-1"),
        ("api-key", "sk-2"),
        ("cookie", "session=s3"),
        ("x-tenant", "from-env"),
        ("user-agent", "curl"),
    ]);
    let mut marked = http::HeaderValue::from_static("provider-secret");
    marked.set_sensitive(true);
    map.insert("x-upstream-auth-value", marked);
    capture.headers(Direction::Request, &map, &log);
    let out = evaluate(&log, &chat_cx(), Some(&capture));
    let headers = &out["request.headers"];
    for name in [
        "authorization",
        "proxy-authorization",
        "x-api-key",
        "api-key",
        "cookie",
        "x-tenant",
        "x-upstream-auth-value",
    ] {
        assert_eq!(headers[name], "<redacted>", "{name}: {out}");
    }
    assert_eq!(headers["user-agent"], "curl");
    assert_eq!(out["auth"], "<redacted>");
    let text = out.to_string();
    for secret in [
        "client-token",
        "cHc=",
        "sk-1",
        "sk-2",
        "s3",
        "from-env",
        "provider-secret",
    ] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
}

#[test]
fn llm_variables_use_agentgateways_names() {
    let log = compile(
        &[
            ("llm.system", "llm.provider"),
            ("model", "llm.requestModel + '/' + llm.responseModel"),
            (
                "tokens",
                "llm.inputTokens + llm.outputTokens == llm.totalTokens",
            ),
            ("span.name", r#""openai.chat""#),
            ("gen_ai.prompt", "flattenRecursive(llm.prompt)"),
            (
                "llm.output_messages",
                r#"flattenRecursive(llm.completion.map(c, {"role": "assistant", "content": c}))"#,
            ),
            (
                "where",
                "request.method + ' ' + request.path + ' ' + route + ' ' + string(response.code)",
            ),
            ("absent", "llm.params.temperature"),
            ("null", "null"),
        ],
        &[],
    )
    .unwrap();
    let out = evaluate(&log, &chat_cx(), None);
    assert_eq!(out["llm.system"], "openai");
    assert_eq!(out["model"], "gpt-4o/gpt-4o-2024");
    assert_eq!(out["tokens"], true);
    assert_eq!(out["span.name"], "openai.chat");
    assert_eq!(out["gen_ai.prompt.0.role"], "system");
    assert_eq!(out["gen_ai.prompt.0.content"], "be brief");
    assert_eq!(out["gen_ai.prompt.1.content"], "hello\nthere");
    assert_eq!(out["llm.output_messages.0.content"], "hi!");
    assert_eq!(out["llm.output_messages.0.role"], "assistant");
    assert_eq!(out["where"], "POST /v1/chat/completions chat 200");
    assert!(
        out.get("absent").is_none(),
        "a failing expression is left out"
    );
    assert!(out.get("null").is_none(), "null is left out");
}

#[test]
fn no_field_left_means_no_object() {
    let log = compile(&[("x", "jwt.sub")], &[]).unwrap();
    assert_eq!(
        log.evaluate(&Input {
            cx: &chat_cx(),
            capture: None,
            status: 0
        }),
        None
    );
    let mut cx = chat_cx();
    cx.jwt = Some(json!({"sub": "alice"}));
    assert_eq!(evaluate(&log, &cx, None), json!({"x": "alice"}));
}

#[test]
fn flattened_keys_never_take_a_kept_built_in_or_formatter_key() {
    let log = compile(
        &[("llm", r#"flattenRecursive({"provider": "x", "other": 1})"#)],
        &[],
    )
    .unwrap();
    let out = evaluate(&log, &chat_cx(), None);
    assert_eq!(out, json!({"llm.other": 1}));
}

#[test]
fn prompts_and_bodies_are_bounded() {
    let long = "é".repeat(BODY_LIMIT);
    let body = json!({"model": "m", "messages": [{"role": "user", "content": long}, {"role": "user", "content": "more"}]});
    let request = LlmRequest::parse(Api::ChatCompletions, body.to_string().as_bytes()).unwrap();
    let messages = vars::prompt(&request);
    assert_eq!(messages.len(), 1);
    assert!(messages[0].content.len() <= BODY_LIMIT);
    let log = compile(&[("b", "request.body")], &[]).unwrap();
    let mut capture = Capture::new(&log).unwrap();
    capture.body(Direction::Request, &vec![b'a'; BODY_LIMIT + 10]);
    capture.body(Direction::Request, b"more");
    let out = evaluate(&log, &chat_cx(), Some(&capture));
    assert_eq!(out["b"].as_str().unwrap().len(), BODY_LIMIT);
}
