//! The variables access-log expressions see, built once per exchange from its context
//! and its [`Capture`]. agentgateway's names where it has them:
//!
//! | variable | fields |
//! |---|---|
//! | `request` | `method`, `path`, `pathAndQuery`, `host`, `scheme`, `headers` (map; credentials `"<redacted>"`), `body` (text, when read) |
//! | `response` | `code` (absent when none reached the client), `headers`, `body` (likewise) |
//! | `llm` | `provider`, `requestModel` (also `model`), `responseModel`, `streaming`, `inputTokens`, `outputTokens`, `totalTokens`, `cachedInputTokens`, `reasoningTokens`, `params`, `prompt` (`[{role, content}]`), `completion` (`[text]`), `cost.total` |
//! | `jwt` | the verified claims |
//! | `route` | the route's name |
//!
//! `llm` exists when the route parsed an LLM request (`tokenAccounting`, or a
//! `promptGuard`); `jwt` when the transport gave claims. A field that is not there
//! makes the expression fail (its log field is left out). Headers and bodies are there
//! only when an expression reads them; text is cut at [`BODY_LIMIT`] bytes.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Serialize;

use super::{cut, Capture, Wants, BODY_LIMIT};
use crate::expr::Vars;
use crate::llm::{LlmRequest, PartKind};
use crate::pipeline::{Ctx, LlmFacts};

/// One exchange, as the access line sees it at its end.
pub struct Input<'a> {
    pub cx: &'a Ctx,
    pub capture: Option<&'a Capture>,
    /// The status the client got (0: none).
    pub status: u16,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Request<'a> {
    method: &'a str,
    path: &'a str,
    path_and_query: &'a str,
    host: &'a str,
    scheme: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    headers: Option<&'a BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<Cow<'a, str>>,
}

#[derive(Serialize)]
struct Response<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    headers: Option<&'a BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<Cow<'a, str>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Llm<'a> {
    provider: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_model: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_model: Option<&'a str>,
    streaming: bool,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    tokens: Option<Tokens>,
    #[serde(skip_serializing_if = "Option::is_none")]
    params: Option<&'a serde_json::Map<String, serde_json::Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt: Option<Vec<Message>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    completion: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cost: Option<Cost>,
}

/// Token counts as CEL integers (`llm.inputTokens * 2` works).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Tokens {
    input_tokens: i64,
    output_tokens: i64,
    total_tokens: i64,
    cached_input_tokens: i64,
    reasoning_tokens: i64,
}

#[derive(Serialize)]
struct Cost {
    total: f64,
}

/// One prompt message: its role and its text parts joined with `\n`.
#[derive(Debug, PartialEq, Serialize)]
pub(super) struct Message {
    pub role: &'static str,
    pub content: String,
}

/// The variables for `input`; `wants` says which costly parts to build.
pub(super) fn build(input: &Input<'_>, wants: Wants) -> Vars {
    let cx = input.cx;
    let capture = input.capture;
    let body = |b: fn(&Capture) -> &Vec<u8>, wanted: bool| {
        capture
            .filter(|_| wanted)
            .map(|c| String::from_utf8_lossy(b(c)))
    };
    let mut vars = Vars::logging()
        .with(
            "request",
            Request {
                method: &cx.request.method,
                path: cx.request.path_only(),
                path_and_query: &cx.request.path,
                host: &cx.request.authority,
                scheme: &cx.request.scheme,
                headers: capture.and_then(|c| c.request_headers.as_ref()),
                body: body(|c| &c.request_body, wants.request_body),
            },
        )
        .with(
            "response",
            Response {
                code: (input.status != 0).then_some(input.status),
                headers: capture.and_then(|c| c.response_headers.as_ref()),
                body: body(|c| &c.response_body, wants.response_body),
            },
        );
    if let Some(route) = &cx.route {
        vars = vars.with("route", route.as_str());
    }
    if let Some(claims) = &cx.jwt {
        vars = vars.with("jwt", claims);
    }
    if let Some(facts) = &cx.llm {
        vars = vars.with("llm", llm(cx, facts, wants));
    }
    vars
}

fn llm<'a>(cx: &Ctx, facts: &'a LlmFacts, wants: Wants) -> Llm<'a> {
    let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let model = facts.request.model.as_deref();
    Llm {
        provider: cx.provider_of(facts.api).as_str(),
        request_model: model,
        model,
        response_model: facts.response_model.as_deref(),
        streaming: facts.request.stream,
        tokens: facts.usage.map(|u| Tokens {
            input_tokens: count(u.input_tokens),
            output_tokens: count(u.output_tokens),
            total_tokens: count(u.total_tokens),
            cached_input_tokens: count(u.cached_input_tokens),
            reasoning_tokens: count(u.reasoning_tokens),
        }),
        params: facts.params.as_ref(),
        prompt: wants.prompt.then(|| prompt(&facts.request)),
        completion: facts.completion.as_deref(),
        cost: facts.cost_usd.map(|total| Cost { total }),
    }
}

/// The prompt as messages, at most [`BODY_LIMIT`] bytes of text in all.
pub(super) fn prompt(request: &LlmRequest) -> Vec<Message> {
    let mut out: Vec<Message> = Vec::new();
    let mut room = BODY_LIMIT;
    let mut current = None;
    for part in request.prompt.iter().filter(|p| p.kind != PartKind::Name) {
        if room == 0 {
            break;
        }
        match out.last_mut() {
            Some(m) if current == Some(part.message) => m.content.push('\n'),
            _ => out.push(Message {
                role: part.role.as_str(),
                content: String::new(),
            }),
        }
        current = Some(part.message);
        let text = cut(&part.text, room);
        room -= text.len();
        out.last_mut().expect("pushed").content.push_str(text);
    }
    out
}
