//! Several backends on one route in the standalone proxy: requests follow the weights;
//! a backend killed mid-run costs no request (retried on another backend, then ejected)
//! and is used again once it is back; a 429 is retried on another backend and its
//! `Retry-After` keeps the backend out; a response already under way is never retried.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;

use crate::support::client::{self, Req};
use crate::support::envoy::Envoy;
use crate::support::free_port;
use crate::support::tollgate::Tollgate;
use crate::support::upstream::MockUpstream;
use crate::xds::first_reply_to;

const OK: &str = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
const TOO_MANY: &str =
    "HTTP/1.1 429 Too Many Requests\r\nretry-after: 1\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
/// Headers promising 100 bytes, then 7 and the connection closes.
const CUT: &str = "HTTP/1.1 200 OK\r\ncontent-length: 100\r\nconnection: close\r\n\r\npartial";

/// A backend written for these tests: answers every connection with one canned
/// response and closes it, counting connections; killed, its port refuses.
struct Canned {
    port: u16,
    hits: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Canned {
    async fn start(port: u16, answer: &'static str) -> Canned {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.bind(([127, 0, 0, 1], port).into()).unwrap();
        let listener = socket.listen(64).unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = hits.clone();
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(answer_once(conn, answer));
            }
        });
        Canned { port, hits, task }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Stops listening: connections to the port are refused from now on.
    fn kill(self) -> u16 {
        self.task.abort();
        self.port
    }
}

/// Reads one request (head and `content-length` body), writes `answer`, closes.
async fn answer_once(mut conn: TcpStream, answer: &str) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let Ok(n) = conn.read(&mut chunk).await else {
            return;
        };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                break;
            }
        }
    }
    let _ = conn.write_all(answer.as_bytes()).await;
    let _ = conn.shutdown().await;
}

fn config(
    port: u16,
    weighted: [u16; 2],
    failover: [u16; 2],
    limited: [u16; 2],
    cut: u16,
) -> String {
    format!(
        r#"upstream:
  connectTimeout: 1s
  outlierDetection: {{ consecutiveFailures: 3, baseEjectionTime: 1s }}
binds:
- port: {port}
  listeners:
  - routes:
    - name: weighted
      matches: [ {{ path: {{ pathPrefix: /w }} }} ]
      backends: [ {{ host: "127.0.0.1:{w0}" }}, {{ host: "127.0.0.1:{w1}", weight: 3 }} ]
    - name: failover
      matches: [ {{ path: {{ pathPrefix: /f }} }} ]
      policies: {{ retry: {{ attempts: 2 }} }}
      backends: [ {{ host: "127.0.0.1:{f0}" }}, {{ host: "127.0.0.1:{f1}" }} ]
    - name: limited
      matches: [ {{ path: {{ pathPrefix: /v1/chat/completions }} }} ]
      policies:
        tokenAccounting: {{}}
        retry: {{ attempts: 2, backoff: 10ms, codes: [429] }}
      backends: [ {{ host: "127.0.0.1:{l0}" }}, {{ host: "127.0.0.1:{l1}" }} ]
    - name: cut
      matches: [ {{ path: {{ pathPrefix: /cut }} }} ]
      policies: {{ retry: {{ attempts: 3, codes: [502] }} }}
      backends: [ {{ host: "127.0.0.1:{cut}" }} ]
"#,
        w0 = weighted[0],
        w1 = weighted[1],
        f0 = failover[0],
        f1 = failover[1],
        l0 = limited[0],
        l1 = limited[1],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_failover_retries_and_recovery_in_the_proxy() {
    let (light, heavy) = (MockUpstream::start().await, MockUpstream::start().await);
    let steady = Canned::start(0, OK).await;
    let doomed = Canned::start(0, OK).await;
    let limiting = Canned::start(0, TOO_MANY).await;
    let answering = MockUpstream::start().await;
    let cut = Canned::start(0, CUT).await;
    let port = free_port();
    let yaml = config(
        port,
        [light.port, heavy.port],
        [steady.port, doomed.port],
        [limiting.port, answering.port],
        cut.port,
    );
    let tollgate = Tollgate::start(&yaml).await;

    follows_the_weights(port, &light, &heavy).await;
    let doomed_port = survives_a_killed_backend(port, &tollgate, &steady, doomed).await;
    uses_it_again_once_back(port, doomed_port).await;
    retries_a_429_elsewhere(port, &limiting, &answering, true).await;
    never_retries_a_response_under_way(port, &cut).await;
}

/// 2,000 requests on an idle pool split 1:3 (within 5 points of 25 %).
async fn follows_the_weights(port: u16, light: &MockUpstream, heavy: &MockUpstream) {
    for i in 0..2000 {
        let reply = client::must(port, Req::get(&format!("/w/{i}"))).await;
        assert_eq!(reply.status, 200, "request {i}: {}", reply.text());
    }
    let (l, h) = (light.requests().len(), heavy.requests().len());
    assert_eq!(l + h, 2000);
    let share = l as f64 / 2000.0;
    println!(
        "weights 1:3 over 2,000 requests: {l} / {h} ({:.1} % on the light one)",
        share * 100.0
    );
    assert!(
        (share - 0.25).abs() < 0.05,
        "light backend got {l} of 2,000"
    );
}

/// A backend dies after 100 requests: the next 300 all succeed (retried, then the
/// backend is ejected).
async fn survives_a_killed_backend(
    port: u16,
    tollgate: &Tollgate,
    steady: &Canned,
    doomed: Canned,
) -> u16 {
    for i in 0..100 {
        let reply = client::must(port, Req::get(&format!("/f/{i}"))).await;
        assert_eq!(reply.status, 200, "before the kill, request {i}");
    }
    let served_before = doomed.hits();
    assert!(
        served_before > 20,
        "both backends served: {served_before} of 100"
    );
    let doomed_port = doomed.kill();
    let steady_before = steady.hits();
    for i in 0..300 {
        let reply = client::must(port, Req::get(&format!("/f/after/{i}"))).await;
        assert_eq!(
            reply.status,
            200,
            "after the kill, request {i}: {}",
            reply.text()
        );
    }
    assert_eq!(
        steady.hits() - steady_before,
        300,
        "every request served by the survivor"
    );
    let log = tollgate.log();
    assert!(
        log.lines()
            .any(|l| l.contains("backend ejected")
                && l.contains(&format!("127.0.0.1:{doomed_port}"))),
        "the dead backend was ejected:\n{log}"
    );
    doomed_port
}

/// The killed backend comes back on its port: once its ejection ends it serves again.
async fn uses_it_again_once_back(port: u16, doomed_port: u16) {
    let back = Canned::start(doomed_port, OK).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while back.hits() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the backend never came back into use"
        );
        let reply = client::must(port, Req::get("/f/back")).await;
        assert_eq!(reply.status, 200);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A 429 with `Retry-After` is retried on the other backend; the limiting backend is
/// then left alone for that second.
async fn retries_a_429_elsewhere(
    port: u16,
    limiting: &Canned,
    answering: &MockUpstream,
    ejects: bool,
) {
    let body = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
    for i in 0..30 {
        let reply = client::must(port, Req::post("/v1/chat/completions", body)).await;
        assert_eq!(reply.status, 200, "request {i}: {}", reply.text());
        assert_eq!(reply.json()["object"], "chat.completion");
    }
    assert_eq!(
        answering.requests().len(),
        30,
        "each request answered once, by the other"
    );
    let limited = limiting.hits();
    assert!(limited >= 1, "the limiting backend was tried");
    // tollgate's proxy leaves it alone for its `Retry-After`; Envoy's outlier detection
    // does not count 429s, so behind Envoy it keeps its share (each retried).
    let most = if ejects { 10 } else { 29 };
    assert!(limited <= most, "{limited} hits on the limiting backend");
}

/// A response cut after its headers reaches the client as it is; the backend is not
/// asked again.
async fn never_retries_a_response_under_way(port: u16, cut: &Canned) {
    for i in 0..3 {
        let reply = client::send(port, Req::get("/cut")).await;
        assert!(
            reply.is_err(),
            "request {i}: a cut body is an error for the client: {reply:?}"
        );
    }
    assert_eq!(cut.hits(), 3, "one attempt per request");
}

/// The same routes through an Envoy tollgate configures over ADS: Envoy's own cluster
/// follows the weights, and its retry policy sends a 429 to the other backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_and_retries_behind_an_ads_envoy() {
    let (light, heavy) = (MockUpstream::start().await, MockUpstream::start().await);
    let steady = Canned::start(0, OK).await;
    let limiting = Canned::start(0, TOO_MANY).await;
    let answering = MockUpstream::start().await;
    let cut = Canned::start(0, CUT).await;
    let (port, ext_proc) = (free_port(), free_port());
    let yaml = format!(
        "extProc: {{ address: \"127.0.0.1:{ext_proc}\" }}\nxds: {{}}\n{}",
        config(
            port,
            [light.port, heavy.port],
            [steady.port, steady.port],
            [limiting.port, answering.port],
            cut.port,
        )
    );
    let _tollgate = Tollgate::start(&yaml).await;
    let _envoy = Envoy::start_ads("balance", ext_proc, false).await;
    first_reply_to(port, Req::get("/w/warm")).await;
    let before = light.requests().len() + heavy.requests().len();
    for i in 0..1000 {
        let reply = client::must(port, Req::get(&format!("/w/{i}"))).await;
        assert_eq!(reply.status, 200, "request {i}");
    }
    let l = light.requests().len();
    let total = l + heavy.requests().len() - before;
    assert_eq!(total, 1000);
    let share = l as f64 / (total + before) as f64;
    println!("Envoy, weights 1:3 over 1,000 requests: {l} on the light one");
    assert!((share - 0.25).abs() < 0.05, "light backend got {l}");
    retries_a_429_elsewhere(port, &limiting, &answering, false).await;
}
