//! Proxy adapter tests: raw HTTP/1.1 written to the handler over an in-memory
//! connection (so a test can send what no client library would: a malformed chunk, a
//! stall, a hang-up mid-body), scripted processors on a hand-built route, and a
//! loopback upstream that echoes what it received. Checked: the phases in order, each
//! body mode's effect on what the upstream and the client see, every local reply, and
//! `on_complete` exactly once with the right outcome.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::handler::{Handler, RouteSource};
use super::upstream::Upstreams;
use crate::config::{Backend, UpstreamConfig};
use crate::pipeline::testing::{entries, proxy_pipeline, scripted, Script};
use crate::pipeline::{BodyMode, PipelineStore};

type Journal = Arc<Mutex<Vec<String>>>;

const PORT: u16 = 18080;

/// A loopback upstream answering every request with its body, and the length it read
/// in `x-echo-length` (with the request's `x-echo-type` as its content type).
async fn echo_upstream() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = hyper::service::service_fn(
                |req: http::Request<hyper::body::Incoming>| async move {
                    let kind = req.headers().get("x-echo-type").cloned();
                    let body = req.into_body().collect().await?.to_bytes();
                    let mut resp = http::Response::new(Full::new(body.clone()));
                    resp.headers_mut()
                        .insert("x-echo-length", body.len().to_string().parse().unwrap());
                    if let Some(kind) = kind {
                        resp.headers_mut().insert("content-type", kind);
                    }
                    Ok::<_, hyper::Error>(resp)
                },
            );
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    addr
}

/// A handler whose one route runs a scripted processor and forwards to `upstream`.
fn handler(script: Script, upstream: Option<SocketAddr>) -> (Arc<Handler>, Journal) {
    let (factory, journal) = scripted(script);
    let backend = upstream.map(|a| Backend {
        host: a.to_string(),
        tls: None,
        http2: false,
        weight: 1,
    });
    let pipeline = proxy_pipeline(PORT, "scripted", vec![factory], backend);
    let store = Arc::new(PipelineStore::new(pipeline));
    let upstreams = Upstreams::new(&UpstreamConfig::default());
    let stalls = prometheus_client::metrics::counter::Counter::default();
    let handler = Handler::new(
        store,
        upstreams,
        RouteSource::Bind(PORT),
        Duration::from_millis(200),
        stalls,
    );
    (Arc::new(handler), journal)
}

/// Serves one in-memory connection with `handler`; the client's end is returned.
fn connect(handler: Arc<Handler>) -> DuplexStream {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let remote: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let peer = Arc::new(super::forward::Client::new(remote));
    let service = hyper::service::service_fn(move |req| {
        let (handler, peer) = (handler.clone(), peer.clone());
        async move { Ok::<_, std::convert::Infallible>(handler.handle(req, &peer).await) }
    });
    tokio::spawn(
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(server), service),
    );
    client
}

/// Writes `raw` (a request with `connection: close`) and reads the whole response.
async fn exchange(handler: Arc<Handler>, raw: &str) -> String {
    let mut conn = connect(handler);
    conn.write_all(raw.as_bytes()).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), conn.read_to_string(&mut out))
        .await
        .expect("a response within 5 s")
        .unwrap();
    out
}

fn post(body: &str) -> String {
    format!(
        "POST /v1/x HTTP/1.1\r\nhost: t\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn status(response: &str) -> u16 {
    response[9..12].parse().unwrap()
}

fn body(response: &str) -> &str {
    response.split_once("\r\n\r\n").unwrap().1
}

/// Waits for the journal's `complete:*` entry (it may land after the reply is read).
async fn completion(journal: &Journal) -> Vec<String> {
    for _ in 0..250 {
        let done: Vec<String> = entries(journal)
            .into_iter()
            .filter(|e| e.starts_with("complete:"))
            .collect();
        if !done.is_empty() {
            return done;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no completion: {:?}", entries(journal));
}

#[tokio::test]
async fn streamed_bodies_go_through_the_processor_both_ways() {
    let upstream = echo_upstream().await;
    let script = Script {
        request_body: Some(BodyMode::Stream),
        response_body: Some(BodyMode::Stream),
        uppercase: true,
        ..Script::default()
    };
    let (h, journal) = handler(script, Some(upstream));
    let response = exchange(h, &post("hello")).await;
    assert_eq!(status(&response), 200, "{response}");
    // Upper-cased on the way up; the echo upper-cased again (a no-op) on the way down.
    assert!(response.contains("HELLO"), "{response}");
    let seen = entries(&journal);
    assert_eq!(seen[0], "request_headers");
    assert!(
        seen.iter().any(|e| e.starts_with("request_body(hello")),
        "{seen:?}"
    );
    assert!(seen.contains(&"response_headers".to_string()), "{seen:?}");
    assert_eq!(completion(&journal).await, ["complete:completed"]);
    // A small response of known length is read whole, then sent with its length.
    assert!(response.contains("content-length: 5\r\n"), "{response}");
}

#[tokio::test]
async fn an_event_stream_is_streamed_whatever_its_length() {
    let upstream = echo_upstream().await;
    let script = Script {
        response_body: Some(BodyMode::Stream),
        uppercase: true,
        ..Script::default()
    };
    let (h, journal) = handler(script, Some(upstream));
    let event = "data: {}\n\n";
    let request = post(event).replacen(
        "host: t\r\n",
        "host: t\r\nx-echo-type: text/event-stream\r\n",
        1,
    );
    let response = exchange(h, &request).await;
    assert_eq!(status(&response), 200, "{response}");
    assert!(
        response.contains("transfer-encoding: chunked"),
        "{response}"
    );
    assert!(response.contains("DATA: {}"), "{response}");
    assert_eq!(completion(&journal).await, ["complete:completed"]);
}

#[tokio::test]
async fn a_buffered_request_body_is_sent_with_its_new_length() {
    let upstream = echo_upstream().await;
    let script = Script {
        request_body: Some(BodyMode::Buffer { limit: 1 << 20 }),
        uppercase: true,
        ..Script::default()
    };
    let (h, journal) = handler(script, Some(upstream));
    let response = exchange(h, &post("abc")).await;
    assert_eq!(status(&response), 200, "{response}");
    assert!(response.contains("x-echo-length: 3"), "{response}");
    assert_eq!(body(&response), "ABC");
    assert_eq!(completion(&journal).await, ["complete:completed"]);
}

#[tokio::test]
async fn a_reply_at_request_headers_never_reaches_the_upstream() {
    let script = Script {
        respond_at: Some("request_headers"),
        ..Script::default()
    };
    // No backend: had the request gone on, it would be a 503.
    let (h, journal) = handler(script, None);
    let response = exchange(h, &post("x")).await;
    assert_eq!(status(&response), 403, "{response}");
    assert_eq!(completion(&journal).await, ["complete:local_reply"]);
}

#[tokio::test]
async fn a_reply_mid_request_body_wins_over_the_upstream() {
    let upstream = echo_upstream().await;
    let script = Script {
        request_body: Some(BodyMode::Stream),
        respond_at: Some("request_body"),
        ..Script::default()
    };
    let (h, journal) = handler(script, Some(upstream));
    let response = exchange(h, &post("x")).await;
    assert_eq!(status(&response), 403, "{response}");
    assert_eq!(completion(&journal).await, ["complete:local_reply"]);
}

#[tokio::test]
async fn a_route_without_a_backend_is_503_without_a_route_404() {
    let (h, journal) = handler(Script::default(), None);
    let response = exchange(h.clone(), &post("x")).await;
    assert_eq!(status(&response), 503, "{response}");
    assert!(body(&response).contains("no_backend"), "{response}");
    assert_eq!(completion(&journal).await, ["complete:local_reply"]);

    let other_port = Handler::new(
        Arc::new(PipelineStore::new(proxy_pipeline(
            PORT + 1,
            "elsewhere",
            Vec::new(),
            None,
        ))),
        Upstreams::new(&UpstreamConfig::default()),
        RouteSource::Bind(PORT),
        Duration::from_secs(1),
        Default::default(),
    );
    let response = exchange(Arc::new(other_port), &post("x")).await;
    assert_eq!(status(&response), 404, "{response}");
    assert!(body(&response).contains("route_not_found"), "{response}");
}

/// A chunked request whose second chunk size is not hex.
const MALFORMED: &str = "POST /v1/x HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\
                         transfer-encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n";

#[tokio::test]
async fn a_malformed_chunked_body_is_400_in_every_body_mode() {
    let upstream = echo_upstream().await;
    for mode in [
        BodyMode::Skip,
        BodyMode::Stream,
        BodyMode::Buffer { limit: 1 << 20 },
    ] {
        let script = Script {
            request_body: Some(mode),
            ..Script::default()
        };
        let (h, journal) = handler(script, Some(upstream));
        let response = exchange(h, MALFORMED).await;
        assert_eq!(status(&response), 400, "{mode:?}: {response}");
        let json: serde_json::Value = serde_json::from_str(body(&response)).unwrap();
        assert_eq!(json["error"]["type"], "invalid_request_error", "{json}");
        assert_eq!(completion(&journal).await, ["complete:local_reply"]);
    }
}

#[tokio::test]
async fn a_stalled_body_is_408_in_every_body_mode() {
    let upstream = echo_upstream().await;
    for mode in [
        BodyMode::Skip,
        BodyMode::Stream,
        BodyMode::Buffer { limit: 1 << 20 },
    ] {
        let script = Script {
            request_body: Some(mode),
            ..Script::default()
        };
        let (h, journal) = handler(script, Some(upstream));
        let stalled = "POST /v1/x HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\
                       content-length: 10\r\n\r\nabc";
        let response = exchange(h, stalled).await;
        assert_eq!(status(&response), 408, "{mode:?}: {response}");
        assert!(body(&response).contains("request_timeout"), "{response}");
        assert_eq!(completion(&journal).await, ["complete:local_reply"]);
    }
}

#[tokio::test]
async fn a_client_hanging_up_mid_body_is_client_gone() {
    let upstream = echo_upstream().await;
    for mode in [
        BodyMode::Skip,
        BodyMode::Stream,
        BodyMode::Buffer { limit: 1 << 20 },
    ] {
        let script = Script {
            request_body: Some(mode),
            ..Script::default()
        };
        let (h, journal) = handler(script, Some(upstream));
        let mut conn = connect(h);
        let partial = "POST /v1/x HTTP/1.1\r\nhost: t\r\ncontent-length: 100\r\n\r\nabc";
        conn.write_all(partial.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(conn);
        assert_eq!(
            completion(&journal).await,
            ["complete:client_gone"],
            "{mode:?}"
        );
    }
}

#[tokio::test]
async fn upstream_failures_name_no_address() {
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = dead.local_addr().unwrap();
    drop(dead);
    let (h, _) = handler(Script::default(), Some(addr));
    let response = exchange(h, &post("x")).await;
    assert_eq!(status(&response), 503, "{response}");
    assert!(!response.contains(&addr.port().to_string()), "{response}");
    assert!(!response.contains("127.0.0.1"), "{response}");
}
