//! `directResponse`: every request of the route is answered with a fixed status and
//! body; nothing goes upstream.

use async_trait::async_trait;
use bytes::Bytes;
use http::StatusCode;

use crate::config::{ConfigError, DirectResponse, FailureMode};
use crate::pipeline::{
    Ctx, Flow, Headers, LocalReply, Processor, ProcessorError, ProcessorFactory,
};

/// Factory of one `directResponse` policy.
pub struct DirectResponseFactory {
    status: StatusCode,
    body: Bytes,
}

impl DirectResponseFactory {
    /// Compiles the policy at `path`.
    pub fn new(p: &DirectResponse, path: &str) -> Result<Self, ConfigError> {
        Ok(DirectResponseFactory {
            status: p.status(path)?,
            body: Bytes::from(p.body.clone()),
        })
    }
}

impl ProcessorFactory for DirectResponseFactory {
    fn name(&self) -> &'static str {
        "direct_response"
    }

    fn failure_mode(&self) -> FailureMode {
        FailureMode::FailClosed
    }

    fn new_processor(&self, _cx: &Ctx) -> Option<Box<dyn Processor>> {
        Some(Box::new(Answer {
            status: self.status,
            body: self.body.clone(),
        }))
    }
}

struct Answer {
    status: StatusCode,
    body: Bytes,
}

#[async_trait]
impl Processor for Answer {
    async fn on_request_headers(
        &mut self,
        _cx: &mut Ctx,
        _headers: &mut Headers,
    ) -> Result<Flow, ProcessorError> {
        Ok(Flow::Respond(LocalReply {
            status: self.status,
            headers: http::HeaderMap::new(),
            body: self.body.clone(),
            details: "direct_response".into(),
        }))
    }
}
