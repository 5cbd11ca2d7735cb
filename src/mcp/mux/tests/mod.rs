//! The multiplexer's own answers, with targets on closed loopback ports or canned ones:
//! everything it decides before a target answers, and what a failing target turns into.
//! This file holds the shared harness; the tests are in `sessions`, `routing` and `policy`.

use super::*;
use crate::mcp::targets::PrefixMode;
use crate::mcp::TargetSession;
use crate::metrics::McpToolLabels;
use http::header::{ACCEPT, ALLOW};

mod policy;
mod routing;
mod sessions;

/// A loopback port nothing listens on (bound, then released).
pub(super) fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port()
}

pub(super) fn mux(names: &[&str], origins: &[&str]) -> Multiplexer {
    let ports: Vec<u16> = names.iter().map(|_| dead_port()).collect();
    mux_at(names, &ports, origins, Duration::from_secs(5))
}

/// A target on a loopback port that answers every request with `raw` (a whole HTTP/1.1
/// response), or never when `raw` is empty; its port.
pub(super) async fn canned(raw: &'static str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf).await;
                if raw.is_empty() {
                    std::future::pending::<()>().await;
                }
                let _ = conn.write_all(raw.as_bytes()).await;
            });
        }
    });
    port
}

pub(super) fn mux_at(
    names: &[&str],
    ports: &[u16],
    origins: &[&str],
    timeout: Duration,
) -> Multiplexer {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let urls = ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}/mcp").parse().unwrap())
        .collect();
    let targets = TargetSet::new(names, "__".into(), PrefixMode::Auto).unwrap();
    Multiplexer::new(MuxConfig {
        route: "tools".into(),
        targets,
        urls,
        headers: Vec::new(),
        keys: Arc::new(SessionKeys::random()),
        allowed_origins: origins.iter().map(|o| o.to_string()).collect(),
        timeout,
        stream_idle: Duration::from_secs(300),
        limit: 1 << 20,
        client: Arc::new(crate::outbound::client(&Default::default()).unwrap()),
        metrics: McpMetrics::register(
            &mut prometheus_client::registry::Registry::default(),
            Arc::new(crate::metrics::LabelBounds::default()),
        ),
        renewals: Arc::new(Renewals::default()),
        rules: None,
        tool_limits: None,
        direct: None,
        max_age: Duration::from_secs(3600),
    })
}

/// A session `m` sealed, as `initialize` would have made it.
fn session(m: &Multiplexer) -> String {
    let targets = m
        .targets
        .names()
        .iter()
        .map(|n| TargetSession {
            target: n.clone(),
            session_id: Some(format!("up-{n}")),
            protocol_version: "2025-06-18".into(),
        })
        .collect();
    m.keys.seal(&m.state(targets, "2025-06-18".into()))
}

pub(super) fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        ACCEPT,
        HeaderValue::from_static("application/json, text/event-stream"),
    );
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    for (k, v) in pairs {
        h.insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

pub(super) async fn send(
    m: &Multiplexer,
    method: Method,
    h: &HeaderMap,
    body: &str,
) -> (u16, HeaderMap, Value) {
    send_as(m, method, h, body, None).await
}

pub(super) async fn send_as(
    m: &Multiplexer,
    method: Method,
    h: &HeaderMap,
    body: &str,
    claims: Option<&Value>,
) -> (u16, HeaderMap, Value) {
    let caller = Caller { claims };
    let response = m
        .handle(&method, h, Bytes::from(body.to_string()), caller)
        .await;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (status, headers, value)
}

const LIST: &str = r#"{"jsonrpc":"2.0","id":5,"method":"tools/list"}"#;

/// A canned target's whole HTTP/1.1 answer with a JSON body.
fn json_answer(body: &str) -> &'static str {
    let raw = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    Box::leak(raw.into_boxed_str())
}

/// A target on a loopback port answering each request (read in one piece) with
/// `answer(request text)`, a JSON body; its port.
async fn answering(answer: fn(&str) -> String) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 8192];
                let n = conn.read(&mut buf).await.unwrap_or(0);
                let body = answer(&String::from_utf8_lossy(&buf[..n]));
                let _ = conn.write_all(json_answer(&body).as_bytes()).await;
            });
        }
    });
    port
}

/// `m` with the `mcpToolLimit` of `yaml` (a policy's body).
fn with_tool_limits(mut m: Multiplexer, yaml: &str) -> Multiplexer {
    let policy: crate::config::McpToolLimitPolicy = serde_yaml::from_str(yaml).unwrap();
    let config = crate::config::Config::default();
    let services = crate::services::Services::new();
    let limits = ToolLimits::compile(&policy, "p", "tools", &config, &services).unwrap();
    m.tool_limits = Some(Arc::new(limits));
    m
}
