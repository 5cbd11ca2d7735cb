//! The shape of a CEL expression, checked when a config loads (`limits.cel`): its size,
//! its nesting, and how deeply comprehension macros nest (each level multiplies the work
//! of the levels inside it, so it bounds an evaluation's cost more than the size does).

use cel::common::ast::{EntryExpr, Expr};
use cel::IdedExpr;

use crate::config::CelLimits;

/// Macros that loop over a list or a map.
const COMPREHENSIONS: &[&str] = &["all", "exists", "exists_one", "map", "filter"];

/// What the load-time check found worth knowing at evaluation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Shape {
    /// Deepest nesting of comprehensions (0: none).
    pub comprehension_depth: usize,
    /// The variable paths the expression reads (`super::refs`).
    pub paths: std::collections::BTreeSet<String>,
}

/// Why an expression is refused; the message is the one for its field.
#[derive(Debug, thiserror::Error)]
pub enum ShapeError {
    #[error("expression is {bytes} bytes, more than limits.cel.maxExpressionBytes ({max})")]
    TooLong { bytes: usize, max: usize },
    #[error("expression nests {depth} deep, more than limits.cel.maxNestingDepth ({max})")]
    TooDeep { depth: usize, max: u16 },
    /// The parser stops at `max_depth` with a syntax error, so either may be the cause.
    #[error(
        "invalid CEL expression (or nested deeper than limits.cel.maxNestingDepth, {max_depth}): {error}"
    )]
    Invalid {
        max_depth: u16,
        error: cel::ParseErrors,
    },
    #[error(
        "comprehensions nested {depth} deep, more than limits.cel.maxComprehensionDepth ({max})"
    )]
    Comprehensions { depth: usize, max: usize },
}

/// Checks `source` against `limits`.
pub fn check(source: &str, limits: &CelLimits) -> Result<Shape, ShapeError> {
    if source.len() > limits.max_expression_bytes {
        return Err(ShapeError::TooLong {
            bytes: source.len(),
            max: limits.max_expression_bytes,
        });
    }
    // The parser recurses once per level before its own depth check could stop it, so
    // the depth is bounded on the source first.
    let depth = source_depth(source);
    if depth > usize::from(limits.max_nesting_depth) {
        return Err(ShapeError::TooDeep {
            depth,
            max: limits.max_nesting_depth,
        });
    }
    let parsed = cel::parser::Parser::new()
        .max_recursion_depth(limits.max_nesting_depth)
        .parse(source)
        .map_err(|error| ShapeError::Invalid {
            max_depth: limits.max_nesting_depth,
            error,
        })?;
    let shape = Shape {
        comprehension_depth: comprehension_depth(&parsed),
        paths: super::refs::paths(&parsed),
    };
    if shape.comprehension_depth > limits.max_comprehension_depth {
        return Err(ShapeError::Comprehensions {
            depth: shape.comprehension_depth,
            max: limits.max_comprehension_depth,
        });
    }
    Ok(shape)
}

/// An upper bound of the parser's recursion on `source`, read without parsing: the
/// deepest bracket nesting, plus the longest run of unary operators, plus every `?` of
/// a conditional (they nest to the right). String literals are skipped.
fn source_depth(source: &str) -> usize {
    let bytes = source.as_bytes();
    let (mut depth, mut deepest, mut unary, mut longest_unary) = (0usize, 0, 0, 0);
    let mut conditionals = 0;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'"' | b'\'' => {
                i = skip_string(bytes, i);
                unary = 0;
                continue;
            }
            b'(' | b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            b'?' => conditionals += 1,
            _ => {}
        }
        if c == b'!' || c == b'-' {
            unary += 1;
            longest_unary = longest_unary.max(unary);
        } else if !c.is_ascii_whitespace() {
            unary = 0;
        }
        i += 1;
    }
    deepest + longest_unary + conditionals
}

/// The offset after the string literal starting with the quote at `i` (triple-quoted
/// or not); the end of `bytes` when it is not closed.
fn skip_string(bytes: &[u8], i: usize) -> usize {
    let q = bytes[i];
    if bytes[i..].starts_with(&[q, q, q]) {
        let mut j = i + 3;
        while j < bytes.len() {
            if bytes[j] == b'\\' {
                j += 2;
            } else if bytes[j..].starts_with(&[q, q, q]) {
                return j + 3;
            } else {
                j += 1;
            }
        }
        return bytes.len();
    }
    let mut j = i + 1;
    while j < bytes.len() {
        match bytes[j] {
            b'\\' => j += 2,
            c if c == q => return j + 1,
            _ => j += 1,
        }
    }
    bytes.len()
}

/// The deepest nesting of comprehensions in `e`, whether the parser expanded the macros
/// or left them as calls.
fn comprehension_depth(e: &IdedExpr) -> usize {
    let inner = children(e)
        .into_iter()
        .map(comprehension_depth)
        .max()
        .unwrap_or(0);
    let looping = match &e.expr {
        Expr::Call(call) => call.target.is_some() && COMPREHENSIONS.contains(&&*call.func_name),
        Expr::Comprehension(_) => true,
        _ => false,
    };
    inner + usize::from(looping)
}

/// The direct subexpressions of `e`, for walks over the syntax tree.
pub(super) fn children(e: &IdedExpr) -> Vec<&IdedExpr> {
    fn entry(en: &EntryExpr) -> Vec<&IdedExpr> {
        match en {
            EntryExpr::StructField(f) => vec![&f.value],
            EntryExpr::MapEntry(m) => vec![&m.key, &m.value],
        }
    }
    match &e.expr {
        Expr::Call(call) => call.target.iter().map(|t| &**t).chain(&call.args).collect(),
        Expr::Comprehension(c) => vec![
            &c.iter_range,
            &c.accu_init,
            &c.loop_cond,
            &c.loop_step,
            &c.result,
        ],
        Expr::List(l) => l.elements.iter().collect(),
        Expr::Map(m) => m.entries.iter().flat_map(|en| entry(&en.expr)).collect(),
        Expr::Struct(s) => s.entries.iter().flat_map(|en| entry(&en.expr)).collect(),
        Expr::Select(s) => vec![&s.operand],
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_expressions_pass() {
        let s = check(
            r#"llm.model == "gpt-4o" && request.headers["x-team"] != "research""#,
            &CelLimits::default(),
        )
        .unwrap();
        assert_eq!(s.comprehension_depth, 0);
        let s = check(
            r#"request.headers.exists(k, k.startsWith("x-"))"#,
            &CelLimits::default(),
        )
        .unwrap();
        assert_eq!(s.comprehension_depth, 1);
    }

    #[test]
    fn too_long_is_refused() {
        let src = format!("{} == 1", "1 + ".repeat(2000));
        let err = check(&src, &CelLimits::default()).unwrap_err();
        assert!(
            matches!(err, ShapeError::TooLong { bytes, .. } if bytes == src.len()),
            "{err:?}"
        );
        assert!(err.to_string().contains("maxExpressionBytes"), "{err}");
    }

    #[test]
    fn too_deep_is_refused_without_overflowing() {
        let src = format!("{}1{}", "(".repeat(40), ")".repeat(40));
        let err = check(&src, &CelLimits::default()).unwrap_err();
        assert!(
            matches!(err, ShapeError::TooDeep { max: 32, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("maxNestingDepth"), "{err}");
        let limits = CelLimits {
            max_expression_bytes: 8192,
            ..CelLimits::default()
        };
        for src in [
            format!("{}1{}", "[".repeat(2000), "]".repeat(2000)),
            format!("{}true", "!".repeat(4000)),
            format!("{}1", "- ".repeat(2000)),
            format!("{}1", "true ? 1 : ".repeat(700)),
        ] {
            let err = check(&src, &limits).unwrap_err();
            assert!(err.to_string().contains("maxNestingDepth"), "{err}");
        }
        // Brackets and operators inside strings are text, not nesting.
        let src = format!(
            r#"llm.prompt.contains("{}") && "x" != '((\'(('"#,
            "(".repeat(100)
        );
        assert!(check(&src, &CelLimits::default()).is_ok());
    }

    #[test]
    fn nested_comprehensions_are_refused() {
        let src = "[1, 2, 3].all(a, [1, 2, 3].all(b, llm.prompt.contains(\"x\")))";
        let err = check(src, &CelLimits::default()).unwrap_err();
        assert!(
            matches!(err, ShapeError::Comprehensions { depth: 2, max: 1 }),
            "{err:?}"
        );
        assert!(err.to_string().contains("maxComprehensionDepth"), "{err}");
        let limits = CelLimits {
            max_comprehension_depth: 2,
            ..CelLimits::default()
        };
        assert_eq!(check(src, &limits).unwrap().comprehension_depth, 2);
    }
}
