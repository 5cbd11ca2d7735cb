//! Single-target calls sent straight to their target (`mcp.direct`). Behind Envoy,
//! tollgate's ext_proc decides here whether a message is a `tools/call` or
//! `prompts/get` for one target, and how it must look when it gets there — the name
//! without its prefix, the target's own session and protocol version (or, in the
//! 2026-07-28 era, `Mcp-Method` / `Mcp-Name` made from the new body), the target's
//! credentials, the target's name in the configured header for an Envoy route to
//! match, and no client token or `Origin`. Envoy carries the call; the standalone
//! proxy carries the same plan itself ([`Multiplexer::send_direct`]).
//!
//! The call meets the checks the dispatch table would make (`Accept`, `Content-Type`,
//! `Origin`, version or envelope, session, prefix, rules, limits), with the same
//! answers; anything else goes on to the gateway unchanged. When the target has
//! answered, [`Multiplexer::finish_direct`] settles the limits, counts the call and, for
//! a target that lost its session (404), opens a new one and tells the client to call
//! again.

use std::time::Instant;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, ORIGIN};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;

use super::{
    check_accept, check_content_type, check_version, method_label, modern, reply, Caller, McpBody,
    Multiplexer, Named, Session,
};
use crate::limits::Reservation;
use crate::mcp::envelope;
use crate::mcp::error::McpError;
use crate::mcp::jsonrpc::{self, Message};
use crate::mcp::upstream::{Call, PROTOCOL_VERSION, SESSION_ID};
use crate::metrics::{McpRequestLabels, McpRouteMethodLabels, McpToolLabels};

/// What becomes of one client message on a route with `mcp.direct`.
pub enum Plan {
    /// Not a call for one target: the gateway answers it.
    Gateway,
    /// Refused before any target was asked: this status and JSON-RPC body.
    Answer { status: StatusCode, body: Vec<u8> },
    /// Goes straight to its target.
    Direct(Box<DirectCall>),
}

/// A call on its way to its target, and what settling it needs.
pub struct DirectCall {
    /// The target, by its index in the route's target list.
    pub index: usize,
    /// The request as the target gets it.
    pub body: Bytes,
    /// Headers to set: the target's name, session, version, credentials.
    pub set: Vec<(HeaderName, HeaderValue)>,
    /// Headers to remove: the client's token and `Origin`, a session the target has not.
    pub remove: Vec<HeaderName>,
    held: Vec<Reservation>,
    method: &'static str,
    /// The item's own name.
    own: String,
    id: Value,
    /// The client's session, for a renewal when the target lost its own.
    session: Session,
    started: Instant,
}

impl Multiplexer {
    /// Whether single-target calls go straight to their target (`mcp.direct`).
    pub fn directs(&self) -> bool {
        self.direct.is_some()
    }

    /// The header that names a call's target (`mcp.direct.header`).
    pub fn direct_header(&self) -> Option<&HeaderName> {
        self.direct.as_ref()
    }

    /// Whether a target's streamed answer needs its server requests' ids tagged (with
    /// several targets, so the client's answers find their target).
    pub fn tags_requests(&self) -> bool {
        self.targets.len() > 1
    }

    /// Where the client message `body` (with its request `headers`) goes.
    pub async fn plan(&self, headers: &HeaderMap, body: &[u8], caller: Caller<'_>) -> Plan {
        let Some(header) = &self.direct else {
            return Plan::Gateway;
        };
        let Ok((value, Message::Request { id, method })) = jsonrpc::parse(body) else {
            return Plan::Gateway;
        };
        let method = match method.as_str() {
            "tools/call" => "tools/call",
            "prompts/get" => "prompts/get",
            _ => return Plan::Gateway,
        };
        let modern = envelope::is_modern(headers, &value);
        let started = Instant::now();
        match self
            .admit_direct(header, headers, value, &id, method, modern, caller)
            .await
        {
            Ok(call) => Plan::Direct(Box::new(call)),
            Err(e) => {
                self.count_request(method, false, started);
                let (status, body) = e.reply();
                let status = if modern {
                    modern::status_for(status, &body)
                } else {
                    status
                };
                Plan::Answer { status, body }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn admit_direct(
        &self,
        header: &HeaderName,
        headers: &HeaderMap,
        value: Value,
        id: &Value,
        method: &'static str,
        modern: bool,
        caller: Caller<'_>,
    ) -> Result<DirectCall, McpError> {
        self.check_origin(headers)?;
        check_accept(headers)?;
        check_content_type(headers)?;
        let session = if modern {
            let version = envelope::check(headers, &value, id)?;
            self.stateless(&version, caller, headers)
        } else {
            check_version(headers)?;
            self.session(headers, Some(id.clone()), caller)?
        };
        let Named {
            index,
            body,
            held,
            own,
        } = self.admit_named(&session, id, value, method).await?;
        let target = &self.upstreams[index];
        let mut set = Vec::new();
        set.extend(
            HeaderValue::from_str(&target.name)
                .ok()
                .map(|v| (header.clone(), v)),
        );
        let mut remove = vec![AUTHORIZATION, ORIGIN];
        if modern {
            set.extend(envelope::routing_headers(&body));
        } else {
            let own_session = &session.targets[index];
            match own_session.session_id.as_deref().map(HeaderValue::from_str) {
                Some(Ok(v)) => set.push((SESSION_ID, v)),
                _ => remove.push(SESSION_ID),
            }
            let version = HeaderValue::from_str(&own_session.protocol_version);
            set.extend(version.ok().map(|v| (PROTOCOL_VERSION, v)));
        }
        set.extend(target.headers().iter().cloned());
        remove.retain(|r| !set.iter().any(|(n, _)| n == r));
        Ok(DirectCall {
            index,
            body,
            set,
            remove,
            held,
            method,
            own,
            id: id.clone(),
            session,
            started: Instant::now(),
        })
    }

    /// The standalone proxy's carriage of a planned call: `body` to target `index`
    /// with the session and version `headers` carry (as the plan set them); the
    /// target's answer passes through, a failure is a JSON-RPC error naming the target.
    pub async fn send_direct(
        &self,
        index: usize,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Response<McpBody> {
        let header = |name: &HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
        let mut extra = envelope::param_headers(headers);
        if header(&PROTOCOL_VERSION).is_some_and(crate::mcp::versions::is_modern) {
            extra.extend(envelope::routing_headers(&body));
        }
        let id = jsonrpc::parse(&body)
            .ok()
            .and_then(|(v, _)| v.get("id").cloned());
        let call = Call {
            method: Method::POST,
            session: header(&SESSION_ID),
            version: header(&PROTOCOL_VERSION),
            body,
            extra,
        };
        let target = &self.upstreams[index];
        match target.send(&self.client, call, self.timeout).await {
            Ok(response) => {
                let (parts, incoming) = response.into_parts();
                let mut out = Response::new(incoming.boxed());
                *out.status_mut() = parts.status;
                if let Some(ct) = parts.headers.get(CONTENT_TYPE) {
                    out.headers_mut().insert(CONTENT_TYPE, ct.clone());
                }
                out.map(|b| b.map_err(Into::into).boxed())
            }
            Err(error) => {
                let e = McpError::Target {
                    id: id.unwrap_or(Value::Null),
                    target: target.name.clone(),
                    error,
                };
                let (status, body) = e.reply();
                reply(status, Bytes::from(body), None)
            }
        }
    }

    /// Settles `call` once its target answered with `status`: its limits kept or
    /// refunded, the call counted. A target that lost the session (404) gets a new one
    /// here, and the client a JSON-RPC error telling it to call again (its session
    /// goes on) — the status and body to answer with instead.
    pub async fn finish_direct(
        &self,
        call: &mut DirectCall,
        status: u16,
    ) -> Option<(StatusCode, Vec<u8>)> {
        let ok = (200..300).contains(&status);
        Self::settle(std::mem::take(&mut call.held), ok).await;
        self.count(call.index, call.method, ok, call.started);
        self.count_request(call.method, ok, call.started);
        if call.method == "tools/call" {
            let m = &self.metrics;
            m.tools
                .get_or_create(&McpToolLabels {
                    route: self.route.clone(),
                    target: self.upstreams[call.index].name.clone(),
                    tool: m.tool_names.value(&call.own),
                    result: if ok { "ok" } else { "error" },
                })
                .inc();
        }
        let had_session = call.session.targets[call.index].session_id.is_some();
        if status != 404 || !had_session || call.session.token.is_empty() {
            return None;
        }
        let target = &self.upstreams[call.index].name;
        let message = match self.renew(&call.session, call.index).await {
            Ok(_) => format!("target {target} had lost this session and has a new one: call again"),
            Err(e) => format!("target {target} lost this session: {e}"),
        };
        let body = jsonrpc::error_body(Some(&call.id), jsonrpc::INTERNAL_ERROR, &message);
        Some((StatusCode::OK, body))
    }

    /// Counts a client message the gateway routed or refused itself.
    fn count_request(&self, method: &str, ok: bool, started: Instant) {
        let method = method_label(method);
        let m = &self.metrics;
        m.request_duration
            .get_or_create(&McpRouteMethodLabels {
                route: self.route.clone(),
                method,
            })
            .observe(started.elapsed().as_secs_f64());
        m.requests
            .get_or_create(&McpRequestLabels {
                route: self.route.clone(),
                method,
                result: if ok { "ok" } else { "error" },
            })
            .inc();
    }
}
