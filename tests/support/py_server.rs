//! Test peers written in Python (`tests/sdk/*.py`, run with the repo's `.venv`): an
//! independent ext_proc server (`ext_proc_server.py`), an OTLP receiver
//! (`otlp_receiver.py`). Each prints `READY <port>…` once serving; it runs on free
//! loopback ports and is killed when dropped.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::repo_root;

/// A running Python peer and the ports it printed.
pub struct PyServer {
    child: Child,
    pub ports: Vec<u16>,
}

impl PyServer {
    /// Runs `tests/sdk/<script>` with `args` until it prints `READY <port>…`.
    pub async fn start(script: &str, args: &[&str]) -> Self {
        let path = repo_root().join("tests/sdk").join(script);
        let mut child = Command::new(super::llm::python())
            .arg(path)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {script}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let read = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).map(|_| line)
        });
        let line = match tokio::time::timeout(Duration::from_secs(30), read).await {
            Ok(Ok(Ok(line))) => line,
            other => {
                let _ = child.kill();
                panic!("{script} did not start: {other:?}");
            }
        };
        let ports: Option<Vec<u16>> = line.strip_prefix("READY ").map(|rest| {
            rest.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        });
        match ports.filter(|p: &Vec<u16>| !p.is_empty()) {
            Some(ports) => PyServer { child, ports },
            None => {
                let _ = child.kill();
                panic!("{script} printed {line:?}, not READY <port>…")
            }
        }
    }

    pub fn port(&self) -> u16 {
        self.ports[0]
    }
}

impl Drop for PyServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
