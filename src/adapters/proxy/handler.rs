//! One proxied request: select the route, run the request phases, call the upstream,
//! run the response phases. Every reply tollgate makes itself (no route, a policy's
//! answer, an upstream failure) finishes the exchange with that status.

use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response};
use hyper::body::Incoming;
use tokio::sync::Mutex;

use super::body::{self, ProxyBody, SharedExchange, Side};
use super::upstream::Upstreams;
use crate::pipeline::{
    Adapter, BodyMode, Ctx, Exchange, Headers, LocalReply, Outcome, PipelineStore, RequestHead,
    Verdict,
};

/// Hop-by-hop headers, never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Serves requests arriving on one bind.
pub struct Handler {
    store: Arc<PipelineStore>,
    upstreams: Upstreams,
    port: u16,
}

impl Handler {
    pub fn new(store: Arc<PipelineStore>, upstreams: Upstreams, port: u16) -> Self {
        Handler {
            store,
            upstreams,
            port,
        }
    }

    pub async fn handle(&self, req: Request<Incoming>, remote: SocketAddr) -> Response<ProxyBody> {
        let pipeline = self.store.load();
        let (mut parts, incoming) = req.into_parts();
        let head = request_head(&parts);
        let route = pipeline
            .bind_routes
            .get(&self.port)
            .and_then(|s| s.select(&head, &parts.headers, None));
        let request_id = parts
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut cx = Ctx::new(Adapter::Proxy, head, request_id.as_deref());
        cx.request_body_empty = http_body::Body::is_end_stream(&incoming);
        let mut ex = Exchange::new(pipeline, cx, route.clone());
        let Some(route) = route else {
            let message = format!(
                "no route matches {} {}",
                ex.cx.request.method,
                ex.cx.request.path_only()
            );
            return local(
                &mut ex,
                LocalReply::error(http::StatusCode::NOT_FOUND, "route_not_found", &message),
            );
        };
        strip_hop_by_hop(&mut parts.headers);
        let mut headers = Headers::new(std::mem::take(&mut parts.headers));
        if let Verdict::Respond(reply) = ex.request_headers(&mut headers).await {
            return local(&mut ex, reply);
        }
        parts.headers = headers.into_map();
        if !parts.headers.contains_key("x-request-id") {
            if let Ok(v) = HeaderValue::from_str(&ex.cx.request_id) {
                parts
                    .headers
                    .insert(HeaderName::from_static("x-request-id"), v);
            }
        }
        append_forwarded_for(&mut parts.headers, remote);

        let mode = ex.request_body_mode();
        let ex: SharedExchange = Arc::new(Mutex::new(ex));
        let mut rejected = None;
        let upstream_body = match mode {
            BodyMode::Skip => body::passthrough(incoming),
            BodyMode::Stream => {
                parts.headers.remove(header::CONTENT_LENGTH);
                let (b, reply) = body::pump(incoming, ex.clone(), Side::Request);
                rejected = Some(reply);
                b
            }
            BodyMode::Buffer { .. } => match body::collect(incoming, &ex, Side::Request).await {
                Ok(bytes) => {
                    parts
                        .headers
                        .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
                    let late = std::mem::take(&mut ex.lock().await.cx.late_request_headers);
                    for (name, value) in late {
                        parts.headers.insert(name, value);
                    }
                    body::full(bytes)
                }
                Err(reply) => return local_shared(&ex, reply).await,
            },
        };

        let destination = ex.lock().await.cx.destination.clone();
        let backend = match upstream_for(route.backend.as_ref(), destination.as_deref()) {
            Some(b) => b,
            None => {
                let message = format!("route {} has no backend", route.name);
                let reply = LocalReply::error(
                    http::StatusCode::SERVICE_UNAVAILABLE,
                    "no_backend",
                    &message,
                );
                return local_shared(&ex, reply).await;
            }
        };
        if destination.is_some() {
            ex.lock().await.cx.served_endpoint = Some(backend.host.clone());
        }
        let request = Request::from_parts(parts, upstream_body);
        let sent = self.upstreams.send(&backend, request, route.timeout);
        let result = match rejected {
            None => sent.await,
            Some(reply) => {
                tokio::pin!(sent);
                tokio::select! {
                    r = &mut sent => r,
                    Ok(reply) = reply => return local_shared(&ex, reply).await,
                }
            }
        };
        let response = match result {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(route = %route.name, error = %e, "upstream call failed");
                return local_shared(&ex, e.reply()).await;
            }
        };

        let (mut rparts, rbody) = response.into_parts();
        strip_hop_by_hop(&mut rparts.headers);
        let status = rparts.status.as_u16();
        let mut guard = ex.lock().await;
        guard.cx.response_status = Some(status);
        let mut headers = Headers::new(std::mem::take(&mut rparts.headers));
        if let Verdict::Respond(reply) = guard.response_headers(&mut headers).await {
            drop(guard);
            return local_shared(&ex, reply).await;
        }
        rparts.headers = headers.into_map();
        let mode = guard.response_body_mode();
        drop(guard);
        let client_body = match mode {
            BodyMode::Skip => body::completing(rbody, ex, status),
            BodyMode::Stream => {
                rparts.headers.remove(header::CONTENT_LENGTH);
                body::pump(rbody, ex, Side::Response).0
            }
            BodyMode::Buffer { .. } => match body::collect(rbody, &ex, Side::Response).await {
                Ok(bytes) => {
                    rparts
                        .headers
                        .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
                    let late = std::mem::take(&mut ex.lock().await.cx.late_response_headers);
                    for (name, value) in late {
                        rparts.headers.insert(name, value);
                    }
                    body::finish(&ex, Outcome::Completed { status });
                    body::full(bytes)
                }
                Err(reply) => return local_shared(&ex, reply).await,
            },
        };
        Response::from_parts(rparts, client_body)
    }
}

/// Where the request goes: the endpoint a picker chose (the first of
/// `x-gateway-destination-endpoint`, spoken to as the route's backend would be, minus
/// TLS, which a pool endpoint address cannot name), else the route's backend.
fn upstream_for(
    backend: Option<&crate::config::Backend>,
    destination: Option<&str>,
) -> Option<crate::config::Backend> {
    match destination.and_then(|d| d.split(',').next()).map(str::trim) {
        Some(pick) if !pick.is_empty() => Some(crate::config::Backend {
            host: pick.to_string(),
            tls: None,
            http2: backend.is_some_and(|b| b.http2),
        }),
        _ => backend.cloned(),
    }
}

fn request_head(parts: &http::request::Parts) -> RequestHead {
    let authority = parts
        .uri
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            parts
                .headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_default();
    RequestHead {
        method: parts.method.as_str().to_string(),
        path: parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string(),
        authority,
        scheme: parts.uri.scheme_str().unwrap_or("http").to_string(),
    }
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
}

fn append_forwarded_for(headers: &mut HeaderMap, remote: SocketAddr) {
    if let Ok(v) = HeaderValue::from_str(&remote.ip().to_string()) {
        headers.append(HeaderName::from_static("x-forwarded-for"), v);
    }
}

/// A reply from tollgate itself, finishing the exchange.
fn local(ex: &mut Exchange, reply: LocalReply) -> Response<ProxyBody> {
    ex.finish(Outcome::LocalReply {
        status: reply.status.as_u16(),
    });
    into_response(reply)
}

async fn local_shared(ex: &SharedExchange, reply: LocalReply) -> Response<ProxyBody> {
    let mut guard = ex.lock().await;
    local(&mut guard, reply)
}

fn into_response(reply: LocalReply) -> Response<ProxyBody> {
    let mut resp = Response::new(body::full(reply.body));
    *resp.status_mut() = reply.status;
    *resp.headers_mut() = reply.headers;
    resp
}
