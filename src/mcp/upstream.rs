//! Calls to one MCP target: the request tollgate makes for it (never the client's
//! headers: no `Origin`, no `Authorization`, no client `Mcp-Session-Id`; the target's own
//! configured headers, such as its credentials, instead), with `Host` set
//! to the target URL's authority (the Python SDK's DNS-rebinding check allows only that),
//! the target's own session and protocol version, and the call's timeout.

use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE, HOST};
use http::{HeaderName, HeaderValue, Method, Request, Response, Uri};
use http_body_util::Full;
use hyper::body::Incoming;

use crate::outbound::{error_chain, HttpClient};

/// The pooled client every MCP route shares.
pub type Client = HttpClient<Full<Bytes>>;

/// `Mcp-Session-Id`.
pub const SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
/// `Last-Event-ID`, where an SSE stream resumes.
pub const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");
/// `MCP-Protocol-Version`.
pub const PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");
const ACCEPT_BOTH: HeaderValue = HeaderValue::from_static("application/json, text/event-stream");

/// One configured MCP server.
#[derive(Clone, Debug)]
pub struct Target {
    pub name: String,
    uri: Uri,
    host: HeaderValue,
    /// The target's own headers (its credentials), sent with every call.
    headers: Vec<(HeaderName, HeaderValue)>,
}

/// Why a call to a target failed. The `Display` text is short and names no address:
/// it goes to the client; the details (`Unreachable`'s reason) go to the log.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("unreachable")]
    Unreachable { reason: String },
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("answered HTTP {0}")]
    Status(u16),
    #[error("its answer could not be read: {0}")]
    Body(String),
    #[error("its answer is larger than {0} bytes")]
    TooLarge(usize),
    #[error("its answer held no response to the request")]
    NoAnswer,
    /// The target answered the request with a JSON-RPC error.
    #[error("{message}")]
    Rpc { code: i64, message: String },
}

/// A call: what goes to the target besides the body.
pub struct Call<'a> {
    pub method: Method,
    /// The target's own session, once it gave one.
    pub session: Option<&'a str>,
    /// The protocol version the target negotiated (absent on `initialize`).
    pub version: Option<&'a str>,
    pub body: Bytes,
    /// Headers of the 2026-07-28 era: `Mcp-Method` and `Mcp-Name` made from `body`,
    /// and the client's `Mcp-Param-*` (empty in the handshake era).
    pub extra: Vec<(HeaderName, HeaderValue)>,
}

impl Target {
    /// A target named `name` at `uri` (checked by the config: it has an authority),
    /// with `headers` on every call.
    pub fn new(name: String, uri: Uri, headers: Vec<(HeaderName, HeaderValue)>) -> Self {
        let authority = uri.authority().map_or("", |a| a.as_str());
        let host = HeaderValue::from_str(authority).expect("a URI's authority is a valid header");
        Target {
            name,
            uri,
            host,
            headers,
        }
    }

    /// The target's own headers (its credentials).
    pub fn headers(&self) -> &[(HeaderName, HeaderValue)] {
        &self.headers
    }

    /// Sends `call`; the response once its headers arrived, within `timeout`.
    pub async fn send(
        &self,
        client: &Client,
        call: Call<'_>,
        timeout: Duration,
    ) -> Result<Response<Incoming>, CallError> {
        let request = self.request(call);
        match tokio::time::timeout(timeout, client.request(request)).await {
            Err(_) => Err(CallError::Timeout(timeout)),
            Ok(Err(e)) => Err(CallError::Unreachable {
                reason: error_chain(&e),
            }),
            Ok(Ok(response)) => Ok(response),
        }
    }

    /// Opens the target's GET stream for `call` (method GET, its session), resuming
    /// after `last_event_id`; the response once its headers arrived, within `timeout`.
    pub async fn open_stream(
        &self,
        client: &Client,
        call: Call<'_>,
        last_event_id: Option<&str>,
        timeout: Duration,
    ) -> Result<Response<Incoming>, CallError> {
        let mut request = self.request(call);
        let headers = request.headers_mut();
        headers.insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
        if let Some(v) = last_event_id.and_then(|id| HeaderValue::from_str(id).ok()) {
            headers.insert(LAST_EVENT_ID, v);
        }
        match tokio::time::timeout(timeout, client.request(request)).await {
            Err(_) => Err(CallError::Timeout(timeout)),
            Ok(Err(e)) => Err(CallError::Unreachable {
                reason: error_chain(&e),
            }),
            Ok(Ok(response)) => Ok(response),
        }
    }

    fn request(&self, call: Call<'_>) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(call.body));
        *request.method_mut() = call.method;
        *request.uri_mut() = self.uri.clone();
        let headers = request.headers_mut();
        for (name, value) in &self.headers {
            headers.append(name.clone(), value.clone());
        }
        headers.insert(HOST, self.host.clone());
        headers.insert(ACCEPT, ACCEPT_BOTH);
        if request_has_body(request.method()) {
            request
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        let headers = request.headers_mut();
        // Session ids and versions came from the target or were checked: visible ASCII.
        if let Some(v) = call.session.and_then(|s| HeaderValue::from_str(s).ok()) {
            headers.insert(SESSION_ID, v);
        }
        if let Some(v) = call.version.and_then(|s| HeaderValue::from_str(s).ok()) {
            headers.insert(PROTOCOL_VERSION, v);
        }
        for (name, value) in call.extra {
            headers.append(name, value);
        }
        request
    }
}

fn request_has_body(method: &Method) -> bool {
    method == Method::POST
}
