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
    let direct = mcp.filter(|m| m.directs());
    let mut errs = ConfigErrors::default();
    let mut factories: Vec<Arc<dyn ProcessorFactory>> = Vec::new();
    let mut add = |made: Result<Arc<dyn ProcessorFactory>, ConfigError>| {
        factories.extend(errs.check(made));
    };
    if let Some(t) = &bcx.config.tracing {
        add(OtelTraceFactory::new(t, bcx.services).map(|f| Arc::new(f) as _));
    }
    if let Some(p) = &policies.cors {
        add(CorsFactory::new(p, &format!("{path}.cors")).map(|f| Arc::new(f) as _));
    }
    if let Some(p) = &policies.mcp_authentication {
        let field = format!("{path}.mcpAuthentication");
        add(McpAuthFactory::new(p, bcx, &field, direct.is_some()).map(|f| Arc::new(f) as _));
    }
    if let Some(p) = &policies.direct_response {
        let field = format!("{path}.directResponse");
        add(DirectResponseFactory::new(p, &field).map(|f| Arc::new(f) as _));
    }
    if let Some(p) = &policies.request_redirect {
        let field = format!("{path}.requestRedirect");
        add(RequestRedirectFactory::new(p, bcx.config, route, &field).map(|f| Arc::new(f) as _));
    }
    if let Some(p) = &policies.url_rewrite {
        let field = format!("{path}.urlRewrite");
        add(UrlRewriteFactory::new(p, bcx.config, route, &field).map(|f| Arc::new(f) as _));
    }
    if let Some(m) = &policies.request_header_modifier {
        add(HeaderModifierFactory::new(
            HeaderSide::Request,
            m,
            &format!("{path}.requestHeaderModifier"),
        )
        .map(|f| Arc::new(f) as _));
    }
    if let Some(p) = &policies.ext_proc {
        let field = format!("{path}.extProc");
        let (connect, limit) = (
            bcx.config.upstream.connect_timeout.get(),
            bcx.config.limits.buffers.json_body_bytes,
        );
        add(ExternalProcessorFactory::new(p, connect, limit, &field).map(|f| Arc::new(f) as _));
    }
    if let Some(p) = &policies.llm_provider {
        let limit = bcx.config.limits.buffers.json_body_bytes;
        let field = format!("{path}.llmProvider");
        add(LlmProviderFactory::new(p, limit, &field).map(|f| Arc::new(f) as _));
        let buffers = &bcx.config.limits.buffers;
        add(Ok(Arc::new(LlmTranslateFactory::new(
            Half::Response,
            p,
            buffers,
        ))));
    }
    if let Some(p) = policies.token_limit.as_ref().filter(|p| p.has_mid_stream()) {
        let store_failure = match p.store {
            LimitStoreKind::Local => FailureMode::FailOpen,
            LimitStoreKind::Redis => bcx
                .config
                .llm
                .redis
                .as_ref()
                .map_or(FailureMode::FailOpen, |r| r.failure_mode),
        };
        let buffers = &bcx.config.limits.buffers;
        add(Ok(Arc::new(StreamBudgetFactory::new(
            buffers,
            store_failure,
        ))));
    }
    if let Some(p) = &policies.token_accounting {
        add(
            TokenAccountingFactory::new(p, bcx, &format!("{path}.tokenAccounting"))
                .map(|f| Arc::new(f) as _),
        );
    }
    if let Some(p) = &policies.prompt_guard {
        add(
            PromptGuardFactory::new(p, bcx, &format!("{path}.promptGuard"))
                .map(|f| Arc::new(f) as _),
        );
    }
    if let Some(p) = &policies.mcp_guard {
        add(McpGuardFactory::new(p, bcx, &format!("{path}.mcpGuard")).map(|f| Arc::new(f) as _));
    }
    if let Some(mux) = direct {
        let limit = bcx.config.limits.buffers.json_body_bytes;
        add(Ok(Arc::new(McpRouterFactory::new(mux.clone(), limit))));
    }
    if let Some(p) = &policies.token_limit {
        let field = format!("{path}.tokenLimit");
        if policies.token_accounting.is_none() {
            add(Err(ConfigError::field(
                field,
                "tokenLimit needs tokenAccounting on the same route (it supplies the counts)",
            )));
        } else {
            add(
                TokenLimitFactory::new(p, bcx.config, bcx.services, bcx.prices, &field)
                    .map(|f| Arc::new(f) as _),
            );
        }
    }
    if let Some(p) = &policies.endpoint_picker {
        add(
            EndpointPickerFactory::new(p, bcx.services, route, &format!("{path}.endpointPicker"))
                .map(|f| Arc::new(f) as _),
        );
    }
    if let Some(p) = &policies.llm_provider {
        let buffers = &bcx.config.limits.buffers;
        add(Ok(Arc::new(LlmTranslateFactory::new(
            Half::Request,
            p,
            buffers,
        ))));
    }
    if let Some(p) = &policies.backend_auth {
        let field = format!("{path}.backendAuth");
        let provider = policies.llm_provider.as_ref().map(|l| l.provider);
        add(BackendAuthFactory::new(p, provider, &field).map(|f| Arc::new(f) as _));
    }
    if let Some(p) = &policies.a2a {
        add(A2aFactory::new(p, bcx, &format!("{path}.a2a")).map(|f| Arc::new(f) as _));
    }
    if let Some(m) = &policies.response_header_modifier {
        add(HeaderModifierFactory::new(
            HeaderSide::Response,
            m,
            &format!("{path}.responseHeaderModifier"),
        )
        .map(|f| Arc::new(f) as _));
    }
    errs.finish(factories)
}
