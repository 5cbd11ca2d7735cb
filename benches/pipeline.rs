//! Hot-path benchmarks: one ext_proc exchange handled in-process (headers only, and with
//! a 4 KiB buffered body), and the standalone proxy's per-request overhead against a
//! direct call to the same in-process upstream (the baseline, measured in the same run).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use envoy_types::pb::envoy::config::core::v3::{HeaderMap, HeaderValue};
use envoy_types::pb::envoy::extensions::filters::http::ext_proc::v3::processing_mode::BodySendMode;
use envoy_types::pb::envoy::service::ext_proc::v3::{
    processing_request::Request as In, HttpBody, HttpHeaders, ProcessingRequest,
    ProcessingResponse, ProtocolConfiguration,
};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tollgate::adapters::ext_proc::ExtProcStream;
use tollgate::config::parse_str;
use tollgate::pipeline::{Pipeline, PipelineStore};

const HEADER_POLICIES: &str = r#"
extProc: { address: "127.0.0.1:0", modeOverride: false }
logging: { level: error }
binds:
- port: 1
  listeners:
  - routes:
    - name: chat
      matches: [ { path: { pathPrefix: /v1 } } ]
      policies:
        requestHeaderModifier: { set: { x-team: bench }, remove: [x-drop] }
        responseHeaderModifier: { set: { x-tollgate: "1" } }
"#;

fn pipeline(yaml: &str) -> Arc<Pipeline> {
    Arc::new(
        Pipeline::build(
            parse_str(yaml).unwrap(),
            tollgate::services::Services::new(),
        )
        .unwrap(),
    )
}

fn headers(pairs: &[(&str, &str)]) -> Option<HeaderMap> {
    Some(HeaderMap {
        headers: pairs
            .iter()
            .map(|(k, v)| HeaderValue {
                key: k.to_string(),
                value: String::new(),
                raw_value: v.as_bytes().to_vec(),
            })
            .collect(),
    })
}

fn message(request: In, body_mode: BodySendMode) -> ProcessingRequest {
    ProcessingRequest {
        protocol_config: Some(ProtocolConfiguration {
            request_body_mode: body_mode as i32,
            response_body_mode: body_mode as i32,
            ..Default::default()
        }),
        attributes: HashMap::new(),
        request: Some(request),
        ..Default::default()
    }
}

fn request_headers(eos: bool) -> In {
    In::RequestHeaders(HttpHeaders {
        headers: headers(&[
            (":method", "POST"),
            (":path", "/v1/chat/completions"),
            (":authority", "api.local"),
            (":scheme", "http"),
            ("content-type", "application/json"),
            ("authorization", "Bearer sk-bench"),
            ("x-request-id", "0123456789abcdef"),
            ("x-drop", "1"),
            ("user-agent", "bench/1.0"),
        ]),
        end_of_stream: eos,
        ..Default::default()
    })
}

fn response_headers(eos: bool) -> In {
    In::ResponseHeaders(HttpHeaders {
        headers: headers(&[
            (":status", "200"),
            ("content-type", "application/json"),
            ("content-length", "4096"),
        ]),
        end_of_stream: eos,
        ..Default::default()
    })
}

fn ext_proc_exchange(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let p = pipeline(HEADER_POLICIES);
    let body = vec![b'x'; 4096];
    let mut group = c.benchmark_group("ext_proc_exchange");
    group.bench_function("headers_only", |b| {
        b.to_async(&rt).iter(|| async {
            let mut s = ExtProcStream::new(p.clone());
            let a = s
                .on_message(message(request_headers(true), BodySendMode::None))
                .await
                .unwrap();
            let r = s
                .on_message(message(response_headers(true), BodySendMode::None))
                .await
                .unwrap();
            s.end();
            (a, r)
        })
    });
    group.throughput(Throughput::Bytes(2 * body.len() as u64));
    group.bench_function("buffered_4k_body", |b| {
        b.to_async(&rt).iter(|| async {
            let mut s = ExtProcStream::new(p.clone());
            let mode = BodySendMode::Buffered;
            let mut out = s
                .on_message(message(request_headers(false), mode))
                .await
                .unwrap();
            out.extend(
                s.on_message(message(
                    In::RequestBody(HttpBody {
                        body: body.clone(),
                        end_of_stream: true,
                        ..Default::default()
                    }),
                    mode,
                ))
                .await
                .unwrap(),
            );
            out.extend(
                s.on_message(message(response_headers(false), mode))
                    .await
                    .unwrap(),
            );
            out.extend(
                s.on_message(message(
                    In::ResponseBody(HttpBody {
                        body: body.clone(),
                        end_of_stream: true,
                        ..Default::default()
                    }),
                    mode,
                ))
                .await
                .unwrap(),
            );
            s.end();
            out
        })
    });
    group.finish();
}

const LLM_ROUTES: &str = r#"
extProc: { address: "127.0.0.1:0", modeOverride: false }
logging: { level: error }
binds:
- port: 1
  listeners:
  - routes:
    - name: accounting
      matches: [ { headers: [ { name: x-route, value: { exact: accounting } } ] } ]
      policies:
        tokenAccounting:
          metadata: [ { key: llm_total_token, type: TotalToken } ]
    - name: guard
      matches: [ { headers: [ { name: x-route, value: { exact: guard } } ] } ]
      policies:
        promptGuard:
          request:
            rules: [ { name: pii, builtins: [email, phone, credit_card, ssn, iban], action: mask } ]
          response:
            rules: [ { name: pii, builtins: [email, phone, credit_card, ssn, iban], action: mask } ]
    - name: empty
"#;

/// One LLM exchange in-process, as Envoy sends it with a BUFFERED request body and a
/// STREAMED response in one chunk: a 4 KiB chat request, and a completion with usage —
/// JSON (`llm_exchange_4k`) or a 50-event SSE stream ending with a usage chunk and
/// `[DONE]` (`llm_exchange_4k_sse`, the stream `scripts/bench-load` serves).
fn llm_exchange(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let p = pipeline(LLM_ROUTES);
    let filler = "Tell me about the history of the city of Paris. ".repeat(90);
    let messages = serde_json::json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": &filler[..4000]}]);
    let request =
        serde_json::to_vec(&serde_json::json!({"model": "gpt-4o", "messages": messages})).unwrap();
    let stream_request = serde_json::to_vec(
        &serde_json::json!({"model": "gpt-4o", "messages": messages, "stream": true}),
    )
    .unwrap();
    let response = br#"{"id":"c","object":"chat.completion","model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"Paris."},"finish_reason":"stop"}],"usage":{"prompt_tokens":1010,"completion_tokens":50,"total_tokens":1060}}"#.to_vec();
    let cases = [
        ("llm_exchange_4k", &request, response, "application/json"),
        (
            "llm_exchange_4k_sse",
            &stream_request,
            sse_stream(),
            "text/event-stream",
        ),
    ];
    for (group_name, request, response, content_type) in cases {
        let mut group = c.benchmark_group(group_name);
        for route in ["empty", "accounting", "guard"] {
            group.bench_function(route, |b| {
                b.to_async(&rt)
                    .iter(|| llm_exchange_once(&p, route, request, &response, content_type))
            });
        }
        group.finish();
    }
}

/// The 50-event Chat Completions stream of `benches/load.py`.
fn sse_stream() -> Vec<u8> {
    let mut out = String::new();
    for i in 0..50 {
        let chunk = serde_json::json!({"id": "c", "object": "chat.completion.chunk", "model": "gpt-4o",
            "choices": [{"index": 0, "delta": {"content": format!("tok{i} ")}}]});
        out.push_str(&format!("data: {chunk}\n\n"));
    }
    let usage = serde_json::json!({"id": "c", "object": "chat.completion.chunk", "model": "gpt-4o", "choices": [],
        "usage": {"prompt_tokens": 1010, "completion_tokens": 50, "total_tokens": 1060}});
    out.push_str(&format!("data: {usage}\n\ndata: [DONE]\n\n"));
    out.into_bytes()
}

async fn llm_exchange_once(
    p: &Arc<Pipeline>,
    route: &str,
    request: &[u8],
    response: &[u8],
    content_type: &str,
) -> Vec<ProcessingResponse> {
    let mut s = ExtProcStream::new(p.clone());
    let request_headers = In::RequestHeaders(HttpHeaders {
        headers: headers(&[
            (":method", "POST"),
            (":path", "/v1/chat/completions"),
            (":authority", "api.local"),
            ("content-type", "application/json"),
            ("x-route", route),
        ]),
        end_of_stream: false,
        ..Default::default()
    });
    let mut out = s.on_message(llm_message(request_headers)).await.unwrap();
    let body = |body: &[u8]| HttpBody {
        body: body.to_vec(),
        end_of_stream: true,
        ..Default::default()
    };
    let request_body = In::RequestBody(body(request));
    out.extend(s.on_message(llm_message(request_body)).await.unwrap());
    let response_headers = In::ResponseHeaders(HttpHeaders {
        headers: headers(&[(":status", "200"), ("content-type", content_type)]),
        end_of_stream: false,
        ..Default::default()
    });
    out.extend(s.on_message(llm_message(response_headers)).await.unwrap());
    let response_body = In::ResponseBody(body(response));
    out.extend(s.on_message(llm_message(response_body)).await.unwrap());
    s.end();
    out
}

/// A message of an LLM route's stream: request body BUFFERED, response body STREAMED,
/// as `benches/load.py` configures Envoy.
fn llm_message(request: In) -> ProcessingRequest {
    ProcessingRequest {
        protocol_config: Some(ProtocolConfiguration {
            request_body_mode: BodySendMode::Buffered as i32,
            response_body_mode: BodySendMode::Streamed as i32,
            ..Default::default()
        }),
        request: Some(request),
        ..Default::default()
    }
}

async fn start_upstream() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            stream.set_nodelay(true).unwrap();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(b"ok"))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

async fn start_proxy(upstream: SocketAddr) -> SocketAddr {
    let yaml = format!(
        "logging: {{ level: error }}\nbinds:\n- port: 0\n  listeners:\n  - routes:\n    - name: bench\n      policies:\n        requestHeaderModifier: {{ set: {{ x-team: bench }} }}\n        responseHeaderModifier: {{ set: {{ x-tollgate: \"1\" }} }}\n      backends: [ {{ host: \"{upstream}\" }} ]\n"
    );
    let loaded = parse_str(&yaml).unwrap();
    let bind = loaded.config.binds[0].clone();
    let upstream_config = loaded.config.upstream.clone();
    let p = Pipeline::build(loaded, tollgate::services::Services::new()).unwrap();
    let store = Arc::new(PipelineStore::new(p));
    let bound = tollgate::adapters::proxy::bind(&bind).await.unwrap();
    let addr = bound.local_addr();
    tokio::spawn(tollgate::adapters::proxy::serve(
        bound,
        store,
        upstream_config,
        std::future::pending(),
        std::time::Duration::from_secs(1),
    ));
    addr
}

fn proxy_overhead(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (upstream, proxy) = rt.block_on(async {
        let upstream = start_upstream().await;
        (upstream, start_proxy(upstream).await)
    });
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut group = c.benchmark_group("proxy_request");
    for (name, addr) in [("direct_baseline", upstream), ("through_tollgate", proxy)] {
        let uri: hyper::Uri = format!("http://{addr}/v1/chat").parse().unwrap();
        group.bench_with_input(BenchmarkId::from_parameter(name), &uri, |b, uri| {
            b.to_async(&rt).iter(|| async {
                let resp = client.get(uri.clone()).await.unwrap();
                resp.into_body().collect().await.unwrap().to_bytes()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, ext_proc_exchange, llm_exchange, proxy_overhead);
criterion_main!(benches);
