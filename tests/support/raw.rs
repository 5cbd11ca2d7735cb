//! Raw TCP clients for what a well-behaved HTTP client never does: connect and stay
//! silent, send headers byte by byte, stall or reset mid-body, send a malformed chunk.
//! Reads are bounded so that a test fails instead of hanging.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// No raw read in this suite should wait longer.
const READ_LIMIT: Duration = Duration::from_secs(10);

/// A loopback connection to `port`.
pub async fn connect(port: u16) -> TcpStream {
    TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap_or_else(|e| panic!("connecting to 127.0.0.1:{port}: {e}"))
}

/// Writes `bytes` (panics if the peer is gone).
pub async fn write(stream: &mut TcpStream, bytes: &[u8]) {
    stream.write_all(bytes).await.expect("writing to tollgate");
}

/// Reads until the peer closes (EOF or reset): what arrived, and how long it took.
pub async fn read_to_close(stream: &mut TcpStream) -> (String, Duration) {
    let started = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match tokio::time::timeout(READ_LIMIT, stream.read(&mut buf)).await {
            Err(_) => panic!(
                "still open after {READ_LIMIT:?}; read so far: {}",
                String::from_utf8_lossy(&out)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    (
        String::from_utf8_lossy(&out).into_owned(),
        started.elapsed(),
    )
}

/// Reads one HTTP/1.1 response with a `content-length` body (the connection stays
/// open): its head and body.
pub async fn read_response(stream: &mut TcpStream) -> (String, String) {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        if let Some(end) = out.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&out[..end]).into_owned();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .unwrap_or(0);
            if out.len() >= end + 4 + length {
                let body = String::from_utf8_lossy(&out[end + 4..end + 4 + length]).into_owned();
                return (head, body);
            }
        }
        let n = tokio::time::timeout(READ_LIMIT, stream.read(&mut buf))
            .await
            .expect("a response in time")
            .expect("reading a response");
        assert!(
            n > 0,
            "closed mid-response: {}",
            String::from_utf8_lossy(&out)
        );
        out.extend_from_slice(&buf[..n]);
    }
}

/// The status code of a response's head (`HTTP/1.1 408 Request Timeout` → 408).
pub fn status(head: &str) -> u16 {
    head.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"))
}

/// The JSON body after a raw response's head.
pub fn json_body(response: &str) -> serde_json::Value {
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {response:?}"))
}
