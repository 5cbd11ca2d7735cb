//! Target sessions a target lost, opened again. A target that restarted (or expired a
//! session) answers the session's requests 404; the client's own session stays good:
//! this replica initializes the target again, remembers the new target session for the
//! client's session and retries the request once. Nothing is stored across replicas —
//! another replica that meets the same 404 renews the target session for itself.
//!
//! Both maps are bounded ([`MAX_ENTRIES`]; past it an arbitrary entry makes room):
//! `renewed` (client session, target) → the target's new session, and `ended`, the client
//! sessions DELETEd through this replica, which it answers 404 instead of renewing them.

use bytes::Bytes;
use dashmap::{DashMap, DashSet};
use http::{Method, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{json, Value};
use std::time::Instant;

use super::{Multiplexer, Session};
use crate::mcp::response::read_answer;
use crate::mcp::upstream::{Call, CallError, SESSION_ID};

/// The most entries each map keeps.
pub const MAX_ENTRIES: usize = 10_000;

/// The request id of the gateway's own `initialize`.
const RENEW_ID: &str = "tollgate-renew";

/// Renewed target sessions and ended client sessions, per multiplexer.
#[derive(Default)]
pub struct Renewals {
    pub(super) renewed: DashMap<(String, usize), String>,
    pub(super) ended: DashSet<String>,
}

impl Renewals {
    /// The target session this replica renewed for `token`'s target `index`.
    pub fn get(&self, token: &str, index: usize) -> Option<String> {
        if self.renewed.is_empty() {
            return None;
        }
        self.renewed
            .get(&(token.to_string(), index))
            .map(|s| s.clone())
    }

    pub(super) fn insert(&self, token: &str, index: usize, session: String) {
        if self.renewed.len() >= MAX_ENTRIES {
            let any = self.renewed.iter().next().map(|e| e.key().clone());
            if let Some(key) = any {
                self.renewed.remove(&key);
            }
        }
        self.renewed.insert((token.to_string(), index), session);
    }

    /// Whether `token` was DELETEd through this replica.
    pub fn ended(&self, token: &str) -> bool {
        !self.ended.is_empty() && self.ended.contains(token)
    }

    /// Marks `token` ended and forgets its renewed target sessions.
    pub fn end(&self, token: &str, targets: usize) {
        for index in 0..targets {
            self.renewed.remove(&(token.to_string(), index));
        }
        if self.ended.len() >= MAX_ENTRIES {
            let any = self.ended.iter().next().map(|e| e.key().clone());
            if let Some(key) = any {
                self.ended.remove(&key);
            }
        }
        self.ended.insert(token.to_string());
    }
}

impl Multiplexer {
    /// Sends a POST to target `index` in `session`; when the target answers 404 to a
    /// session it had, its session is renewed and the request sent once more.
    pub(super) async fn send_renewing(
        &self,
        session: &Session,
        index: usize,
        body: Bytes,
    ) -> Result<Response<Incoming>, CallError> {
        let target = &self.upstreams[index];
        let mut call = self.call(session, index, Method::POST, body.clone());
        call.extra.extend(session.params.iter().cloned());
        let response = target.send(&self.client, call, self.timeout).await?;
        let had_session = session
            .targets
            .get(index)
            .is_some_and(|t| t.session_id.is_some());
        if response.status() != StatusCode::NOT_FOUND || !had_session || session.token.is_empty() {
            return Ok(response);
        }
        let renewed = self.renew(session, index).await?;
        let version = session.targets[index].protocol_version.as_str();
        let call = Call {
            method: Method::POST,
            session: Some(&renewed),
            version: Some(version),
            body,
            extra: Vec::new(),
        };
        target.send(&self.client, call, self.timeout).await
    }

    /// Initializes target `index` again for `session` (the gateway's own `initialize`
    /// at the version the target negotiated, then `notifications/initialized`); the new
    /// target session, remembered.
    pub(super) async fn renew(&self, session: &Session, index: usize) -> Result<String, CallError> {
        let target = &self.upstreams[index];
        let version = session.targets[index].protocol_version.clone();
        let started = Instant::now();
        let init = json!({
            "jsonrpc": "2.0", "id": RENEW_ID, "method": "initialize",
            "params": {
                "protocolVersion": version,
                "capabilities": {},
                "clientInfo": {"name": "tollgate", "version": env!("CARGO_PKG_VERSION")},
            },
        });
        let call = Call {
            method: Method::POST,
            session: None,
            version: None,
            body: Bytes::from(init.to_string()),
            extra: Vec::new(),
        };
        let answer = async {
            let response = target.send(&self.client, call, self.timeout).await?;
            let renewed = response
                .headers()
                .get(SESSION_ID)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            read_answer(response, &Value::from(RENEW_ID), self.limit).await?;
            renewed.ok_or(CallError::Status(404))
        };
        let renewed = answer.await;
        self.count(index, "initialize", renewed.is_ok(), started);
        let renewed = renewed?;
        let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let call = Call {
            method: Method::POST,
            session: Some(&renewed),
            version: Some(&version),
            body: Bytes::from(initialized.to_string()),
            extra: Vec::new(),
        };
        let started = Instant::now();
        let sent = target.send(&self.client, call, self.timeout).await;
        self.count(
            index,
            "notifications",
            matches!(&sent, Ok(r) if r.status().is_success()),
            started,
        );
        self.renewals.insert(&session.token, index, renewed.clone());
        tracing::info!(route = %self.route, target = %target.name, "MCP target lost a session; renewed it");
        Ok(renewed)
    }
}
