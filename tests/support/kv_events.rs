//! A vLLM KV-event publisher written in Python with pyzmq and msgpack
//! (`tests/sdk/kv_publisher.py`), independent of tollgate's own encoder: PUB sockets on
//! 127.0.0.1 and [::1] at one port (so one process publishes for an IPv4 and an IPv6
//! endpoint of a pool), driven over its HTTP control port.

use serde_json::{json, Value};

use super::client::{self, Req};
use super::envoy::INSTALL;
use super::py_server::PyServer;

/// Tokens per block of the published events (vLLM's default block size).
pub const BLOCK: usize = 16;

/// A running publisher.
pub struct KvPublisher {
    server: PyServer,
}

impl KvPublisher {
    /// Starts the publisher; panics with the install command when pyzmq or msgpack is
    /// missing from the test venv.
    pub async fn start() -> Self {
        let check = std::process::Command::new(super::llm::python())
            .args(["-c", "import zmq, msgpack"])
            .output()
            .expect("running the test venv's python");
        assert!(
            check.status.success(),
            "pyzmq and msgpack are needed by the KV-event tests: run `{INSTALL}`\n{}",
            String::from_utf8_lossy(&check.stderr)
        );
        KvPublisher {
            server: PyServer::start("kv_publisher.py", &[]).await,
        }
    }

    /// The port both PUB sockets are bound to.
    pub fn port(&self) -> u16 {
        self.server.ports[0]
    }

    async fn control(&self, path: &str, body: Value) -> Value {
        let reply = client::must(self.server.ports[1], Req::post(path, body.to_string())).await;
        assert_eq!(reply.status, 200, "publisher {path}: {}", reply.text());
        reply.json()
    }

    /// Publishes one batch of `events` (`{type, block_hashes, …}` objects) to `to`
    /// (`v4` or `v6`) in the array or map `form`, hashes as ints or bytes.
    pub async fn publish(&self, to: &str, form: &str, bytes_hashes: bool, events: Value) {
        let body = json!({"to": to, "form": form, "bytes_hashes": bytes_hashes, "events": events});
        self.control("/publish", body).await;
    }

    /// Sends one malformed message of each kind to `to`; how many.
    pub async fn malformed(&self, to: &str) -> u64 {
        let answer = self.control("/malformed", json!({"to": to})).await;
        answer["sent"].as_u64().expect("a count")
    }

    /// Makes the next sequence number of `to` jump by `skip`.
    pub async fn gap(&self, to: &str, skip: u64) {
        self.control("/gap", json!({"to": to, "skip": skip})).await;
    }
}

/// A `BlockStored` of the whole blocks of `tokens`, engine hashes `first`, `first + 1`, …
pub fn stored(tokens: &[u32], first: u64) -> Value {
    let blocks = tokens.len() / BLOCK;
    json!([{
        "type": "BlockStored",
        "block_hashes": (0..blocks as u64).map(|i| first + i).collect::<Vec<_>>(),
        "parent_block_hash": null,
        "token_ids": &tokens[..blocks * BLOCK],
        "block_size": BLOCK,
    }])
}

/// A `BlockRemoved` of the engine hashes [`stored`] gave `tokens`.
pub fn removed(tokens: &[u32], first: u64) -> Value {
    let blocks = (tokens.len() / BLOCK) as u64;
    json!([{"type": "BlockRemoved", "block_hashes": (0..blocks).map(|i| first + i).collect::<Vec<_>>()}])
}
