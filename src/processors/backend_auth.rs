//! `backendAuth`: the credential the upstream gets. With a key, `Authorization: Bearer
//! <key>` replaces whatever the client sent; with `passthrough`, the client's own
//! `Authorization` goes on. Runs last on the request path (see `processors.rs`), so
//! every policy before it (a limit keyed on the client's key, say) saw the client's
//! header, and nothing after it sees the provider key. The key never reaches a log.

use std::sync::Arc;

use async_trait::async_trait;
use http::header::AUTHORIZATION;
use http::HeaderValue;

use crate::config::{BackendAuth, ConfigError, FailureMode};
use crate::pipeline::{Ctx, Flow, Headers, Processor, ProcessorError, ProcessorFactory};

/// Factory of one `backendAuth` policy; `None` inside for passthrough.
pub struct BackendAuthFactory {
    header: Option<Arc<HeaderValue>>,
}

impl BackendAuthFactory {
    /// Compiles the policy at `path` (reads a key file now).
    pub fn new(p: &BackendAuth, path: &str) -> Result<Self, ConfigError> {
        let header = p.key(path)?.map(|key| {
            let mut v = HeaderValue::from_str(&format!("Bearer {key}")).expect("checked");
            v.set_sensitive(true);
            Arc::new(v)
        });
        Ok(BackendAuthFactory { header })
    }
}

impl ProcessorFactory for BackendAuthFactory {
    fn name(&self) -> &'static str {
        "backend_auth"
    }

    fn failure_mode(&self) -> FailureMode {
        FailureMode::FailClosed
    }

    fn new_processor(&self, _cx: &Ctx) -> Option<Box<dyn Processor>> {
        let header = self.header.clone()?;
        Some(Box::new(InjectKey(header)))
    }
}

struct InjectKey(Arc<HeaderValue>);

#[async_trait]
impl Processor for InjectKey {
    async fn on_request_headers(
        &mut self,
        _cx: &mut Ctx,
        headers: &mut Headers,
    ) -> Result<Flow, ProcessorError> {
        headers.set(AUTHORIZATION, (*self.0).clone());
        Ok(Flow::Continue)
    }
}
