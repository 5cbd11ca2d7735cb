//! The variable paths an expression reads, found in its syntax tree at load: a chain of
//! field selections (or constant string indexes) from a variable, written with dots —
//! `request.headers.x-team` for `request.headers["x-team"]`, `request.body` for
//! `json(request.body).model`, `llm` for a bare `llm`. What an exchange captures for
//! access-log fields (bodies, completions) is decided from these, so nothing is kept
//! that no expression reads. A comprehension's own variable shows up too (`c` in
//! `llm.prompt.map(c, c.content)`): harmless, as no capture is named like one.

use std::collections::BTreeSet;

use cel::common::ast::{operators, EntryExpr, Expr, LiteralValue};
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
    let mut each = |items: &mut dyn Iterator<Item = &IdedExpr>| {
        for item in items {
            collect(item, out);
        }
    };
    match &e.expr {
        Expr::Call(call) => each(&mut call.target.iter().map(|t| &**t).chain(&call.args)),
        Expr::Comprehension(c) => each(
            &mut [
                &c.iter_range,
                &c.accu_init,
                &c.loop_cond,
                &c.loop_step,
                &c.result,
            ]
            .into_iter(),
        ),
        Expr::List(l) => each(&mut l.elements.iter()),
        Expr::Map(m) => each(&mut m.entries.iter().flat_map(|en| entry(&en.expr))),
        Expr::Struct(s) => each(&mut s.entries.iter().flat_map(|en| entry(&en.expr))),
        Expr::Select(s) => collect(&s.operand, out),
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
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

fn entry(e: &EntryExpr) -> Vec<&IdedExpr> {
    match e {
        EntryExpr::StructField(f) => vec![&f.value],
        EntryExpr::MapEntry(m) => vec![&m.key, &m.value],
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
