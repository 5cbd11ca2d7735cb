//! Test helpers: exchanges built from YAML, and a scripted processor that records the
//! phases it saw.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::*;
use crate::config::{parse_str, FailureMode};
use crate::metrics::Metrics;

/// An exchange on the first route of `yaml`, as the proxy adapter would start it.
pub fn exchange_for(yaml: &str) -> Exchange {
    let pipeline = Arc::new(Pipeline::build(parse_str(yaml).unwrap(), Arc::new(Metrics::new())).unwrap());
    let route = pipeline.ext_proc_routes.listeners[0].routes[0].clone();
    let cx = Ctx::new(Adapter::Proxy, RequestHead::default(), None);
    Exchange::new(pipeline, cx, Some(route))
}

/// An exchange with the given processors and no config.
pub fn exchange_with(factories: Vec<Arc<dyn ProcessorFactory>>) -> Exchange {
    let pipeline = Arc::new(Pipeline::build(parse_str("").unwrap(), Arc::new(Metrics::new())).unwrap());
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
    fn step(&self, phase: &'static str, note: String) -> Result<Flow, ProcessorError> {
        self.journal.lock().unwrap().push(format!("{phase}{note}"));
        if self.script.fail_at == Some(phase) {
            return Err(ProcessorError::internal(format!("scripted failure at {phase}")));
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

    fn body(&self, phase: &'static str, body: &mut Body) -> Result<Flow, ProcessorError> {
        let note = format!(
            "({}{}{})",
            String::from_utf8_lossy(body.data()),
            if body.end_of_stream() { ",eos" } else { "" },
            if body.is_whole() { ",whole" } else { "" }
        );
        if self.script.uppercase {
            let up = body.data().to_ascii_uppercase();
            body.replace(up.into());
        }
        self.step(phase, note)
    }
}

#[async_trait]
impl Processor for ScriptedProcessor {
    async fn on_request_headers(&mut self, _: &mut Ctx, _: &mut Headers) -> Result<Flow, ProcessorError> {
        self.step("request_headers", String::new())
    }
    fn request_body_mode(&self) -> BodyMode {
        self.script.request_body.unwrap_or(BodyMode::Skip)
    }
    async fn on_request_body(&mut self, _: &mut Ctx, body: &mut Body) -> Result<Flow, ProcessorError> {
        self.body("request_body", body)
    }
    async fn on_request_trailers(&mut self, _: &mut Ctx, _: &mut Headers) -> Result<Flow, ProcessorError> {
        self.step("request_trailers", String::new())
    }
    async fn on_response_headers(&mut self, _: &mut Ctx, _: &mut Headers) -> Result<Flow, ProcessorError> {
        self.step("response_headers", String::new())
    }
    fn response_body_mode(&self) -> BodyMode {
        self.script.response_body.unwrap_or(BodyMode::Skip)
    }
    async fn on_response_body(&mut self, _: &mut Ctx, body: &mut Body) -> Result<Flow, ProcessorError> {
        self.body("response_body", body)
    }
    async fn on_response_trailers(&mut self, _: &mut Ctx, _: &mut Headers) -> Result<Flow, ProcessorError> {
        self.step("response_trailers", String::new())
    }
    fn on_complete(&mut self, _: &Ctx, outcome: &Outcome) {
        self.journal.lock().unwrap().push(format!("complete:{}", outcome.label()));
    }
}

/// A scripted factory and its journal.
pub fn scripted(script: Script) -> (Arc<dyn ProcessorFactory>, Arc<Mutex<Vec<String>>>) {
    let journal = Arc::new(Mutex::new(Vec::new()));
    (
        Arc::new(Scripted {
            script,
            journal: journal.clone(),
        }),
        journal,
    )
}
