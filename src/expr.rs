//! CEL expressions (the `cel` crate) that policies evaluate over an exchange: limit keys
//! such as `request.headers["x-api-key"]`, guard rules such as
//! `llm.model == "gpt-4o" && request.headers["x-team"] != "research"`, and Envoy AI
//! Gateway's cost expressions over `input_tokens`, `output_tokens` and friends (unsigned
//! integers, as there: write `input_tokens * 2u`, not `* 2`).
//! Expressions compile once per config snapshot; a compile error names its field path.
//! Their cost is bounded (`limits.cel`): size and nesting at load (`shape`), and heavy
//! evaluations run off the async workers (`offload`). Access-log fields get agentgateway's
//! logging functions besides the standard ones (`functions`, with `Vars::logging`).

pub mod functions;
mod offload;
mod refs;
mod shape;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::{CelLimits, ConfigError};

pub use offload::{Offload, OffloadError};

/// A compiled CEL expression.
pub struct Expression {
    source: String,
    program: cel::Program,
    shape: shape::Shape,
}

impl std::fmt::Debug for Expression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Expression({:?})", self.source)
    }
}

/// An expression failed at run time (a missing key, a type mismatch).
#[derive(Debug, thiserror::Error)]
#[error("CEL expression {source_text:?}: {message}")]
pub struct ExprError {
    pub source_text: String,
    pub message: String,
}

/// What a request exposes to expressions as `request`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RequestVars {
    pub method: String,
    pub path: String,
    pub host: String,
    /// Lower-case header names; repeated headers joined with `,`.
    pub headers: BTreeMap<String, String>,
}

impl RequestVars {
    pub fn from_head(head: &crate::pipeline::RequestHead, headers: &http::HeaderMap) -> Self {
        let mut map: BTreeMap<String, String> = BTreeMap::new();
        for (name, value) in headers {
            let Ok(value) = value.to_str() else { continue };
            map.entry(name.as_str().to_string())
                .and_modify(|v| {
                    v.push(',');
                    v.push_str(value);
                })
                .or_insert_with(|| value.to_string());
        }
        RequestVars {
            method: head.method.clone(),
            path: head.path_only().to_string(),
            host: head.authority.clone(),
            headers: map,
        }
    }
}

/// The variables of one evaluation: each top-level name to a serializable value.
#[derive(Default)]
pub struct Vars {
    values: Vec<(&'static str, cel::Value)>,
    /// Also offer the logging functions (`flattenRecursive`, …).
    logging: bool,
}

impl Vars {
    /// Variables for access-log fields: the logging functions are offered too.
    pub fn logging() -> Self {
        Vars {
            values: Vec::new(),
            logging: true,
        }
    }

    /// A CEL context holding these variables, for evaluating several expressions
    /// (`Expression::eval_in`).
    pub fn context(&self) -> cel::Context<'static, 'static> {
        let mut context = cel::Context::default();
        if self.logging {
            functions::register(&mut context);
        }
        for (name, value) in &self.values {
            context.add_variable_from_value(*name, value.clone());
        }
        context
    }

    /// Adds a variable; values that cannot be represented are skipped with a warning.
    pub fn with(mut self, name: &'static str, value: impl Serialize) -> Self {
        match cel::to_value(value) {
            Ok(v) => self.values.push((name, v)),
            Err(e) => tracing::warn!(variable = name, error = %e, "CEL variable not representable"),
        }
        self
    }
}

impl Expression {
    /// Compiles `source` within `limits`; `path` is its field path, for the error.
    pub fn compile(source: &str, path: &str, limits: &CelLimits) -> Result<Self, ConfigError> {
        let shape =
            shape::check(source, limits).map_err(|e| ConfigError::field(path, e.to_string()))?;
        let program = cel::Program::compile(source)
            .map_err(|e| ConfigError::field(path, format!("invalid CEL expression: {e}")))?;
        Ok(Expression {
            source: source.to_string(),
            program,
            shape,
        })
    }

    /// Whether the expression loops (a comprehension): its cost grows with its input.
    pub fn loops(&self) -> bool {
        self.shape.comprehension_depth > 0
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the expression reads `path` or something under it (`request.body` for
    /// `json(request.body).model`), or all of it from above (a bare `request`, when
    /// `whole` says that counts).
    pub fn reads(&self, path: &str, whole: bool) -> bool {
        self.shape.paths.iter().any(|p| {
            let under = p
                .strip_prefix(path)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'));
            let above = whole
                && path
                    .strip_prefix(p.as_str())
                    .is_some_and(|rest| rest.starts_with('.'));
            under || above
        })
    }

    /// Evaluates the expression with `vars` in scope.
    pub fn eval(&self, vars: &Vars) -> Result<cel::Value, ExprError> {
        self.eval_in(&vars.context())
    }

    /// Evaluates the expression in a context made by `Vars::context`.
    pub fn eval_in(&self, context: &cel::Context<'_, '_>) -> Result<cel::Value, ExprError> {
        self.program.execute(context).map_err(|e| ExprError {
            source_text: self.source.clone(),
            message: e.to_string(),
        })
    }

    /// Evaluates to text: strings as they are, numbers and booleans printed; `None` for
    /// null or an empty string.
    pub fn eval_string(&self, vars: &Vars) -> Result<Option<String>, ExprError> {
        Ok(match self.eval(vars)? {
            cel::Value::String(s) if s.is_empty() => None,
            cel::Value::String(s) => Some(s.to_string()),
            cel::Value::Int(i) => Some(i.to_string()),
            cel::Value::UInt(u) => Some(u.to_string()),
            cel::Value::Float(f) => Some(f.to_string()),
            cel::Value::Bool(b) => Some(b.to_string()),
            cel::Value::Null => None,
            other => return Err(self.type_error("a string", &other)),
        })
    }

    /// Evaluates to a number.
    pub fn eval_number(&self, vars: &Vars) -> Result<f64, ExprError> {
        match self.eval(vars)? {
            cel::Value::Int(i) => Ok(i as f64),
            cel::Value::UInt(u) => Ok(u as f64),
            cel::Value::Float(f) => Ok(f),
            other => Err(self.type_error("a number", &other)),
        }
    }

    /// Evaluates to a boolean.
    pub fn eval_bool(&self, vars: &Vars) -> Result<bool, ExprError> {
        match self.eval(vars)? {
            cel::Value::Bool(b) => Ok(b),
            other => Err(self.type_error("a boolean", &other)),
        }
    }

    fn type_error(&self, wanted: &str, got: &cel::Value) -> ExprError {
        ExprError {
            source_text: self.source.clone(),
            message: format!("expected {wanted}, got {got:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> CelLimits {
        CelLimits::default()
    }

    fn request() -> RequestVars {
        let mut headers = BTreeMap::new();
        headers.insert("x-api-key".to_string(), "k1".to_string());
        RequestVars {
            method: "POST".into(),
            path: "/v1/chat/completions".into(),
            host: "api.local".into(),
            headers,
        }
    }

    #[test]
    fn keys_from_headers() {
        let e = Expression::compile(r#"request.headers["x-api-key"]"#, "k", &limits()).unwrap();
        let vars = Vars::default().with("request", request());
        assert_eq!(e.eval_string(&vars).unwrap().as_deref(), Some("k1"));
    }

    #[test]
    fn cost_expression_over_token_counts() {
        let e = Expression::compile("input_tokens * 2u + output_tokens", "c", &limits()).unwrap();
        let vars = Vars::default()
            .with("input_tokens", 10u64)
            .with("output_tokens", 5u64);
        assert_eq!(e.eval_number(&vars).unwrap(), 25.0);
    }

    #[test]
    fn compile_error_names_the_path() {
        let err = Expression::compile("request.headers[", "routes[0].x", &limits()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("routes[0].x: invalid CEL expression"),
            "{err}"
        );
    }

    #[test]
    fn shape_errors_name_the_path() {
        let src = "[1].all(a, [2].all(b, a == b))";
        let err = Expression::compile(
            src,
            "routes[0].policies.promptGuard.request.rules[1].cel",
            &limits(),
        )
        .unwrap_err();
        assert!(
            err.to_string().starts_with(
                "routes[0].policies.promptGuard.request.rules[1].cel: comprehensions nested 2 deep"
            ),
            "{err}"
        );
        assert!(Expression::compile("[1].all(a, a == 1)", "x", &limits())
            .unwrap()
            .loops());
        assert!(!Expression::compile("1 == 1", "x", &limits())
            .unwrap()
            .loops());
    }

    #[test]
    fn missing_header_is_an_error_not_a_panic() {
        let e = Expression::compile(r#"request.headers["absent"]"#, "k", &limits()).unwrap();
        let vars = Vars::default().with("request", request());
        assert!(e.eval_string(&vars).is_err());
        let e = Expression::compile(
            r#"request.method == "POST" && request.path.startsWith("/v1")"#,
            "b",
            &limits(),
        )
        .unwrap();
        assert!(e.eval_bool(&vars).unwrap());
    }
}
