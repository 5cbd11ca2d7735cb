//! The processor registry: which policies become processors, and in what order they run.
//!
//! Order, and why:
//! 0. `otel_trace` (the `tracing` section) — first of all: its span covers the whole
//!    exchange, refusals included, and the upstream's `traceparent` is set before any
//!    policy could answer.
//!    `cors` — before everything else: a browser's preflight carries no credentials and must
//!    be answered before an authentication could refuse it, and it is never forwarded;
//!    on the response it runs last, so the CORS headers are the final word.
//!    `mcp_authentication` — first: it checks the client's bearer token as the client
//!    sent it (an operator's `requestHeaderModifier` may set an `Authorization` meant
//!    for the upstream), and a refused request costs nothing else. It removes the
//!    client's token, so no later processor or upstream sees it — except on an MCP
//!    route with `mcp.direct`, where `mcp_router` removes it from every call it sends
//!    to a target and the rest goes on to tollgate's own MCP listener, which checks it
//!    again.
//!    `direct_response`, `request_redirect` — next: a route that answers itself needs
//!    nothing else, but its answer still passes authentication and carries CORS
//!    headers.
//! 1. `url_rewrite`, then `request_header_modifier` — first, so every later processor
//!    (guards, accounting, endpoint picking) sees the headers the operator meant the
//!    upstream to get; the operator's explicit headers have the last word over the
//!    rewritten authority.
//!    `ext_proc` (an external ext_proc server) — after them too, as Envoy's ext_proc
//!    filter would sit after the header policies: the server sees the request the
//!    operator's policies made, and every later processor sees its changes (its body
//!    mutations included). On the response it runs early, on the provider's answer
//!    before translation and accounting.
//!    `llm_provider` — after them and before anything reads the body: it rewrites
//!    the body's `model` to the one the provider is asked for, so accounting, limits
//!    and guards see the model that is billed.
//!    `llm_translate_response` — right after it: responses pass the processors in this
//!    same order, so a provider's answer in another API (an Anthropic model behind an
//!    OpenAI client) is made into the client's API before anything reads it.
//!    `stream_budget` — after them too, for the same reason: a streamed completion cut
//!    short for a limit enforced mid-stream (`tokenLimit`, `enforce: midStream`) ends
//!    before accounting and the guards read it, so they see what the client got.
//! 2. `token_accounting` — parses the LLM request once (for every later processor),
//!    estimates the prompt, and follows the response; before `token_limit`, which needs
//!    the estimate to charge and the usage to true up.
//! 3. `prompt_guard` — after `token_accounting`, whose parsed request (`cx.llm`) it
//!    scans (it parses the body itself when accounting is not on the route); before
//!    `token_limit`, so a rejected prompt is never charged against a limit, and so the
//!    limit sees the body that actually goes upstream. On the response it runs after
//!    accounting, which therefore counts what the upstream sent, not the placeholders.
//!    `mcp_guard` (MCP routes) takes the same place: tool-call arguments are checked
//!    before anything is sent to a target, and tool results after the target answered.
//!    `mcp_router` (`mcp.direct`) right after it: the call it sends straight to its
//!    target carries the masked arguments; on the answer it runs before `mcp_guard`
//!    (processors answer in reverse), whose result checks see the target's own ids.
//! 4. `token_limit` — reserves the estimate before the request goes upstream, and trues
//!    up from `cx.llm.usage`, which `token_accounting`'s `on_complete` (run before its
//!    own) has just written.
//! 5. `endpoint_picker` — last on the request path: a request a guard or a limit
//!    rejected never enters the prefix index, and the prompt it hashes is the body that
//!    actually goes upstream (after `prompt_guard`'s masking).
//!    `llm_translate_request` — after everything that reads the request body, which
//!    all read the client's own API; it rewrites body and path into the provider's.
//!    `backend_auth` — after everything that reads the client's credential (a limit
//!    keyed on the client's API key, the endpoint picker's tenant): it replaces
//!    `Authorization` with the provider key just before the request goes upstream.
//! 6. `a2a` — observes A2A requests and rewrites agent cards; it changes no request,
//!    so its place on the request path does not matter; on the response it runs before
//!    the operator's response headers.
//! 7. `response_header_modifier` — its response hook runs after the upstream answered;
//!    listed last so the operator's response headers have the last word.

mod a2a;
mod backend_auth;
mod cors;
mod direct_response;
pub(crate) mod endpoint_picker;
mod external_processor;
mod headers;
mod llm_provider;
mod llm_translate;
mod mcp_auth;
mod mcp_router;
mod otel_trace;
pub(crate) mod prompt_guard;
mod request_redirect;
mod stream_budget;
mod token_accounting;
mod token_limit;
mod url_rewrite;

use std::sync::Arc;

use crate::config::{
    ConfigError, ConfigErrors, FailureMode, LimitStoreKind, LoadedConfig, Policies,
};
use crate::mcp::Multiplexer;
use crate::pipeline::{Pipeline, ProcessorFactory};
use crate::services::Services;

pub use crate::pipeline::BuildCx;

pub use a2a::A2aFactory;
pub use backend_auth::BackendAuthFactory;
pub use cors::CorsFactory;
pub use direct_response::DirectResponseFactory;
pub use endpoint_picker::EndpointPickerFactory;
pub use external_processor::ExternalProcessorFactory;
pub use headers::{HeaderModifierFactory, HeaderSide};
pub use llm_provider::LlmProviderFactory;
pub use llm_translate::{Half, LlmTranslateFactory};
pub use mcp_auth::McpAuthFactory;
pub use mcp_router::McpRouterFactory;
pub use otel_trace::OtelTraceFactory;
pub use prompt_guard::{McpGuardFactory, PromptGuardFactory};
pub use request_redirect::RequestRedirectFactory;
pub use stream_budget::StreamBudgetFactory;
pub use token_accounting::TokenAccountingFactory;
pub use token_limit::TokenLimitFactory;
pub use url_rewrite::UrlRewriteFactory;

impl Pipeline {
    /// Validates and compiles a config with tollgate's processor registry (`for_route`).
    pub fn build(loaded: LoadedConfig, services: Arc<Services>) -> Result<Pipeline, ConfigError> {
        Pipeline::build_with(loaded, services, &for_route)
    }
}

/// The processor factories for a route's policies, in run order. `path` is the policies'
/// field path, for errors; `route` the route's name (labels, pool names); `mcp` the
/// route's multiplexer when it is an MCP gateway. Every broken policy is reported, not
/// only the first.
pub fn for_route(
    policies: &Policies,
    path: &str,
    route: &str,
    mcp: Option<&Arc<Multiplexer>>,
    bcx: &BuildCx<'_>,
) -> Result<Vec<Arc<dyn ProcessorFactory>>, ConfigError> {
    let r = Route {
        policies,
        path,
        name: route,
        direct: mcp.filter(|m| m.directs()),
        bcx,
    };
    let mut chain = Chain::default();
    r.edge(&mut chain); // 0
    r.shaping(&mut chain); // 1
    r.accounting_and_guards(&mut chain); // 2–4
    r.upstream_side(&mut chain); // 5–7
    chain.errs.finish(chain.factories)
}

/// The factories made so far, in run order, and every error met.
#[derive(Default)]
struct Chain {
    factories: Vec<Arc<dyn ProcessorFactory>>,
    errs: ConfigErrors,
}

impl Chain {
    fn add<F: ProcessorFactory + 'static>(&mut self, made: Result<F, ConfigError>) {
        if let Some(f) = self.errs.check(made) {
            self.factories.push(Arc::new(f));
        }
    }
}

/// One route being compiled.
struct Route<'a> {
    policies: &'a Policies,
    path: &'a str,
    name: &'a str,
    /// The route's multiplexer when it sends MCP calls straight to their targets.
    direct: Option<&'a Arc<Multiplexer>>,
    bcx: &'a BuildCx<'a>,
}

impl Route<'_> {
    fn field(&self, name: &str) -> String {
        format!("{}.{name}", self.path)
    }

    /// 0: tracing, CORS, MCP authentication and the routes that answer themselves.
    fn edge(&self, chain: &mut Chain) {
        let (p, bcx) = (self.policies, self.bcx);
        if let Some(t) = &bcx.config.tracing {
            chain.add(OtelTraceFactory::new(t, bcx.services));
        }
        if let Some(c) = &p.cors {
            chain.add(CorsFactory::new(c, &self.field("cors")));
        }
        if let Some(a) = &p.mcp_authentication {
            let field = self.field("mcpAuthentication");
            chain.add(McpAuthFactory::new(a, bcx, &field, self.direct.is_some()));
        }
        if let Some(d) = &p.direct_response {
            chain.add(DirectResponseFactory::new(d, &self.field("directResponse")));
        }
        if let Some(r) = &p.request_redirect {
            let field = self.field("requestRedirect");
            chain.add(RequestRedirectFactory::new(
                r, bcx.config, self.name, &field,
            ));
        }
    }

    /// 1: the operator's rewrites and headers, an external processor, the provider's
    /// model, the response made into the client's API, and mid-stream budgets.
    fn shaping(&self, chain: &mut Chain) {
        let (p, config) = (self.policies, self.bcx.config);
        let buffers = &config.limits.buffers;
        if let Some(u) = &p.url_rewrite {
            let field = self.field("urlRewrite");
            chain.add(UrlRewriteFactory::new(u, config, self.name, &field));
        }
        if let Some(m) = &p.request_header_modifier {
            let field = self.field("requestHeaderModifier");
            chain.add(HeaderModifierFactory::new(HeaderSide::Request, m, &field));
        }
        if let Some(e) = &p.ext_proc {
            let connect = config.upstream.connect_timeout.get();
            let field = self.field("extProc");
            chain.add(ExternalProcessorFactory::new(
                e,
                connect,
                buffers.json_body_bytes,
                &field,
            ));
        }
        if let Some(l) = &p.llm_provider {
            let field = self.field("llmProvider");
            chain.add(LlmProviderFactory::new(l, buffers.json_body_bytes, &field));
            chain.add(Ok(LlmTranslateFactory::new(Half::Response, l, buffers)));
        }
        if p.token_limit.as_ref().is_some_and(|l| l.has_mid_stream()) {
            chain.add(Ok(StreamBudgetFactory::new(buffers, self.store_failure())));
        }
    }

    /// What a mid-stream budget does when its store fails: a local store cannot; a
    /// Redis store follows `llm.redis.failureMode`.
    fn store_failure(&self) -> FailureMode {
        match self.policies.token_limit.as_ref().map(|l| l.store) {
            Some(LimitStoreKind::Redis) => self
                .bcx
                .config
                .llm
                .redis
                .as_ref()
                .map_or(FailureMode::FailOpen, |r| r.failure_mode),
            _ => FailureMode::FailOpen,
        }
    }

    /// 2–4: accounting, the guards, the MCP router and the token limits.
    fn accounting_and_guards(&self, chain: &mut Chain) {
        let (p, bcx) = (self.policies, self.bcx);
        if let Some(a) = &p.token_accounting {
            let field = self.field("tokenAccounting");
            chain.add(TokenAccountingFactory::new(a, bcx, &field));
        }
        if let Some(g) = &p.prompt_guard {
            chain.add(PromptGuardFactory::new(g, bcx, &self.field("promptGuard")));
        }
        if let Some(g) = &p.mcp_guard {
            chain.add(McpGuardFactory::new(g, bcx, &self.field("mcpGuard")));
        }
        if let Some(mux) = self.direct {
            let limit = bcx.config.limits.buffers.json_body_bytes;
            chain.add(Ok(McpRouterFactory::new(mux.clone(), limit)));
        }
        if let Some(l) = &p.token_limit {
            let field = self.field("tokenLimit");
            chain.add(if p.token_accounting.is_none() {
                Err(ConfigError::field(
                    field,
                    "tokenLimit needs tokenAccounting on the same route (it supplies the counts)",
                ))
            } else {
                TokenLimitFactory::new(l, bcx.config, bcx.services, bcx.prices, &field)
            });
        }
    }

    /// 5–7: the endpoint picker, the request made into the provider's API, the
    /// provider's credential, A2A and the operator's response headers.
    fn upstream_side(&self, chain: &mut Chain) {
        let (p, bcx) = (self.policies, self.bcx);
        if let Some(e) = &p.endpoint_picker {
            let field = self.field("endpointPicker");
            chain.add(EndpointPickerFactory::new(
                e,
                bcx.services,
                self.name,
                &field,
            ));
        }
        if let Some(l) = &p.llm_provider {
            let buffers = &bcx.config.limits.buffers;
            chain.add(Ok(LlmTranslateFactory::new(Half::Request, l, buffers)));
        }
        if let Some(b) = &p.backend_auth {
            let provider = p.llm_provider.as_ref().map(|l| l.provider);
            chain.add(BackendAuthFactory::new(
                b,
                provider,
                &self.field("backendAuth"),
            ));
        }
        if let Some(a) = &p.a2a {
            chain.add(A2aFactory::new(a, bcx, &self.field("a2a")));
        }
        if let Some(m) = &p.response_header_modifier {
            let field = self.field("responseHeaderModifier");
            chain.add(HeaderModifierFactory::new(HeaderSide::Response, m, &field));
        }
    }
}
