//! A Kubernetes API server stand-in for tests, on 127.0.0.1: it serves list and watch
//! requests for pods and InferencePools in one namespace from an in-memory store, with
//! label and field (`metadata.name`) selectors, resource versions, and watch event
//! streams (`ADDED`/`MODIFIED`/`DELETED` lines) that follow the store as tests change it.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::sync::Notify;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Pool,
    Pod,
}

struct Event {
    rv: u64,
    /// `None`: to every watch (an `ERROR` event).
    kind: Option<Kind>,
    kind_name: &'static str,
    object: Value,
}

#[derive(Default)]
struct Store {
    rv: u64,
    objects: BTreeMap<(Kind, String), Value>,
    events: Vec<Event>,
    /// `path?query` of every request, decoded.
    requests: Vec<String>,
}

#[derive(Default)]
struct Shared {
    store: Mutex<Store>,
    changed: Notify,
}

/// The running stand-in; stops when dropped.
pub struct MockApi {
    pub addr: SocketAddr,
    namespace: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MockApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MockApi {
    pub async fn start(namespace: &str) -> MockApi {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        let ns = namespace.to_string();
        let s = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let s = s.clone();
                let ns = ns.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let s = s.clone();
                        let ns = ns.clone();
                        async move { Ok::<_, Infallible>(handle(&s, &ns, req)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        MockApi {
            addr,
            namespace: namespace.to_string(),
            shared,
            task,
        }
    }

    /// A client of this server.
    pub fn client(&self) -> kube::Client {
        let url: http::Uri = format!("http://{}", self.addr).parse().unwrap();
        kube::Client::try_from(kube::Config::new(url)).unwrap()
    }

    /// Every request so far, as `path?query` with the query decoded.
    pub fn requests(&self) -> Vec<String> {
        self.shared.store.lock().unwrap().requests.clone()
    }

    /// Creates or replaces a pod.
    pub fn apply_pod(&self, name: &str, labels: &[(&str, &str)], ip: &str, ready: bool) {
        self.apply_pod_with(name, labels, ip, ready, false);
    }

    /// Creates or replaces a pod, possibly terminating (with a deletion timestamp).
    pub fn apply_pod_with(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        ip: &str,
        ready: bool,
        terminating: bool,
    ) {
        let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
        let mut metadata = json!({"name": name, "namespace": self.namespace, "labels": labels});
        if terminating {
            metadata["deletionTimestamp"] = json!("2025-01-01T00:00:00Z");
        }
        let status = if ip.is_empty() {
            json!({"phase": "Pending"})
        } else {
            json!({
                "phase": "Running",
                "podIP": ip,
                "conditions": [
                    {"type": "PodScheduled", "status": "True"},
                    {"type": "Ready", "status": if ready { "True" } else { "False" }},
                ],
            })
        };
        let pod =
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "status": status});
        self.apply(Kind::Pod, name, pod);
    }

    pub fn delete_pod(&self, name: &str) {
        self.delete(Kind::Pod, name);
    }

    /// Creates or replaces an InferencePool.
    pub fn apply_pool(&self, name: &str, match_labels: &[(&str, &str)], ports: &[u16]) {
        let labels: BTreeMap<&str, &str> = match_labels.iter().copied().collect();
        let ports: Vec<Value> = ports.iter().map(|p| json!({"number": p})).collect();
        let pool = json!({
            "apiVersion": "inference.networking.k8s.io/v1",
            "kind": "InferencePool",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": {
                "selector": {"matchLabels": labels},
                "targetPorts": ports,
                "endpointPickerRef": {"name": "tollgate-epp", "port": {"number": 9002}, "failureMode": "FailClose"},
            },
        });
        self.apply(Kind::Pool, name, pool);
    }

    pub fn delete_pool(&self, name: &str) {
        self.delete(Kind::Pool, name);
    }

    /// Ends every open watch with `410 Gone` (its resource version expired), as an API
    /// server does after compaction: clients must list again.
    pub fn expire_watches(&self) {
        let mut store = self.shared.store.lock().unwrap();
        store.rv += 1;
        let rv = store.rv;
        store.events.push(Event {
            rv,
            kind: None,
            kind_name: "ERROR",
            object: json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Expired", "code": 410, "message": "too old resource version"}),
        });
        drop(store);
        self.shared.changed.notify_waiters();
    }

    fn apply(&self, kind: Kind, name: &str, mut object: Value) {
        let mut store = self.shared.store.lock().unwrap();
        store.rv += 1;
        let rv = store.rv;
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        let existed = store
            .objects
            .insert((kind, name.to_string()), object.clone())
            .is_some();
        store.events.push(Event {
            rv,
            kind: Some(kind),
            kind_name: if existed { "MODIFIED" } else { "ADDED" },
            object,
        });
        drop(store);
        self.shared.changed.notify_waiters();
    }

    fn delete(&self, kind: Kind, name: &str) {
        let mut store = self.shared.store.lock().unwrap();
        let Some(mut object) = store.objects.remove(&(kind, name.to_string())) else {
            return;
        };
        store.rv += 1;
        let rv = store.rv;
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        store.events.push(Event {
            rv,
            kind: Some(kind),
            kind_name: "DELETED",
            object,
        });
        drop(store);
        self.shared.changed.notify_waiters();
    }
}

type Body = BoxBody<Bytes, Infallible>;

/// Selectors and watch parameters of one request.
#[derive(Clone, Default)]
struct Query {
    labels: Vec<(String, String)>,
    name: Option<String>,
    watch: bool,
    resource_version: u64,
}

impl Query {
    fn parse(query: &str) -> Query {
        let mut q = Query::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = decode(v);
            match k {
                "labelSelector" => {
                    q.labels = v
                        .split(',')
                        .filter_map(|kv| kv.split_once('='))
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect()
                }
                "fieldSelector" => q.name = v.strip_prefix("metadata.name=").map(str::to_string),
                "watch" => q.watch = v == "true" || v == "1",
                "resourceVersion" => q.resource_version = v.parse().unwrap_or(0),
                _ => {}
            }
        }
        q
    }

    fn matches(&self, object: &Value) -> bool {
        let meta = &object["metadata"];
        if let Some(name) = &self.name {
            if meta["name"].as_str() != Some(name) {
                return false;
            }
        }
        self.labels
            .iter()
            .all(|(k, v)| meta["labels"][k].as_str() == Some(v))
    }
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => out.push(b),
                    Err(_) => out.extend_from_slice(&bytes[i..i + 3]),
                }
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn handle(shared: &Arc<Shared>, namespace: &str, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let raw_query = req.uri().query().unwrap_or("").to_string();
    shared
        .store
        .lock()
        .unwrap()
        .requests
        .push(format!("{path}?{}", decode(&raw_query)));
    let pools =
        format!("/apis/inference.networking.k8s.io/v1/namespaces/{namespace}/inferencepools");
    let pods = format!("/api/v1/namespaces/{namespace}/pods");
    let (kind, list_kind, api_version) = if path == pools {
        (
            Kind::Pool,
            "InferencePoolList",
            "inference.networking.k8s.io/v1",
        )
    } else if path == pods {
        (Kind::Pod, "PodList", "v1")
    } else {
        return json_response(
            StatusCode::NOT_FOUND,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": format!("{path} not found")}),
        );
    };
    let query = Query::parse(&raw_query);
    if !query.watch {
        let store = shared.store.lock().unwrap();
        let items: Vec<Value> = store
            .objects
            .iter()
            .filter(|((k, _), o)| *k == kind && query.matches(o))
            .map(|(_, o)| o.clone())
            .collect();
        return json_response(
            StatusCode::OK,
            json!({
                "apiVersion": api_version,
                "kind": list_kind,
                "metadata": {"resourceVersion": store.rv.to_string()},
                "items": items,
            }),
        );
    }
    let state = (shared.clone(), query.resource_version, query);
    let events = futures::stream::unfold(state, move |(shared, mut seen, query)| async move {
        loop {
            let waker = shared.clone();
            let notified = waker.changed.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            let mut lines = Vec::new();
            {
                let store = shared.store.lock().unwrap();
                for e in store.events.iter().filter(|e| e.rv > seen) {
                    let wanted = match e.kind {
                        None => true,
                        Some(k) => k == kind && query.matches(&e.object),
                    };
                    if wanted {
                        let line = json!({"type": e.kind_name, "object": e.object});
                        lines.extend_from_slice(line.to_string().as_bytes());
                        lines.push(b'\n');
                    }
                }
                seen = store.rv;
            }
            if !lines.is_empty() {
                let frame = Ok::<_, Infallible>(Frame::data(Bytes::from(lines)));
                return Some((frame, (shared, seen, query)));
            }
            notified.await;
        }
    });
    Response::builder()
        .header("content-type", "application/json")
        .body(StreamBody::new(events).boxed())
        .unwrap()
}

fn json_response(status: StatusCode, body: Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())).boxed())
        .unwrap()
}
