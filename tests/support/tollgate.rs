//! Runs the real `tollgate` binary: writes its config to a temp dir (with an admin
//! address on a free port put in front), captures stdout and stderr to a log file there,
//! waits until `/readyz` answers 200, and kills the process on drop (printing its log if
//! the test is failing).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::client::{self, Reply};
use super::{free_port, read_log};

/// The `tollgate` binary cargo built for this test run.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_tollgate")
}

/// A running `tollgate serve`.
pub struct Tollgate {
    child: Child,
    /// Holds the config and the log; removed on drop.
    _dir: tempfile::TempDir,
    pub admin_port: u16,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
}

impl Tollgate {
    /// Starts tollgate with `yaml` (everything but the `admin` section) and waits for
    /// readiness.
    pub async fn start(yaml: &str) -> Self {
        Self::start_with_env(yaml, &[]).await
    }

    /// `start`, with extra environment variables for `${ENV}` substitution.
    pub async fn start_with_env(yaml: &str, env: &[(&str, &str)]) -> Self {
        Self::launch(yaml, env, &[], &[]).await
    }

    /// `start`, with extra `serve` arguments, the command run under `wrapper` (e.g.
    /// `["prlimit", "--nofile=64", "--"]`).
    pub async fn start_with_args(yaml: &str, args: &[&str], wrapper: &[&str]) -> Self {
        Self::launch(yaml, &[], args, wrapper).await
    }

    /// Starts tollgate with `yaml` exactly as written; it must put the admin server on
    /// `admin_port` (however it says so).
    pub async fn start_exact(yaml: &str, admin_port: u16) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let config_path = dir.path().join("tollgate.yaml");
        write_atomically(&config_path, yaml);
        let config = config_path.to_str().expect("a UTF-8 temp path").to_string();
        Self::spawn(dir, admin_port, &["-c", config.as_str()], &[], &[]).await
    }

    async fn launch(yaml: &str, env: &[(&str, &str)], args: &[&str], wrapper: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let admin_port = free_port();
        let config_path = dir.path().join("tollgate.yaml");
        write_atomically(&config_path, &with_admin(admin_port, yaml));
        let config = config_path.to_str().expect("a UTF-8 temp path").to_string();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["-c", config.as_str()]);
        Self::spawn(dir, admin_port, &all, env, wrapper).await
    }

    /// A sidecar taking its config from the tollgate control plane at `server`
    /// (`--from-xds`), entry `name`, as node `node`; the served config must put the
    /// admin server on `admin_port`.
    pub async fn start_from_xds(server: &str, name: &str, node: &str, admin_port: u16) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let args = ["--from-xds", server, "--config-name", name, "--node", node];
        Self::spawn(dir, admin_port, &args, &[], &[]).await
    }

    async fn spawn(
        dir: tempfile::TempDir,
        admin_port: u16,
        args: &[&str],
        env: &[(&str, &str)],
        wrapper: &[&str],
    ) -> Self {
        let config_path = dir.path().join("tollgate.yaml");
        let log_path = dir.path().join("tollgate.log");
        let log = std::fs::File::create(&log_path).expect("creating the log file");
        let mut command = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(binary());
                c
            }
            None => Command::new(binary()),
        };
        command
            .arg("serve")
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log);
        for (k, v) in env {
            command.env(k, v);
        }
        let child = command.spawn().expect("spawning tollgate");
        let mut tollgate = Tollgate {
            child,
            _dir: dir,
            admin_port,
            config_path,
            log_path,
        };
        tollgate.wait_ready().await;
        tollgate
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("polling tollgate") {
                panic!(
                    "tollgate exited ({status}) before it was ready:\n{}",
                    self.log()
                );
            }
            if let Ok(reply) = self.admin("/readyz").await {
                if reply.status == 200 {
                    return;
                }
            }
            if Instant::now() > deadline {
                panic!("tollgate not ready after 20 s:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything tollgate wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        read_log(&self.log_path)
    }

    /// A GET on the admin server.
    pub async fn admin(&self, path: &str) -> Result<Reply, String> {
        client::send(self.admin_port, client::Req::get(path)).await
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        let reply = self.admin("/metrics").await.expect("GET /metrics");
        assert_eq!(reply.status, 200);
        reply.text()
    }

    /// Replaces the config file (admin section kept) in one rename, so the watcher
    /// never reads half a file.
    pub fn rewrite_config(&self, yaml: &str) {
        write_atomically(&self.config_path, &with_admin(self.admin_port, yaml));
    }

    /// Replaces the config file (admin section kept) the way an editor saving in place
    /// does: truncate, write the admin section and `cut` bytes of `yaml`, wait `pause`,
    /// write the rest.
    /// A watcher polling meanwhile can read the empty or the half-written file.
    pub async fn save_config_in_place(&self, yaml: &str, cut: usize, pause: Duration) {
        use std::io::Write;
        let text = with_admin(self.admin_port, yaml);
        let cut = (text.len() - yaml.len() + cut).min(text.len());
        let mut file = std::fs::File::create(&self.config_path).expect("truncating the config");
        file.write_all(&text.as_bytes()[..cut])
            .expect("writing half");
        file.flush().expect("flushing half");
        tokio::time::sleep(pause).await;
        file.write_all(&text.as_bytes()[cut..])
            .expect("writing the rest");
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        super::send_signal(self.pid(), "TERM");
    }

    /// Waits up to `timeout` for the process to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        super::wait_exit(&mut self.child, timeout).await
    }

    /// Kills the process (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Tollgate {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "---- tollgate log ({}) ----\n{}",
                self.log_path.display(),
                self.log()
            );
        }
    }
}

fn with_admin(port: u16, yaml: &str) -> String {
    format!("admin:\n  address: \"127.0.0.1:{port}\"\n{yaml}")
}

/// Writes `text` to a sibling temp file and renames it over `path`.
pub fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("writing the config");
    std::fs::rename(&tmp, path).expect("renaming the config into place");
}
