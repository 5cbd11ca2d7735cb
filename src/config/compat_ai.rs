//! agentgateway's `ai` backends and `backendTLS` policy, read into tollgate's shape
//! (the rest of the rewriting is in `compat`):
//!
//! | agentgateway | tollgate |
//! |---|---|
//! | `backends: [{ai: {provider: {openAI: {model}}}}]` (or `anthropic`, `gemini`) | `backends: [{host: <provider's host>:443, tls: {}}]`, `policies.llmProvider: {provider, model, path: <provider's chat path>}` and `policies.tokenAccounting: {}` |
//! | `ai.hostOverride: host:port` | the backend's `host`, plaintext unless `backendTLS` says otherwise; the client's path is kept |
//! | `ai.pathOverride` | `llmProvider.path` |
//! | `ai.policies.ai.routes` | `llmProvider.routes` |
//! | `ai.policies.backendAuth` / `backendTLS` | the route's `backendAuth` / `backendTLS` |
//! | `policies.backendTLS: {root, hostname, insecure, cert, key}` | every backend's `tls: {caFile, sni, insecure, certFile, keyFile}` |
//!
//! agentgateway counts an `ai` backend's tokens and gives its logs and metrics the `llm`
//! facts, so the route gets `tokenAccounting: {}` unless it (or the gateway-wide
//! `policies`) sets its own. `ai.name` names the backend in agentgateway's telemetry
//! and has no effect here.
//! Providers (`vertex`, `bedrock`, `azureOpenAI`), several `ai` backends on one route,
//! and `backendTLS` keys tollgate does not implement (`insecure`, `insecureHost`,
//! `cert`, `key`, `alpn`, `subjectAltNames`) are errors at their path.

use serde_json::{json, Map, Value};

use super::{ConfigError, ProviderKind};

fn not_implemented(path: String) -> ConfigError {
    ConfigError::field(path, "an agentgateway key tollgate does not implement")
}

/// A YAML map, as JSON.
type Object = Map<String, Value>;

/// A route whose backend is agentgateway's `ai` backend: that backend as a host, the
/// route's `llmProvider`, and `tokenAccounting` unless the route or the gateway
/// (`gateway_accounts`) has its own.
pub fn ai_backend(
    route: &mut Value,
    path: &str,
    gateway_accounts: bool,
) -> Result<(), ConfigError> {
    let Some(route) = route.as_object_mut() else {
        return Ok(());
    };
    let Some(mut ai) = the_ai_backend(route, path)? else {
        return Ok(());
    };
    let here = format!("{path}.backends[0].ai");
    ai.remove("name");
    let (backend, mut llm) = backend_and_provider(&mut ai, &here)?;
    let policies = route
        .entry("policies")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or_else(|| ConfigError::field(format!("{path}.policies"), "must be a map"))?;
    if let Some(Value::Object(own)) = ai.remove("policies") {
        backend_policies(own, &mut llm, policies, &here)?;
    }
    if let Some((key, _)) = ai.into_iter().next() {
        return Err(not_implemented(format!("{here}.{key}")));
    }
    if policies.contains_key("llmProvider") {
        return Err(ConfigError::field(
            format!("{path}.policies.llmProvider"),
            "the route's ai backend sets the provider already",
        ));
    }
    policies.insert("llmProvider".into(), Value::Object(llm));
    if !gateway_accounts && !policies.contains_key("tokenAccounting") {
        policies.insert("tokenAccounting".into(), json!({}));
    }
    route.insert("backends".into(), json!([Value::Object(backend)]));
    Ok(())
}

/// The route's `ai` backend (a copy), when it has one; an error when it is not the only
/// backend or not a map.
fn the_ai_backend(
    route: &Map<String, Value>,
    path: &str,
) -> Result<Option<Map<String, Value>>, ConfigError> {
    let Some(backends) = route.get("backends").and_then(Value::as_array) else {
        return Ok(None);
    };
    let Some(at) = backends.iter().position(|b| b.get("ai").is_some()) else {
        return Ok(None);
    };
    if backends.len() != 1 {
        return Err(ConfigError::field(
            format!("{path}.backends"),
            "an ai backend must be the route's only backend (several are not implemented)",
        ));
    }
    match backends[at].get("ai") {
        Some(Value::Object(ai)) => Ok(Some(ai.clone())),
        _ => Err(ConfigError::field(
            format!("{path}.backends[0].ai"),
            "must be a map",
        )),
    }
}

/// Takes `provider`, `hostOverride` and `pathOverride` out of `ai`: the backend (the
/// override host, else the provider's own over TLS) and the `llmProvider` policy.
fn backend_and_provider(
    ai: &mut Map<String, Value>,
    here: &str,
) -> Result<(Object, Object), ConfigError> {
    let (kind, model) = provider(ai.remove("provider"), here)?;
    let host_override = ai.remove("hostOverride");
    let path_override = ai.remove("pathOverride");
    let mut backend = Map::new();
    match &host_override {
        Some(h) => {
            backend.insert("host".into(), h.clone());
        }
        None => {
            backend.insert("host".into(), json!(kind.default_host()));
            backend.insert("tls".into(), json!({}));
        }
    }
    let mut llm = Map::new();
    llm.insert(
        "provider".into(),
        serde_json::to_value(kind).expect("serializes"),
    );
    if let Some(m) = model {
        llm.insert("model".into(), m);
    }
    match (path_override, &host_override) {
        (Some(p), _) => {
            llm.insert("path".into(), p);
        }
        (None, None) => {
            llm.insert("path".into(), json!(kind.default_path()));
        }
        (None, Some(_)) => {}
    }
    Ok((backend, llm))
}

/// The `ai` backend's own `policies`: `ai.routes` goes to `llm`, `backendAuth` and
/// `backendTLS` to the route's `policies` (which must not have them already).
fn backend_policies(
    mut own: Map<String, Value>,
    llm: &mut Map<String, Value>,
    policies: &mut Map<String, Value>,
    here: &str,
) -> Result<(), ConfigError> {
    if let Some(Value::Object(mut llm_policy)) = own.remove("ai") {
        if let Some(routes) = llm_policy.remove("routes") {
            llm.insert("routes".into(), routes);
        }
        if let Some((key, _)) = llm_policy.into_iter().next() {
            return Err(not_implemented(format!("{here}.policies.ai.{key}")));
        }
    }
    for key in ["backendAuth", "backendTLS"] {
        if let Some(v) = own.remove(key) {
            if policies.contains_key(key) {
                return Err(ConfigError::field(
                    format!("{here}.policies.{key}"),
                    format!("the route has its own {key} too"),
                ));
            }
            policies.insert(key.into(), v);
        }
    }
    match own.into_iter().next() {
        Some((key, _)) => Err(not_implemented(format!("{here}.policies.{key}"))),
        None => Ok(()),
    }
}

/// `provider: {openAI: {model}}` → the kind and the model.
fn provider(
    value: Option<Value>,
    here: &str,
) -> Result<(ProviderKind, Option<Value>), ConfigError> {
    let at = format!("{here}.provider");
    let Some(Value::Object(map)) = value else {
        return Err(ConfigError::field(
            at,
            "is required: openAI, anthropic or gemini",
        ));
    };
    let mut entries = map.into_iter();
    let (Some((name, settings)), None) = (entries.next(), entries.next()) else {
        return Err(ConfigError::field(at, "must name exactly one provider"));
    };
    let kind = match name.as_str() {
        "openAI" => ProviderKind::OpenAi,
        "anthropic" => ProviderKind::Anthropic,
        "gemini" => ProviderKind::Gemini,
        "vertex" | "bedrock" | "azureOpenAI" => {
            return Err(not_implemented(format!("{at}.{name}")))
        }
        other => {
            return Err(ConfigError::field(
                format!("{at}.{other}"),
                "unknown provider: openAI, anthropic or gemini",
            ))
        }
    };
    let mut settings = match settings {
        Value::Object(m) => m,
        Value::Null => Map::new(),
        _ => return Err(ConfigError::field(format!("{at}.{name}"), "must be a map")),
    };
    let model = settings.remove("model");
    if let Some((key, _)) = settings.into_iter().next() {
        return Err(not_implemented(format!("{at}.{name}.{key}")));
    }
    Ok((kind, model))
}

/// A route's `policies.backendTLS`, put on each of its backends as `tls`.
pub fn backend_tls(route: &mut Value, path: &str) -> Result<(), ConfigError> {
    let Some(route) = route.as_object_mut() else {
        return Ok(());
    };
    let tls = route
        .get_mut("policies")
        .and_then(Value::as_object_mut)
        .and_then(|p| p.remove("backendTLS"));
    let Some(tls) = tls else {
        return Ok(());
    };
    let here = format!("{path}.policies.backendTLS");
    let Value::Object(mut tls) = tls else {
        return Err(ConfigError::field(here, "must be a map"));
    };
    let mut ours = Map::new();
    if let Some(root) = tls.remove("root") {
        ours.insert("caFile".into(), root);
    }
    if let Some(host) = tls.remove("hostname") {
        ours.insert("sni".into(), host);
    }
    for (theirs, key) in [
        ("insecure", "insecure"),
        ("cert", "certFile"),
        ("key", "keyFile"),
    ] {
        if let Some(v) = tls.remove(theirs) {
            ours.insert(key.into(), v);
        }
    }
    if let Some((key, _)) = tls.into_iter().next() {
        return Err(not_implemented(format!("{here}.{key}")));
    }
    let backends = route.get_mut("backends").and_then(Value::as_array_mut);
    for (i, backend) in backends.into_iter().flatten().enumerate() {
        let Some(b) = backend.as_object_mut() else {
            continue;
        };
        match b.get("tls") {
            Some(existing) if *existing != Value::Object(ours.clone()) => {
                return Err(ConfigError::field(
                    format!("{path}.backends[{i}].tls"),
                    "differs from the route's backendTLS",
                ))
            }
            _ => {
                b.insert("tls".into(), Value::Object(ours.clone()));
            }
        }
    }
    Ok(())
}
