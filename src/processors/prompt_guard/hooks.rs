//! Asking the guard webhook and applying its answer to a body: the prompt parts (after
//! the rules' masks) go out as messages, a mask comes back as the same texts changed
//! and is written into the JSON body in place; a failure applies the webhook's own
//! failure mode.
//!
//! A masked prompt part is found again in the body by its text: each string value
//! (where `definitions::masked` allows) equal to a text the service changed is replaced.
//! Prompt parts are the body's string values unescaped, so they match exactly.

use std::collections::HashMap;

use http::StatusCode;

use crate::config::FailureMode;
use crate::llm::LlmRequest;
use crate::metrics::{GuardLabels, Metrics};
use crate::pipeline::Ctx;

use super::json::rewrite_strings;
use super::moderation::Moderation;
use super::response::is_text;
use super::rules::CompiledSide;
use super::webhook::{Verdict, Webhook, WebhookError};

/// What to do after the webhook answered.
pub enum Asked {
    /// Leave the body as it is.
    Keep,
    /// Send this body instead.
    Rewrite(Vec<u8>),
    /// Answer with this error.
    Respond(Reply),
}

/// An error reply, put into the API's format by the processor.
pub struct Reply {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
}

/// Asks about the prompt. `masked`: the rules changed the body, so the parts are sent
/// as the rules masked them.
pub async fn ask_prompt(
    webhook: &Webhook,
    side: &CompiledSide,
    request: &LlmRequest,
    body: &[u8],
    masked: bool,
    cx: &Ctx,
    metrics: &Metrics,
) -> Asked {
    let texts: Vec<String> = request
        .prompt
        .iter()
        .map(|p| match (&side.enforce, masked) {
            (Some(m), true) => m.scanner.mask(&p.text),
            _ => p.text.clone(),
        })
        .collect();
    if texts.is_empty() {
        return Asked::Keep;
    }
    let parts: Vec<(&str, &str)> = request
        .prompt
        .iter()
        .zip(&texts)
        .map(|(p, t)| (p.role.as_str(), t.as_str()))
        .collect();
    let verdict = match webhook.check_prompt(&parts, &cx.request_id).await {
        Ok(v) => v,
        Err(e) => return failed(webhook, side, e, cx),
    };
    match verdict {
        Verdict::Pass => Asked::Keep,
        Verdict::Reject { status, message } => {
            count(metrics, cx, side, "webhook", "reject");
            Asked::Respond(Reply {
                status,
                kind: "prompt_rejected",
                message,
            })
        }
        Verdict::Mask(new) => {
            let changed: HashMap<&str, &str> = texts
                .iter()
                .zip(&new)
                .filter(|(old, new)| old != new)
                .map(|(old, new)| (old.as_str(), new.as_str()))
                .collect();
            if changed.is_empty() {
                return Asked::Keep;
            }
            count(metrics, cx, side, "webhook", "mask");
            let mut applied = 0;
            let rewritten = rewrite_strings(body, |path, text| {
                if !super::definitions::masked(path) {
                    return None;
                }
                let new = changed.get(text)?;
                applied += 1;
                Some(new.to_string())
            });
            match rewritten {
                Ok(Some(body)) => Asked::Rewrite(body),
                _ => failed(
                    webhook,
                    side,
                    WebhookError {
                        url: "(mask)".into(),
                        reason: format!(
                            "the masked texts were not found in the body ({applied} applied)"
                        ),
                    },
                    cx,
                ),
            }
        }
    }
}

/// Asks about the texts of a JSON completion.
pub async fn ask_response(
    webhook: &Webhook,
    side: &CompiledSide,
    body: &[u8],
    cx: &Ctx,
    metrics: &Metrics,
) -> Asked {
    let mut texts = Vec::new();
    let read = rewrite_strings(body, |path, text| {
        if is_text(path) {
            texts.push(text.to_string());
        }
        None
    });
    if read.is_err() || texts.is_empty() {
        return Asked::Keep; // no completion text to ask about
    }
    let verdict = match webhook.check_response(&texts, &cx.request_id).await {
        Ok(v) => v,
        Err(e) => return failed(webhook, side, e, cx),
    };
    match verdict {
        Verdict::Pass => Asked::Keep,
        Verdict::Reject { status, message } => {
            count(metrics, cx, side, "webhook", "reject");
            Asked::Respond(Reply {
                status,
                kind: "response_rejected",
                message,
            })
        }
        Verdict::Mask(new) => {
            let mut k = 0;
            let rewritten = rewrite_strings(body, |path, text| {
                if !is_text(path) {
                    return None;
                }
                let replacement = new.get(k).filter(|n| n.as_str() != text).cloned();
                k += 1;
                replacement
            });
            match rewritten {
                Ok(Some(body)) => {
                    count(metrics, cx, side, "webhook", "mask");
                    Asked::Rewrite(body)
                }
                _ => Asked::Keep,
            }
        }
    }
}

/// Asks the moderation endpoint about the prompt texts (as the rules masked them).
pub async fn ask_moderation(
    moderation: &Moderation,
    side: &CompiledSide,
    request: &LlmRequest,
    masked: bool,
    cx: &Ctx,
    metrics: &Metrics,
) -> Asked {
    let texts: Vec<String> = request
        .prompt
        .iter()
        .map(|p| match (&side.enforce, masked) {
            (Some(m), true) => m.scanner.mask(&p.text),
            _ => p.text.clone(),
        })
        .collect();
    if texts.is_empty() {
        return Asked::Keep;
    }
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    match moderation.check(&texts).await {
        Ok(None) => Asked::Keep,
        Ok(Some(message)) => {
            count(metrics, cx, side, "moderation", "reject");
            Asked::Respond(Reply {
                status: moderation.status,
                kind: "prompt_rejected",
                message,
            })
        }
        Err(e) => fail_mode(moderation.failure_mode, side, e, cx),
    }
}

/// The webhook gave no verdict: its failure mode decides.
fn failed(webhook: &Webhook, side: &CompiledSide, e: WebhookError, cx: &Ctx) -> Asked {
    fail_mode(webhook.failure_mode, side, e, cx)
}

fn fail_mode(mode: FailureMode, side: &CompiledSide, e: WebhookError, cx: &Ctx) -> Asked {
    tracing::warn!(
        target: "tollgate::guard",
        request_id = %cx.request_id, side = side.kind.as_str(), error = %e,
        failure_mode = ?mode, "guard service failed"
    );
    match mode {
        FailureMode::FailOpen => Asked::Keep,
        FailureMode::FailClosed => Asked::Respond(Reply {
            status: StatusCode::SERVICE_UNAVAILABLE,
            kind: "guard_unavailable",
            message: "the guard service is unavailable".into(),
        }),
    }
}

/// Service verdicts count under the rule names `webhook` and `moderation`.
fn count(metrics: &Metrics, cx: &Ctx, side: &CompiledSide, rule: &str, action: &'static str) {
    metrics
        .guard_findings
        .get_or_create(&GuardLabels {
            route: cx.route.clone().unwrap_or_default(),
            side: side.kind.as_str(),
            rule: rule.into(),
            action,
        })
        .inc();
}
