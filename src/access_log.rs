//! Access-log fields computed by CEL (`logging.fields`, agentgateway's
//! `config.logging.fields`): `add` maps a field name to an expression evaluated once per
//! exchange, when its access line is written; `remove` leaves built-in fields out.
//!
//! - Compiled with the pipeline (so they apply on reload), every problem with its field
//!   path: `logging.fields.add.<name>: invalid CEL …`, `logging.fields.remove[0]: …`.
//! - What the expressions read decides what an exchange keeps for them ([`Wants`]):
//!   headers, bodies (the first [`BODY_LIMIT`] bytes), the request's parameters, the
//!   completion text. Nothing is captured for an expression that does not read it.
//! - Variables (`vars`): `request`, `response`, `llm`, `jwt`, `route`. Credential
//!   headers are `"<redacted>"` before any expression sees them.
//! - An expression that fails or yields null leaves its field out; a
//!   `flattenRecursive(…)` value becomes one field per leaf (`name.0.content`).
//! - The result is one JSON object, recorded on the access event as [`ACCESS_FIELDS`];
//!   `crate::telemetry` turns it into top-level keys (JSON) or `name=value` pairs (text).

mod capture;
mod vars;

use crate::config::{AccessLogFields, CelLimits, ConfigError, ConfigErrors};
use crate::expr::{functions::Flattened, Expression};

pub use capture::Capture;
pub use vars::Input;

/// The access event's field holding the added fields, as a JSON object.
pub const ACCESS_FIELDS: &str = "access_fields";

/// Bytes of a body, a completion or a prompt kept for expressions; the rest is cut.
pub const BODY_LIMIT: usize = 64 * 1024;

/// The access line's built-in fields (`remove` names them).
pub const BUILTIN_FIELDS: &[&str] = &[
    "adapter",
    "route",
    "method",
    "path",
    "status",
    "outcome",
    "duration_ms",
    "request_id",
    "llm.provider",
    "llm.request_model",
    "llm.response_model",
    "llm.stream",
    "llm.input_tokens",
    "llm.output_tokens",
    "llm.cached_input_tokens",
    "llm.reasoning_tokens",
    "llm.total_tokens",
    "llm.usage_reported",
    "llm.ttft_ms",
    "llm.cost_usd",
];

/// Keys the log formatter writes itself: no field may take them.
const RESERVED: &[&str] = &[
    "timestamp",
    "level",
    "target",
    "message",
    "span",
    "spans",
    "threadName",
    "threadId",
    "filename",
    "line_number",
    ACCESS_FIELDS,
];

/// What some expression reads, so what an exchange keeps for the access line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Wants {
    pub request_headers: bool,
    pub request_body: bool,
    pub response_headers: bool,
    pub response_body: bool,
    /// `llm.prompt` (built from the parsed request).
    pub prompt: bool,
    /// `llm.params`, read from the request body by `tokenAccounting`.
    pub params: bool,
    /// `llm.completion`, followed by `tokenAccounting`.
    pub completion: bool,
}

struct Field {
    name: String,
    expr: Expression,
}

/// The compiled `logging.fields`.
#[derive(Default)]
pub struct AccessLog {
    /// By name.
    fields: Vec<Field>,
    /// Built-in fields left out: removed, or replaced by an added one.
    hidden: Vec<&'static str>,
    wants: Wants,
    /// Lower-case names of headers whose values the config marks secret.
    sensitive: Vec<String>,
}

impl AccessLog {
    /// Compiles `fields` (at `logging.fields`); `substituted` are the config's
    /// `${ENV}` paths: headers a header modifier sets from them are redacted too.
    pub fn compile(
        fields: &AccessLogFields,
        cel: &CelLimits,
        substituted: &[String],
    ) -> Result<AccessLog, ConfigError> {
        let mut errs = ConfigErrors::default();
        let mut log = AccessLog {
            sensitive: sensitive_headers(substituted),
            ..AccessLog::default()
        };
        for (name, source) in &fields.add {
            let at = format!("logging.fields.add.{name}");
            if let Err(e) = check_name(name, &at) {
                errs.push(e);
                continue;
            }
            if let Some(expr) = errs.check(Expression::compile(source, &at, cel)) {
                log.hide(name);
                log.fields.push(Field {
                    name: name.clone(),
                    expr,
                });
            }
        }
        for (i, name) in fields.remove.iter().enumerate() {
            if !log.hide(name) {
                errs.push(ConfigError::field(
                    format!("logging.fields.remove[{i}]"),
                    format!(
                        "{name:?} is not a built-in access-log field (one of: {})",
                        BUILTIN_FIELDS.join(", ")
                    ),
                ));
            }
        }
        log.wants = wants(&log.fields);
        errs.finish(log)
    }

    /// Hides the built-in field `name`; false when there is none.
    fn hide(&mut self, name: &str) -> bool {
        let Some(&builtin) = BUILTIN_FIELDS.iter().find(|b| **b == name) else {
            return false;
        };
        if !self.hidden.contains(&builtin) {
            self.hidden.push(builtin);
        }
        true
    }

    /// What the expressions read.
    pub fn wants(&self) -> Wants {
        self.wants
    }

    /// Whether the built-in field `name` goes on the line.
    pub fn keeps(&self, name: &str) -> bool {
        !self.hidden.contains(&name)
    }

    /// Whether a header's value is hidden from expressions: a credential by its name
    /// (`crate::redact::is_secret_header`), a value marked sensitive (a provider key
    /// tollgate set), or one the config sets from `${ENV}`.
    pub fn is_sensitive(&self, name: &str, value: &http::HeaderValue) -> bool {
        value.is_sensitive()
            || crate::redact::is_secret_header(name)
            || self.sensitive.iter().any(|s| s.eq_ignore_ascii_case(name))
    }

    /// The added fields of one exchange as a JSON object's text; `None` when there
    /// are none (no field configured, or every one left out).
    pub fn evaluate(&self, input: &Input<'_>) -> Option<String> {
        if self.fields.is_empty() {
            return None;
        }
        let context = vars::build(input, self.wants).context();
        let mut out = serde_json::Map::new();
        for field in &self.fields {
            match field.expr.eval_in(&context) {
                Ok(value) => self.put(&mut out, &field.name, &value),
                Err(e) => {
                    tracing::debug!(field = %field.name, error = %e, "access-log field left out")
                }
            }
        }
        (!out.is_empty()).then(|| serde_json::Value::Object(out).to_string())
    }

    /// Puts one field's value in `out`: a flattened value as one key per leaf (those
    /// that would take a built-in's or the formatter's key are dropped), null not at all.
    fn put(
        &self,
        out: &mut serde_json::Map<String, serde_json::Value>,
        name: &str,
        value: &cel::Value,
    ) {
        if let cel::Value::Opaque(o) = value {
            if let Some(Flattened(leaves)) = o.downcast_ref::<Flattened>() {
                for (key, leaf) in leaves {
                    let key = format!("{name}.{key}");
                    let taken = RESERVED.contains(&key.as_str())
                        || (BUILTIN_FIELDS.contains(&key.as_str()) && self.keeps(&key));
                    if !taken && !leaf.is_null() {
                        out.insert(key, leaf.clone());
                    }
                }
                return;
            }
        }
        match crate::expr::functions::to_json(value) {
            serde_json::Value::Null => {}
            json => {
                out.insert(name.to_string(), json);
            }
        }
    }
}

/// The longest prefix of `text` of at most `max` bytes, at a character boundary.
pub fn cut(text: &str, max: usize) -> &str {
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A field name: not empty, not a key the formatter writes, no space, `=` or quote
/// (a text line is `name=value`).
fn check_name(name: &str, at: &str) -> Result<(), ConfigError> {
    if RESERVED.contains(&name) {
        return Err(ConfigError::field(
            at,
            "the log formatter writes this key itself: choose another name",
        ));
    }
    let printable = |c: char| c.is_ascii_graphic() && c != '=' && c != '"';
    if name.is_empty() || !name.chars().all(printable) {
        return Err(ConfigError::field(
            at,
            "a field name is printable ASCII without spaces, `=` or `\"`",
        ));
    }
    Ok(())
}

fn wants(fields: &[Field]) -> Wants {
    let any = |path: &str, whole: bool| fields.iter().any(|f| f.expr.reads(path, whole));
    Wants {
        request_headers: any("request.headers", true),
        request_body: any("request.body", false),
        response_headers: any("response.headers", true),
        response_body: any("response.body", false),
        prompt: any("llm.prompt", true),
        params: any("llm.params", true),
        completion: any("llm.completion", false),
    }
}

/// Headers a header modifier sets from `${ENV}`: `….requestHeaderModifier.set.<name>`
/// (or `add`, or the response's) among the substituted paths.
fn sensitive_headers(substituted: &[String]) -> Vec<String> {
    let mut names: Vec<String> = substituted
        .iter()
        .filter_map(|path| {
            let (_, rest) = path.split_once("HeaderModifier.")?;
            let name = rest
                .strip_prefix("set.")
                .or_else(|| rest.strip_prefix("add."))?;
            Some(name.to_ascii_lowercase())
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests;
