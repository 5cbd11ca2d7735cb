//! The request side: CEL conditions over the request, then the prompt text parts scanned
//! one pass per part; a reject stops the request, a mask rewrites the JSON body.
//!
//! **What a mask rewrites.** Decisions are made on the prompt as `llm::LlmRequest` reads
//! it (system, developer, user, assistant and tool texts, Anthropic blocks, Responses
//! input and instructions) and on the definitions a model reads besides it (tools,
//! functions, structured-output schemas: `definitions.rs`). When a mask rule found
//! something there, the body is rewritten in place (`json::rewrite_strings`, every other
//! byte kept): every string *value* is masked except those under the keys in
//! [`SKIP_KEYS`] — identifiers, roles and types that are not text (`model`, `role`,
//! `type`, `id`, `tool_call_id`, …), binary payloads (`image_url`, `input_audio`,
//! `file_data`) and `tool_choice` — and, inside definitions, the schema vocabulary
//! (`definitions::SCHEMA_KEYS`), which a placeholder would break. Walking
//! every other string rather than listing each API's prompt fields means a field added to
//! an API later is still masked; fields that are not prompt text but carry personal data
//! (`user`, `metadata`) are masked too, which is what an operator asking for masking
//! wants.

use crate::config::GuardAction;
use crate::expr::{RequestVars, Vars};
use crate::guard::Finding;
use crate::llm::LlmRequest;

use super::definitions;
use super::json::rewrite_strings;
use super::rules::CompiledSide;
use super::Tally;

/// Keys whose string values (and everything under them) a mask never rewrites.
pub const SKIP_KEYS: &[&str] = &[
    "model",
    "role",
    "type",
    "id",
    "tool_call_id",
    "call_id",
    "tool_use_id",
    "item_id",
    "previous_response_id",
    "signature",
    "image_url",
    "input_audio",
    "file_data",
    "file_id",
    "media_type",
    "cache_control",
    "tool_choice",
    "service_tier",
    "reasoning_effort",
    "prompt_cache_key",
];

/// What the request guard decided.
#[derive(Debug, PartialEq)]
pub enum Decision {
    Pass,
    /// Refuse, because of this rule (index into the side's rules).
    Reject(usize),
    /// Send this body instead.
    Rewrite(Vec<u8>),
    /// The body could not be rewritten (the processor's failure mode applies: a masked
    /// finding is never sent on unmasked by accident).
    Error(String),
}

/// Checks one request. `vars` and `jwt` (verified claims, when the transport gave
/// them) are what CEL rules read as `request` and `jwt`.
pub fn check(
    side: &CompiledSide,
    request: &LlmRequest,
    vars: Option<&RequestVars>,
    jwt: Option<&serde_json::Value>,
    body: &[u8],
    tally: &mut Tally,
) -> Decision {
    if let Some(rule) = check_cel(side, request, vars, jwt, tally) {
        return Decision::Reject(rule);
    }
    let definitions = match definitions::texts(body) {
        Ok(texts) => texts,
        Err(e) => return Decision::Error(format!("the request body could not be read: {e}")),
    };
    let texts = || {
        let prompt = request.prompt.iter().map(|p| p.text.as_str());
        prompt.chain(definitions.iter().map(String::as_str))
    };
    let mut findings: Vec<Finding> = Vec::new();
    let mut masked = false;
    let mut rejected = None;
    if let Some(m) = &side.enforce {
        for text in texts() {
            m.scanner.scan_into(text, &mut findings);
            for f in &findings {
                let rule = m.owner(f.rule);
                tally.add(rule, 1);
                match side.rule(rule).action {
                    GuardAction::Reject => {
                        rejected.get_or_insert(rule);
                    }
                    _ => masked = true,
                }
            }
        }
    }
    if let Some(m) = &side.audit {
        for text in texts() {
            m.scanner.scan_into(text, &mut findings);
            for f in &findings {
                tally.add(m.owner(f.rule), 1);
            }
        }
    }
    match (rejected, masked) {
        (Some(rule), _) => Decision::Reject(rule),
        (None, false) => Decision::Pass,
        (None, true) => mask(side, body),
    }
}

/// Evaluates the side's CEL rules (`llm`, `request`, `jwt`), counting each that holds;
/// the first rejecting rule that holds, if any.
fn check_cel(
    side: &CompiledSide,
    request: &LlmRequest,
    vars: Option<&RequestVars>,
    jwt: Option<&serde_json::Value>,
    tally: &mut Tally,
) -> Option<usize> {
    if side.cel.is_empty() {
        return None;
    }
    let cel_vars = Vars::default()
        .with(
            "llm",
            serde_json::json!({
                "model": request.model.as_deref().unwrap_or(""),
                "prompt": request.prompt_text(),
            }),
        )
        .with("request", vars.cloned().unwrap_or_default())
        .with("jwt", jwt.cloned().unwrap_or(serde_json::Value::Null));
    for (rule, expr) in &side.cel {
        match expr.eval_bool(&cel_vars) {
            Ok(true) => {
                tally.add(*rule, 1);
                if side.rule(*rule).action == GuardAction::Reject {
                    return Some(*rule);
                }
            }
            Ok(false) => {}
            Err(e) => {
                tracing::debug!(rule = %side.rule(*rule).name, error = %e, "guard condition did not evaluate; rule not applied")
            }
        }
    }
    None
}

/// The body with the enforcing rules' findings masked in the strings a guard reads.
fn mask(side: &CompiledSide, body: &[u8]) -> Decision {
    let m = side
        .enforce
        .as_ref()
        .expect("masked implies enforcing rules");
    match rewrite_strings(body, |path, text| {
        if !definitions::masked(path) {
            return None;
        }
        let found = m.scanner.scan(text);
        (!found.is_empty())
            .then(|| crate::guard::mask(text, &found, |id| m.scanner.placeholder(id)))
    }) {
        Ok(Some(body)) => Decision::Rewrite(body),
        Ok(None) => Decision::Pass,
        // `LlmRequest::parse` read this body as JSON already; this is not expected.
        Err(e) => Decision::Error(format!("the request body could not be masked: {e}")),
    }
}
