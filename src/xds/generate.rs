//! tollgate's config → the Envoy resources it serves, as pure functions: per bind a
//! listener (ext_proc filter, RDS) and a route configuration; per distinct backend a
//! cluster and, for an IP backend, its endpoints; and the `tollgate` cluster for
//! the ext_proc filter; and every `xds.configs` entry as a tollgate config for sidecars.
//! Each node named in `xds.nodes` gets only its binds.

mod address;
mod clusters;
mod listener;
mod routes;
mod tls;

use std::sync::Arc;

use envoy_types::util::pack_any;

pub use address::{BadAddress, Target};
pub use listener::{EXT_PROC_CLUSTER, EXT_PROC_FILTER};

use super::resource::TollgateConfig;
use super::snapshot::{
    Fleet, Snapshot, CLUSTER, ENDPOINT, EXTENSION_CONFIG, LISTENER, ROUTE, TOLLGATE_CONFIG,
};
use crate::config::{Bind, Config, XdsConfig};
use routes::NamedRoute;

/// Why a config gives no resources. `check_xds` refuses such configs first, so these
/// reach a user only through a config that skipped validation.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("the config has no `xds` section")]
    NoXds,
    #[error("xDS needs `extProc`: the listeners' ext_proc filter calls it")]
    NoExtProc,
    #[error("{path}: {source}")]
    Address { path: String, source: BadAddress },
    #[error("xds.configs.{name}: cannot be written as YAML: {error}")]
    Served { name: String, error: String },
}

/// The snapshots of `config`: every node's, and those of the nodes in `xds.nodes`.
pub fn fleet(config: &Config) -> Result<Fleet, GenerateError> {
    let xds = config.xds.as_ref().ok_or(GenerateError::NoXds)?;
    let served = served_configs(xds)?;
    let default = Arc::new(snapshot(config, xds, &served, |_| true)?);
    let mut nodes = std::collections::BTreeMap::new();
    for (id, node) in &xds.nodes {
        let mine = snapshot(config, xds, &served, |b| node.binds.contains(&b.port))?;
        nodes.insert(id.clone(), Arc::new(mine));
    }
    Ok(Fleet { default, nodes })
}

/// The `xds.configs` entries as `tollgate.config.v1.Config` resources, for every node.
fn served_configs(xds: &XdsConfig) -> Result<Vec<Resource>, GenerateError> {
    let mut out = Vec::new();
    for (name, config) in &xds.configs {
        let yaml = serde_yaml::to_string(config).map_err(|e| GenerateError::Served {
            name: name.clone(),
            error: e.to_string(),
        })?;
        let resource = TollgateConfig {
            name: name.clone(),
            yaml,
        };
        out.push((
            TOLLGATE_CONFIG,
            name.clone(),
            pack_any(resource),
            Vec::new(),
        ));
    }
    Ok(out)
}

use super::snapshot::Unversioned as Resource;

/// The resources of the binds `keep` accepts.
fn snapshot(
    config: &Config,
    xds: &XdsConfig,
    served: &[Resource],
    keep: impl Fn(&Bind) -> bool,
) -> Result<Snapshot, GenerateError> {
    let ext = config.ext_proc.as_ref().ok_or(GenerateError::NoExtProc)?;
    let (path, address) = match &xds.ext_proc_address {
        Some(a) => ("xds.extProcAddress", a),
        None => ("extProc.address", &ext.address),
    };
    let target = parse(path, address)?.dialable();
    let mut out: Vec<Resource> = vec![(
        CLUSTER,
        EXT_PROC_CLUSTER.to_string(),
        pack_any(clusters::ext_proc(ext, &target)),
        Vec::new(),
    )];
    let filter = listener::ext_proc_config(xds, ext.mode_override);
    let needs = vec![EXT_PROC_CLUSTER.to_string()];
    out.push((
        EXTENSION_CONFIG,
        filter.name.clone(),
        pack_any(filter),
        needs,
    ));
    let mut index = 0;
    let mut made = std::collections::BTreeSet::new();
    for (b, bind) in config.binds.iter().enumerate() {
        let mut named: Vec<Vec<NamedRoute<'_>>> = Vec::new();
        for (l, listener) in bind.listeners.iter().enumerate() {
            let mut mine = Vec::new();
            for (r, route) in listener.routes.iter().enumerate() {
                let name = route.name_or_index(index);
                index += 1;
                if !keep(bind) {
                    continue;
                }
                let picks = route.policies.endpoint_picker.is_some()
                    || config.policies.endpoint_picker.is_some();
                if picks {
                    let cluster = clusters::PICKED_CLUSTER.to_string();
                    if made.insert(cluster.clone()) {
                        out.push((
                            CLUSTER,
                            cluster.clone(),
                            pack_any(clusters::picked(config)),
                            vec![],
                        ));
                    }
                    mine.push(NamedRoute {
                        name,
                        cluster,
                        route,
                    });
                    continue;
                }
                let Some(backend) = route.backends.first() else {
                    continue;
                };
                let path = format!("binds[{b}].listeners[{l}].routes[{r}].backends[0].host");
                let target = parse(&path, &backend.host)?;
                let cluster = clusters::cluster_name(backend);
                if made.insert(cluster.clone()) {
                    let (c, endpoints) = clusters::backend(config, &cluster, backend, &target);
                    out.push((CLUSTER, cluster.clone(), pack_any(c), Vec::new()));
                    if let Some(e) = endpoints {
                        out.push((ENDPOINT, cluster.clone(), pack_any(e), Vec::new()));
                    }
                }
                mine.push(NamedRoute {
                    name,
                    cluster,
                    route,
                });
            }
            named.push(mine);
        }
        if keep(bind) {
            let l = listener::listener(bind);
            let needs = vec![EXT_PROC_CLUSTER.to_string()];
            out.push((LISTENER, l.name.clone(), pack_any(l), needs));
            let rc = routes::route_configuration(config, bind, &named);
            let mut needs: Vec<String> =
                named.iter().flatten().map(|r| r.cluster.clone()).collect();
            needs.sort();
            needs.dedup();
            out.push((ROUTE, rc.name.clone(), pack_any(rc), needs));
        }
    }
    out.extend(served.iter().cloned());
    Ok(Snapshot::with_needs(out))
}

fn parse(path: &str, text: &str) -> Result<Target, GenerateError> {
    Target::parse(text).map_err(|source| GenerateError::Address {
        path: path.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests;
