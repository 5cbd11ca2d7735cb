//! Runs the real `tollgate sim` binary: N simulated model servers in one process, their
//! addresses read from the `listening http://ADDR` lines it prints (and with
//! `--kv-events-port`, their publishers from the `kv-events tcp://ADDR` lines); stderr
//! goes to a log file in a temp dir; killed on drop (its log printed if the test is
//! failing).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use super::client::{self, Reply};
use super::read_log;
use super::tollgate::binary;

/// A running `tollgate sim`.
pub struct Sim {
    child: Child,
    /// Holds the log; removed on drop.
    _dir: tempfile::TempDir,
    /// The instances' addresses, in instance order.
    pub addrs: Vec<SocketAddr>,
    /// Their KV-event publishers (`tcp://ip:port`), with `--kv-events-port`.
    pub kv_events: Vec<String>,
    pub log_path: PathBuf,
}

impl Sim {
    /// Starts `instances` instances on ephemeral loopback ports with `extra_args` (cost
    /// model flags, `--lora`, …) and waits until every one listens.
    pub fn start(instances: usize, extra_args: &[&str]) -> Self {
        Sim::start_at("127.0.0.1:0", instances, extra_args)
    }

    /// [`Sim::start`] with the first instance at `listen` (`[::1]:0` for IPv6).
    pub fn start_at(listen: &str, instances: usize, extra_args: &[&str]) -> Self {
        let publishes = extra_args.contains(&"--kv-events-port");
        let dir = tempfile::tempdir().expect("temp dir");
        let log_path = dir.path().join("sim.log");
        let log = std::fs::File::create(&log_path).expect("creating the log file");
        let mut child = Command::new(binary())
            .arg("sim")
            .args(["--instances", &instances.to_string()])
            .args(["--listen", listen])
            .args(extra_args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawning tollgate sim");
        let stdout = child.stdout.take().expect("piped stdout");
        // Read the announcements on a thread, so a silent process cannot hang the test.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut addrs = Vec::with_capacity(instances);
        let mut kv_events = Vec::new();
        let kv_wanted = if publishes { instances } else { 0 };
        while addrs.len() < instances || kv_events.len() < kv_wanted {
            match rx.recv_timeout(Duration::from_secs(20)) {
                Ok(line) if line.starts_with("kv-events ") => {
                    kv_events.push(line["kv-events ".len()..].to_string());
                }
                Ok(line) => {
                    let addr = line
                        .strip_prefix("listening http://")
                        .and_then(|a| a.parse().ok())
                        .unwrap_or_else(|| panic!("unexpected line from tollgate sim: {line}"));
                    addrs.push(addr);
                }
                Err(e) => {
                    let _ = child.kill();
                    panic!(
                        "tollgate sim announced {} of {instances} instances ({e}):\n{}",
                        addrs.len(),
                        read_log(&log_path)
                    );
                }
            }
        }
        Sim {
            child,
            _dir: dir,
            addrs,
            kv_events,
            log_path,
        }
    }

    /// `http://ip:port/v1` of instance `i`, an OpenAI SDK's base URL.
    pub fn base_url(&self, i: usize) -> String {
        format!("http://{}/v1", self.addrs[i])
    }

    /// A GET on instance `i`.
    pub async fn get(&self, i: usize, path: &str) -> Reply {
        client::send(self.addrs[i].port(), client::Req::get(path))
            .await
            .unwrap_or_else(|e| panic!("GET {path} on {}: {e}", self.addrs[i]))
    }

    /// The `/metrics` text of instance `i`.
    pub async fn metrics(&self, i: usize) -> String {
        let reply = self.get(i, "/metrics").await;
        assert_eq!(reply.status, 200);
        reply.text()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        super::send_signal(self.pid(), "TERM");
    }

    /// Waits up to `timeout` for the process to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        super::wait_exit(&mut self.child, timeout).await
    }

    /// What the process wrote to stderr so far.
    pub fn log(&self) -> String {
        read_log(&self.log_path)
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- tollgate sim log ({}) ----\n{}",
                self.log_path.display(),
                self.log()
            );
        }
    }
}
