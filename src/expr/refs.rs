//! The variable paths an expression reads, found in its syntax tree at load: a chain of
//! field selections (or constant string indexes) from a variable, written with dots —
//! `request.headers.x-team` for `request.headers["x-team"]`, `request.body` for
//! `json(request.body).model`, `llm` for a bare `llm`. What an exchange captures for
//! access-log fields (bodies, completions) is decided from these, so nothing is kept
//! that no expression reads. A comprehension's own variable shows up too (`c` in
//! `llm.prompt.map(c, c.content)`): harmless, as no capture is named like one.

use std::collections::BTreeSet;

use cel::common::ast::{operators, Expr, LiteralValue};
use cel::IdedExpr;

/// Every path `e` reads.
pub fn paths(e: &IdedExpr) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    collect(e, &mut out);
    out
}

fn collect(e: &IdedExpr, out: &mut BTreeSet<String>) {
    if let Some(path) = path_of(e) {
        out.insert(path);
        return;
    }
    for child in super::shape::children(e) {
        collect(child, out);
    }
}

/// The path of `e` when it is a variable, a field of one, or a constant string index
/// of one; `None` for anything else.
fn path_of(e: &IdedExpr) -> Option<String> {
    match &e.expr {
        Expr::Ident(name) => Some(name.clone()),
        Expr::Select(s) => Some(format!("{}.{}", path_of(&s.operand)?, s.field)),
        Expr::Call(c) if c.func_name == operators::INDEX && c.args.len() == 2 => {
            match &c.args[1].expr {
                Expr::Literal(LiteralValue::String(key)) => {
                    Some(format!("{}.{}", path_of(&c.args[0])?, key.inner()))
                }
                _ => None,
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(source: &str) -> Vec<String> {
        let parsed = cel::parser::Parser::new().parse(source).unwrap();
        paths(&parsed).into_iter().collect()
    }

    #[test]
    fn selections_indexes_and_bare_variables() {
        assert_eq!(of("request.headers"), ["request.headers"]);
        assert_eq!(
            of(r#"request.headers["x-team"] + response.body"#),
            ["request.headers.x-team", "response.body"]
        );
        assert_eq!(of("json(request.body).model"), ["request.body"]);
        assert_eq!(of("toJson(llm)"), ["llm"]);
        let dynamic = of(r#"request.headers[route] == "x""#);
        assert_eq!(dynamic, ["request.headers", "route"]);
        assert_eq!(of("has(llm.completion)"), ["llm.completion"]);
    }

    #[test]
    fn comprehensions_read_their_range() {
        let paths = of(r#"flattenRecursive(llm.prompt.map(c, {"message": c}))"#);
        assert!(paths.contains(&"llm.prompt".to_string()), "{paths:?}");
    }
}
