//! A minimal HTTP/1.1 client over one fresh TCP connection per request (hyper's
//! connection API: no pool, so every request is independent). Bodies can be read whole
//! or as server-sent events, each stamped with the instant its last byte arrived.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

/// No single client operation in this suite should take longer.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// A request to send.
#[derive(Clone, Debug)]
pub struct Req {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Req {
    pub fn get(path: &str) -> Self {
        Req {
            method: "GET".into(),
            path: path.into(),
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    pub fn post(path: &str, body: impl Into<Bytes>) -> Self {
        Req {
            method: "POST".into(),
            path: path.into(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.into(),
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// A complete response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// The first value of a header, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ASCII header"))
    }

    /// Every value of a header, in order.
    pub fn header_all(&self, name: &str) -> Vec<String> {
        values(&self.headers, name)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}): {}", self.text()))
    }
}

/// Every value of `name` in `headers`, as strings.
pub fn values(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().expect("ASCII header").to_string())
        .collect()
}

/// A response whose body is read as it arrives.
pub struct Streaming {
    pub status: u16,
    pub headers: HeaderMap,
    body: Incoming,
    buf: BytesMut,
    last_arrival: Instant,
    ended: bool,
}

/// One server-sent event and when its last byte reached the client.
#[derive(Clone, Debug)]
pub struct SseEvent {
    pub data: String,
    pub at: Instant,
}

impl Streaming {
    /// The next complete SSE event, or `None` at the end of the body.
    pub async fn next_event(&mut self) -> Result<Option<SseEvent>, String> {
        loop {
            if let Some(pos) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let raw = self.buf.split_to(pos + 2);
                let text = String::from_utf8_lossy(&raw);
                let data = text
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(str::trim_start)
                    .collect::<Vec<_>>()
                    .join("\n");
                return Ok(Some(SseEvent {
                    data,
                    at: self.last_arrival,
                }));
            }
            if self.ended {
                return match self.buf.is_empty() {
                    true => Ok(None),
                    false => Err(format!(
                        "stream ended inside an event: {:?}",
                        String::from_utf8_lossy(&self.buf)
                    )),
                };
            }
            let frame = tokio::time::timeout(IO_TIMEOUT, self.body.frame())
                .await
                .map_err(|_| "no body data for 30 s".to_string())?;
            match frame {
                None => self.ended = true,
                Some(Err(e)) => return Err(format!("reading the body failed: {e}")),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.last_arrival = Instant::now();
                        self.buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }

    /// Reads every remaining event.
    pub async fn all_events(&mut self) -> Result<Vec<SseEvent>, String> {
        let mut events = Vec::new();
        while let Some(e) = self.next_event().await? {
            events.push(e);
        }
        Ok(events)
    }
}

/// Sends `req` to `127.0.0.1:port` and returns the response with its headers; the body
/// is left to read.
pub async fn open(port: u16, req: Req) -> Result<Streaming, String> {
    tokio::time::timeout(IO_TIMEOUT, open_inner(port, req))
        .await
        .map_err(|_| format!("no response from port {port} within 30 s"))?
}

async fn open_inner(port: u16, req: Req) -> Result<Streaming, String> {
    let body = Full::new(req.body.clone());
    open_with(port, req, body).await
}

/// `req` with `body` in place of `req.body`.
async fn open_with<B>(port: u16, req: Req, body: B) -> Result<Streaming, String>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("connecting to 127.0.0.1:{port}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake with port {port}: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut builder = Request::builder()
        .method(req.method.as_str())
        .uri(&req.path);
    if !req
        .headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("host"))
    {
        builder = builder.header("host", format!("127.0.0.1:{port}"));
    }
    for (name, value) in &req.headers {
        builder = builder.header(name, value);
    }
    let request = builder.body(body).map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("request to port {port} failed: {e}"))?;
    let (parts, body) = response.into_parts();
    Ok(Streaming {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
        buf: BytesMut::new(),
        last_arrival: Instant::now(),
        ended: false,
    })
}

/// Sends `req` and reads the whole response.
pub async fn send(port: u16, req: Req) -> Result<Reply, String> {
    read_all(open(port, req).await?).await
}

/// Sends `req` with its body cut into `pieces` chunks of about equal size, `gap` apart
/// (chunked transfer encoding, no content-length), and reads the whole response: a
/// body that a proxy in front receives piece by piece.
pub async fn send_in_pieces(
    port: u16,
    req: Req,
    pieces: usize,
    gap: Duration,
) -> Result<Reply, String> {
    let size = req.body.len().div_ceil(pieces.max(1)).max(1);
    let chunks: Vec<Bytes> = req.body.chunks(size).map(Bytes::copy_from_slice).collect();
    let (tx, rx) = tokio::sync::mpsc::channel::<
        Result<hyper::body::Frame<Bytes>, std::convert::Infallible>,
    >(1);
    tokio::spawn(async move {
        for (i, chunk) in chunks.into_iter().enumerate() {
            if i > 0 {
                tokio::time::sleep(gap).await;
            }
            if tx.send(Ok(hyper::body::Frame::data(chunk))).await.is_err() {
                return;
            }
        }
    });
    let body = http_body_util::StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    let s = tokio::time::timeout(IO_TIMEOUT, open_with(port, req, body))
        .await
        .map_err(|_| format!("no response from port {port} within 30 s"))??;
    read_all(s).await
}

async fn read_all(s: Streaming) -> Result<Reply, String> {
    let body = tokio::time::timeout(IO_TIMEOUT, s.body.collect())
        .await
        .map_err(|_| "body not complete within 30 s".to_string())?
        .map_err(|e| format!("reading the body failed: {e}"))?
        .to_bytes();
    Ok(Reply {
        status: s.status,
        headers: s.headers,
        body,
    })
}

/// `send`, panicking on a transport error.
pub async fn must(port: u16, req: Req) -> Reply {
    send(port, req).await.unwrap_or_else(|e| panic!("{e}"))
}

/// GET `path` on `port`, panicking on a transport error.
pub async fn get(port: u16, path: &str) -> Reply {
    must(port, Req::get(path)).await
}
