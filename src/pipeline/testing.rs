//! Test helpers: pipelines and exchanges built from YAML, the request and response
//! phases driven as an adapter drives them (headers, then body chunks, collecting what
//! would be forwarded), metric lookups, and a scripted processor that records the phases
//! it saw.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;

use super::*;
use crate::config::{parse_str, FailureMode};

/// `yaml` built into a pipeline; panics with the error and the YAML.
fn build(yaml: &str) -> Pipeline {
    Pipeline::build(parse_str(yaml).unwrap(), crate::services::Services::new())
        .unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

/// A pipeline built from `yaml`.
pub fn pipeline(yaml: &str) -> Arc<Pipeline> {
    Arc::new(build(yaml))
}

/// The error building `yaml` fails with, as text; panics when it builds.
pub fn build_error(yaml: &str) -> String {
    match Pipeline::build(parse_str(yaml).unwrap(), crate::services::Services::new()) {
        Ok(_) => panic!("built, but an error was expected:\n{yaml}"),
        Err(e) => e.to_string(),
    }
}

/// A request head for `method path` on host `api.test`.
pub fn request_head(method: &str, path: &str) -> RequestHead {
    RequestHead {
        method: method.to_string(),
        path: path.to_string(),
        authority: "api.test".to_string(),
        scheme: "http".to_string(),
    }
}

/// An exchange on the first route of `yaml`, as the proxy adapter would start it.
pub fn exchange_for(yaml: &str) -> Exchange {
    let pipeline = pipeline(yaml);
    let route = pipeline.ext_proc_routes.listeners[0].routes[0].clone();
    let cx = Ctx::new(Adapter::Proxy, RequestHead::default(), None);
    Exchange::new(pipeline, cx, Some(route))
}

/// A pipeline built from `yaml` with an extra catch-all route named `name` running
/// `factories`, placed before every configured listener (so it is selected unless Envoy
/// names another route through `xds.route_name`).
pub fn pipeline_with(
    yaml: &str,
    name: &str,
    factories: Vec<Arc<dyn ProcessorFactory>>,
) -> Arc<Pipeline> {
    // An empty `yaml` stands for no config (`parse_str` refuses empty text).
    let yaml = if yaml.trim().is_empty() { "{}" } else { yaml };
    let mut pipeline = build(yaml);
    let route = Arc::new(CompiledRoute {
        name: name.into(),
        matches: Vec::new(),
        factories,
        backends: Vec::new(),
        retry: None,
        timeout: None,
        mcp: None,
        tallies: Default::default(),
    });
    pipeline
        .ext_proc_routes
        .by_name
        .insert(name.into(), route.clone());
    pipeline.ext_proc_routes.listeners.insert(
        0,
        router::CompiledListener {
            hostnames: Vec::new(),
            routes: vec![route],
        },
    );
    Arc::new(pipeline)
}

/// An exchange on the first route of `yaml` for a request to `method path`.
pub fn exchange_at(yaml: &str, method: &str, path: &str) -> Exchange {
    let pipeline = pipeline(yaml);
    let route = pipeline.ext_proc_routes.listeners[0].routes[0].clone();
    let cx = Ctx::new(Adapter::Proxy, request_head(method, path), None);
    Exchange::new(pipeline, cx, Some(route))
}

/// An exchange on the route named `route` of `p`, under `adapter`, for `method path`.
pub fn exchange_on(
    p: &Arc<Pipeline>,
    route: &str,
    adapter: Adapter,
    method: &str,
    path: &str,
) -> Exchange {
    let route = p
        .ext_proc_routes
        .by_name(route)
        .unwrap_or_else(|| panic!("no route {route:?}"));
    let cx = Ctx::new(adapter, request_head(method, path), None);
    Exchange::new(p.clone(), cx, Some(route))
}

/// An exchange with the given processors and no config.
pub fn exchange_with(factories: Vec<Arc<dyn ProcessorFactory>>) -> Exchange {
    let pipeline = pipeline("{}");
    let route = Arc::new(CompiledRoute {
        name: "test".into(),
        matches: Vec::new(),
        factories,
        backends: Vec::new(),
        retry: None,
        timeout: None,
        mcp: None,
        tallies: Default::default(),
    });
    let cx = Ctx::new(Adapter::ExtProc, RequestHead::default(), None);
    Exchange::new(pipeline, cx, Some(route))
}

// === driving an exchange ===

/// A header map of `pairs`; a repeated name keeps the last value.
pub fn header_map(pairs: &[(&str, &str)]) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    for (k, v) in pairs {
        map.insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    map
}

/// Runs the request phases, `headers` then `body` as one last chunk: `Ok(the body
/// forwarded)` or `Err(the local reply)`.
pub async fn send(
    ex: &mut Exchange,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Bytes, LocalReply> {
    send_output(ex, headers, body).await.map(|out| out.data)
}

/// [`send`], with all the body phase answered (whether the body changed, …).
pub async fn send_output(
    ex: &mut Exchange,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<BodyOutput, LocalReply> {
    if let Verdict::Respond(r) = ex
        .request_headers(&mut Headers::new(header_map(headers)))
        .await
    {
        return Err(r);
    }
    match ex
        .request_body(Bytes::copy_from_slice(body), true, false)
        .await
    {
        Verdict::Continue(out) => Ok(out),
        Verdict::Respond(r) => Err(r),
    }
}

/// Runs the response-header phase of a 200 with `headers`.
pub async fn response_headers(ex: &mut Exchange, headers: &[(&str, &str)]) -> Verdict<()> {
    ex.cx.response_status = Some(200);
    ex.response_headers(&mut Headers::new(header_map(headers)))
        .await
}

/// Runs the response phases of a 200 with this content type and `chunks` (the last one
/// ends the stream): the bytes forwarded, or those and the reply that ended them.
pub async fn receive(
    ex: &mut Exchange,
    content_type: &str,
    chunks: &[&[u8]],
) -> Result<Vec<u8>, (Vec<u8>, LocalReply)> {
    receive_with(ex, &[("content-type", content_type)], chunks).await
}

/// [`receive`] with these response headers; the header phase must continue.
pub async fn receive_with(
    ex: &mut Exchange,
    headers: &[(&str, &str)],
    chunks: &[&[u8]],
) -> Result<Vec<u8>, (Vec<u8>, LocalReply)> {
    assert!(matches!(
        response_headers(ex, headers).await,
        Verdict::Continue(())
    ));
    let mut out = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        let eos = i + 1 == chunks.len();
        match ex
            .response_body(Bytes::copy_from_slice(chunk), eos, false)
            .await
        {
            Verdict::Continue(o) => out.extend_from_slice(&o.data),
            Verdict::Respond(r) => return Err((out, r)),
        }
    }
    Ok(out)
}

/// The value of the first line of `p`'s metrics that starts with `line_prefix`.
pub fn metric(p: &Pipeline, line_prefix: &str) -> Option<f64> {
    let text = p.metrics.encode();
    text.lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

// === scripted processors ===

/// What a `Scripted` processor does.
#[derive(Clone, Default)]
pub struct Script {
    pub request_body: Option<BodyMode>,
    pub response_body: Option<BodyMode>,
    /// Reply locally at this phase name.
    pub respond_at: Option<&'static str>,
    /// Fail at this phase name.
    pub fail_at: Option<&'static str>,
    pub failure_mode: FailureMode,
    /// Upper-case each body chunk it sees.
    pub uppercase: bool,
    /// End the body at this phase name (`Body::end_stream` with `END`).
    pub end_stream_at: Option<&'static str>,
    /// Record Envoy dynamic metadata at this phase name: namespace `scripted`, key the
    /// journal entry of the call (`request_body(ab,eos)`), value `true`.
    pub metadata_at: Option<&'static str>,
    /// Prefix of this processor's journal entries (`tag:phase`), so that several
    /// processors can share one journal; empty: no prefix.
    pub tag: &'static str,
    /// With a `Scan` body mode: stop scanning (answer `Skip`) after a chunk holding this
    /// text.
    pub scan_until: Option<&'static str>,
}

/// A processor that follows a `Script` and logs every call into a shared journal.
pub struct Scripted {
    pub script: Script,
    pub journal: Arc<Mutex<Vec<String>>>,
}

impl ProcessorFactory for Scripted {
    fn name(&self) -> &'static str {
        "scripted"
    }
    fn failure_mode(&self) -> FailureMode {
        self.script.failure_mode
    }
    fn new_processor(&self, _cx: &Ctx) -> Option<Box<dyn Processor>> {
        Some(Box::new(ScriptedProcessor {
            script: self.script.clone(),
            journal: self.journal.clone(),
            scanned: false,
        }))
    }
}

struct ScriptedProcessor {
    script: Script,
    journal: Arc<Mutex<Vec<String>>>,
    /// Its scan found `scan_until`.
    scanned: bool,
}

impl ScriptedProcessor {
    fn log(&self, entry: String) {
        let entry = if self.script.tag.is_empty() {
            entry
        } else {
            format!("{}:{entry}", self.script.tag)
        };
        self.journal.lock().unwrap().push(entry);
    }

    fn step(
        &self,
        cx: &mut Ctx,
        phase: &'static str,
        note: String,
    ) -> Result<Flow, ProcessorError> {
        let entry = format!("{phase}{note}");
        if self.script.metadata_at == Some(phase) {
            cx.set_metadata("scripted", &entry, serde_json::Value::Bool(true));
        }
        self.log(entry);
        if self.script.fail_at == Some(phase) {
            return Err(ProcessorError::internal(format!(
                "scripted failure at {phase}"
            )));
        }
        if self.script.respond_at == Some(phase) {
            return Ok(Flow::Respond(LocalReply::error(
                http::StatusCode::FORBIDDEN,
                "scripted",
                phase,
            )));
        }
        Ok(Flow::Continue)
    }

    fn body(
        &mut self,
        cx: &mut Ctx,
        phase: &'static str,
        body: &mut Body,
    ) -> Result<Flow, ProcessorError> {
        let note = format!(
            "({}{}{}{})",
            String::from_utf8_lossy(body.data()),
            if body.end_of_stream() { ",eos" } else { "" },
            if body.is_whole() { ",whole" } else { "" },
            if body.is_truncated() {
                ",truncated"
            } else {
                ""
            }
        );
        if let Some(marker) = self.script.scan_until {
            let found = memchr::memmem::find(body.data(), marker.as_bytes()).is_some();
            self.scanned |= found;
        }
        if self.script.uppercase {
            let up = body.data().to_ascii_uppercase();
            body.replace(up.into());
        }
        if self.script.end_stream_at == Some(phase) {
            body.end_stream(bytes::Bytes::from_static(b"END"));
        }
        self.step(cx, phase, note)
    }
}

#[async_trait]
impl Processor for ScriptedProcessor {
    async fn on_request_headers(
        &mut self,
        cx: &mut Ctx,
        _: &mut Headers,
    ) -> Result<Flow, ProcessorError> {
        self.step(cx, "request_headers", String::new())
    }
    fn request_body_mode(&self) -> BodyMode {
        match self.script.request_body {
            Some(BodyMode::Scan { .. }) if self.scanned => BodyMode::Skip,
            mode => mode.unwrap_or(BodyMode::Skip),
        }
    }
    async fn on_request_body(
        &mut self,
        cx: &mut Ctx,
        body: &mut Body,
    ) -> Result<Flow, ProcessorError> {
        self.body(cx, "request_body", body)
    }
    async fn on_request_trailers(
        &mut self,
        cx: &mut Ctx,
        _: &mut Headers,
    ) -> Result<Flow, ProcessorError> {
        self.step(cx, "request_trailers", String::new())
    }
    async fn on_response_headers(
        &mut self,
        cx: &mut Ctx,
        _: &mut Headers,
    ) -> Result<Flow, ProcessorError> {
        self.step(cx, "response_headers", String::new())
    }
    fn response_body_mode(&self) -> BodyMode {
        self.script.response_body.unwrap_or(BodyMode::Skip)
    }
    async fn on_response_body(
        &mut self,
        cx: &mut Ctx,
        body: &mut Body,
    ) -> Result<Flow, ProcessorError> {
        self.body(cx, "response_body", body)
    }
    async fn on_response_trailers(
        &mut self,
        cx: &mut Ctx,
        _: &mut Headers,
    ) -> Result<Flow, ProcessorError> {
        self.step(cx, "response_trailers", String::new())
    }
    fn on_complete(&mut self, _: &mut Ctx, outcome: &Outcome) {
        self.log(format!("complete:{}", outcome.label()));
    }
}

/// A scripted factory and its journal.
pub fn scripted(script: Script) -> (Arc<dyn ProcessorFactory>, Arc<Mutex<Vec<String>>>) {
    let journal = Arc::new(Mutex::new(Vec::new()));
    (scripted_into(script, &journal), journal)
}

/// A scripted factory logging into an existing journal (give each one a `tag`).
pub fn scripted_into(
    script: Script,
    journal: &Arc<Mutex<Vec<String>>>,
) -> Arc<dyn ProcessorFactory> {
    Arc::new(Scripted {
        script,
        journal: journal.clone(),
    })
}

/// A copy of a journal's entries.
pub fn entries(journal: &Arc<Mutex<Vec<String>>>) -> Vec<String> {
    journal.lock().unwrap().clone()
}

/// A pipeline whose proxy bind `port` has exactly one catch-all route, `name`, running
/// `factories` and forwarding to `backend` (the proxy adapter's tests build their
/// routes by hand, with scripted processors).
pub fn proxy_pipeline(
    port: u16,
    name: &str,
    factories: Vec<Arc<dyn ProcessorFactory>>,
    backend: Option<crate::config::Backend>,
) -> Pipeline {
    let yaml = format!("binds: [ {{ port: {port}, listeners: [ {{ routes: [ {{}} ] }} ] }} ]");
    let mut pipeline = build(&yaml);
    let route = Arc::new(CompiledRoute {
        name: name.into(),
        matches: Vec::new(),
        factories,
        backends: backend.into_iter().collect(),
        retry: None,
        timeout: None,
        mcp: None,
        tallies: Default::default(),
    });
    let mut selector = RouteSelector::default();
    selector.listeners.push(router::CompiledListener {
        hostnames: Vec::new(),
        routes: vec![route],
    });
    pipeline.bind_routes.insert(port, selector);
    pipeline
}
