//! One proxied request, in three phases: the request phase (route, request processors,
//! the request body as they want it), the upstream choice and call (or, on an MCP
//! gateway route, the multiplexer's answer to the body read whole), and the response
//! phase (response processors, the response body as they want it). Every reply
//! tollgate makes itself (no route, a policy's answer, a bad or stalled request body,
//! an upstream failure) finishes the exchange with that status; a client that went
//! away finishes it as `client_gone`.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response};
use hyper::body::Incoming;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::{oneshot, Mutex};

use super::balance::{self, Payload};
use super::body::{self, ProxyBody, SharedExchange, Side, Stopped};
use super::client_body::ClientBody;
use super::forward::{
    append_forwarded_for, request_head, set_request_id, strip_hop_by_hop, upstream_for, Client,
    REQUEST_ID,
};
use super::h1_pool::UpstreamBody;
use super::upstream::{UpstreamError, Upstreams};
use crate::config::ENVOY_ROUTE_HEADER;
use crate::mcp::{Caller, McpBody};
use crate::pipeline::{
    Adapter, BodyMode, CompiledRoute, Ctx, Exchange, Headers, LocalReply, Outcome, PipelineStore,
    Verdict,
};

/// Which routes a proxy listener serves.
#[derive(Clone, Copy, Debug)]
pub enum RouteSource {
    /// A bind's, by port: picked by host and matches, as its listeners say.
    Bind(u16),
    /// tollgate's MCP listener under xDS: only the `mcp` route Envoy names in
    /// [`ENVOY_ROUTE_HEADER`]; anything else is no route.
    EnvoyMcp,
}

/// Serves requests arriving on one bind.
pub struct Handler {
    store: Arc<PipelineStore>,
    upstreams: Upstreams,
    routes: RouteSource,
    /// `limits.connections.bodyProgressTimeout`.
    body_progress: Duration,
    /// Request bodies ended by that timeout.
    stalls: Counter,
}

/// A request on its way upstream: what the request phase hands to the upstream call.
struct Outbound {
    ex: SharedExchange,
    route: Arc<CompiledRoute>,
    parts: http::request::Parts,
    body: RequestBody,
}

/// The request body the upstream phase sends on.
enum RequestBody {
    /// To a backend; with a processor's reply to a streamed body, arriving mid-way.
    Proxied {
        body: ProxyBody,
        rejected: Option<oneshot::Receiver<LocalReply>>,
    },
    /// Read whole: an MCP route's message (within the JSON body limit), or a body the
    /// processors buffered. A backend can be sent it again (retries).
    Collected(Bytes),
}

/// What the upstream phase got: a backend's response, or an MCP route's answer.
enum Upstream {
    Proxied(Response<UpstreamBody>),
    Mcp(Response<McpBody>),
}

/// A reply already made: the phase that made it ends the request.
type Replied = Response<ProxyBody>;

impl Handler {
    pub fn new(
        store: Arc<PipelineStore>,
        upstreams: Upstreams,
        routes: RouteSource,
        body_progress: Duration,
        stalls: Counter,
    ) -> Self {
        Handler {
            store,
            upstreams,
            routes,
            body_progress,
            stalls,
        }
    }

    pub async fn handle(&self, req: Request<Incoming>, client: &Client) -> Response<ProxyBody> {
        let outbound = match self.request_phase(req, client).await {
            Ok(o) => o,
            Err(replied) => return replied,
        };
        let ex = outbound.ex.clone();
        match self.upstream_phase(outbound).await {
            Ok(Upstream::Proxied(response)) => response_phase(ex, response).await,
            Ok(Upstream::Mcp(response)) => response_phase(ex, response).await,
            Err(replied) => replied,
        }
    }

    /// Request phase: the route, the request-header processors, the forwarding
    /// headers, then the request body as the processors asked for it.
    async fn request_phase(
        &self,
        req: Request<Incoming>,
        client: &Client,
    ) -> Result<Outbound, Replied> {
        let (mut parts, incoming) = req.into_parts();
        let (mut ex, route) = self.start(&parts, &incoming);
        let Some(route) = route else {
            return Err(no_route(&mut ex));
        };
        strip_hop_by_hop(&mut parts.headers);
        parts.headers.remove(ENVOY_ROUTE_HEADER);
        let mut headers = Headers::new(std::mem::take(&mut parts.headers));
        if let Verdict::Respond(reply) = ex.request_headers(&mut headers).await {
            return Err(local(&mut ex, reply));
        }
        parts.headers = headers.into_map();
        if let Some(path) = &ex.cx.upstream_path {
            match http::uri::PathAndQuery::try_from(path.as_str()) {
                Ok(p) => parts.uri = http::Uri::from(p),
                Err(_) => {
                    let reply = LocalReply::error(
                        http::StatusCode::INTERNAL_SERVER_ERROR,
                        "url_rewrite",
                        "the rewritten path is not a valid URI path",
                    );
                    return Err(local(&mut ex, reply));
                }
            }
        }
        set_request_id(&mut parts.headers, &ex.cx.request_id);
        append_forwarded_for(&mut parts.headers, client);
        let mode = ex.request_body_mode();
        // An MCP route reads the client's message whole, whatever the processors need.
        let mcp_limit = route
            .mcp
            .as_ref()
            .map(|_| ex.pipeline().config().limits.buffers.json_body_bytes);
        let ex: SharedExchange = Arc::new(Mutex::new(ex));
        let incoming = ClientBody::new(incoming, self.body_progress, self.stalls.clone());
        let body = match mcp_limit {
            Some(limit) => collect_limited(incoming, limit, &ex, &mut parts.headers)
                .await
                .map(RequestBody::Collected),
            None => request_body(mode, incoming, &ex, &mut parts.headers).await,
        };
        match body {
            Ok(body) => Ok(Outbound {
                ex,
                route,
                parts,
                body,
            }),
            Err(stop) => Err(stopped(&ex, stop).await),
        }
    }

    /// The exchange of a request and its route, if one matches.
    fn start(
        &self,
        parts: &http::request::Parts,
        incoming: &Incoming,
    ) -> (Exchange, Option<Arc<CompiledRoute>>) {
        let pipeline = self.store.load();
        let head = request_head(parts);
        let route = match self.routes {
            RouteSource::Bind(port) => pipeline
                .bind_routes
                .get(&port)
                .and_then(|s| s.select(&head, &parts.headers, None)),
            RouteSource::EnvoyMcp => parts
                .headers
                .get(ENVOY_ROUTE_HEADER)
                .and_then(|v| v.to_str().ok())
                .and_then(|name| pipeline.ext_proc_routes.by_name(name))
                .filter(|r| r.mcp.is_some()),
        };
        let request_id = parts.headers.get(&REQUEST_ID).and_then(|v| v.to_str().ok());
        let mut cx = Ctx::new(Adapter::Proxy, head, request_id);
        cx.request_body_empty = http_body::Body::is_end_stream(incoming);
        (Exchange::new(pipeline, cx, route.clone()), route)
    }

    /// Upstream choice and call: the picked endpoint or the route's backend, the
    /// response headers within the route's timeout (or a processor's mid-body reply).
    async fn upstream_phase(&self, out: Outbound) -> Result<Upstream, Replied> {
        let Outbound {
            ex,
            route,
            parts,
            body,
        } = out;
        let (body, rejected) = match (body, &route.mcp) {
            (RequestBody::Collected(bytes), Some(mux)) => {
                let (claims, target) = {
                    let guard = ex.lock().await;
                    (guard.cx.jwt.clone(), guard.cx.mcp_target)
                };
                // A call `mcp_router` sent to its target goes there as planned.
                if let Some(index) = target {
                    let answer = mux.send_direct(index, &parts.headers, bytes).await;
                    return Ok(Upstream::Mcp(answer));
                }
                let caller = Caller {
                    claims: claims.as_ref(),
                };
                let answer = mux
                    .handle(&parts.method, &parts.headers, bytes, caller)
                    .await;
                return Ok(Upstream::Mcp(answer));
            }
            (RequestBody::Collected(bytes), None) => (Payload::Held(bytes), None),
            (RequestBody::Proxied { body, rejected }, _) => (Payload::Once(body), rejected),
        };
        let (destination, body_empty) = {
            let guard = ex.lock().await;
            (guard.cx.destination.clone(), guard.cx.request_body_empty)
        };
        // A picker's endpoint comes back owned; the route's own backends are borrowed.
        let picked = match upstream_for(route.backends.first(), destination.as_deref()) {
            Some(Cow::Owned(endpoint)) => Some(endpoint),
            _ => None,
        };
        let backends = picked.as_slice();
        let backends = if backends.is_empty() {
            &route.backends[..]
        } else {
            backends
        };
        if backends.is_empty() {
            let message = format!("route {} has no backend", route.name);
            let status = http::StatusCode::SERVICE_UNAVAILABLE;
            return Err(local_shared(&ex, LocalReply::error(status, "no_backend", &message)).await);
        }
        if let Some(endpoint) = &picked {
            ex.lock().await.cx.served_endpoint = Some(endpoint.host.clone());
        }
        // An empty body can be sent again as it is.
        let body = match body {
            Payload::Once(_) if body_empty && rejected.is_none() => Payload::Held(Bytes::new()),
            body => body,
        };
        let retry = route.retry.as_ref();
        // Boxed: the call's future is large, and the handler's own stays small to move.
        let sent = Box::pin(balance::send(
            &self.upstreams,
            backends,
            retry,
            route.timeout,
            parts,
            body,
        ));
        let result = match rejected {
            None => sent.await,
            Some(reply) => {
                tokio::select! {
                    r = sent => r,
                    Ok(reply) = reply => return Err(local_shared(&ex, reply).await),
                }
            }
        };
        match result {
            Ok(response) => Ok(Upstream::Proxied(response)),
            Err(e) => Err(upstream_failed(&ex, &route, e).await),
        }
    }
}

/// The request body for the upstream, as the processors asked for it: untouched,
/// streamed through them (their mid-body reply on the receiver), read until their scan
/// ends (the upstream is chosen then; what was held goes first and the rest streams),
/// or collected (and so can be sent again).
async fn request_body(
    mode: BodyMode,
    incoming: ClientBody,
    ex: &SharedExchange,
    headers: &mut HeaderMap,
) -> Result<RequestBody, Stopped> {
    match mode {
        BodyMode::Skip => Ok(RequestBody::Proxied {
            body: body::passthrough(incoming),
            rejected: None,
        }),
        BodyMode::Stream => {
            headers.remove(header::CONTENT_LENGTH);
            let (body, reply) = body::pump(incoming, ex.clone(), Side::Request);
            Ok(RequestBody::Proxied {
                body,
                rejected: Some(reply),
            })
        }
        BodyMode::Scan { .. } => {
            let mut incoming = incoming;
            let (head, ended) = body::scan(&mut incoming, ex, Side::Request).await?;
            apply_late_headers(ex, headers).await;
            if ended {
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(head.len()));
                return Ok(RequestBody::Collected(head));
            }
            // The rest streams (through any `Stream` processor): its length may change.
            headers.remove(header::CONTENT_LENGTH);
            let (rest, reply) = body::pump(incoming, ex.clone(), Side::Request);
            Ok(RequestBody::Proxied {
                body: body::prepend(head, rest),
                rejected: Some(reply),
            })
        }
        BodyMode::Buffer { .. } => {
            let bytes = body::collect(incoming, ex, Side::Request).await?;
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
            apply_late_headers(ex, headers).await;
            Ok(RequestBody::Collected(bytes))
        }
    }
}

/// The whole request body for an MCP route, through the request processors (in the
/// mode they asked for), refused with 413 past `limit` bytes.
async fn collect_limited(
    incoming: ClientBody,
    limit: usize,
    ex: &SharedExchange,
    headers: &mut HeaderMap,
) -> Result<Bytes, Stopped> {
    let bytes = body::collect(
        http_body_util::Limited::new(incoming, limit),
        ex,
        Side::Request,
    )
    .await?;
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    // Headers the body's processors set (`mcpGuard`'s masked `Mcp-Param-*`).
    apply_late_headers(ex, headers).await;
    Ok(bytes)
}

/// The request headers the body's processors set or removed, applied to `headers`
/// (the body was held, so they still go with it).
async fn apply_late_headers(ex: &SharedExchange, headers: &mut HeaderMap) {
    let mut guard = ex.lock().await;
    for (name, value) in std::mem::take(&mut guard.cx.late_request_headers) {
        headers.insert(name, value);
    }
    for name in std::mem::take(&mut guard.cx.late_request_removals) {
        headers.remove(name);
    }
}

/// Response phase: the response-header processors, then the response body as they
/// asked for it. The exchange finishes when the body ends.
async fn response_phase<B>(ex: SharedExchange, response: Response<B>) -> Response<ProxyBody>
where
    B: http_body::Body<Data = Bytes> + Send + Sync + Unpin + 'static,
    B::Error: Into<body::BoxError> + std::fmt::Display + Send,
{
    let (mut parts, rbody) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let status = parts.status.as_u16();
    let mut guard = ex.lock().await;
    guard.cx.response_status = Some(status);
    let mut headers = Headers::new(std::mem::take(&mut parts.headers));
    if let Verdict::Respond(reply) = guard.response_headers(&mut headers).await {
        drop(guard);
        return local_shared(&ex, reply).await;
    }
    parts.headers = headers.into_map();
    let mode = guard.response_body_mode();
    drop(guard);
    let client_body = match mode {
        BodyMode::Skip => body::completing(rbody, ex, status),
        BodyMode::Stream if whole_at_once(&parts.headers, &rbody) => {
            match body::collect(rbody, &ex, Side::Response).await {
                Ok(bytes) => {
                    parts
                        .headers
                        .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
                    body::finish(&ex, Outcome::Completed { status });
                    body::full(bytes)
                }
                Err(stop) => return stopped(&ex, stop).await,
            }
        }
        BodyMode::Stream => {
            parts.headers.remove(header::CONTENT_LENGTH);
            body::pump(rbody, ex, Side::Response).0
        }
        // No response processor scans; were one to, the whole body answers it.
        BodyMode::Buffer { .. } | BodyMode::Scan { .. } => {
            match body::collect(rbody, &ex, Side::Response).await {
                Ok(bytes) => {
                    parts
                        .headers
                        .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
                    let late = std::mem::take(&mut ex.lock().await.cx.late_response_headers);
                    for (name, value) in late {
                        parts.headers.insert(name, value);
                    }
                    body::finish(&ex, Outcome::Completed { status });
                    body::full(bytes)
                }
                Err(stop) => return stopped(&ex, stop).await,
            }
        }
    };
    Response::from_parts(parts, client_body)
}

/// Bytes of a response body that a `Stream` processor sees collected when they all
/// arrive at once (`whole_at_once`).
const SMALL_BODY: u64 = 64 * 1024;

/// Whether a response body a processor wants streamed is better read whole first: a
/// small one of known length (a JSON completion) that is not an event stream. Its
/// chunks go through the processors as they arrive all the same, without the task and
/// channel a stream needs, and the client gets a `content-length`. Event streams are
/// always streamed, whatever their length.
fn whole_at_once<B: http_body::Body>(headers: &HeaderMap, body: &B) -> bool {
    let event_stream = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
    !event_stream && body.size_hint().exact().is_some_and(|n| n <= SMALL_BODY)
}

/// An upstream call that failed: logged with the upstream's address, answered
/// without it. A failure of the client's own body is not logged as the upstream's.
async fn upstream_failed(ex: &SharedExchange, route: &CompiledRoute, e: UpstreamError) -> Replied {
    match &e {
        UpstreamError::ClientBody(_) => {
            tracing::info!(route = %route.name, error = %e, "request body failed")
        }
        _ => tracing::warn!(route = %route.name, error = %e, "upstream call failed"),
    }
    match e.reply() {
        Some(reply) => local_shared(ex, reply).await,
        None => stopped(ex, Stopped::ClientGone).await,
    }
}

/// A body read that stopped: its reply, or the end of an exchange whose client left.
async fn stopped(ex: &SharedExchange, stop: Stopped) -> Replied {
    match stop {
        Stopped::Reply(reply) => local_shared(ex, reply).await,
        Stopped::ClientGone => {
            ex.lock().await.finish(Outcome::ClientGone);
            // Nobody reads it: the connection is gone.
            let mut resp = Response::new(body::full(bytes::Bytes::new()));
            *resp.status_mut() = http::StatusCode::BAD_REQUEST;
            resp
        }
    }
}

/// The 404 for a request no route matches.
fn no_route(ex: &mut Exchange) -> Replied {
    let message = format!(
        "no route matches {} {}",
        ex.cx.request.method,
        ex.cx.request.path_only()
    );
    let reply = LocalReply::error(http::StatusCode::NOT_FOUND, "route_not_found", &message);
    local(ex, reply)
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
