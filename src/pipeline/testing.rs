//! Test helpers: exchanges built from YAML, and a scripted processor that records the
//! phases it saw.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::*;
use crate::config::{parse_str, FailureMode};

/// An exchange on the first route of `yaml`, as the proxy adapter would start it.
pub fn exchange_for(yaml: &str) -> Exchange {
    let pipeline = Arc::new(
        Pipeline::build(parse_str(yaml).unwrap(), crate::services::Services::new()).unwrap(),
    );
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
    let mut pipeline =
        Pipeline::build(parse_str(yaml).unwrap(), crate::services::Services::new()).unwrap();
    let route = Arc::new(CompiledRoute {
        name: name.into(),
        matches: Vec::new(),
        factories,
        backend: None,
        timeout: None,
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
    let pipeline = Arc::new(
        Pipeline::build(parse_str(yaml).unwrap(), crate::services::Services::new()).unwrap(),
    );
    let route = pipeline.ext_proc_routes.listeners[0].routes[0].clone();
    let head = RequestHead {
        method: method.to_string(),
        path: path.to_string(),
        authority: "api.test".to_string(),
        scheme: "http".to_string(),
    };
    let cx = Ctx::new(Adapter::Proxy, head, None);
    Exchange::new(pipeline, cx, Some(route))
}

/// An exchange with the given processors and no config.
pub fn exchange_with(factories: Vec<Arc<dyn ProcessorFactory>>) -> Exchange {
    let pipeline = Arc::new(
        Pipeline::build(parse_str("{}").unwrap(), crate::services::Services::new()).unwrap(),
    );
    let route = Arc::new(CompiledRoute {
        name: "test".into(),
        matches: Vec::new(),
        factories,
        backend: None,
        timeout: None,
    });
    let cx = Ctx::new(Adapter::ExtProc, RequestHead::default(), None);
    Exchange::new(pipeline, cx, Some(route))
}

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
        }))
    }
}

struct ScriptedProcessor {
    script: Script,
    journal: Arc<Mutex<Vec<String>>>,
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
        &self,
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
        self.script.request_body.unwrap_or(BodyMode::Skip)
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
    let mut pipeline =
        Pipeline::build(parse_str(&yaml).unwrap(), crate::services::Services::new()).unwrap();
    let route = Arc::new(CompiledRoute {
        name: name.into(),
        matches: Vec::new(),
        factories,
        backend,
        timeout: None,
    });
    let mut selector = RouteSelector::default();
    selector.listeners.push(router::CompiledListener {
        hostnames: Vec::new(),
        routes: vec![route],
    });
    pipeline.bind_routes.insert(port, selector);
    pipeline
}
