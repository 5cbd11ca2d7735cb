//! `backendAuth`: the credential the upstream gets. With a key, `Authorization: Bearer
//! <key>` (`x-api-key: <key>` for an Anthropic `llmProvider`) replaces whatever the
//! client sent; with `passthrough`, the client's own
//! `Authorization` goes on. Runs last on the request path (see `processors.rs`), so
//! every policy before it (a limit keyed on the client's key, say) saw the client's
//! header, and nothing after it sees the provider key. The key never reaches a log.

use std::sync::Arc;

use async_trait::async_trait;
use http::header::AUTHORIZATION;
use http::{HeaderName, HeaderValue};

use crate::config::{BackendAuth, ConfigError, FailureMode, ProviderKind};
use crate::pipeline::{Ctx, Flow, Headers, Processor, ProcessorError, ProcessorFactory};

/// Factory of one `backendAuth` policy; `None` inside for passthrough.
pub struct BackendAuthFactory {
    header: Option<Arc<(HeaderName, HeaderValue)>>,
}

impl BackendAuthFactory {
    /// Compiles the policy at `path` (reads a key file now). An Anthropic provider
    /// (`llmProvider`) takes the key in `x-api-key`; everything else as a bearer token.
    pub fn new(
        p: &BackendAuth,
        provider: Option<ProviderKind>,
        path: &str,
    ) -> Result<Self, ConfigError> {
        let header = p.key(path)?.map(|key| {
            let (name, text) = match provider {
                Some(ProviderKind::Anthropic) => (X_API_KEY, key),
                _ => (AUTHORIZATION, format!("Bearer {key}")),
            };
            let mut v = HeaderValue::from_str(&text).expect("checked");
            v.set_sensitive(true);
            Arc::new((name, v))
        });
        Ok(BackendAuthFactory { header })
    }
}

const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

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

struct InjectKey(Arc<(HeaderName, HeaderValue)>);

#[async_trait]
impl Processor for InjectKey {
    async fn on_request_headers(
        &mut self,
        _cx: &mut Ctx,
        headers: &mut Headers,
    ) -> Result<Flow, ProcessorError> {
        let (name, value) = &*self.0;
        if name != AUTHORIZATION {
            // The client's own token never goes to the provider either.
            headers.remove(&AUTHORIZATION);
        }
        headers.set(name.clone(), value.clone());
        Ok(Flow::Continue)
    }
}

#[cfg(test)]
mod tests {
    use crate::pipeline::testing::exchange_for;
    use crate::pipeline::{Headers, Verdict};

    async fn sent(policies: &str) -> http::HeaderMap {
        let yaml = format!("binds:\n- port: 1\n  listeners:\n  - routes:\n    - policies: {policies}\n      backends: [ {{ host: \"127.0.0.1:2\" }} ]\n");
        let mut ex = exchange_for(&yaml);
        let mut map = http::HeaderMap::new();
        map.insert("authorization", "Bearer client-token".parse().unwrap());
        let mut h = Headers::new(map);
        assert!(matches!(
            ex.request_headers(&mut h).await,
            Verdict::Continue(())
        ));
        h.into_map()
    }

    #[tokio::test]
    async fn the_key_goes_where_the_provider_reads_it() {
        let openai = sent("{ backendAuth: { key: sk-1 } }").await;
        assert_eq!(openai["authorization"], "Bearer sk-1");
        assert!(openai["authorization"].is_sensitive());
        let anthropic =
            sent("{ backendAuth: { key: sk-ant }, llmProvider: { provider: anthropic } }").await;
        assert_eq!(anthropic["x-api-key"], "sk-ant");
        assert!(
            anthropic.get("authorization").is_none(),
            "the client's token stays here"
        );
        assert_eq!(anthropic["anthropic-version"], "2023-06-01");
        let passthrough = sent("{ backendAuth: { passthrough: {} } }").await;
        assert_eq!(passthrough["authorization"], "Bearer client-token");
    }
}
