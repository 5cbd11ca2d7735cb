//! The messages that go to every target at once: `initialize` (sessions opened and
//! sealed), `tools/list`, `prompts/list`, `resources/list` and
//! `resources/templates/list` (lists merged), `resources/read` (the first target that
//! has the resource answers), notifications and DELETE (best effort).

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::future::join_all;
use http::{Method, Response};
use serde_json::{json, Value};

use super::{json_reply, McpBody, Multiplexer, Session, DEFAULT_VERSION};
use crate::mcp::authz::Item;
use crate::mcp::error::McpError;
use crate::mcp::merge::merge_result_fields;
use crate::mcp::response::read_answer;
use crate::mcp::upstream::{Call, CallError, SESSION_ID};
use crate::mcp::{merge_initialize, merge_named, merge_unique, SessionState, TargetSession};
use hyper::body::Incoming;
use std::future::Future;

/// The most pages of one target's list the gateway reads for one client request.
const MAX_PAGES: usize = 16;

/// One target's answer to a fanned-out request: its session id (from `initialize`)
/// and the answer's `result`.
type Answer = Result<(Option<String>, Value), CallError>;

impl Multiplexer {
    /// `initialize`: the client's own message to every target; their sessions sealed
    /// into the client's with the caller's `subject`, their results merged. One failed target fails it (after the
    /// others' new sessions are deleted).
    pub(super) async fn initialize(
        &self,
        id: &Value,
        body: Bytes,
        subject: Option<&str>,
    ) -> Result<Response<McpBody>, McpError> {
        let calls = (0..self.upstreams.len()).map(|i| {
            let call = Call {
                method: Method::POST,
                session: None,
                version: None,
                body: body.clone(),
                extra: Vec::new(),
            };
            self.exchange(i, call, id, "initialize")
        });
        let answers = join_all(calls).await;
        let mut sessions = Vec::with_capacity(answers.len());
        let mut results = Vec::with_capacity(answers.len());
        let mut failed = None;
        for (i, answer) in answers.into_iter().enumerate() {
            match answer {
                Ok((session_id, result)) => {
                    let version = result["protocolVersion"]
                        .as_str()
                        .unwrap_or(DEFAULT_VERSION);
                    let target = self.upstreams[i].name.clone();
                    sessions.push(TargetSession {
                        target,
                        session_id,
                        protocol_version: version.to_string(),
                    });
                    results.push((i, result));
                }
                Err(error) => {
                    failed.get_or_insert((i, error));
                    sessions.push(TargetSession {
                        target: String::new(),
                        session_id: None,
                        protocol_version: String::new(),
                    });
                }
            }
        }
        if let Some((i, error)) = failed {
            let partial = self.state(sessions, String::new());
            self.delete(&partial).await;
            return Err(McpError::Target {
                id: id.clone(),
                target: self.upstreams[i].name.clone(),
                error,
            });
        }
        let merged = merge_initialize(&self.targets, &results);
        let version = merged["protocolVersion"]
            .as_str()
            .unwrap_or(DEFAULT_VERSION)
            .to_string();
        let mut state = self.state(sessions, version);
        state.subject = subject.map(str::to_string);
        let token = self.keys.seal(&state);
        let answer = json!({"jsonrpc": "2.0", "id": id, "result": merged});
        Ok(json_reply(&answer, Some(&token)))
    }

    /// `tools/list`, `prompts/list` (`method`, the client's `request`): every target's
    /// whole `list`, merged in target order under the names the client calls them by.
    /// The gateway gives no `nextCursor`, so a client's cursor is not one of its own.
    pub(super) async fn list(
        &self,
        state: &Session,
        id: Value,
        request: Value,
        method: &'static str,
        list: &str,
    ) -> Result<Response<McpBody>, McpError> {
        if request.pointer("/params/cursor").is_some() {
            let reason = "invalid cursor: the gateway's lists are not paged".to_string();
            return Err(McpError::InvalidParams { id, reason });
        }
        let calls = (0..self.upstreams.len())
            .map(|i| self.list_pages(state, i, &request, &id, method, list));
        let mut results = Vec::with_capacity(self.upstreams.len());
        for (i, answer) in join_all(calls).await.into_iter().enumerate() {
            match answer {
                Ok((_, mut result)) => {
                    if let Some(rules) = &self.rules {
                        let target = &self.upstreams[i].name;
                        rules.filter_list(target, list, &mut result, state.claims.as_ref());
                    }
                    results.push((i, result));
                }
                Err(error) => {
                    let target = self.upstreams[i].name.clone();
                    return Err(McpError::Target { id, target, error });
                }
            }
        }
        let mut merged = self.merge(&results, list);
        merge_result_fields(&self.targets, &mut merged, &results);
        Ok(json_reply(
            &json!({"jsonrpc": "2.0", "id": id, "result": merged}),
            None,
        ))
    }

    /// The merged `list`: tools and prompts renamed under their target's prefix,
    /// resources and templates unchanged (a URI two targets list is the first's, and
    /// logged).
    fn merge(&self, results: &[(usize, Value)], list: &str) -> Value {
        let key = match list {
            "resources" => "uri",
            "resourceTemplates" => "uriTemplate",
            _ => return merge_named(&self.targets, results, list),
        };
        let (merged, shadowed) = merge_unique(&self.targets, results, list, key);
        for uri in shadowed {
            tracing::warn!(route = %self.route, %uri, "MCP targets list the same resource; the first target's is served");
        }
        merged
    }

    /// `resources/read` with several targets (or rules): sent to every target the
    /// caller may read it from (none: 403); the first (in target order) that answers
    /// with a result is the answer, else the first error.
    pub(super) async fn read_resource(
        &self,
        state: &Session,
        id: Value,
        request: Value,
    ) -> Result<Response<McpBody>, McpError> {
        let uri = request.pointer("/params/uri").and_then(Value::as_str);
        let Some(uri) = uri else {
            let reason = "params.uri must be a resource's URI".to_string();
            return Err(McpError::InvalidParams { id, reason });
        };
        let allowed = self.allowed_for(state, Item::Resource(uri));
        if allowed.is_empty() {
            let (kind, name) = ("resource", uri.to_string());
            return Err(McpError::Forbidden { id, kind, name });
        }
        let method = request["method"]
            .as_str()
            .unwrap_or("resources/read")
            .to_string();
        self.first_answer(state, id, &request, &method, allowed)
            .await
    }

    /// The targets whose `item` the caller may use.
    pub(super) fn allowed_for(&self, state: &Session, item: Item<'_>) -> Vec<usize> {
        (0..self.upstreams.len())
            .filter(|&i| self.allows(state, i, item, &Value::Null))
            .collect()
    }

    /// `request` sent to every target of `targets`; the first (in target order) that
    /// answers with a result is the answer, else the first error.
    pub(super) async fn first_answer(
        &self,
        state: &Session,
        id: Value,
        request: &Value,
        method: &str,
        targets: Vec<usize>,
    ) -> Result<Response<McpBody>, McpError> {
        let body = Bytes::from(request.to_string());
        let calls = targets.into_iter().map(|i| {
            let sent = self.send_renewing(state, i, body.clone());
            let answer = self.answer(i, sent, &id, method);
            async move { (i, answer.await) }
        });
        let mut failed = None;
        for (i, answer) in join_all(calls).await {
            match answer {
                Ok((_, result)) => {
                    let answer = json!({"jsonrpc": "2.0", "id": id, "result": result});
                    return Ok(json_reply(&answer, None));
                }
                Err(error) => {
                    failed.get_or_insert((i, error));
                }
            }
        }
        let (i, error) = failed.expect("a route has a target");
        let target = self.upstreams[i].name.clone();
        Err(McpError::Target { id, target, error })
    }

    /// Target `i`'s whole `list`: the first page for the client's `request`, then the
    /// pages its `nextCursor`s name, at most [`MAX_PAGES`] (past that the list is cut,
    /// and logged). The result is the last page's with every page's items.
    async fn list_pages(
        &self,
        state: &Session,
        i: usize,
        request: &Value,
        id: &Value,
        method: &'static str,
        list: &str,
    ) -> Answer {
        let mut request = request.clone();
        let mut items = Vec::new();
        let mut result = Value::Null;
        for _ in 0..MAX_PAGES {
            let body = Bytes::from(request.to_string());
            let sent = self.send_renewing(state, i, body);
            (_, result) = self.answer(i, sent, id, method).await?;
            if let Some(Value::Array(page)) = result.get_mut(list).map(Value::take) {
                items.extend(page);
            }
            let Some(cursor) = result.get("nextCursor").filter(|c| !c.is_null()) else {
                break;
            };
            // The rest of `params` (a 2026-07-28 `_meta`) goes with every page.
            if !request["params"].is_object() {
                request["params"] = json!({});
            }
            request["params"]["cursor"] = cursor.clone();
        }
        if result.get("nextCursor").is_some_and(|c| !c.is_null()) {
            tracing::warn!(route = %self.route, target = %self.upstreams[i].name, pages = MAX_PAGES, "MCP target's list has more pages than the gateway reads; cut");
        }
        if let Value::Object(map) = &mut result {
            map.remove("nextCursor");
            map.insert(list.to_string(), Value::Array(items));
        }
        Ok((None, result))
    }

    /// A client notification to every target, in its own session. A target that does
    /// not take it is logged; the client still gets its 202.
    pub(super) async fn notify(&self, state: &Session, body: Bytes) {
        let calls = (0..self.upstreams.len()).map(|i| {
            let body = body.clone();
            async move {
                let started = Instant::now();
                let sent = self.send_renewing(state, i, body).await;
                let ok = matches!(&sent, Ok(r) if r.status().is_success());
                self.count(i, "notifications", ok, started);
                if !ok {
                    let status = sent.as_ref().map(|r| r.status().as_u16()).ok();
                    tracing::info!(route = %self.route, target = %self.upstreams[i].name, ?status, "MCP target refused a notification");
                }
            }
        });
        join_all(calls).await;
    }

    /// Ends every target's session in `state` (those it has), concurrently.
    pub(super) async fn delete(&self, state: &SessionState) {
        let calls = state
            .targets
            .iter()
            .enumerate()
            .filter(|(_, t)| t.session_id.is_some())
            .map(|(i, _)| {
                let call = self.call(state, i, Method::DELETE, Bytes::new());
                async move {
                    let started = Instant::now();
                    let sent = self.upstreams[i]
                        .send(&self.client, call, self.timeout)
                        .await;
                    let ok = matches!(&sent, Ok(r) if r.status().is_success());
                    self.count(i, "delete", ok, started);
                }
            });
        join_all(calls).await;
    }

    /// Sends a request to target `i` and reads its answer to `id`, all within the
    /// timeout; counted.
    async fn exchange(&self, i: usize, call: Call<'_>, id: &Value, method: &str) -> Answer {
        let sent = self.upstreams[i].send(&self.client, call, self.timeout);
        self.answer(i, sent, id, method).await
    }

    /// Target `i`'s answer to `id` once `sent` gave its response, within the timeout;
    /// counted.
    pub(super) async fn answer(
        &self,
        i: usize,
        sent: impl Future<Output = Result<Response<Incoming>, CallError>>,
        id: &Value,
        method: &str,
    ) -> Answer {
        let started = Instant::now();
        let read = async {
            let response = sent.await?;
            let session = response
                .headers()
                .get(SESSION_ID)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let message = read_answer(response, id, self.limit).await?;
            Ok((session, message))
        };
        let answer = match tokio::time::timeout(self.timeout, read).await {
            Ok(answer) => answer,
            Err(_) => Err(CallError::Timeout(self.timeout)),
        };
        self.count(i, method, answer.is_ok(), started);
        answer
    }

    pub(super) fn state(
        &self,
        targets: Vec<TargetSession>,
        protocol_version: String,
    ) -> SessionState {
        let issued_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        SessionState {
            targets,
            protocol_version,
            subject: None,
            fingerprint: self.fingerprint,
            issued_at,
        }
    }
}
