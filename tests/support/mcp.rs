//! The MCP gateway's peers: MCP servers of the official Python SDK (1.x or 2.x, each
//! from its own venv) on loopback ports they bind themselves, killed on drop; the SDK
//! clients run as jobs (`tests/sdk/mcp_client.py`); the gateway config; and the raw
//! JSON-RPC requests the status tests send with a plain HTTP client.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::client::Req;
use super::repo_root;

/// The Python MCP SDK major version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sdk {
    /// `mcp==1.30.0` (`.venv-mcp1`): legacy Streamable HTTP only.
    V1,
    /// `mcp==2.3.0` (`.venv-mcp2`): both eras; its client probes `server/discover` first.
    V2,
}

impl Sdk {
    fn arg(self) -> &'static str {
        match self {
            Sdk::V1 => "1",
            Sdk::V2 => "2",
        }
    }

    /// The venv's Python; fails loudly, with the install command, when it is missing.
    pub fn python(self) -> PathBuf {
        let venv = match self {
            Sdk::V1 => ".venv-mcp1",
            Sdk::V2 => ".venv-mcp2",
        };
        let python = repo_root().join(venv).join("bin/python");
        assert!(
            python.exists(),
            "{} not found: run `scripts/install-test-deps` (or: python3 -m venv {venv} && {venv}/bin/pip install -r tests/requirements-mcp{}.txt)",
            python.display(),
            self.arg()
        );
        python
    }
}

/// A running `tests/sdk/mcp_server.py`.
pub struct McpServer {
    child: Child,
    /// Kept open: a server that prints more must not hit a closed pipe.
    _stdout: BufReader<ChildStdout>,
    /// The server's stderr (its log), printed when the test fails; removed on drop.
    log: tempfile::NamedTempFile,
    pub name: String,
    pub port: u16,
    sdk: Sdk,
    /// `mcp_server.py` options (`--json-response`, `--ask-back`).
    flags: Vec<&'static str>,
}

impl McpServer {
    /// Starts server `name` of `sdk` (`json`: answers requests with JSON, not SSE) and
    /// waits for the port it bound.
    pub async fn start(sdk: Sdk, name: &str, json: bool) -> Self {
        let flags = if json {
            vec!["--json-response"]
        } else {
            Vec::new()
        };
        Self::start_on(sdk, name, flags, 0).await
    }

    /// A 1.x server `name` that answers only requests carrying `header` (`NAME=VALUE`)
    /// and refuses any `Authorization` header.
    pub async fn start_requiring(name: &str, header: &'static str) -> Self {
        Self::start_on(Sdk::V1, name, vec!["--require-header", header], 0).await
    }

    /// A 1.x server `name` whose tools `ask` and `sample` send the client an
    /// elicitation and a sampling request.
    pub async fn start_asking(name: &str) -> Self {
        Self::start_on(Sdk::V1, name, vec!["--ask-back"], 0).await
    }

    /// A 2.x server `name` whose tool `ask` elicits through a resolver (an
    /// `InputRequiredResult` in 2026-07-28) and whose tool `announce` publishes a
    /// tools list change to `subscriptions/listen` streams.
    pub async fn start_asking_v2(name: &str) -> Self {
        Self::start_on(Sdk::V2, name, vec!["--ask-back"], 0).await
    }

    /// Kills the server and starts it again on the same port: a restarted MCP server,
    /// which knows none of the sessions it had.
    pub async fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        *self = Self::start_on(self.sdk, &self.name, self.flags.clone(), self.port).await;
    }

    /// [`Self::start`] on `port` (0: any free port).
    async fn start_on(sdk: Sdk, name: &str, flags: Vec<&'static str>, port: u16) -> Self {
        let script = repo_root().join("tests/sdk/mcp_server.py");
        let log = tempfile::NamedTempFile::new().expect("a log file");
        let mut command = Command::new(sdk.python());
        command
            .arg(script)
            .args([
                "--sdk",
                sdk.arg(),
                "--name",
                name,
                "--port",
                &port.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log.reopen().expect("the log file"));
        command.args(&flags);
        let mut child = command.spawn().expect("spawning mcp_server.py");
        let stdout = child.stdout.take().expect("piped stdout");
        let read = tokio::task::spawn_blocking(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            reader.read_line(&mut line).map(|_| (reader, line))
        });
        let (reader, line) = match tokio::time::timeout(Duration::from_secs(30), read).await {
            Ok(Ok(Ok(read))) => read,
            other => {
                let _ = child.kill();
                panic!("MCP server {name} did not start: {other:?}");
            }
        };
        let port = line
            .strip_prefix("READY ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| {
                let _ = child.kill();
                panic!("MCP server {name} printed {line:?}, not READY <port>")
            });
        McpServer {
            child,
            _stdout: reader,
            log,
            name: name.to_string(),
            port,
            sdk,
            flags,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }
}

impl Drop for McpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = super::read_log(self.log.path());
            eprintln!("---- MCP server {} log ----\n{log}", self.name);
        }
    }
}

/// A tollgate config with one bind on `port` whose route `tools` (path `/mcp`) is an
/// MCP gateway in front of `servers`, in order; `extra` is YAML added to the `mcp`
/// section (indented by 8).
pub fn gateway_yaml(port: u16, servers: &[&McpServer], extra: &str) -> String {
    let targets: String = servers
        .iter()
        .map(|s| format!("        - {{name: {}, url: \"{}\"}}\n", s.name, s.url()))
        .collect();
    format!(
        "binds:\n- port: {port}\n  listeners:\n  - routes:\n    - name: tools\n      matches: [{{path: {{exact: /mcp}}}}]\n      mcp:\n        targets:\n{targets}{extra}"
    )
}

/// Runs SDK client jobs (see `tests/sdk/mcp_client.py`) with `sdk`'s client; the
/// results in order.
pub async fn run_clients(sdk: Sdk, jobs: Vec<Value>) -> Vec<Value> {
    super::llm::run_sdk_with(sdk.python(), "mcp_client.py", jobs).await
}

/// The TypeScript test peers' packages (`tests/sdk/node_modules`); a missing install
/// fails loudly with the command that makes it.
fn node_modules() -> PathBuf {
    let dir = repo_root().join("tests/sdk/node_modules");
    assert!(
        dir.join("@modelcontextprotocol/sdk").is_dir(),
        "the TypeScript MCP SDK is not installed: run scripts/install-test-deps (npm ci --prefix tests/sdk)"
    );
    dir
}

/// Runs client jobs with the TypeScript SDK's client (`tests/sdk/mcp_client.mjs`, the
/// jobs and results of `mcp_client.py`); the results in order.
pub async fn run_ts_clients(jobs: Vec<Value>) -> Vec<Value> {
    node_modules();
    super::llm::run_sdk_with(PathBuf::from("node"), "mcp_client.mjs", jobs).await
}

/// Runs client jobs with the official Rust SDK's client (`tests/rmcp_client`, built by
/// `scripts/install-test-deps`); the results in order.
pub async fn run_rmcp_clients(jobs: Vec<Value>) -> Vec<Value> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| repo_root().join("target"), PathBuf::from);
    let bin = target.join("test-peers/debug/rmcp-client");
    assert!(
        bin.is_file(),
        "the rmcp test client is not built: run scripts/install-test-deps (cargo build --manifest-path tests/rmcp_client/Cargo.toml --target-dir target/test-peers)"
    );
    super::llm::run_jobs(Command::new(bin), jobs).await
}

/// The MCP Inspector's CLI (`mcp-inspector --cli <url> <args>`): the JSON it printed.
pub async fn inspector(url: &str, args: &[&str]) -> Value {
    let bin = node_modules().join(".bin/mcp-inspector");
    let catalog = tempfile::NamedTempFile::new().expect("a catalog file");
    let mut command = Command::new("node");
    command
        .arg(&bin)
        .args(["--cli", url])
        .args(args)
        .env("MCP_CATALOG_PATH", catalog.path());
    let out = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("the inspector runner panicked")
        .unwrap_or_else(|e| panic!("running {}: {e}", bin.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "mcp-inspector {args:?} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("mcp-inspector {args:?} printed no JSON ({e}): {stdout}"))
}

/// A POST of `body` to `/mcp` as an MCP client sends it.
pub fn post(body: &str) -> Req {
    Req::post("/mcp", body.to_string()).header("accept", "application/json, text/event-stream")
}

/// A legacy `initialize` request.
pub const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#;
/// A `tools/list` request with id 2.
pub const TOOLS_LIST: &str = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;
