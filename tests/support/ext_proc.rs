//! An independent ext_proc server for the `extProc` policy's tests:
//! `tests/sdk/ext_proc_server.py` (grpcio and Envoy's API stubs from `xds-protos`),
//! started on a free loopback port and killed when dropped.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::repo_root;

/// A running Python ext_proc server.
pub struct PyExtProc {
    child: Child,
    pub port: u16,
}

impl PyExtProc {
    pub async fn start() -> Self {
        let script = repo_root().join("tests/sdk/ext_proc_server.py");
        let mut child = Command::new(super::llm::python())
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawning ext_proc_server.py");
        let stdout = child.stdout.take().expect("piped stdout");
        let read = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).map(|_| line)
        });
        let line = match tokio::time::timeout(Duration::from_secs(30), read).await {
            Ok(Ok(Ok(line))) => line,
            other => {
                let _ = child.kill();
                panic!("ext_proc_server.py did not start: {other:?}");
            }
        };
        let port = line
            .strip_prefix("READY ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| {
                let _ = child.kill();
                panic!("ext_proc_server.py printed {line:?}, not READY <port>")
            });
        PyExtProc { child, port }
    }
}

impl Drop for PyExtProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
