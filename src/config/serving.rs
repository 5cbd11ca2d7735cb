//! What a config must serve, and what a hot reload may change.
//!
//! - [`check_serves`]: a config that serves nothing (no `binds` and no `extProc`), or a
//!   bind without a single route, is refused by `validate`, at start and on reload. An
//!   ext_proc-only config with gateway-wide `policies:` and no `binds` is legal: Envoy's
//!   requests all take the `gateway` route.
//! - [`check_reload`]: a reload is refused as a whole when it would take every route or
//!   every listener away from the running config, or when it changes what only a
//!   restart applies (listen addresses and ports, their TLS, `admin.address`, the
//!   `extProc` server). Applying the rest would serve routes the operator did not write
//!   for the sockets that stay open; refusing keeps the running config coherent, and
//!   the next start applies the file.

use std::collections::BTreeMap;

use super::{Config, ConfigError, ConfigErrors};

/// Checks that `config` serves something, naming the field of each problem.
pub fn check_serves(config: &Config) -> Result<(), ConfigError> {
    let mut errs = ConfigErrors::default();
    if config.binds.is_empty() && config.ext_proc.is_none() {
        errs.push(ConfigError::field(
            "(root)",
            "the config serves nothing: give `binds` (the standalone proxy) or `extProc` \
             (Envoy's ext_proc server)",
        ));
    }
    for (b, bind) in config.binds.iter().enumerate() {
        if bind.listeners.iter().all(|l| l.routes.is_empty()) {
            errs.push(ConfigError::field(
                format!("binds[{b}].listeners"),
                format!(
                    "no routes: every request on port {} would be answered 404",
                    bind.port
                ),
            ));
        }
    }
    if let Some(tracing) = &config.tracing {
        errs.check(tracing.check());
    }
    errs.check(super::check_xds(config));
    errs.finish(())
}

/// Why a reload was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReloadRefusal {
    #[error("it would remove every {what} ({old} in the running config, none in the file)")]
    RemovesEverything { what: &'static str, old: usize },
    #[error("{} changed, which only a restart applies", .0.join(", "))]
    NeedsRestart(Vec<String>),
}

/// Whether the running config `old` may be replaced by `new` without a restart.
pub fn check_reload(old: &Config, new: &Config) -> Result<(), ReloadRefusal> {
    let (old_routes, new_routes) = (route_count(old), route_count(new));
    if old_routes > 0 && new_routes == 0 {
        return Err(ReloadRefusal::RemovesEverything {
            what: "route",
            old: old_routes,
        });
    }
    if !old.binds.is_empty() && new.binds.is_empty() {
        return Err(ReloadRefusal::RemovesEverything {
            what: "listener (binds)",
            old: old.binds.len(),
        });
    }
    let changed = restart_changes(old, new);
    if changed.is_empty() {
        Ok(())
    } else {
        Err(ReloadRefusal::NeedsRestart(changed))
    }
}

/// Routes a config serves: those of its binds, or the one `gateway` route of an
/// ext_proc-only config.
fn route_count(config: &Config) -> usize {
    let bound: usize = config
        .binds
        .iter()
        .flat_map(|b| b.listeners.iter())
        .map(|l| l.routes.len())
        .sum();
    if config.binds.is_empty() && config.ext_proc.is_some() {
        1
    } else {
        bound
    }
}

/// The restart-only settings that differ, each described by its field.
fn restart_changes(old: &Config, new: &Config) -> Vec<String> {
    let mut changed = Vec::new();
    let binds = |c: &Config| -> BTreeMap<String, serde_json::Value> {
        c.binds
            .iter()
            .map(|b| (format!("{}:{}", b.address, b.port), json(&b.tls)))
            .collect()
    };
    // Under xDS the binds are Envoy's listeners, which follow every reload.
    let envoy_binds = old.xds.is_some() && new.xds.is_some();
    let (was, now) = if envoy_binds {
        Default::default()
    } else {
        (binds(old), binds(new))
    };
    if old.xds.is_some() != new.xds.is_some() {
        changed.push(format!(
            "xds {}",
            if new.xds.is_some() {
                "added"
            } else {
                "removed"
            }
        ));
    }
    for (addr, tls) in &was {
        match now.get(addr) {
            None => changed.push(format!("binds: {addr} removed")),
            Some(t) if t != tls => changed.push(format!("binds: the TLS of {addr}")),
            Some(_) => {}
        }
    }
    for addr in now.keys().filter(|a| !was.contains_key(*a)) {
        changed.push(format!("binds: {addr} added"));
    }
    // tollgate's MCP listener under xDS opens at start; a route dropping `mcp` leaves
    // it open and idle.
    match (super::mcp_listener(old), super::mcp_listener(new)) {
        (None, Some(_)) if envoy_binds => changed
            .push("xds.mcpAddress (the first `mcp` route opens tollgate's MCP listener)".into()),
        (Some(a), Some(b)) if a != b => changed.push("xds.mcpAddress".into()),
        _ => {}
    }
    if old.admin.address != new.admin.address {
        changed.push("admin.address".into());
    }
    match (&old.ext_proc, &new.ext_proc) {
        (None, None) => {}
        (Some(_), None) => changed.push("extProc removed".into()),
        (None, Some(_)) => changed.push("extProc added".into()),
        (Some(a), Some(b)) => {
            let fields = [
                ("extProc.address", a.address != b.address),
                ("extProc.tls", json(&a.tls) != json(&b.tls)),
                (
                    "extProc.selfSignedTls",
                    a.self_signed_tls != b.self_signed_tls,
                ),
                (
                    "extProc.healthAddress",
                    a.health_address != b.health_address,
                ),
            ];
            changed.extend(fields.iter().filter(|f| f.1).map(|f| f.0.to_string()));
        }
    }
    changed
}

/// Sections read once at start that a reload may change without effect until a
/// restart (`upstream` pool and timeouts, `logging` format and level, `runtime`,
/// `limits.connections`):
/// applied reloads warn about them.
pub fn start_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    if json(&old.upstream) != json(&new.upstream) {
        changed.push("upstream");
    }
    // `logging.fields` is compiled into the pipeline: it applies on reload.
    let (o, n) = (&old.logging, &new.logging);
    if o.format != n.format || o.level != n.level {
        changed.push("logging");
    }
    if json(&old.runtime) != json(&new.runtime) {
        changed.push("runtime");
    }
    if json(&old.limits.connections) != json(&new.limits.connections) {
        changed.push("limits.connections");
    }
    changed
}

fn json<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
mod tests;
