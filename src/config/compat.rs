//! agentgateway's config keys where tollgate has the same concept under its own key:
//! the file is rewritten (as a JSON value, before the typed model reads it) into
//! tollgate's shape, so one model and one set of checks serve both. What moves:
//!
//! | agentgateway | tollgate |
//! |---|---|
//! | `config.adminAddr` | `admin.address` |
//! | `config.logging.level`, `config.logging.format`, `config.logging.fields` | `logging.level`, `logging.format`, `logging.fields` |
//! | `config.workerThreads` | `runtime.workers` |
//! | `config.tracing` (`otlpEndpoint`, `otlpProtocol`, `randomSampling`, `clientSampling`) | `tracing` (`fields`: a notice) |
//! | a route's `backends: [{mcp: {targets: [{name, mcp: {host}}]}}]` | the route's `mcp: {targets: [{name, url}]}` |
//! | a route's `backends: [{ai: {…}}]`, `policies.backendTLS` | see `compat_ai` (`llmProvider`, `tokenAccounting`) |
//! | `gatewayPolicies: [{target: {gateway}, policy}]` | `policies` |
//! | `timeout: {requestTimeout, backendRequestTimeout}` | `timeout` (the shorter) |
//!
//! Keys agentgateway has that only change what is observed (`config.metrics`,
//! `config.tracing.fields`) are taken out with a notice naming them, which
//! tollgate logs at every load: they are known and not implemented, never silently
//! dropped. Any other key tollgate does not know stays where it is, and the typed model
//! refuses it with its field path.

use serde_json::{Map, Value};

use super::ConfigError;

/// Keys under `config:` that only change what is observed, and what tollgate does
/// instead.
const OBSERVABILITY_ONLY: [(&str, &str); 1] = [(
    "metrics",
    "metric field changes are not implemented: /metrics has tollgate's own labels",
)];

/// Rewrites agentgateway's keys in `value` into tollgate's; the notices to log.
pub fn normalize(value: &mut Value) -> Result<Vec<String>, ConfigError> {
    let mut notices = Vec::new();
    let Some(root) = value.as_object_mut() else {
        return Ok(notices);
    };
    match root.remove("config") {
        None | Some(Value::Null) => {}
        Some(Value::Object(mut gateway)) => {
            move_gateway_keys(root, &mut gateway, &mut notices)?;
            if let Some((key, _)) = gateway.into_iter().next() {
                return Err(ConfigError::field(
                    format!("config.{key}"),
                    "an agentgateway key tollgate does not implement",
                ));
            }
        }
        Some(_) => return Err(ConfigError::field("config", "must be a map")),
    }
    if let Some(list) = root.remove("gatewayPolicies") {
        gateway_policies(root, list)?;
    }
    if let Some(policies) = root.get_mut("policies") {
        timeout(policies, "policies")?;
        unimplemented_policies(policies, "policies")?;
    }
    let gateway_accounts = root
        .get("policies")
        .is_some_and(|p| p.get("tokenAccounting").is_some());
    if let Some(Value::Array(binds)) = root.get_mut("binds") {
        for (b, bind) in binds.iter_mut().enumerate() {
            let listeners = bind.get_mut("listeners").and_then(Value::as_array_mut);
            for (l, listener) in listeners.into_iter().flatten().enumerate() {
                let routes = listener.get_mut("routes").and_then(Value::as_array_mut);
                for (r, route) in routes.into_iter().flatten().enumerate() {
                    let path = format!("binds[{b}].listeners[{l}].routes[{r}]");
                    mcp_backend(route, &path)?;
                    if let Some(policies) = route.get_mut("policies") {
                        timeout(policies, &format!("{path}.policies"))?;
                        unimplemented_policies(policies, &format!("{path}.policies"))?;
                    }
                    super::compat_ai::ai_backend(route, &path, gateway_accounts)?;
                    super::compat_ai::backend_tls(route, &path)?;
                }
            }
        }
    }
    Ok(notices)
}

/// `config.*` keys with a tollgate home, moved there; observability-only ones taken
/// out with a notice.
fn move_gateway_keys(
    root: &mut Map<String, Value>,
    gateway: &mut Map<String, Value>,
    notices: &mut Vec<String>,
) -> Result<(), ConfigError> {
    if let Some(addr) = gateway.remove("adminAddr") {
        place(root, &["admin", "address"], addr, "config.adminAddr")?;
    }
    if let Some(threads) = gateway.remove("workerThreads") {
        place(
            root,
            &["runtime", "workers"],
            threads,
            "config.workerThreads",
        )?;
    }
    let mut logging = match gateway.remove("logging") {
        Some(Value::Object(m)) => m,
        Some(_) => return Err(ConfigError::field("config.logging", "must be a map")),
        None => Map::new(),
    };
    for key in ["level", "format", "fields"] {
        if let Some(v) = logging.remove(key) {
            place(root, &["logging", key], v, &format!("config.logging.{key}"))?;
        }
    }
    if let Some(tracing) = gateway.remove("tracing") {
        let Value::Object(mut tracing) = tracing else {
            return Err(ConfigError::field("config.tracing", "must be a map"));
        };
        if tracing.remove("fields").is_some() {
            notices.push(
                "config.tracing.fields: known agentgateway key; CEL span attributes are not implemented: spans carry tollgate's GenAI attributes".into(),
            );
        }
        place(root, &["tracing"], Value::Object(tracing), "config.tracing")?;
    }
    for (key, instead) in OBSERVABILITY_ONLY {
        if gateway.remove(key).is_some() {
            notices.push(format!("config.{key}: known agentgateway key; {instead}"));
        }
    }
    if let Some((key, _)) = logging.into_iter().next() {
        return Err(ConfigError::field(
            format!("config.logging.{key}"),
            "an agentgateway key tollgate does not implement",
        ));
    }
    Ok(())
}

/// Puts `value` at `at` (creating maps on the way), unless tollgate's own key already
/// holds another value there.
fn place(
    root: &mut Map<String, Value>,
    at: &[&str],
    value: Value,
    from: &str,
) -> Result<(), ConfigError> {
    let (last, parents) = at.split_last().expect("a path");
    let mut map = root;
    for key in parents {
        let entry = map
            .entry(key.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        map = entry
            .as_object_mut()
            .ok_or_else(|| ConfigError::field(key.to_string(), "must be a map"))?;
    }
    match map.get(*last) {
        Some(existing) if *existing != value => Err(ConfigError::field(
            from,
            format!("conflicts with {} set to {existing}", at.join(".")),
        )),
        _ => {
            map.insert(last.to_string(), value);
            Ok(())
        }
    }
}

/// `gatewayPolicies: [{name, target: {gateway: …}, policy: {…}}]`: each policy joins
/// the gateway-wide `policies` (tollgate serves one gateway, so any gateway name is
/// this one); a key set twice is an error.
fn gateway_policies(root: &mut Map<String, Value>, list: Value) -> Result<(), ConfigError> {
    let Value::Array(items) = list else {
        return Err(ConfigError::field("gatewayPolicies", "must be a list"));
    };
    for (i, item) in items.into_iter().enumerate() {
        let at = format!("gatewayPolicies[{i}]");
        let Value::Object(mut item) = item else {
            return Err(ConfigError::field(at, "must be a map"));
        };
        item.remove("name");
        match item.remove("target") {
            Some(Value::Object(t)) if t.len() == 1 && t.contains_key("gateway") => {}
            _ => {
                return Err(ConfigError::field(
                    format!("{at}.target"),
                    "only `target: {gateway: …}` is implemented",
                ))
            }
        }
        let Some(Value::Object(policy)) = item.remove("policy") else {
            return Err(ConfigError::field(format!("{at}.policy"), "must be a map"));
        };
        if let Some((key, _)) = item.into_iter().next() {
            return Err(ConfigError::field(
                format!("{at}.{key}"),
                "an agentgateway key tollgate does not implement",
            ));
        }
        for (key, value) in policy {
            place(
                root,
                &["policies", &key],
                value,
                &format!("{at}.policy.{key}"),
            )?;
        }
    }
    Ok(())
}

/// agentgateway policies tollgate does not implement: named as such, not as unknown.
const UNIMPLEMENTED_POLICIES: [&str; 9] = [
    "ai",
    "transformations",
    "requestMirror",
    "authorization",
    "localRateLimit",
    "remoteRateLimit",
    "jwtAuth",
    "extAuthz",
    "csrf",
];

fn unimplemented_policies(policies: &Value, path: &str) -> Result<(), ConfigError> {
    let Some(map) = policies.as_object() else {
        return Ok(());
    };
    match UNIMPLEMENTED_POLICIES
        .iter()
        .find(|k| map.contains_key(**k))
    {
        Some(key) => Err(ConfigError::field(
            format!("{path}.{key}"),
            "an agentgateway policy tollgate does not implement yet",
        )),
        None => Ok(()),
    }
}

/// agentgateway's `timeout: {requestTimeout, backendRequestTimeout}` → tollgate's
/// `timeout` (the time allowed until the upstream's response headers; a stream that
/// has begun is not cut): the shorter of the two.
fn timeout(policies: &mut Value, path: &str) -> Result<(), ConfigError> {
    let Some(Value::Object(t)) = policies.get_mut("timeout") else {
        return Ok(());
    };
    let mut t = std::mem::take(t);
    let mut shortest: Option<(std::time::Duration, Value)> = None;
    for key in ["requestTimeout", "backendRequestTimeout"] {
        let Some(v) = t.remove(key) else { continue };
        let d: super::Duration = serde_json::from_value(v.clone())
            .map_err(|e| ConfigError::field(format!("{path}.timeout.{key}"), e.to_string()))?;
        if shortest.as_ref().is_none_or(|(s, _)| d.get() < *s) {
            shortest = Some((d.get(), v));
        }
    }
    if let Some((key, _)) = t.into_iter().next() {
        return Err(ConfigError::field(
            format!("{path}.timeout.{key}"),
            "an agentgateway key tollgate does not implement",
        ));
    }
    let value = shortest
        .map(|(_, v)| v)
        .ok_or_else(|| ConfigError::field(format!("{path}.timeout"), "names no timeout"))?;
    policies["timeout"] = value;
    Ok(())
}

/// A route whose one backend is agentgateway's `mcp: {targets: [{name, mcp: {host}}]}`
/// becomes an `mcp` route with `targets: [{name, url}]`.
fn mcp_backend(route: &mut Value, path: &str) -> Result<(), ConfigError> {
    let Some(route) = route.as_object_mut() else {
        return Ok(());
    };
    let backends = route.get("backends").and_then(Value::as_array);
    let Some(Value::Object(mcp)) = backends
        .and_then(|b| b.iter().find_map(|b| b.get("mcp")))
        .cloned()
    else {
        return Ok(());
    };
    let count = backends.map_or(0, Vec::len);
    if count != 1 || route.contains_key("mcp") {
        return Err(ConfigError::field(
            format!("{path}.backends"),
            "an mcp backend must be the route's only backend",
        ));
    }
    let mut mcp = mcp;
    if let Some(Value::Array(targets)) = mcp.get_mut("targets") {
        for (t, target) in targets.iter_mut().enumerate() {
            let at = format!("{path}.backends[0].mcp.targets[{t}]");
            mcp_target(target, &at)?;
        }
    }
    route.remove("backends");
    route.insert("mcp".into(), Value::Object(mcp));
    Ok(())
}

/// `{name, mcp: {host: url}}` → `{name, url}`; other transports are named as such.
fn mcp_target(target: &mut Value, at: &str) -> Result<(), ConfigError> {
    let Some(t) = target.as_object_mut() else {
        return Ok(());
    };
    for kind in ["sse", "stdio", "openapi"] {
        if t.contains_key(kind) {
            return Err(ConfigError::field(
                format!("{at}.{kind}"),
                "an agentgateway target kind tollgate does not implement (Streamable HTTP, `mcp`, only)",
            ));
        }
    }
    if let Some(Value::Object(mut http)) = t.remove("mcp") {
        let host = http.remove("host").ok_or_else(|| {
            ConfigError::field(format!("{at}.mcp.host"), "the target's URL is missing")
        })?;
        if let Some((key, _)) = http.into_iter().next() {
            return Err(ConfigError::field(
                format!("{at}.mcp.{key}"),
                "an agentgateway key tollgate does not implement",
            ));
        }
        t.insert("url".into(), host);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
