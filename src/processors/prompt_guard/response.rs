//! The response side for a whole (non-streamed) JSON completion: the message text is
//! scanned and masked in place, every other byte kept.
//!
//! Which strings are message text: values under a `content` or `text` key (OpenAI
//! `choices[].message.content` and its text parts, Completions `choices[].text`,
//! Anthropic `content[].text`, Responses `output[].content[].text`), except inside tool
//! calls (`tool_calls`, `function_call`, Anthropic tool `input`), whose arguments are
//! JSON for a program rather than text for a person.

use crate::config::GuardAction;
use crate::guard::Finding;

use super::json::{rewrite_strings, Seg};
use super::request::Decision;
use super::rules::CompiledSide;
use super::Tally;

/// Keys of the strings that hold completion text.
const TEXT_KEYS: &[&str] = &["content", "text"];
/// Keys under which strings are not completion text.
const NOT_TEXT: &[&str] = &["tool_calls", "function_call", "input", "arguments"];

/// Whether the string at `path` is completion text.
pub fn is_text(path: &[Seg<'_>]) -> bool {
    path.last()
        .and_then(Seg::key)
        .is_some_and(|k| TEXT_KEYS.contains(&k))
        && !path
            .iter()
            .any(|s| s.key().is_some_and(|k| NOT_TEXT.contains(&k)))
}

/// Checks a whole JSON response body. A body that is not JSON passes (there is no
/// completion text in it to guard).
pub fn check_json(side: &CompiledSide, body: &[u8], tally: &mut Tally) -> Decision {
    check_strings(side, body, tally, is_text)
}

/// Checks the strings of a JSON `body` that `select` picks by path: audit rules count,
/// reject rules reject, mask rules rewrite them in place. A body that is not JSON passes.
pub fn check_strings(
    side: &CompiledSide,
    body: &[u8],
    tally: &mut Tally,
    select: impl Fn(&[Seg<'_>]) -> bool,
) -> Decision {
    let mut rejected = None;
    let mut scratch: Vec<Finding> = Vec::new();
    let result = rewrite_strings(body, |path, text| {
        if !select(path) {
            return None;
        }
        if let Some(m) = &side.audit {
            m.scanner.scan_into(text, &mut scratch);
            for f in &scratch {
                tally.add(m.owner(f.rule), 1);
            }
        }
        let m = side.enforce.as_ref()?;
        m.scanner.scan_into(text, &mut scratch);
        if scratch.is_empty() {
            return None;
        }
        for f in &scratch {
            let rule = m.owner(f.rule);
            tally.add(rule, 1);
            if side.rule(rule).action == GuardAction::Reject {
                rejected.get_or_insert(rule);
            }
        }
        Some(crate::guard::mask(text, &scratch, |id| {
            m.scanner.placeholder(id)
        }))
    });
    match (rejected, result) {
        (Some(rule), _) => Decision::Reject(rule),
        (None, Ok(Some(body))) => Decision::Rewrite(body),
        (None, Ok(None)) => Decision::Pass,
        (None, Err(e)) => {
            tracing::debug!(error = %e, "body is not JSON; nothing to guard");
            Decision::Pass
        }
    }
}
