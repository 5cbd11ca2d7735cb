//! The facts of one exchange that processors share: the request line, the route, the
//! response status, and what should be emitted besides headers (Envoy dynamic metadata,
//! a route-cache clear).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Which transport drives the exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Adapter {
    ExtProc,
    Proxy,
}

impl Adapter {
    pub fn as_str(self) -> &'static str {
        match self {
            Adapter::ExtProc => "ext_proc",
            Adapter::Proxy => "proxy",
        }
    }
}

/// The request line, as pseudo-headers.
#[derive(Clone, Debug, Default)]
pub struct RequestHead {
    pub method: String,
    /// Path including the query string, as sent.
    pub path: String,
    pub authority: String,
    pub scheme: String,
}

impl RequestHead {
    /// The path without the query string.
    pub fn path_only(&self) -> &str {
        self.path.split('?').next().unwrap_or("")
    }
}

/// How an exchange ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The upstream's response went to the client in full.
    Completed { status: u16 },
    /// tollgate answered itself (a processor's reply or an error reply).
    LocalReply { status: u16 },
    /// The exchange broke (upstream failure, protocol error) after it started.
    Failed { reason: String },
    /// The client or Envoy went away before the end.
    ClientGone,
}

impl Outcome {
    /// The status for logs and metrics (0 when none reached the client).
    pub fn status(&self) -> u16 {
        match self {
            Outcome::Completed { status } | Outcome::LocalReply { status } => *status,
            Outcome::Failed { .. } | Outcome::ClientGone => 0,
        }
    }

    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Completed { .. } => "completed",
            Outcome::LocalReply { .. } => "local_reply",
            Outcome::Failed { .. } => "failed",
            Outcome::ClientGone => "client_gone",
        }
    }
}

/// Shared per-exchange state.
#[derive(Debug)]
pub struct Ctx {
    pub adapter: Adapter,
    pub request: RequestHead,
    /// `x-request-id` from the request, or one tollgate made.
    pub request_id: String,
    /// The selected route's name (`None`: no route matched).
    pub route: Option<String>,
    pub response_status: Option<u16>,
    /// Envoy dynamic metadata to emit: namespace → key → value.
    pub dynamic_metadata: BTreeMap<String, serde_json::Map<String, serde_json::Value>>,
    /// Verified JWT claims, when the transport supplies them (Envoy's `jwt_authn`
    /// metadata, forwarded to ext_proc). Never decoded from an unverified token.
    pub jwt: Option<serde_json::Value>,
    /// What the LLM processors learned (set by `tokenAccounting`). Boxed: most
    /// exchanges have none, and the context is moved a few times per request.
    pub llm: Option<Box<LlmFacts>>,
    /// The endpoint subset the gateway allows (Envoy's `envoy.lb.subset_hint` metadata:
    /// `x-gateway-destination-endpoint-subset`), `ip:port` each; `None` when not given.
    pub endpoint_subset: Option<Vec<String>>,
    /// The request has no body (Envoy's `end_of_stream` on the request headers; the
    /// proxy's empty body). Set by the transport before the request headers run.
    pub request_body_empty: bool,
    /// The endpoint(s) a picker chose, as `x-gateway-destination-endpoint` writes them
    /// (`ip:port[,ip:port…]`, first is the pick, the rest are fallbacks). The proxy
    /// adapter connects there instead of the route's backend.
    pub destination: Option<String>,
    /// The endpoint that actually served the request, as the gateway reports it on the
    /// response path (Envoy: `envoy.lb` metadata `x-gateway-destination-endpoint-served`;
    /// the proxy: the address it connected to).
    pub served_endpoint: Option<String>,
    /// Request headers a processor sets from the request body phase (the picked
    /// endpoint). They reach the upstream only when the body was held before its headers
    /// went on (Envoy BUFFERED / FULL_DUPLEX_STREAMED with a deferred header reply, the
    /// proxy's Buffer mode); otherwise they are dropped.
    pub late_request_headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// Request headers a processor removes from the request body phase (the client's
    /// token on an MCP call routed to its target), under the same condition.
    pub late_request_removals: Vec<http::HeaderName>,
    /// The MCP target (its index in the route's target list) a processor sent this call
    /// to (`mcp.direct`): Envoy routes it by header; the proxy sends it there itself.
    pub mcp_target: Option<usize>,
    /// Response headers a processor adds from the response body phase (usage totals).
    /// They reach the client only when the body was buffered before its headers went out
    /// (Envoy BUFFERED, the proxy's Buffer mode); otherwise they are dropped.
    pub late_response_headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// The path and query the upstream gets instead of the client's (`urlRewrite`):
    /// the proxy sends it, ext_proc sets `:path`.
    pub upstream_path: Option<String>,
    /// A processor rewrote where the request goes (`urlRewrite`): Envoy keeps the route
    /// the client's request chose, whatever headers changed.
    pub keep_route: bool,
    /// Ask Envoy to recompute the route after this phase's header changes.
    pub clear_route_cache: bool,
    /// The request went upstream translated into the provider's API (`llmProvider`);
    /// the response is translated back. The request's body is not kept here.
    pub translation: Option<(crate::llm::Translation, crate::llm::TranslatedRequest)>,
    /// The output a streamed completion may still produce under limits enforced
    /// mid-stream (`tokenLimit` sets it; `streamBudget` spends it on the response).
    pub stream_budget: Option<Box<crate::limits::StreamBudget>>,
    pub started: Instant,
}

impl Ctx {
    pub fn new(adapter: Adapter, request: RequestHead, request_id: Option<&str>) -> Self {
        Ctx {
            adapter,
            request,
            request_id: request_id.map_or_else(new_request_id, str::to_string),
            route: None,
            response_status: None,
            dynamic_metadata: BTreeMap::new(),
            jwt: None,
            llm: None,
            endpoint_subset: None,
            request_body_empty: false,
            destination: None,
            served_endpoint: None,
            late_request_headers: Vec::new(),
            late_request_removals: Vec::new(),
            mcp_target: None,
            late_response_headers: Vec::new(),
            upstream_path: None,
            keep_route: false,
            clear_route_cache: false,
            translation: None,
            stream_budget: None,
            started: Instant::now(),
        }
    }

    /// The provider a request of `api` went to (`gen_ai.provider.name`): the client's
    /// API's own, unless the request was translated for another.
    pub fn provider_of(&self, api: crate::llm::Api) -> crate::llm::Provider {
        self.translation
            .as_ref()
            .map_or(api.provider(), |(t, _)| t.upstream_api().provider())
    }

    /// Records a dynamic metadata entry for Envoy (ignored by the proxy adapter).
    pub fn set_metadata(&mut self, namespace: &str, key: &str, value: serde_json::Value) {
        self.dynamic_metadata
            .entry(namespace.to_string())
            .or_default()
            .insert(key.to_string(), value);
    }
}

/// What the LLM processors learned about one exchange.
#[derive(Clone, Debug)]
pub struct LlmFacts {
    pub api: crate::llm::Api,
    /// The parsed request, shared by every processor that needs it (parsed once).
    pub request: Arc<crate::llm::LlmRequest>,
    /// Prompt tokens estimated with the model's tokenizer, computed on first use
    /// (`estimated_input_tokens()`): a limit needs it before the request goes upstream,
    /// accounting only when the upstream reports no usage, so routes without limits
    /// never pay for tokenizing.
    estimate: Option<u64>,
    /// Usage at the end of the exchange: as the upstream reported it, or — for an
    /// exchange that ended before that — the estimate and what was delivered.
    pub usage: Option<crate::llm::Usage>,
    /// `usage` is the upstream's own report.
    pub usage_reported: bool,
    pub response_model: Option<String>,
    pub time_to_first_token: Option<std::time::Duration>,
    /// Cost in US dollars, when the price table knows the model.
    pub cost_usd: Option<f64>,
    /// The request's sampling parameters (`temperature`, `top_p`, …), read from its
    /// body only when an access-log field reads `llm.params`.
    pub params: Option<serde_json::Map<String, serde_json::Value>>,
    /// The completion's text (one entry per choice; a stream's as one), kept only when
    /// an access-log field reads `llm.completion`, and bounded.
    pub completion: Option<Vec<String>>,
}

impl LlmFacts {
    pub fn new(api: crate::llm::Api, request: Arc<crate::llm::LlmRequest>) -> Self {
        LlmFacts {
            api,
            request,
            estimate: None,
            usage: None,
            usage_reported: false,
            response_model: None,
            time_to_first_token: None,
            cost_usd: None,
            params: None,
            completion: None,
        }
    }
}

impl LlmFacts {
    /// The prompt-token estimate (tokenized once, on first call).
    pub fn estimated_input_tokens(&mut self) -> u64 {
        let request = &self.request;
        *self.estimate.get_or_insert_with(|| {
            crate::llm::estimate_prompt_tokens(request.model.as_deref().unwrap_or(""), request)
        })
    }
}

/// A fresh request id: 32 hex digits, unique per process and unpredictable across runs.
///
/// The high half counts (unique within the process); the low half comes from a
/// per-thread wyrand generator seeded from the OS-randomised std hasher, so ids differ
/// between runs and threads. An id is a correlation key, not a secret.
pub fn new_request_id() -> String {
    use std::cell::Cell;
    use std::hash::BuildHasher;
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    thread_local! {
        static STATE: Cell<u64> = Cell::new(
            std::collections::hash_map::RandomState::new().hash_one(COUNTER.load(Ordering::Relaxed)),
        );
    }
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let r = STATE.with(|s| {
        // wyrand (Wang Yi): one multiply per output, passes BigCrush.
        let x = s.get().wrapping_add(0xa076_1d64_78bd_642f);
        s.set(x);
        let t = u128::from(x) * u128::from(x ^ 0xe703_7ed1_a0b4_28db);
        (t >> 64) as u64 ^ t as u64
    });
    // The counter is mixed with the random half so ids do not show the request count.
    let mut hex = [0u8; 32];
    write_hex(&mut hex[..16], n ^ r.rotate_left(32));
    write_hex(&mut hex[16..], r);
    String::from_utf8(hex.to_vec()).expect("hex digits are ASCII")
}

/// Writes `v` as 16 lowercase hex digits.
fn write_hex(out: &mut [u8], v: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, d) in out.iter_mut().enumerate() {
        *d = DIGITS[((v >> (60 - 4 * i)) & 0xf) as usize];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_unique_hex() {
        let a = new_request_id();
        let b = new_request_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        let many: std::collections::HashSet<String> =
            (0..10_000).map(|_| new_request_id()).collect();
        assert_eq!(many.len(), 10_000);
        let mut hex = [0u8; 16];
        write_hex(&mut hex, 0x0123_4567_89ab_cdef);
        assert_eq!(&hex, b"0123456789abcdef");
    }

    #[test]
    fn path_only_strips_query() {
        let h = RequestHead {
            path: "/v1/chat?x=1".into(),
            ..Default::default()
        };
        assert_eq!(h.path_only(), "/v1/chat");
    }
}
