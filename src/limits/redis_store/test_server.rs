//! A real `redis-server` (the Debian package) for tests: on an ephemeral 127.0.0.1 port,
//! no persistence unless asked (`SAVE`), its own directory, ready once it answers PING,
//! killed on drop. A missing binary fails the test — it is never skipped silently.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The message a test fails with when the binary is missing.
pub(crate) const MISSING: &str = "redis-server not found: apt-get install -y redis-server";

/// A running (or killed, until `restart`) `redis-server`.
pub(crate) struct RedisServer {
    binary: &'static str,
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl RedisServer {
    /// Start `redis-server` on a free port and wait until it answers.
    pub(crate) fn start() -> RedisServer {
        RedisServer::start_binary("redis-server")
    }

    pub(crate) fn start_binary(binary: &'static str) -> RedisServer {
        // The kernel may hand a just-freed port to someone else before redis binds it:
        // try a few ports.
        for _ in 0..5 {
            let port = free_port();
            let mut server = RedisServer {
                binary,
                port,
                dir: tempfile::tempdir().expect("a temporary directory for redis-server"),
                child: None,
            };
            if server.try_start() {
                return server;
            }
        }
        panic!("redis-server did not start on any of 5 ephemeral ports");
    }

    /// A port where nothing listens (for a store built while Redis is down).
    pub(crate) fn unused() -> RedisServer {
        RedisServer {
            binary: "redis-server",
            port: free_port(),
            dir: tempfile::tempdir().expect("a temporary directory for redis-server"),
            child: None,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// SIGKILL, as a crash: nothing is saved that `SAVE` did not save before.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start again on the same port (loading `dump.rdb` if a `SAVE` wrote one).
    pub(crate) fn restart(&mut self) {
        self.kill();
        assert!(
            self.try_start(),
            "redis-server did not restart on port {}",
            self.port
        );
    }

    /// Freeze the process (SIGSTOP) or let it go on (SIGCONT): a hung server.
    pub(crate) fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("redis-server is running").id();
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("kill(1)");
        assert!(status.success(), "kill {signal} {pid}");
    }

    fn try_start(&mut self) -> bool {
        let child = spawn(self.binary, self.port, self.dir.path());
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
    }
}

fn spawn(binary: &str, port: u16, dir: &Path) -> Child {
    let result = Command::new(binary)
        .args([
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(["--bind", "127.0.0.1", "--dir"])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    match result {
        Ok(child) => child,
        Err(e) if e.kind() == ErrorKind::NotFound => panic!("{MISSING}"),
        Err(e) => panic!("cannot start {binary}: {e}"),
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("its address").port()
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
