//! Test support for the end-to-end suite: free ports, polling, a mock upstream, an HTTP
//! client that timestamps what it reads, launchers for real `tollgate` and Envoy
//! processes (each in its own temp dir, killed on drop), and for token accounting the
//! official LLM SDKs as clients and readers of the exported usage (`llm`); the
//! model-server simulator (`sim`); MCP servers and clients of the Python MCP SDK
//! (`mcp`).

pub mod client;
pub mod envoy;
pub mod epp;
pub mod epp_envoy;
/// The prompt guard's scripted LLM upstream and SDK runner.
pub mod guard;
/// Hostile answers of the mock upstream (bombs, huge lines).
pub mod hostile;
/// A vLLM KV-event publisher in Python (pyzmq, msgpack).
pub mod kv_events;
pub mod llm;
/// MCP servers and clients of the official Python SDK, for the MCP gateway.
pub mod mcp;
pub mod py_server;
pub mod raw;
pub mod redis;
pub mod scenario;
/// The model-server simulator (`tollgate sim`).
pub mod sim;
pub mod tls;
pub mod tollgate;
pub mod upstream;

pub use scenario::assert_sse_one_by_one;

use std::collections::BTreeSet;
use std::future::Future;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A loopback port that was free a moment ago (bound to port 0, then released), and
/// never handed out before in this test process: the kernel may return a port it just
/// gave, and two servers of one test must not be told the same port.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("binding 127.0.0.1:0")
            .port();
        if GIVEN.lock().unwrap().insert(port) {
            return port;
        }
    }
}

/// The repository root (where Cargo.toml is).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Polls `check` every 20 ms until it returns `Some`, or panics after `timeout` naming
/// `what` it waited for.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The text of a log file, or a note that it could not be read.
pub fn read_log(path: &std::path::Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| format!("<cannot read {}: {e}>", path.display()))
}

/// Sends `signal` (e.g. `TERM`) to a process with the `kill` command.
pub fn send_signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("running kill");
    assert!(status.success(), "kill -{signal} {pid} failed: {status}");
}

/// Waits (without blocking the runtime) for a child to exit, up to `timeout`.
pub async fn wait_exit(
    child: &mut std::process::Child,
    timeout: Duration,
) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("polling a child process") {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The value of the first metric line starting with `prefix` (name and labels).
pub fn metric(metrics: &str, prefix: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Asserts that the gRPC health service behind `channel` answers SERVING for each of
/// `services`.
pub async fn assert_serving(channel: tonic::transport::Channel, services: &[&str]) {
    use tonic_health::pb::{
        health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
    };
    let mut client = HealthClient::new(channel);
    for service in services {
        let status = client
            .check(HealthCheckRequest {
                service: service.to_string(),
            })
            .await
            .unwrap_or_else(|e| panic!("{service:?}: {e}"))
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
    }
}
