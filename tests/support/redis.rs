//! A real `redis-server` (the Debian package) for the limits tests: on a free 127.0.0.1
//! port, no persistence (`--save '' --appendonly no`), its own temp dir and log, ready
//! once it answers PING, killed on drop. It can be killed (SIGKILL, as a crash) and
//! restarted on the same port. A missing binary fails the test, never skips it.
//!
//! Reads go through the `redis` crate (a dependency of tollgate), so tests can look at
//! the counters tollgate keeps there.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, read_log};

/// The message a test fails with when the binary is missing.
pub const MISSING: &str = "redis-server not found: apt-get install -y redis-server";

/// A running (or killed, until `restart`) `redis-server`.
pub struct RedisServer {
    binary: &'static str,
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts `redis-server` on a free port and waits until it answers PING.
    pub fn start() -> RedisServer {
        RedisServer::start_binary("redis-server")
    }

    /// `start` with another binary name (a missing one fails with [`MISSING`]).
    pub fn start_binary(binary: &'static str) -> RedisServer {
        // A port that was free a moment ago may be taken before redis binds it.
        for _ in 0..5 {
            let mut server = RedisServer {
                binary,
                port: free_port(),
                dir: tempfile::tempdir().expect("a temp dir for redis-server"),
                child: None,
            };
            if server.try_start() {
                return server;
            }
        }
        panic!("redis-server did not start on any of 5 free ports");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// SIGKILL, as a crash: with no persistence every key is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts again on the same port (empty) and waits until it answers PING.
    pub fn restart(&mut self) {
        self.kill();
        assert!(
            self.try_start(),
            "redis-server did not restart on port {}:\n{}",
            self.port,
            read_log(&self.log_path())
        );
    }

    /// A fresh connection (fails while the server is down).
    pub async fn connection(&self) -> ::redis::aio::MultiplexedConnection {
        ::redis::Client::open(self.url())
            .expect("a redis URL")
            .get_multiplexed_async_connection()
            .await
            .unwrap_or_else(|e| panic!("connecting to redis on port {}: {e}", self.port))
    }

    /// Every key matching `pattern`, sorted.
    pub async fn keys(&self, pattern: &str) -> Vec<String> {
        let mut conn = self.connection().await;
        let mut keys: Vec<String> = ::redis::cmd("KEYS")
            .arg(pattern)
            .query_async(&mut conn)
            .await
            .expect("KEYS");
        keys.sort();
        keys
    }

    /// The fields of the hash at `key` (empty when there is none).
    pub async fn hash(&self, key: &str) -> std::collections::HashMap<String, String> {
        let mut conn = self.connection().await;
        ::redis::cmd("HGETALL")
            .arg(key)
            .query_async(&mut conn)
            .await
            .expect("HGETALL")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn try_start(&mut self) -> bool {
        let spawned = Command::new(self.binary)
            .args(["--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(self.log_path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(e) if e.kind() == ErrorKind::NotFound => panic!("{MISSING}"),
            Err(e) => panic!("cannot start {}: {e}", self.binary),
        };
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(_exited)) = child.try_wait() {
                    self.child = None;
                    return false;
                }
            }
            if ping(self.port) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        false
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "---- redis-server log (port {}) ----\n{}",
                self.port,
                read_log(&self.log_path())
            );
        }
    }
}

/// Whether the server answers `PING` with `+PONG` (not `-LOADING`).
fn ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"*1\r\n$4\r\nPING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
}
