//! A gateway's side of the endpoint-picker protocol, for black-box tests of any EPP: an
//! ext_proc gRPC client that sends what Envoy sends (headers, body chunks, response
//! headers with `envoy.lb` metadata) and collects the replies.
//!
//! The target is `TOLLGATE_EPP_TARGET` (`host:port`; plaintext unless `TOLLGATE_EPP_TLS=1`,
//! which encrypts without verifying, as gateways do with pickers) serving a pool whose
//! endpoints are `TOLLGATE_EPP_ENDPOINTS` (comma-separated `ip:port`), which reports every
//! endpoint saturated and sheds the objective `TOLLGATE_EPP_SHEDDABLE_OBJECTIVE`, and
//! returns `TOLLGATE_EPP_FALLBACKS` endpoints per pick. Without `TOLLGATE_EPP_TARGET`, a
//! tollgate is started over fake endpoints arranged that way.

use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::{HeaderMap, HeaderValue, Metadata};
use envoy_types::pb::envoy::extensions::filters::http::ext_proc::v3::processing_mode::BodySendMode;
use envoy_types::pb::envoy::service::ext_proc::v3::external_processor_client::ExternalProcessorClient;
use envoy_types::pb::envoy::service::ext_proc::v3::processing_request::Request as In;
use envoy_types::pb::envoy::service::ext_proc::v3::processing_response::Response as Out;
use envoy_types::pb::envoy::service::ext_proc::v3::{
    body_mutation::Mutation, CommonResponse, HttpBody, HttpHeaders, ImmediateResponse,
    ProcessingRequest, ProcessingResponse, ProtocolConfiguration,
};
use envoy_types::pb::google::protobuf::{value::Kind, Struct, Value};
use tokio::sync::mpsc;
use tonic::transport::{Channel, Endpoint};

use super::tollgate::Tollgate;

/// The EPP under test and what its pool looks like.
pub struct Target {
    pub addr: String,
    pub tls: bool,
    pub endpoints: Vec<String>,
    pub sheddable_objective: String,
    pub fallbacks: usize,
    /// The tollgate started for the suite, when no target was given.
    pub tollgate: Option<Tollgate>,
    _fakes: Vec<tokio::task::JoinHandle<()>>,
}

impl Target {
    /// The target from the environment, or a tollgate started over three fake,
    /// saturated endpoints (queue 10 each) with a sheddable objective `batch`, two
    /// endpoints per pick and the reference default profile, serving ext_proc over TLS
    /// with its self-signed certificate.
    pub async fn get() -> Target {
        if let Ok(addr) = std::env::var("TOLLGATE_EPP_TARGET") {
            let need = |k: &str| {
                std::env::var(k).unwrap_or_else(|_| {
                    panic!("TOLLGATE_EPP_TARGET is set, so {k} must describe its pool")
                })
            };
            return Target {
                addr,
                tls: std::env::var("TOLLGATE_EPP_TLS").is_ok_and(|v| v == "1"),
                endpoints: need("TOLLGATE_EPP_ENDPOINTS")
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .collect(),
                sheddable_objective: need("TOLLGATE_EPP_SHEDDABLE_OBJECTIVE"),
                fallbacks: need("TOLLGATE_EPP_FALLBACKS")
                    .parse()
                    .expect("TOLLGATE_EPP_FALLBACKS is a number"),
                tollgate: None,
                _fakes: Vec::new(),
            };
        }
        let mut fakes = Vec::new();
        let mut endpoints = Vec::new();
        for _ in 0..3 {
            let (addr, task) = fake_endpoint(
                "vllm:num_requests_waiting 10\nvllm:num_requests_running 4\nvllm:kv_cache_usage_perc 0.5\n",
            )
            .await;
            endpoints.push(addr);
            fakes.push(task);
        }
        let ext_proc = super::free_port();
        let yaml = format!(
            r#"
extProc: {{ address: "127.0.0.1:{ext_proc}", selfSignedTls: true }}
policies:
  endpointPicker:
    endpoints: {endpoints:?}
    objectives: [{{name: batch, priority: -1}}, {{name: chat, priority: 10}}]
    scheduling: {{profile: default, maxNumOfEndpoints: 2}}
"#
        );
        let tollgate = Tollgate::start(&yaml).await;
        let target = Target {
            addr: format!("127.0.0.1:{ext_proc}"),
            // As gateways reach pickers: TLS to a self-signed certificate, not verified.
            tls: true,
            endpoints,
            sheddable_objective: "batch".into(),
            fallbacks: 2,
            tollgate: Some(tollgate),
            _fakes: fakes,
        };
        // Wait until the fake endpoints were scraped (a stale pool counts as saturated
        // anyway, so this only makes scores meaningful).
        tokio::time::sleep(Duration::from_millis(150)).await;
        target
    }

    pub async fn channel(&self) -> Channel {
        // `http`: with TLS, the connector below encrypts (tonic's own TLS would verify).
        let endpoint = Endpoint::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect_timeout(Duration::from_secs(5));
        if !self.tls {
            return endpoint.connect().await.expect("connecting to the EPP");
        }
        // Encrypts without verifying, as gateways talk to a picker's self-signed port.
        let addr = self.addr.clone();
        let config = Arc::new(super::tls::insecure_client_config(vec![b"h2".to_vec()]));
        let connector = tower::service_fn(move |_uri: http::Uri| {
            let addr = addr.clone();
            let config = config.clone();
            async move {
                let tcp = tokio::net::TcpStream::connect(&addr).await?;
                let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
                let tls = tokio_rustls::TlsConnector::from(config)
                    .connect(name, tcp)
                    .await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
            }
        });
        endpoint
            .connect_with_connector(connector)
            .await
            .expect("connecting to the EPP over TLS")
    }

    /// A new ext_proc stream, as Envoy opens one per request.
    pub async fn stream(&self) -> Stream {
        let mut client = ExternalProcessorClient::new(self.channel().await)
            .max_decoding_message_size(64 * 1024 * 1024);
        let (tx, rx) = mpsc::channel::<ProcessingRequest>(64);
        let replies = client
            .process(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .expect("opening the ext_proc stream")
            .into_inner();
        Stream { tx, replies }
    }
}

/// One ext_proc stream.
pub struct Stream {
    tx: mpsc::Sender<ProcessingRequest>,
    replies: tonic::Streaming<ProcessingResponse>,
}

impl Stream {
    pub async fn send(&self, m: ProcessingRequest) {
        self.tx.send(m).await.expect("stream open");
    }

    /// The next reply, or `None` if none came within `wait`.
    pub async fn recv(&mut self, wait: Duration) -> Option<ProcessingResponse> {
        match tokio::time::timeout(wait, self.replies.message()).await {
            Ok(Ok(r)) => r,
            Ok(Err(status)) => panic!("ext_proc stream failed: {status}"),
            Err(_) => None,
        }
    }

    pub async fn expect(&mut self) -> ProcessingResponse {
        self.recv(Duration::from_secs(5))
            .await
            .expect("a reply within 5 s")
    }
}

// === messages a gateway sends ===

pub fn headers(pairs: &[(&str, &str)], end_of_stream: bool) -> HttpHeaders {
    HttpHeaders {
        headers: Some(HeaderMap {
            headers: pairs
                .iter()
                .map(|(k, v)| HeaderValue {
                    key: k.to_string(),
                    raw_value: v.as_bytes().to_vec(),
                    ..Default::default()
                })
                .collect(),
        }),
        end_of_stream,
        ..Default::default()
    }
}

/// The request headers of an inference POST, first message of a stream in `mode`.
pub fn request_headers(
    extra: &[(&str, &str)],
    end_of_stream: bool,
    mode: BodySendMode,
    metadata: Option<Metadata>,
) -> ProcessingRequest {
    let mut pairs = vec![
        (":method", "POST"),
        (":path", "/v1/chat/completions"),
        (":authority", "gateway.test"),
        (":scheme", "http"),
        ("content-type", "application/json"),
    ];
    pairs.extend_from_slice(extra);
    ProcessingRequest {
        request: Some(In::RequestHeaders(headers(&pairs, end_of_stream))),
        protocol_config: Some(ProtocolConfiguration {
            request_body_mode: mode as i32,
            response_body_mode: mode as i32,
            ..Default::default()
        }),
        metadata_context: metadata,
        ..Default::default()
    }
}

pub fn request_body(data: &[u8], end_of_stream: bool) -> ProcessingRequest {
    ProcessingRequest {
        request: Some(In::RequestBody(HttpBody {
            body: data.to_vec(),
            end_of_stream,
            ..Default::default()
        })),
        ..Default::default()
    }
}

pub fn response_headers(status: &str, served: Option<&str>) -> ProcessingRequest {
    ProcessingRequest {
        request: Some(In::ResponseHeaders(headers(
            &[(":status", status), ("content-type", "application/json")],
            false,
        ))),
        metadata_context: served.map(|s| {
            metadata(
                "envoy.lb",
                "x-gateway-destination-endpoint-served",
                string(s),
            )
        }),
        ..Default::default()
    }
}

pub fn response_body(data: &[u8], end_of_stream: bool) -> ProcessingRequest {
    ProcessingRequest {
        request: Some(In::ResponseBody(HttpBody {
            body: data.to_vec(),
            end_of_stream,
            ..Default::default()
        })),
        ..Default::default()
    }
}

pub fn metadata(namespace: &str, key: &str, value: Value) -> Metadata {
    let mut md = Metadata::default();
    md.filter_metadata.insert(
        namespace.to_string(),
        Struct {
            fields: [(key.to_string(), value)].into(),
        },
    );
    md
}

pub fn string(s: &str) -> Value {
    Value {
        kind: Some(Kind::StringValue(s.to_string())),
    }
}

pub fn list(items: &[&str]) -> Value {
    Value {
        kind: Some(Kind::ListValue(
            envoy_types::pb::google::protobuf::ListValue {
                values: items.iter().map(|s| string(s)).collect(),
            },
        )),
    }
}

pub fn chat(model: &str, content: &str) -> Vec<u8> {
    serde_json::json!({"model": model, "messages": [{"role": "user", "content": content}]})
        .to_string()
        .into_bytes()
}

// === reading replies ===

pub fn kind(r: &ProcessingResponse) -> &'static str {
    match r.response.as_ref() {
        Some(Out::RequestHeaders(_)) => "request_headers",
        Some(Out::RequestBody(_)) => "request_body",
        Some(Out::RequestTrailers(_)) => "request_trailers",
        Some(Out::ResponseHeaders(_)) => "response_headers",
        Some(Out::ResponseBody(_)) => "response_body",
        Some(Out::ResponseTrailers(_)) => "response_trailers",
        Some(Out::ImmediateResponse(_)) => "immediate_response",
        Some(_) => "other",
        None => "none",
    }
}

pub fn common(r: &ProcessingResponse) -> Option<&CommonResponse> {
    match r.response.as_ref()? {
        Out::RequestHeaders(h) | Out::ResponseHeaders(h) => h.response.as_ref(),
        Out::RequestBody(b) | Out::ResponseBody(b) => b.response.as_ref(),
        _ => None,
    }
}

pub fn immediate(r: &ProcessingResponse) -> Option<&ImmediateResponse> {
    match r.response.as_ref()? {
        Out::ImmediateResponse(i) => Some(i),
        _ => None,
    }
}

/// A header set by a reply (`raw_value` or `value`).
pub fn header_set(r: &ProcessingResponse, name: &str) -> Option<String> {
    let m = common(r)?.header_mutation.as_ref()?;
    m.set_headers.iter().find_map(|o| {
        let h = o.header.as_ref()?;
        (h.key.eq_ignore_ascii_case(name)).then(|| {
            if h.raw_value.is_empty() {
                h.value.clone()
            } else {
                String::from_utf8_lossy(&h.raw_value).into_owned()
            }
        })
    })
}

pub fn removed(r: &ProcessingResponse) -> Vec<String> {
    common(r)
        .and_then(|c| c.header_mutation.as_ref())
        .map(|m| m.remove_headers.clone())
        .unwrap_or_default()
}

/// The `envoy.lb/x-gateway-destination-endpoint` dynamic metadata of a reply.
pub fn metadata_pick(r: &ProcessingResponse) -> Option<String> {
    let md = r.dynamic_metadata.as_ref()?;
    let Some(Kind::StructValue(ns)) = md.fields.get("envoy.lb")?.kind.as_ref() else {
        return None;
    };
    match ns
        .fields
        .get("x-gateway-destination-endpoint")?
        .kind
        .as_ref()
    {
        Some(Kind::StringValue(s)) => Some(s.clone()),
        _ => None,
    }
}

/// The streamed body chunk of a FULL_DUPLEX_STREAMED reply.
pub fn streamed(r: &ProcessingResponse) -> Option<(Vec<u8>, bool)> {
    match common(r)?.body_mutation.as_ref()?.mutation.as_ref()? {
        Mutation::StreamedResponse(s) => Some((s.body.clone(), s.end_of_stream)),
        _ => None,
    }
}

/// The immediate response's status and the value of one of its headers.
pub fn immediate_status(r: &ProcessingResponse) -> Option<(u32, Option<String>)> {
    let i = immediate(r)?;
    let status = i.status.as_ref()?.code as u32;
    let reason = i.headers.as_ref().and_then(|m| {
        m.set_headers.iter().find_map(|o| {
            let h = o.header.as_ref()?;
            (h.key == "x-llm-d-request-dropped-reason").then(|| {
                if h.raw_value.is_empty() {
                    h.value.clone()
                } else {
                    String::from_utf8_lossy(&h.raw_value).into_owned()
                }
            })
        })
    });
    Some((status, reason))
}

/// A fake model server: answers every HTTP request with `metrics` as Prometheus text.
pub async fn fake_endpoint(metrics: &'static str) -> (String, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                loop {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{metrics}",
                        metrics.len()
                    );
                    if sock.write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, task)
}
