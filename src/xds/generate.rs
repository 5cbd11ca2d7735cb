//! tollgate's config → the Envoy resources it serves, as pure functions: per bind a
//! listener (ext_proc filter, RDS) and a route configuration; per distinct backend a
//! cluster and, for an IP backend, its endpoints; the `tollgate` cluster for the
//! ext_proc filter, and `tollgate_mcp` for tollgate's MCP listener (see [`mcp`]); and
//! every `xds.configs` entry as a tollgate config for sidecars. Each node named in
//! `xds.nodes` gets only its binds.

mod address;
mod clusters;
mod listener;
mod mcp;
mod pool;
mod routes;
mod tls;

use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::ConfigSource;
use envoy_types::pb::google::protobuf::Any;
use envoy_types::util::pack_any;

pub use address::{BadAddress, Target};
pub use listener::{EXT_PROC_CLUSTER, EXT_PROC_FILTER};

use super::resource::TollgateConfig;
use super::snapshot::{
    Delivery, Fleet, Fleets, Snapshot, CLUSTER, ENDPOINT, EXTENSION_CONFIG, LISTENER, ROUTE,
    TOLLGATE_CONFIG,
};
use crate::config::{Backend, Bind, Config, Route, XdsConfig};
use mcp::MCP_CLUSTER;
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

/// The snapshots of `config` for ADS streams: every node's, and those of the nodes in
/// `xds.nodes`.
pub fn fleet(config: &Config) -> Result<Fleet, GenerateError> {
    fleet_for(config, Delivery::Ads)
}

/// The snapshots of `config` in every [`Delivery`].
pub fn fleets(config: &Config) -> Result<Fleets, GenerateError> {
    Ok(Fleets {
        ads: fleet_for(config, Delivery::Ads)?,
        per_type: fleet_for(config, Delivery::PerType { delta: false })?,
        per_type_delta: fleet_for(config, Delivery::PerType { delta: true })?,
    })
}

fn fleet_for(config: &Config, delivery: Delivery) -> Result<Fleet, GenerateError> {
    let xds = config.xds.as_ref().ok_or(GenerateError::NoXds)?;
    let served = served_configs(xds)?;
    let source = listener::source(delivery, &xds.bootstrap_cluster);
    let default = Arc::new(snapshot(config, xds, &served, &source, |_| true)?);
    let mut nodes = std::collections::BTreeMap::new();
    for (id, node) in &xds.nodes {
        let keep = |b: &Bind| node.binds.contains(&b.port);
        let mine = snapshot(config, xds, &served, &source, keep)?;
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
    source: &ConfigSource,
    keep: impl Fn(&Bind) -> bool,
) -> Result<Snapshot, GenerateError> {
    let ext = config.ext_proc.as_ref().ok_or(GenerateError::NoExtProc)?;
    let (path, address) = match &xds.ext_proc_address {
        Some(a) => ("xds.extProcAddress", a),
        None => ("extProc.address", &ext.address),
    };
    let target = parse(path, address)?.dialable();
    let mut out = Resources {
        list: Vec::new(),
        clusters: Default::default(),
        source: source.clone(),
    };
    out.cluster(EXT_PROC_CLUSTER, || {
        (clusters::ext_proc(ext, &target), None)
    });
    let filter = listener::ext_proc_config(config, xds);
    let needs = vec![EXT_PROC_CLUSTER.to_string()];
    out.push(
        EXTENSION_CONFIG,
        filter.name.clone(),
        pack_any(filter),
        needs,
    );
    let mut index = 0;
    for (b, bind) in config.binds.iter().enumerate() {
        let mut named: Vec<Vec<NamedRoute<'_>>> = Vec::new();
        for (l, listener) in bind.listeners.iter().enumerate() {
            let mut mine = Vec::new();
            for (r, route) in listener.routes.iter().enumerate() {
                let name = route.name_or_index(index);
                index += 1;
                if keep(bind) {
                    let path = format!("binds[{b}].listeners[{l}].routes[{r}]");
                    mine.extend(named_route(config, xds, &mut out, route, name, &path)?);
                }
            }
            named.push(mine);
        }
        if keep(bind) {
            let l = listener::listener(bind, source);
            let needs = vec![EXT_PROC_CLUSTER.to_string()];
            out.push(LISTENER, l.name.clone(), pack_any(l), needs);
            let rc = routes::route_configuration(config, bind, &named);
            let mut needs: Vec<String> = named.iter().flatten().flat_map(clusters_of).collect();
            needs.sort();
            needs.dedup();
            out.push(ROUTE, rc.name.clone(), pack_any(rc), needs);
        }
    }
    out.list.extend(served.iter().cloned());
    Ok(Snapshot::with_needs(out.list))
}

/// A snapshot's resources as they are made; each cluster once.
struct Resources {
    list: Vec<Resource>,
    clusters: std::collections::BTreeSet<String>,
    /// Where EDS clusters get their endpoints.
    source: ConfigSource,
}

impl Resources {
    fn push(&mut self, kind: &'static str, name: String, body: Any, needs: Vec<String>) {
        self.list.push((kind, name, body, needs));
    }

    /// Cluster `name` (and its EDS endpoints), made by `make` unless made already.
    fn cluster(
        &mut self,
        name: &str,
        make: impl FnOnce() -> (
            envoy_types::pb::envoy::config::cluster::v3::Cluster,
            Option<envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment>,
        ),
    ) {
        if !self.clusters.insert(name.to_string()) {
            return;
        }
        let (cluster, endpoints) = make();
        self.push(CLUSTER, name.to_string(), pack_any(cluster), Vec::new());
        if let Some(e) = endpoints {
            self.push(ENDPOINT, name.to_string(), pack_any(e), Vec::new());
        }
    }

    /// The cluster of `backend` (at `path`, for errors), made once; its name.
    fn backend(
        &mut self,
        config: &Config,
        backend: &Backend,
        path: &str,
    ) -> Result<String, GenerateError> {
        let target = parse(path, &backend.host)?;
        let name = clusters::cluster_name(backend);
        let source = self.source.clone();
        self.cluster(&name, || {
            clusters::backend(config, &name, backend, &target, &source)
        });
        Ok(name)
    }

    /// The cluster of route `route`'s several `backends` (at `path`); its name.
    fn pool(
        &mut self,
        config: &Config,
        backends: &[Backend],
        route: &str,
        path: &str,
    ) -> Result<String, GenerateError> {
        let targets = backends
            .iter()
            .enumerate()
            .map(|(i, b)| parse(&format!("{path}.backends[{i}].host"), &b.host))
            .collect::<Result<Vec<_>, _>>()?;
        let name = pool::pool_name(route);
        let source = self.source.clone();
        self.cluster(&name, || {
            pool::pool(config, &name, backends, &targets, &source)
        });
        Ok(name)
    }
}

/// How Envoy carries one tollgate route, and the clusters it needs made: the MCP
/// listener (and each target with `mcp.direct`), the picked endpoint, Envoy's own
/// answer for a `directResponse`, the route's own cluster of several backends, or its
/// one backend's. A route with none of these is left out (`check_xds` refuses it).
fn named_route<'a>(
    config: &Config,
    xds: &XdsConfig,
    out: &mut Resources,
    route: &'a Route,
    name: String,
    path: &str,
) -> Result<Option<NamedRoute<'a>>, GenerateError> {
    let mut named = NamedRoute {
        name,
        cluster: String::new(),
        route,
        mcp: None,
        answer: None,
    };
    let policies = route.policies.over(&config.policies);
    if let Some(mcp) = &route.mcp {
        let target = parse("xds.mcpAddress", &xds.mcp_address)?.dialable();
        out.cluster(MCP_CLUSTER, || (clusters::mcp_listener(&target), None));
        let wiring = mcp::wiring(mcp);
        for (t, direct) in wiring.direct.iter().flat_map(|d| d.1.iter()).enumerate() {
            let at = format!("{path}.mcp.targets[{t}].url");
            out.backend(config, &direct.backend, &at)?;
        }
        named.cluster = MCP_CLUSTER.to_string();
        named.mcp = Some(wiring);
    } else if route.policies.endpoint_picker.is_some() || config.policies.endpoint_picker.is_some()
    {
        out.cluster(clusters::PICKED_CLUSTER, || {
            (clusters::picked(config), None)
        });
        named.cluster = clusters::PICKED_CLUSTER.to_string();
    } else if let Some(answer) = policies.direct_response {
        named.answer = Some(routes::Answer::Direct(answer));
    } else if let Some(redirect) = policies.request_redirect {
        named.answer = Some(routes::Answer::Redirect(redirect));
    } else if route.backends.len() > 1 {
        named.cluster = out.pool(config, &route.backends, &named.name, path)?;
    } else if let Some(backend) = route.backends.first() {
        named.cluster = out.backend(config, backend, &format!("{path}.backends[0].host"))?;
    } else {
        return Ok(None);
    }
    Ok(Some(named))
}

/// Every cluster a route's Envoy routes name.
fn clusters_of(named: &NamedRoute<'_>) -> Vec<String> {
    let direct = named.mcp.iter().flat_map(|m| m.direct.iter());
    let targets = direct.flat_map(|d| d.1.iter());
    std::iter::once(named.cluster.clone())
        .filter(|c| !c.is_empty())
        .chain(targets.map(|t| clusters::cluster_name(&t.backend)))
        .collect()
}

fn parse(path: &str, text: &str) -> Result<Target, GenerateError> {
    Target::parse(text).map_err(|source| GenerateError::Address {
        path: path.to_string(),
        source,
    })
}

#[cfg(test)]
mod mcp_tests;
#[cfg(test)]
mod pool_tests;
#[cfg(test)]
mod tests;
