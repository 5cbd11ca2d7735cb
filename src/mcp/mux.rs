//! The multiplexer: one MCP endpoint in front of several Streamable-HTTP MCP servers,
//! in both protocol eras, chosen per request (`envelope::is_modern`). A 2026-07-28
//! request is stateless and goes through `modern`, which gives it a session of its own
//! and then this same table; the handshake era (2024-11-05 … 2025-11-25) answers each
//! client message as the dispatch table says:
//!
//! | message | answer |
//! |---|---|
//! | POST `initialize` | sent to every target; results merged; 200 with a sealed `Mcp-Session-Id` |
//! | POST without a session (not `initialize`) | 400 |
//! | a session id that does not open | 404 |
//! | notification | sent to every target with its own session; 202 |
//! | response or error from the client | 202; sent to the target whose request it answers (`relay`) |
//! | `ping` | 200, answered here |
//! | `tools/list`, `prompts/list` | sent to every target; tools / prompts merged under prefixed names |
//! | `tools/call`, `prompts/get` | routed by the name's prefix, renamed; the target's answer passes through |
//! | `resources/list`, `resources/templates/list` | sent to every target; merged unchanged (a URI listed twice is the first target's) |
//! | `resources/read`, `resources/subscribe`, `resources/unsubscribe` | sent to every target; the first that has the resource answers |
//! | `logging/setLevel` | sent to every target; the first answer |
//! | `completion/complete` | a prompt's: to its target, renamed; a resource template's: to every target, first answer |
//! | any other request | forwarded with one target; -32601 with several |
//! | GET | every target's GET stream merged (`events`); 405 when none has one |
//! | other methods | 405 with `Allow: GET, POST, DELETE` |
//! | DELETE | every target's session deleted; 200 |
//!
//! A failed target is a JSON-RPC -32603 on a 200 naming the target; a target that lost
//! its session (404) gets a new one and the request again (`renew`); a session DELETEd
//! through this replica is unknown (404).

mod direct;
mod fanout;
mod modern;
mod named;
mod renew;
mod transport;

pub use direct::{DirectCall, Plan};
pub use renew::Renewals;

use named::Named;
use transport::{
    accepts, check_accept, check_content_type, check_version, error_response, json_reply, reply,
};

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::join_all;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, ORIGIN};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt};
use serde_json::{json, Value};

use super::authz::{Item, Rules};
use super::envelope;
use super::error::McpError;
use super::events::{self, TargetStream};
use super::idle::IdleLimited;
use super::jsonrpc::{self, Message};
use super::limits::ToolLimits;
use super::relay;
use super::upstream::{
    Call, CallError, Client, Target, LAST_EVENT_ID, PROTOCOL_VERSION, SESSION_ID,
};
use super::versions::{self, DEFAULT_VERSION};
use super::{SessionKeys, SessionState, TargetSet};
use crate::metrics::{
    McpCallLabels, McpMethodLabels, McpMetrics, McpRequestLabels, McpRouteMethodLabels,
};

/// The body of the gateway's answers: its own JSON, or a target's answer passed on.
pub type McpBody = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// Methods counted by name in the metrics; any other is `other`.
const METHODS: [&str; 19] = [
    "initialize",
    "server/discover",
    "subscriptions/listen",
    "notifications",
    "tools/list",
    "tools/call",
    "prompts/list",
    "prompts/get",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "logging/setLevel",
    "completion/complete",
    "ping",
    "response",
    "get",
    "delete",
];

/// A method as a metric label: one of [`METHODS`] or `other`.
fn method_label(method: &str) -> &'static str {
    let method = if method.starts_with("notifications/") {
        "notifications"
    } else {
        method
    };
    METHODS
        .iter()
        .find(|m| **m == method)
        .copied()
        .unwrap_or("other")
}

/// An MCP route's multiplexer, built once per config snapshot.
pub struct Multiplexer {
    route: String,
    targets: TargetSet,
    upstreams: Vec<Target>,
    keys: Arc<SessionKeys>,
    allowed_origins: Vec<String>,
    timeout: Duration,
    /// The most bytes of a target's answer read whole.
    limit: usize,
    client: Arc<Client>,
    metrics: McpMetrics,
    renewals: Arc<Renewals>,
    rules: Option<Arc<Rules>>,
    tool_limits: Option<Arc<ToolLimits>>,
    /// Of the target set and the targets' URLs: what a session is made for.
    fingerprint: u64,
    /// The longest a target's answer may send nothing before it is cut.
    stream_idle: Duration,
    /// `mcp.direct`: the header that names a call's target (`direct`).
    direct: Option<http::HeaderName>,
    /// How long a session lasts from its `initialize`.
    max_age: Duration,
}

/// How to build a [`Multiplexer`].
pub struct MuxConfig {
    pub route: String,
    pub targets: TargetSet,
    /// The targets' URLs, in target order.
    pub urls: Vec<http::Uri>,
    /// The targets' own headers (credentials), in target order; missing: none.
    pub headers: Vec<Vec<(http::HeaderName, HeaderValue)>>,
    pub keys: Arc<SessionKeys>,
    pub allowed_origins: Vec<String>,
    pub timeout: Duration,
    /// The longest a target's answer passed through may send nothing.
    pub stream_idle: Duration,
    pub limit: usize,
    pub client: Arc<Client>,
    pub metrics: McpMetrics,
    /// Renewed target sessions and ended client sessions, kept across reloads.
    pub renewals: Arc<Renewals>,
    /// `mcpAuthorization`: what callers may use (`None`: everything).
    pub rules: Option<Arc<Rules>>,
    /// `mcpToolLimit`: how many tool calls a key may make.
    pub tool_limits: Option<Arc<ToolLimits>>,
    /// `mcp.direct`: the header that names a call's target for Envoy.
    pub direct: Option<http::HeaderName>,
    /// How long a session lasts from its `initialize` (`session.maxAge`).
    pub max_age: Duration,
}

/// Who sends a request: the claims `mcpAuthentication` verified, if the route has it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Caller<'a> {
    pub claims: Option<&'a Value>,
}

impl Caller<'_> {
    /// The `sub` claim, which binds a session to its user.
    fn subject(&self) -> Option<&str> {
        self.claims?.get("sub")?.as_str()
    }
}

/// A client's session as one request sees it: its token, and the state it opened to
/// (with the target sessions this replica renewed).
pub(super) struct Session {
    token: String,
    state: SessionState,
    /// The caller's verified claims, for `mcpAuthorization`.
    claims: Option<Value>,
    /// The client's `Mcp-Param-*` headers (2026-07-28), passed on with its request.
    params: Vec<(http::HeaderName, HeaderValue)>,
}

impl std::ops::Deref for Session {
    type Target = SessionState;
    fn deref(&self) -> &SessionState {
        &self.state
    }
}

impl std::fmt::Debug for Multiplexer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Multiplexer")
            .field("route", &self.route)
            .field("targets", &self.targets.names())
            .finish_non_exhaustive()
    }
}

// === impl Multiplexer ===

impl Multiplexer {
    pub fn new(c: MuxConfig) -> Self {
        let urls: Vec<String> = c.urls.iter().map(ToString::to_string).collect();
        let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
        let fingerprint = c.targets.fingerprint_with(&urls);
        let mut headers = c.headers.into_iter();
        let upstreams = c
            .targets
            .names()
            .iter()
            .zip(c.urls)
            .map(|(name, uri)| Target::new(name.clone(), uri, headers.next().unwrap_or_default()))
            .collect();
        Multiplexer {
            route: c.route,
            targets: c.targets,
            upstreams,
            keys: c.keys,
            allowed_origins: c.allowed_origins,
            timeout: c.timeout,
            limit: c.limit,
            client: c.client,
            metrics: c.metrics,
            renewals: c.renewals,
            rules: c.rules,
            tool_limits: c.tool_limits,
            fingerprint,
            stream_idle: c.stream_idle,
            direct: c.direct,
            max_age: c.max_age,
        }
    }

    /// Answers one client request (`body` read whole) from `caller`.
    pub async fn handle(
        &self,
        method: &Method,
        headers: &HeaderMap,
        body: Bytes,
        caller: Caller<'_>,
    ) -> Response<McpBody> {
        let started = Instant::now();
        let label = match *method {
            Method::POST => jsonrpc::method_of(&body).map_or("other", |m| method_label(&m)),
            Method::GET => "get",
            Method::DELETE => "delete",
            _ => "other",
        };
        let modern = envelope::header_is_modern(headers);
        let answer = self.dispatch(method, headers, body, caller).await;
        let m = &self.metrics;
        let route = self.route.clone();
        m.request_duration
            .get_or_create(&McpRouteMethodLabels {
                route: route.clone(),
                method: label,
            })
            .observe(started.elapsed().as_secs_f64());
        let result = if answer.is_ok() { "ok" } else { "error" };
        m.requests
            .get_or_create(&McpRequestLabels {
                route,
                method: label,
                result,
            })
            .inc();
        match answer {
            Ok(response) => response,
            Err(e) => {
                if let McpError::Target { target, error, .. } = &e {
                    tracing::warn!(route = %self.route, target = %target, error = ?error, "MCP target call failed");
                } else {
                    tracing::debug!(route = %self.route, error = %e, "MCP request refused");
                }
                error_response(&e, modern)
            }
        }
    }

    async fn dispatch(
        &self,
        method: &Method,
        headers: &HeaderMap,
        body: Bytes,
        caller: Caller<'_>,
    ) -> Result<Response<McpBody>, McpError> {
        self.check_origin(headers)?;
        if *method != Method::POST && envelope::header_is_modern(headers) {
            let version = String::from_utf8_lossy(headers[PROTOCOL_VERSION].as_bytes());
            let (method, version) = (method.clone(), version.into_owned());
            return Err(McpError::Stateless { method, version });
        }
        match *method {
            Method::POST => self.post(headers, body, caller).await,
            Method::GET => self.events(headers, caller).await,
            Method::DELETE => {
                let session = self.session(headers, None, caller)?;
                self.delete(&session).await;
                self.renewals.end(&session.token, self.targets.len());
                Ok(reply(StatusCode::OK, Bytes::new(), None))
            }
            _ => Err(McpError::Method {
                method: method.clone(),
            }),
        }
    }

    async fn post(
        &self,
        headers: &HeaderMap,
        body: Bytes,
        caller: Caller<'_>,
    ) -> Result<Response<McpBody>, McpError> {
        check_accept(headers)?;
        check_content_type(headers)?;
        let (value, message) = jsonrpc::parse(&body).map_err(McpError::Rpc)?;
        if envelope::is_modern(headers, &value) {
            return self.modern(headers, value, message, body, caller).await;
        }
        check_version(headers)?;
        if let Message::Request { id, method } = &message {
            if method == "initialize" {
                return self.initialize(id, body, caller.subject()).await;
            }
        }
        let request_id = match &message {
            Message::Request { id, .. } => Some(id.clone()),
            _ => None,
        };
        let state = self.session(headers, request_id, caller)?;
        match message {
            Message::Notification { .. } => {
                self.notify(&state, body).await;
                Ok(reply(StatusCode::ACCEPTED, Bytes::new(), None))
            }
            Message::Response { .. } | Message::Error { .. } => {
                self.relay_answer(&state, value).await;
                Ok(reply(StatusCode::ACCEPTED, Bytes::new(), None))
            }
            Message::Request { id, method } => self.request(&state, id, &method, value, body).await,
        }
    }

    async fn request(
        &self,
        state: &Session,
        id: Value,
        method: &str,
        value: Value,
        body: Bytes,
    ) -> Result<Response<McpBody>, McpError> {
        // Resources are merged and read here with several targets, and with rules
        // (which filter them); otherwise they pass through.
        let many = self.targets.len() > 1 || self.rules.is_some();
        match method {
            "ping" => Ok(json_reply(
                &json!({"jsonrpc": "2.0", "id": id, "result": {}}),
                None,
            )),
            "tools/list" => self.list(state, id, value, "tools/list", "tools").await,
            "prompts/list" => self.list(state, id, value, "prompts/list", "prompts").await,
            "tools/call" => self.call_tool(state, id, value).await,
            "prompts/get" => self.route_named(state, id, value, "prompts/get").await,
            "resources/list" if many => {
                self.list(state, id, value, "resources/list", "resources")
                    .await
            }
            "resources/templates/list" if many => {
                let method = "resources/templates/list";
                self.list(state, id, value, method, "resourceTemplates")
                    .await
            }
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" if many => {
                self.read_resource(state, id, value).await
            }
            "logging/setLevel" if many => {
                let all = (0..self.upstreams.len()).collect();
                self.first_answer(state, id, &value, method, all).await
            }
            "completion/complete" if many => self.complete(state, id, value).await,
            _ if self.targets.len() == 1 => self.forward(state, 0, id, method, body).await,
            _ => Err(McpError::Unsupported {
                id,
                method: method.to_string(),
            }),
        }
    }

    /// Sends a request to target `index` and passes its answer on (status, content
    /// type, body as it streams), without the target's session id.
    async fn forward(
        &self,
        state: &Session,
        index: usize,
        id: Value,
        method: &str,
        body: Bytes,
    ) -> Result<Response<McpBody>, McpError> {
        let target = &self.upstreams[index];
        let started = Instant::now();
        let sent = self.send_renewing(state, index, body).await;
        // A 404 is a lost session only for a target that had one; in the 2026-07-28
        // era it is the target's own answer (an unknown method) and passes on.
        let had_session = state
            .targets
            .get(index)
            .is_some_and(|t| t.session_id.is_some());
        let sent = sent.and_then(|r| match r.status() {
            s if (s == StatusCode::NOT_FOUND && had_session) || s.is_server_error() => {
                Err(CallError::Status(s.as_u16()))
            }
            _ => Ok(r),
        });
        self.count(index, method, sent.is_ok(), started);
        let response = sent.map_err(|error| McpError::Target {
            id,
            target: target.name.clone(),
            error,
        })?;
        let (parts, incoming) = response.into_parts();
        let sse = parts
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
        let incoming = IdleLimited::new(incoming, self.stream_idle);
        let body = if sse && self.targets.len() > 1 {
            relay::tag_requests(incoming, index, self.limit)
        } else {
            incoming.boxed()
        };
        let mut out = Response::new(body);
        *out.status_mut() = parts.status;
        if let Some(ct) = parts.headers.get(CONTENT_TYPE) {
            out.headers_mut().insert(CONTENT_TYPE, ct.clone());
        }
        Ok(out)
    }

    /// GET: the client's stream of server messages, every target's merged (`events`).
    /// 406 without `text/event-stream` in `Accept`; 405 when no target offers one.
    async fn events(
        &self,
        headers: &HeaderMap,
        caller: Caller<'_>,
    ) -> Result<Response<McpBody>, McpError> {
        if !accepts(headers, ["text/event-stream", "text/*", "*/*"]) {
            return Err(McpError::AcceptEvents);
        }
        let state = self.session(headers, None, caller)?;
        let n = self.upstreams.len();
        let last = headers.get(LAST_EVENT_ID).and_then(|v| v.to_str().ok());
        let last_ids = match last {
            Some(id) if n == 1 => vec![Some(id.to_string())],
            Some(id) => events::split_event_id(id, n).unwrap_or_else(|| vec![None; n]),
            None => vec![None; n],
        };
        let opened = (0..n).map(|i| self.open_stream(&state, i, last_ids[i].as_deref()));
        let streams: Vec<TargetStream> = join_all(opened).await.into_iter().flatten().collect();
        if streams.is_empty() {
            return Err(McpError::Method {
                method: Method::GET,
            });
        }
        let body = events::merge(streams, n, last_ids, self.limit);
        let mut response = Response::new(body);
        let h = response.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        Ok(response)
    }

    /// Target `index`'s GET stream in `state`, or `None` when it has none for this
    /// session (no target session, 405, 409 for a second stream, a failure: logged).
    async fn open_stream(
        &self,
        state: &Session,
        index: usize,
        last_event_id: Option<&str>,
    ) -> Option<TargetStream> {
        let call = self.call(state, index, Method::GET, Bytes::new());
        call.session?;
        let target = &self.upstreams[index];
        let started = Instant::now();
        let opened = target
            .open_stream(&self.client, call, last_event_id, self.timeout)
            .await;
        let ok = matches!(&opened, Ok(r) if r.status().is_success());
        self.count(index, "get", ok, started);
        match opened {
            Ok(r) if r.status().is_success() => Some(TargetStream {
                index,
                body: r.into_body(),
            }),
            Ok(r) if r.status() == StatusCode::METHOD_NOT_ALLOWED => None,
            Ok(r) => {
                let status = r.status().as_u16();
                tracing::warn!(route = %self.route, target = %target.name, status, "an MCP target refused its GET stream");
                None
            }
            Err(error) => {
                tracing::warn!(route = %self.route, target = %target.name, error = ?error, "an MCP target's GET stream did not open");
                None
            }
        }
    }

    /// A client's answer to a server→client request: to the target its id names (the
    /// only target, with one), under the target's own id, in the target's session.
    /// An answer no target asked for is dropped (logged); the client gets 202 either way.
    async fn relay_answer(&self, state: &Session, mut value: Value) {
        let id = value.get("id").cloned().unwrap_or(Value::Null);
        let routed = if self.targets.len() == 1 {
            Some((0, id.clone()))
        } else {
            relay::untag_id(&id).filter(|(i, _)| *i < self.upstreams.len())
        };
        let Some((index, original)) = routed else {
            tracing::debug!(route = %self.route, %id, "dropped a client answer no target asked for");
            return;
        };
        value["id"] = original;
        let body = Bytes::from(value.to_string());
        let started = Instant::now();
        let call = self.call(state, index, Method::POST, body);
        let sent = self.upstreams[index]
            .send(&self.client, call, self.timeout)
            .await;
        let ok = matches!(&sent, Ok(r) if r.status().is_success());
        self.count(index, "answer", ok, started);
        if !ok {
            let target = &self.upstreams[index].name;
            let status = sent.as_ref().map(|r| r.status().as_u16()).ok();
            tracing::warn!(route = %self.route, %target, ?status, "an MCP target did not take the client's answer to its request");
        }
    }

    /// The call to target `index` in `state`'s session.
    fn call<'a>(
        &self,
        state: &'a SessionState,
        index: usize,
        method: Method,
        body: Bytes,
    ) -> Call<'a> {
        let session = state.targets.get(index);
        let version = session.map(|t| t.protocol_version.as_str());
        let extra = match version {
            Some(v) if versions::is_modern(v) => envelope::routing_headers(&body),
            _ => Vec::new(),
        };
        Call {
            method,
            session: session.and_then(|t| t.session_id.as_deref()),
            version,
            body,
            extra,
        }
    }

    /// The client's session: 400 when it has none, 404 when it does not open (a
    /// foreign key, tampering, another target set, another user's session), is older
    /// than `session.maxAge`, or was DELETEd through this replica. Target sessions this replica renewed replace the sealed ones.
    fn session(
        &self,
        headers: &HeaderMap,
        id: Option<Value>,
        caller: Caller<'_>,
    ) -> Result<Session, McpError> {
        let Some(token) = headers.get(SESSION_ID).map(|t| t.to_str()) else {
            return Err(McpError::MissingSession { id });
        };
        let token = token.unwrap_or_default();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let state = self.keys.open(token).filter(|s| {
            s.fingerprint == self.fingerprint
                && s.targets.len() == self.targets.len()
                && s.subject.as_deref() == caller.subject()
                && now.saturating_sub(s.issued_at) <= self.max_age.as_secs()
                && !self.renewals.ended(token)
        });
        let Some(mut state) = state else {
            return Err(McpError::UnknownSession { id });
        };
        for (index, target) in state.targets.iter_mut().enumerate() {
            if let Some(renewed) = self.renewals.get(token, index) {
                target.session_id = Some(renewed);
            }
        }
        let token = token.to_string();
        let claims = caller.claims.cloned();
        Ok(Session {
            token,
            state,
            claims,
            params: Vec::new(),
        })
    }

    /// Whether `mcpAuthorization` lets this session's caller use `item` of target
    /// `index` (always, without rules).
    fn allows(&self, state: &Session, index: usize, item: Item<'_>, arguments: &Value) -> bool {
        let Some(rules) = &self.rules else {
            return true;
        };
        let target = &self.upstreams[index].name;
        let empty = Value::Object(serde_json::Map::new());
        let arguments = if arguments.is_null() {
            &empty
        } else {
            arguments
        };
        rules.allows_call(target, item, arguments, state.claims.as_ref())
    }

    fn check_origin(&self, headers: &HeaderMap) -> Result<(), McpError> {
        let Some(origin) = headers.get(ORIGIN) else {
            return Ok(());
        };
        let origin = String::from_utf8_lossy(origin.as_bytes()).into_owned();
        if self
            .allowed_origins
            .iter()
            .any(|o| o.eq_ignore_ascii_case(&origin))
        {
            return Ok(());
        }
        Err(McpError::Origin { origin })
    }

    /// Counts a call to target `index` and its time since `started`.
    fn count(&self, index: usize, method: &str, ok: bool, started: Instant) {
        let method = method_label(method);
        let (route, target) = (&self.route, &self.upstreams[index].name);
        self.metrics
            .calls
            .get_or_create(&McpCallLabels {
                route: route.clone(),
                target: target.clone(),
                method,
                result: if ok { "ok" } else { "error" },
            })
            .inc();
        self.metrics
            .duration
            .get_or_create(&McpMethodLabels {
                route: route.clone(),
                target: target.clone(),
                method,
            })
            .observe(started.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests;
