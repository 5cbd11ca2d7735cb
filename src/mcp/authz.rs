//! Who may use what (`mcpAuthorization`): CEL rules over an MCP call and the caller's
//! verified claims. A `tools/call`, `prompts/get` or `resources/read` goes through only
//! when a rule is true for it; lists show only the items a rule allows, so callers see
//! just what they may call. Other methods (`initialize`, `ping`, notifications, …) are
//! not subject to rules.
//!
//! Variables: `mcp.method` (the call's method: `tools/call`, `prompts/get`,
//! `resources/read`, also when filtering a list), `mcp.target` (the target's name),
//! `mcp.tool.name` / `mcp.prompt.name` / `mcp.resource.uri` (the target's own name or
//! URI), `mcp.arguments` (a call's arguments; absent when filtering a list), and `jwt`
//! (the claims `mcpAuthentication` verified; `{}` without it).
//!
//! A rule that fails to evaluate (a missing key, a wrong type) is false for a call,
//! which fails closed. In a list it shows the item: a rule that reads `mcp.arguments`
//! cannot be decided without them, and the call is checked again.

use serde_json::{json, Map, Value};

use crate::config::{CelLimits, ConfigError, McpAuthorization};
use crate::expr::{Expression, Vars};

/// What a rule is asked about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Item<'a> {
    Tool(&'a str),
    Prompt(&'a str),
    /// A resource's URI, or a template's URI template.
    Resource(&'a str),
}

impl Item<'_> {
    /// The method that uses an item of this kind.
    pub fn method(&self) -> &'static str {
        match self {
            Item::Tool(_) => "tools/call",
            Item::Prompt(_) => "prompts/get",
            Item::Resource(_) => "resources/read",
        }
    }
}

/// The compiled rules of a route.
#[derive(Debug)]
pub struct Rules {
    rules: Vec<Expression>,
}

impl Rules {
    /// Compiles the rules at `path` (`….policies.mcpAuthorization`).
    pub fn compile(
        policy: &McpAuthorization,
        path: &str,
        limits: &CelLimits,
    ) -> Result<Self, ConfigError> {
        if policy.rules.is_empty() {
            return Err(ConfigError::field(
                format!("{path}.rules"),
                "name at least one rule (with none, nothing could be called)",
            ));
        }
        let rules = policy
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| Expression::compile(r, &format!("{path}.rules[{i}]"), limits))
            .collect::<Result<_, _>>()?;
        Ok(Rules { rules })
    }

    /// Whether a call of `item` on `target` with `arguments` is allowed.
    pub fn allows_call(
        &self,
        target: &str,
        item: Item<'_>,
        arguments: &Value,
        jwt: Option<&Value>,
    ) -> bool {
        let vars = vars(target, item, Some(arguments), jwt);
        self.rules.iter().any(|rule| match rule.eval_bool(&vars) {
            Ok(allowed) => allowed,
            Err(e) => {
                tracing::debug!(error = %e, "MCP authorization rule failed; counted false");
                false
            }
        })
    }

    /// Whether a list shows `item` of `target`.
    pub fn shows(&self, target: &str, item: Item<'_>, jwt: Option<&Value>) -> bool {
        let vars = vars(target, item, None, jwt);
        self.rules
            .iter()
            .any(|rule| rule.eval_bool(&vars).unwrap_or(true))
    }

    /// Keeps the items of one target's `list` (`tools`, `prompts`, `resources`,
    /// `resourceTemplates`) that a rule shows.
    pub fn filter_list(&self, target: &str, list: &str, result: &mut Value, jwt: Option<&Value>) {
        let Some(Value::Array(items)) = result.get_mut(list) else {
            return;
        };
        let key = match list {
            "resources" => "uri",
            "resourceTemplates" => "uriTemplate",
            _ => "name",
        };
        items.retain(|entry| {
            let Some(name) = entry.get(key).and_then(Value::as_str) else {
                return false;
            };
            let item = match list {
                "tools" => Item::Tool(name),
                "prompts" => Item::Prompt(name),
                _ => Item::Resource(name),
            };
            self.shows(target, item, jwt)
        });
    }
}

fn vars(target: &str, item: Item<'_>, arguments: Option<&Value>, jwt: Option<&Value>) -> Vars {
    let mut mcp = Map::new();
    mcp.insert("method".into(), json!(item.method()));
    mcp.insert("target".into(), json!(target));
    match item {
        Item::Tool(name) => mcp.insert("tool".into(), json!({ "name": name })),
        Item::Prompt(name) => mcp.insert("prompt".into(), json!({ "name": name })),
        Item::Resource(uri) => mcp.insert("resource".into(), json!({ "uri": uri })),
    };
    if let Some(arguments) = arguments {
        mcp.insert("arguments".into(), arguments.clone());
    }
    let empty = Value::Object(Map::new());
    Vars::default()
        .with("mcp", Value::Object(mcp))
        .with("jwt", jwt.unwrap_or(&empty))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(sources: &[&str]) -> Rules {
        let policy = McpAuthorization {
            rules: sources.iter().map(|s| s.to_string()).collect(),
        };
        Rules::compile(&policy, "p", &CelLimits::default()).unwrap()
    }

    #[test]
    fn a_call_is_allowed_by_any_true_rule_and_errors_count_false() {
        let r = rules(&[
            r#"jwt.sub == "alice" && mcp.tool.name == "echo""#,
            r#"mcp.target == "calendar" && mcp.arguments.day == "mon""#,
        ]);
        let alice = json!({"sub": "alice"});
        let none = json!({});
        assert!(r.allows_call("weather", Item::Tool("echo"), &none, Some(&alice)));
        assert!(!r.allows_call("weather", Item::Tool("echo"), &none, None));
        assert!(!r.allows_call("weather", Item::Prompt("echo"), &none, Some(&alice)));
        assert!(r.allows_call("calendar", Item::Tool("x"), &json!({"day": "mon"}), None));
        assert!(!r.allows_call("calendar", Item::Tool("x"), &json!({}), None));
    }

    #[test]
    fn lists_keep_what_a_rule_shows_or_cannot_decide_without_arguments() {
        let r = rules(&[
            r#"mcp.tool.name == "echo""#,
            r#"mcp.tool.name == "book" && mcp.arguments.day == "mon""#,
        ]);
        let mut result =
            json!({"tools": [{"name": "echo"}, {"name": "book"}, {"name": "delete"}, {"x": 1}]});
        r.filter_list("t", "tools", &mut result, None);
        assert_eq!(
            result,
            json!({"tools": [{"name": "echo"}, {"name": "book"}]})
        );
        let r = rules(&[r#"mcp.resource.uri.startsWith("docs://")"#]);
        let mut result = json!({"resources": [{"uri": "docs://a"}, {"uri": "db://b"}]});
        r.filter_list("t", "resources", &mut result, None);
        assert_eq!(result, json!({"resources": [{"uri": "docs://a"}]}));
    }

    #[test]
    fn compile_errors_name_the_rule() {
        let policy = McpAuthorization {
            rules: vec!["true".into(), "mcp.tool.name ==".into()],
        };
        let e = Rules::compile(&policy, "p", &CelLimits::default()).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("p.rules[1]: invalid CEL expression"),
            "{e}"
        );
        let e = Rules::compile(&McpAuthorization::default(), "p", &CelLimits::default());
        assert!(e
            .unwrap_err()
            .to_string()
            .starts_with("p.rules: name at least one rule"));
    }
}
