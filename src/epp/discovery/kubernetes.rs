//! Endpoints from Kubernetes, the way a Gateway API Inference Extension endpoint picker
//! finds them: the InferencePool (`inference.networking.k8s.io/v1`) named in the config
//! gives a pod selector (`spec.selector.matchLabels`) and 1–8 target ports
//! (`spec.targetPorts[].number`); every pod of the namespace that matches, is Ready
//! (condition `Ready=True`), has a pod IP and is not terminating gives one endpoint per
//! target port. A pod's `llm-d.ai/role` label (`prefill`, `decode`, `both` or
//! `prefill-decode`, as llm-d labels its pods) is its endpoints' prefill/decode role; a
//! pod with another value there is left out of the pool (logged), as llm-d's filters
//! leave it out of both stages.
//!
//! Both resources are mirrored by list-then-watch (resuming from the last resource
//! version; a `410 Gone` or any error relists after a backoff of 0.5 s doubling to 30 s).
//! A change of the pool's selector restarts the pod watch with the new label selector; a
//! deleted pool empties the list; an invalid pool keeps the last list. The client is
//! configured in-cluster (service account) or from the kubeconfig (`kube::Config::infer`).
//! RBAC: get, list and watch on `pods` and `inferencepools.inference.networking.k8s.io`.

mod mirror;
#[cfg(test)]
mod mock_api;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::{Client, ResourceExt};
use serde::Deserialize;
use tokio::sync::watch;

use self::mirror::{mirror, Backoff};
use super::{publish, DiscoveredRoles};
use crate::config::EndpointRole;

/// The API group of InferencePool.
pub const GROUP: &str = "inference.networking.k8s.io";
/// The served version read.
pub const VERSION: &str = "v1";

/// The pod label naming a model server's prefill/decode role (llm-d's).
pub const ROLE_LABEL: &str = "llm-d.ai/role";

/// The InferencePool resource, for a dynamic `Api`.
pub fn inference_pool_resource() -> ApiResource {
    ApiResource {
        group: GROUP.into(),
        version: VERSION.into(),
        api_version: format!("{GROUP}/{VERSION}"),
        kind: "InferencePool".into(),
        plural: "inferencepools".into(),
    }
}

/// What the picker reads of an InferencePool's spec (other fields are ignored).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolSpec {
    pub selector: LabelSelector,
    pub target_ports: Vec<TargetPort>,
}

/// `spec.selector`: labels a member pod must all carry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
}

/// `spec.targetPorts[]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct TargetPort {
    pub number: u16,
}

/// Why an InferencePool object is ignored. Cloned and compared with the watched state,
/// so the decoder's error is kept as its message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PoolSpecError {
    #[error("it has no spec")]
    NoSpec,
    #[error("spec: {message}")]
    Invalid { message: String },
    #[error("spec.selector.matchLabels is empty")]
    NoSelector,
    #[error("spec.targetPorts has {count} ports (1 to 8 expected)")]
    TargetPortCount { count: usize },
    #[error("spec.targetPorts: port 0")]
    PortZero,
}

impl PoolSpec {
    /// Reads and checks the spec of an InferencePool object.
    pub fn from_object(obj: &DynamicObject) -> Result<PoolSpec, PoolSpecError> {
        let spec = obj.data.get("spec").ok_or(PoolSpecError::NoSpec)?;
        let spec: PoolSpec =
            serde_json::from_value(spec.clone()).map_err(|e| PoolSpecError::Invalid {
                message: e.to_string(),
            })?;
        if spec.selector.match_labels.is_empty() {
            return Err(PoolSpecError::NoSelector);
        }
        if spec.target_ports.is_empty() || spec.target_ports.len() > 8 {
            return Err(PoolSpecError::TargetPortCount {
                count: spec.target_ports.len(),
            });
        }
        if spec.target_ports.iter().any(|p| p.number == 0) {
            return Err(PoolSpecError::PortZero);
        }
        Ok(spec)
    }

    /// The label selector of the pod watch: `k=v,k2=v2`.
    pub fn label_selector(&self) -> String {
        self.selector
            .match_labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Whether a pod with these labels belongs to the pool.
    pub fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        self.selector
            .match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
    }

    /// Every pod address × every target port.
    pub fn endpoints(&self, ips: impl IntoIterator<Item = IpAddr>) -> Vec<SocketAddr> {
        ips.into_iter()
            .flat_map(|ip| {
                self.target_ports
                    .iter()
                    .map(move |p| SocketAddr::new(ip, p.number))
            })
            .collect()
    }
}

/// A pod that may take traffic: its address and the role its label gives, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadyPod {
    pub ip: IpAddr,
    pub role: Option<EndpointRole>,
}

/// The pod as a member: ready (see [`ready_ip`]), with a role label that is absent or
/// known (another value is logged and keeps the pod out).
pub fn ready_pod(pod: &Pod) -> Option<ReadyPod> {
    let ip = ready_ip(pod)?;
    let role = match pod.labels().get(ROLE_LABEL) {
        None => None,
        Some(value) => match EndpointRole::from_label(value) {
            Some(role) => Some(role),
            None => {
                tracing::warn!(pod = pod.name_any(), label = ROLE_LABEL, value, "unknown role (prefill, decode, both or prefill-decode expected): the pod is not a member");
                return None;
            }
        },
    };
    Some(ReadyPod { ip, role })
}

/// The address of a pod that may take traffic: not terminating, condition `Ready=True`,
/// and a pod IP.
pub fn ready_ip(pod: &Pod) -> Option<IpAddr> {
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let status = pod.status.as_ref()?;
    let ready = status
        .conditions
        .as_ref()?
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    if !ready {
        return None;
    }
    status.pod_ip.as_deref()?.parse().ok()
}

/// Builds the client (in-cluster or kubeconfig), retrying with a backoff, then follows
/// the pool until every receiver of `tx` is gone.
pub(crate) async fn run(
    inference_pool: String,
    namespace: String,
    tx: watch::Sender<Vec<SocketAddr>>,
    roles: Arc<DiscoveredRoles>,
) {
    let mut backoff = Backoff::new();
    let client = loop {
        let attempt = async {
            let config = kube::Config::infer().await.map_err(|e| e.to_string())?;
            Client::try_from(config).map_err(|e| e.to_string())
        };
        match attempt.await {
            Ok(client) => break client,
            Err(e) => {
                tracing::error!(inference_pool, namespace, error = %e, "no Kubernetes client configuration; the pool stays as it is");
                if !backoff.wait(&tx).await {
                    return;
                }
            }
        }
    };
    run_with_client(client, inference_pool, namespace, tx, roles).await;
}

/// Follows the InferencePool `inference_pool` in `namespace` and its pods through
/// `client`, publishing the endpoint list on `tx` (and the pods' roles in `roles`, first)
/// until every receiver is gone.
pub async fn run_with_client(
    client: Client,
    inference_pool: String,
    namespace: String,
    tx: watch::Sender<Vec<SocketAddr>>,
    roles: Arc<DiscoveredRoles>,
) {
    let pools: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &namespace, &inference_pool_resource());
    let (pool_tx, mut pool_rx) = watch::channel(None);
    tokio::spawn(mirror(
        pools,
        "InferencePool",
        None,
        Some(format!("metadata.name={inference_pool}")),
        PoolSpec::from_object,
        pool_tx,
    ));
    let mut spec: Option<PoolSpec> = None;
    let mut pods: Option<PodWatch> = None;
    let mut missing_logged = false;
    loop {
        tokio::select! {
            _ = tx.closed() => return,
            changed = pool_rx.changed() => {
                if changed.is_err() {
                    return;
                }
                let Some(pools) = pool_rx.borrow_and_update().clone() else {
                    continue;
                };
                match pools.get(&inference_pool) {
                    None => {
                        if !missing_logged {
                            tracing::warn!(inference_pool, namespace, "InferencePool not found: no endpoints");
                            missing_logged = true;
                        }
                        spec = None;
                        pods = None;
                        publish_with_roles(&tx, &roles, Vec::new(), HashMap::new());
                    }
                    Some(Err(e)) => {
                        tracing::warn!(inference_pool, namespace, error = %e, "invalid InferencePool ignored; keeping the last list");
                    }
                    Some(Ok(new)) => {
                        missing_logged = false;
                        let selector = new.label_selector();
                        if pods.as_ref().map(|p| &p.selector) != Some(&selector) {
                            pods = Some(PodWatch::start(&client, &namespace, new));
                        }
                        spec = Some(new.clone());
                        update(&tx, &roles, &inference_pool, spec.as_ref(), pods.as_mut());
                    }
                }
            }
            changed = pod_changes(pods.as_mut()) => {
                if changed.is_err() {
                    return;
                }
                update(&tx, &roles, &inference_pool, spec.as_ref(), pods.as_mut());
            }
        }
    }
}

/// The pod watch of one selector: each matching pod as a member, by name.
struct PodWatch {
    selector: String,
    rx: watch::Receiver<Option<BTreeMap<String, Option<ReadyPod>>>>,
}

impl PodWatch {
    fn start(client: &Client, namespace: &str, spec: &PoolSpec) -> PodWatch {
        let selector = spec.label_selector();
        let (tx, rx) = watch::channel(None);
        let members = spec.clone();
        tokio::spawn(mirror(
            Api::<Pod>::namespaced(client.clone(), namespace),
            "Pod",
            Some(selector.clone()),
            None,
            move |pod: &Pod| {
                // The API server filters by label already; this guards against a server
                // that does not.
                if members.selects(pod.labels()) {
                    ready_pod(pod)
                } else {
                    None
                }
            },
            tx,
        ));
        PodWatch { selector, rx }
    }
}

async fn pod_changes(pods: Option<&mut PodWatch>) -> Result<(), watch::error::RecvError> {
    match pods {
        Some(p) => p.rx.changed().await,
        None => std::future::pending().await,
    }
}

/// Publishes the endpoints of the current spec and pods (their roles first), once the
/// pods have been listed.
fn update(
    tx: &watch::Sender<Vec<SocketAddr>>,
    roles: &DiscoveredRoles,
    pool: &str,
    spec: Option<&PoolSpec>,
    pods: Option<&mut PodWatch>,
) {
    let (Some(spec), Some(pods)) = (spec, pods) else {
        return;
    };
    let members: Vec<ReadyPod> = match &*pods.rx.borrow_and_update() {
        Some(pods) => pods.values().flatten().copied().collect(),
        None => return,
    };
    let ready = members.len();
    let role_of: HashMap<IpAddr, EndpointRole> = members
        .iter()
        .filter_map(|m| Some((m.ip, m.role?)))
        .collect();
    let list = spec.endpoints(members.iter().map(|m| m.ip));
    let count = list.len();
    let next = list
        .iter()
        .filter_map(|a| Some((*a, *role_of.get(&a.ip())?)))
        .collect();
    if publish_with_roles(tx, roles, list, next) {
        tracing::info!(
            inference_pool = pool,
            ready_pods = ready,
            endpoints = count,
            "InferencePool endpoints changed"
        );
    }
}

/// Publishes `list`, the roles `next` of its endpoints first (so a pod never counts
/// as `prefill-decode` before its role is in). An endpoint leaving keeps its role until
/// the next change: the pool drops it only once the list arrives. True when the list
/// changed.
fn publish_with_roles(
    tx: &watch::Sender<Vec<SocketAddr>>,
    roles: &DiscoveredRoles,
    list: Vec<SocketAddr>,
    mut next: HashMap<SocketAddr, EndpointRole>,
) -> bool {
    let staying: HashSet<&SocketAddr> = list.iter().collect();
    for leaving in tx.borrow().iter().filter(|a| !staying.contains(a)) {
        if let Some(role) = roles.get(leaving) {
            next.insert(*leaving, role);
        }
    }
    roles.set(next);
    publish(tx, list)
}

#[cfg(test)]
mod tests;
