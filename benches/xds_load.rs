//! xDS fan-out load: many simulated Envoys on one tollgate.
//!
//! Starts the `tollgate` binary of this build with a config of 1,000 routes over 100
//! backends (`xds: {}`; the same shape as `benches/xds.rs`), then opens `--clients`
//! ADS streams (default 500), each on its own HTTP/2 connection as separate Envoys
//! would, first all State-of-the-World, then (after a restart) all Delta. Every client
//! subscribes as Envoy does — clusters and listeners by wildcard, then the endpoints
//! of every cluster it got and the route configuration of every listener — and ACKs
//! each response. For each variant it prints:
//!
//! - tollgate's resident memory before the clients and once all are in sync, and the
//!   difference per client;
//! - one config edit (one backend's port, so its cluster is replaced by a new one with
//!   new endpoints, and 10 routes of the route configuration change): the time from the file write until the
//!   first and the last client has the new endpoints (the file watcher applies a write
//!   once two polls 0.5 s apart read the same text, so both include 0.5–1 s), the CPU
//!   time tollgate spent from the write until all had it, and the bytes it sent for
//!   the update (`tollgate_xds_response_bytes_total`), in all and per client.
//!
//! The last line is the bytes-per-update ratio, SotW / Delta, measured in this run.
//!
//!   cargo bench --bench xds_load -- [--clients N]
//!
//! Under `cargo test --all-targets` (no `--bench` argument) it runs with 20 clients.

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::config::listener::v3::{filter, Listener};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager::RouteSpecifier, HttpConnectionManager,
};
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use prost::Message;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
const ENDPOINT: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";

fn config_text(ext_proc: u16, admin: u16, moved: bool) -> String {
    let mut text = format!(
        "extProc: {{ address: \"127.0.0.1:{ext_proc}\" }}\nadmin: {{ address: \"127.0.0.1:{admin}\" }}\nlogging: {{ level: warn }}\nxds: {{}}\nbinds:\n- port: 10000\n  listeners:\n  - routes:\n"
    );
    for r in 0..1000 {
        // The edit moves backend 0 to another port: one endpoint assignment changes.
        let port = match r % 100 {
            0 if moved => 29999,
            b => 20000 + b,
        };
        text.push_str(&format!(
            "    - name: r{r}\n      matches: [ {{ path: {{ pathPrefix: /v1/t{r} }} }} ]\n      policies: {{ tokenAccounting: {{}} }}\n      backends: [ {{ host: \"127.0.0.1:{port}\" }} ]\n"
        ));
    }
    text
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Resident memory and CPU time (user + system) of a process, from /proc.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

/// The route configuration names a listener's HTTP connection manager asks for.
fn route_names(listener: &Listener) -> Vec<String> {
    listener
        .filter_chains
        .iter()
        .flat_map(|c| &c.filters)
        .filter_map(|f| match &f.config_type {
            Some(filter::ConfigType::TypedConfig(any)) => {
                HttpConnectionManager::decode(any.value.as_slice()).ok()
            }
            _ => None,
        })
        .filter_map(|h| match h.route_specifier {
            Some(RouteSpecifier::Rds(rds)) => Some(rds.route_config_name),
            _ => None,
        })
        .collect()
}

/// What a client reports: it is in sync (has every type), and it has the edit.
#[derive(Default)]
struct Progress {
    synced: AtomicUsize,
    updated: AtomicUsize,
}

fn node(i: usize) -> Option<Node> {
    Some(Node {
        id: format!("sim-{i}"),
        cluster: "sim".into(),
        ..Default::default()
    })
}

/// The name of a cluster, from its encoded bytes (field 1).
fn resource_name(any: &envoy_types::pb::google::protobuf::Any) -> String {
    #[derive(Clone, PartialEq, prost::Message)]
    struct Named {
        #[prost(string, tag = "1")]
        name: String,
    }
    Named::decode(any.value.as_slice())
        .map(|n| n.name)
        .unwrap_or_default()
}

/// The moved backend's endpoints: an assignment naming port 29999 (the varint of
/// 29999, as `port_value` is encoded: 0xAF 0xEA 0x01).
fn has_edit(any: &envoy_types::pb::google::protobuf::Any) -> bool {
    any.value.windows(3).any(|w| w == [0xAF, 0xEA, 0x01])
}

/// A client on tollgate's ADS at `port`, on a connection of its own.
async fn ads_client(port: u16) -> AggregatedDiscoveryServiceClient<tonic::transport::Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await
        .expect("connecting");
    AggregatedDiscoveryServiceClient::new(channel)
}

/// What one simulated Envoy has had: the types it holds, and whether it is in sync and
/// has seen the edit, counted in `progress` once each.
struct Seen {
    have: BTreeSet<String>,
    synced: bool,
    updated: bool,
    progress: Arc<Progress>,
}

impl Seen {
    fn new(progress: Arc<Progress>) -> Self {
        Seen {
            have: BTreeSet::new(),
            synced: false,
            updated: false,
            progress,
        }
    }

    /// An endpoints response arrived; `edited`: it carries the edit.
    fn endpoints(&mut self, edited: bool) {
        if self.synced && !self.updated && edited {
            self.updated = true;
            self.progress.updated.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A response of type `t` was ACKed; in sync once four types were.
    fn got(&mut self, t: &str) {
        self.have.insert(t.to_string());
        if !self.synced && self.have.len() == 4 {
            self.synced = true;
            self.progress.synced.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn sotw_client(
    i: usize,
    port: u16,
    progress: Arc<Progress>,
    mut stop: watch::Receiver<bool>,
) {
    let mut client = ads_client(port).await;
    let (tx, rx) = mpsc::channel(16);
    let request =
        |type_url: &str, names: Vec<String>, version: String, nonce: String| DiscoveryRequest {
            node: node(i),
            type_url: type_url.into(),
            resource_names: names,
            version_info: version,
            response_nonce: nonce,
            ..Default::default()
        };
    tx.send(request(CLUSTER, vec![], String::new(), String::new()))
        .await
        .unwrap();
    tx.send(request(LISTENER, vec![], String::new(), String::new()))
        .await
        .unwrap();
    let mut stream = client
        .stream_aggregated_resources(ReceiverStream::new(rx))
        .await
        .expect("ADS stream")
        .into_inner();
    let mut seen = Seen::new(progress);
    let (mut eds, mut rds) = (Vec::new(), Vec::new());
    loop {
        let response = tokio::select! {
            r = stream.message() => match r { Ok(Some(r)) => r, _ => break },
            _ = stop.changed() => break,
        };
        let t = response.type_url.clone();
        let mut follow = None;
        match t.as_str() {
            CLUSTER => {
                let names: Vec<String> = response
                    .resources
                    .iter()
                    .map(resource_name)
                    .filter(|n| n != "tollgate")
                    .collect();
                if names != eds {
                    eds = names.clone();
                    follow = Some(request(ENDPOINT, names, String::new(), String::new()));
                }
            }
            LISTENER => {
                let names: Vec<String> = response
                    .resources
                    .iter()
                    .filter_map(|a| Listener::decode(a.value.as_slice()).ok())
                    .flat_map(|l| route_names(&l))
                    .collect();
                if names != rds {
                    rds = names.clone();
                    follow = Some(request(ROUTE, names, String::new(), String::new()));
                }
            }
            ENDPOINT => seen.endpoints(response.resources.iter().any(has_edit)),
            _ => {}
        }
        let names = match t.as_str() {
            ENDPOINT => eds.clone(),
            ROUTE => rds.clone(),
            _ => vec![],
        };
        if tx
            .send(request(&t, names, response.version_info, response.nonce))
            .await
            .is_err()
        {
            break;
        }
        if let Some(f) = follow {
            let _ = tx.send(f).await;
        }
        seen.got(&t);
    }
}

async fn delta_client(
    i: usize,
    port: u16,
    progress: Arc<Progress>,
    mut stop: watch::Receiver<bool>,
) {
    let mut client = ads_client(port).await;
    let (tx, rx) = mpsc::channel(16);
    let request = |type_url: &str, subscribe: Vec<String>, nonce: String| DeltaDiscoveryRequest {
        node: node(i),
        type_url: type_url.into(),
        resource_names_subscribe: subscribe,
        response_nonce: nonce,
        ..Default::default()
    };
    tx.send(request(CLUSTER, vec![], String::new()))
        .await
        .unwrap();
    tx.send(request(LISTENER, vec![], String::new()))
        .await
        .unwrap();
    let mut stream = client
        .delta_aggregated_resources(ReceiverStream::new(rx))
        .await
        .expect("delta ADS stream")
        .into_inner();
    let mut seen = Seen::new(progress);
    let mut clusters: BTreeSet<String> = BTreeSet::new();
    let mut rds_sent = false;
    loop {
        let response = tokio::select! {
            r = stream.message() => match r { Ok(Some(r)) => r, _ => break },
            _ = stop.changed() => break,
        };
        let t = response.type_url.clone();
        let mut follow = None;
        match t.as_str() {
            CLUSTER => {
                // As Envoy does: endpoints of each new EDS cluster, none of removed ones.
                let added: Vec<String> = response
                    .resources
                    .iter()
                    .map(|r| r.name.clone())
                    .filter(|n| n != "tollgate" && clusters.insert(n.clone()))
                    .collect();
                let gone: Vec<String> = response
                    .removed_resources
                    .iter()
                    .filter(|n| clusters.remove(*n))
                    .cloned()
                    .collect();
                if !added.is_empty() || !gone.is_empty() {
                    let mut r = request(ENDPOINT, added, String::new());
                    r.resource_names_unsubscribe = gone;
                    follow = Some(r);
                }
            }
            LISTENER if !rds_sent => {
                rds_sent = true;
                let names: Vec<String> = response
                    .resources
                    .iter()
                    .filter_map(|r| r.resource.as_ref())
                    .filter_map(|a| Listener::decode(a.value.as_slice()).ok())
                    .flat_map(|l| route_names(&l))
                    .collect();
                follow = Some(request(ROUTE, names, String::new()));
            }
            ENDPOINT => seen.endpoints(
                response
                    .resources
                    .iter()
                    .filter_map(|r| r.resource.as_ref())
                    .any(has_edit),
            ),
            _ => {}
        }
        if tx.send(request(&t, vec![], response.nonce)).await.is_err() {
            break;
        }
        if let Some(f) = follow {
            let _ = tx.send(f).await;
        }
        seen.got(&t);
    }
}

struct Tollgate {
    child: Child,
    dir: tempfile::TempDir,
    ext_proc: u16,
    admin: u16,
}

impl Drop for Tollgate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_tollgate() -> Tollgate {
    let dir = tempfile::tempdir().unwrap();
    let (ext_proc, admin) = (free_port(), free_port());
    let path = dir.path().join("tollgate.yaml");
    std::fs::write(&path, config_text(ext_proc, admin, false)).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["serve", "-c"])
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting tollgate");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", ext_proc)).is_err() {
        assert!(Instant::now() < deadline, "tollgate did not listen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Tollgate {
        child,
        dir,
        ext_proc,
        admin,
    }
}

/// Sum of `tollgate_xds_response_bytes_total` over every type.
async fn bytes_sent(admin: u16) -> u64 {
    let text = reqwest_get(admin, "/metrics").await;
    text.lines()
        .filter(|l| l.starts_with("tollgate_xds_response_bytes_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

async fn reqwest_get(port: u16, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

async fn wait_for(what: &str, count: &AtomicUsize, n: usize, limit: Duration) -> Duration {
    let start = Instant::now();
    while count.load(Ordering::Relaxed) < n {
        assert!(
            start.elapsed() < limit,
            "{what}: {} of {n} after {limit:?}",
            count.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    start.elapsed()
}

/// One variant's run; returns the bytes sent for the update.
async fn run(delta: bool, clients: usize) -> u64 {
    let variant = if delta { "Delta" } else { "SotW" };
    let tollgate = start_tollgate().await;
    let pid = tollgate.child.id();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle = rss_kib(pid);
    let progress = Arc::new(Progress::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    for i in 0..clients {
        let (p, s) = (progress.clone(), stop_rx.clone());
        let port = tollgate.ext_proc;
        tasks.push(tokio::spawn(async move {
            if delta {
                delta_client(i, port, p, s).await
            } else {
                sotw_client(i, port, p, s).await
            }
        }));
    }
    let sync = wait_for(
        "clients in sync",
        &progress.synced,
        clients,
        Duration::from_secs(120),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let synced_rss = rss_kib(pid);
    let (cpu_before, bytes_before) = (cpu_seconds(pid), bytes_sent(tollgate.admin).await);
    let path = tollgate.dir.path().join("tollgate.yaml");
    let edited = Instant::now();
    std::fs::write(&path, config_text(tollgate.ext_proc, tollgate.admin, true)).unwrap();
    wait_for(
        "first client updated",
        &progress.updated,
        1,
        Duration::from_secs(10),
    )
    .await;
    let first = edited.elapsed();
    wait_for(
        "all clients updated",
        &progress.updated,
        clients,
        Duration::from_secs(30),
    )
    .await;
    let all = edited.elapsed();
    let cpu = cpu_seconds(pid) - cpu_before;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let bytes = bytes_sent(tollgate.admin).await - bytes_before;
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    println!(
        "| {variant} | {clients} | {:.0} | {:.1} | {:.1} | {:.1} | {:.0} | {:.0} | {:.3} | {bytes} | {:.0} |",
        sync.as_secs_f64() * 1000.0,
        idle as f64 / 1024.0,
        synced_rss as f64 / 1024.0,
        (synced_rss.saturating_sub(idle)) as f64 / clients as f64,
        first.as_secs_f64() * 1000.0,
        all.as_secs_f64() * 1000.0,
        cpu,
        bytes as f64 / clients as f64,
    );
    bytes
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this as a smoke test
    // with 20 clients (the same checks, a fraction of the time).
    let default = if args.iter().any(|a| a == "--bench") {
        500
    } else {
        20
    };
    let clients = args
        .iter()
        .position(|a| a == "--clients")
        .and_then(|i| args.get(i + 1))
        .map_or(default, |n| n.parse().expect("--clients N"));
    println!("1,000 routes / 100 clusters; every client on its own connection; edit: one backend's port\n");
    println!("| variant | clients | all in sync (ms) | RSS idle (MiB) | RSS in sync (MiB) | KiB per client | edit → first (ms) | edit → all (ms) | CPU for the edit (s) | bytes for the edit | bytes per client |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let sotw = run(false, clients).await;
    let delta = run(true, clients).await;
    println!(
        "\nbytes per update, SotW / Delta: {:.1}x",
        sotw as f64 / delta.max(1) as f64
    );
}
