//! The configuration model. One file describes both modes: in standalone mode tollgate
//! listens on `binds` and forwards to `backends`; in ext_proc mode Envoy forwards, and
//! tollgate matches the same `routes` against the headers Envoy sends to pick the
//! policies for each stream. Every struct rejects unknown fields.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    Duration, EndpointPickerPolicy, LimitsConfig, LlmConfig, PromptGuardPolicy, RuntimeConfig,
    TokenAccountingPolicy, TokenLimitPolicy,
};

/// The whole configuration file.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// The Envoy ext_proc gRPC server. Omit to run without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ext_proc: Option<ExtProcConfig>,
    /// The admin server: health, readiness, metrics and the config dump.
    #[serde(default)]
    pub admin: AdminConfig,
    /// Log format and level.
    #[serde(default)]
    pub logging: LoggingConfig,
    /// OTLP traces: a span per exchange, with OpenTelemetry's GenAI attributes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing: Option<super::TracingConfig>,
    /// Graceful shutdown.
    #[serde(default)]
    pub shutdown: ShutdownConfig,
    /// The async runtime (worker threads).
    #[serde(default)]
    pub runtime: RuntimeConfig,
    /// Standalone-proxy upstream defaults (connection pool and timeouts).
    #[serde(default)]
    pub upstream: UpstreamConfig,
    /// Gateway-wide policies: each applies to every route that does not set the same
    /// policy itself (a route's own policy wins).
    #[serde(default)]
    pub policies: Policies,
    /// Bounds on buffers, connections, metric labels and CEL cost.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Settings shared by the LLM policies: price table, Redis.
    #[serde(default)]
    pub llm: LlmConfig,
    /// Ports the standalone proxy listens on, each with its listeners and routes. In
    /// ext_proc mode the routes are matched in file order against Envoy's request headers.
    #[serde(default)]
    pub binds: Vec<Bind>,
    /// Serve Envoy its configuration over xDS (ADS on the `extProc` server), generated
    /// from `binds`: Envoy listens on them instead of tollgate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xds: Option<super::XdsConfig>,
}

/// Where and how the ext_proc gRPC server listens.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExtProcConfig {
    /// `host:port` for TCP (e.g. `127.0.0.1:50051`) or `unix:/path/to/socket`.
    pub address: String,
    /// Serve gRPC over TLS with this certificate. Omit for plaintext h2c.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ServerTls>,
    /// Serve ext_proc over TLS with a certificate made at start for `localhost` and the
    /// pod's name, as endpoint pickers conventionally do: gateways that talk to an
    /// endpoint picker encrypt but do not verify. Ignored when `tls` is given.
    #[serde(default)]
    pub self_signed_tls: bool,
    /// Also serve gRPC health (`""`, `liveness`, `readiness`) in plaintext on this
    /// `host:port` (the endpoint picker's conventional health port is 9003), for
    /// Kubernetes probes. The ext_proc address always serves health too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_address: Option<String>,
    /// Request headers whose mutation makes tollgate ask Envoy to clear its route cache,
    /// besides `host`, which always does. Default: `x-gateway-destination-endpoint`.
    #[serde(default = "default_route_cache_headers")]
    pub clear_route_cache_on: Vec<String>,
    /// Send `mode_override` in header replies so Envoy sends exactly the bodies the
    /// route's processors need (none for header-only routes, saving a round trip per
    /// chunk). Needs `allow_mode_override: true` in Envoy's ext_proc filter. Default
    /// true; false follows Envoy's static processing mode.
    #[serde(default = "default_true")]
    pub mode_override: bool,
}

fn default_true() -> bool {
    true
}

fn default_route_cache_headers() -> Vec<String> {
    vec!["x-gateway-destination-endpoint".to_string()]
}

/// The admin HTTP server.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AdminConfig {
    /// `host:port` to listen on. Default `127.0.0.1:15000`.
    #[serde(default = "default_admin_address")]
    pub address: String,
}

fn default_admin_address() -> String {
    "127.0.0.1:15000".to_string()
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            address: default_admin_address(),
        }
    }
}

/// Logging. The level can be overridden with the `RUST_LOG` environment variable.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LoggingConfig {
    /// `text` (default) or `json`: one object per line.
    #[serde(default)]
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `tollgate=debug`. Default `info`.
    #[serde(default = "default_log_level")]
    pub level: String,
    /// Access-line fields computed by CEL (`add`), and built-in ones left out
    /// (`remove`). Unlike `format` and `level`, they apply on reload.
    #[serde(default, skip_serializing_if = "super::AccessLogFields::is_empty")]
    pub fields: super::AccessLogFields,
}

fn default_log_level() -> String {
    "info".to_string()
}

impl Default for LoggingConfig {
    fn default() -> Self {
        LoggingConfig {
            format: LogFormat::Text,
            level: default_log_level(),
            fields: super::AccessLogFields::default(),
        }
    }
}

/// Log line format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum LogFormat {
    /// Human-readable text.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Graceful shutdown on SIGTERM / SIGINT.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ShutdownConfig {
    /// How long in-flight requests and streams may take to finish after readiness goes
    /// false. Default `10s`.
    #[serde(default = "default_grace")]
    pub grace_period: Duration,
}

fn default_grace() -> Duration {
    Duration::from_secs(10)
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig {
            grace_period: default_grace(),
        }
    }
}

/// Upstream connection defaults of the standalone proxy.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpstreamConfig {
    /// Time allowed to open a TCP (and TLS) connection. Default `5s`; expiry gives 503.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Duration,
    /// Time allowed until the upstream's response headers arrive. Default `300s` (LLM
    /// prompts can take long); a route's `timeout` policy overrides it. Expiry gives 504.
    #[serde(default = "default_request_timeout")]
    pub request_timeout: Duration,
    /// How long an idle pooled connection is kept. Default `90s`.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: Duration,
    /// Most idle connections kept per upstream. Default 64.
    #[serde(default = "default_max_idle")]
    pub max_idle_per_host: usize,
    /// Passive health of routes with several backends.
    #[serde(default)]
    pub outlier_detection: super::OutlierDetection,
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(300)
}
fn default_idle_timeout() -> Duration {
    Duration::from_secs(90)
}
fn default_max_idle() -> usize {
    64
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            connect_timeout: default_connect_timeout(),
            request_timeout: default_request_timeout(),
            idle_timeout: default_idle_timeout(),
            max_idle_per_host: default_max_idle(),
            outlier_detection: Default::default(),
        }
    }
}

/// A port the standalone proxy listens on.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Bind {
    /// TCP port.
    pub port: u16,
    /// IP address to listen on. Default `127.0.0.1`.
    #[serde(default = "default_bind_address")]
    pub address: String,
    /// Terminate TLS on this port with this certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ServerTls>,
    /// Listeners on this port, chosen by the request's host.
    pub listeners: Vec<Listener>,
}

fn default_bind_address() -> String {
    "127.0.0.1".to_string()
}

/// A listener: a set of hostnames and the routes served for them.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Listener {
    /// A name for logs and metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Host names this listener serves (`*.example.com` wildcards allowed). Empty: all.
    #[serde(default)]
    pub hostnames: Vec<String>,
    /// Routes, matched in order; the first match wins.
    pub routes: Vec<Route>,
}

/// A route: what requests it matches, the policies applied to them and where they go.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Route {
    /// The route's name: used in logs and metrics, and in ext_proc mode matched against
    /// Envoy's `xds.route_name` attribute when Envoy sends it. Default `route<N>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Match alternatives; a request matches if any one matches. Empty: match everything.
    #[serde(default)]
    pub matches: Vec<RouteMatch>,
    /// Policies (processors) applied to matching requests.
    #[serde(default)]
    pub policies: Policies,
    /// Standalone mode: where to forward. The first backend is used. Ignored in
    /// ext_proc mode, where Envoy forwards.
    #[serde(default)]
    pub backends: Vec<Backend>,
    /// Standalone mode: the route is an MCP gateway in front of these MCP servers,
    /// instead of forwarding to `backends` (the two cannot be combined).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp: Option<super::McpBackend>,
}

impl Route {
    /// The route's name: its `name`, else `route<N>` for the N-th route of the file
    /// (counting every route of every bind and listener from 0), the name Envoy and
    /// tollgate both know it by.
    pub fn name_or_index(&self, index: usize) -> String {
        self.name.clone().unwrap_or_else(|| format!("route{index}"))
    }
}

/// One match alternative: every field given must match.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RouteMatch {
    /// Path match (the query string is not part of the path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathMatch>,
    /// HTTP method, e.g. `POST`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Header matches, all of which must hold.
    #[serde(default)]
    pub headers: Vec<HeaderMatch>,
}

/// How the path is matched.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub enum PathMatch {
    /// The path starts with this prefix at a segment boundary (`/v1` matches `/v1/chat`,
    /// not `/v10`).
    PathPrefix(String),
    /// The path equals this.
    Exact(String),
    /// The whole path matches this regular expression (Rust `regex` syntax).
    Regex(String),
}

/// A header match.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HeaderMatch {
    /// Header name (case-insensitive).
    pub name: String,
    /// How its value must match. Omit to require only that the header is present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<ValueMatch>,
}

/// How a header value is matched.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub enum ValueMatch {
    /// The value equals this.
    Exact(String),
    /// The whole value matches this regular expression.
    Regex(String),
}

/// Policies of a route. Each becomes a processor; the order they run in is fixed by
/// tollgate (see `processors.rs`), not by the order written here.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Policies {
    /// Change request headers before the request goes upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_header_modifier: Option<HeaderModifier>,
    /// Change response headers before the response goes to the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_header_modifier: Option<HeaderModifier>,
    /// Count LLM tokens and export usage (metrics, Envoy dynamic metadata, logs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_accounting: Option<TokenAccountingPolicy>,
    /// Limit LLM tokens and spend per key (needs `tokenAccounting` on the route).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_limit: Option<TokenLimitPolicy>,
    /// Check prompts and completions for PII, secrets and policy rules: reject, mask or
    /// audit what is found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_guard: Option<PromptGuardPolicy>,
    /// Pick the model-server endpoint of each inference request (Gateway API Inference
    /// Extension endpoint picker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_picker: Option<EndpointPickerPolicy>,
    /// Standalone mode: time allowed until the upstream's response headers arrive,
    /// overriding `upstream.requestTimeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// MCP routes: require JWT bearer tokens and publish RFC 9728 metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp_authentication: Option<super::McpAuthentication>,
    /// MCP routes: CEL rules that allow tool calls, prompts and resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp_authorization: Option<super::McpAuthorization>,
    /// MCP routes: limits on tool calls per key (calls per minute, budgets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp_tool_limit: Option<super::McpToolLimitPolicy>,
    /// MCP routes: prompt-guard rules on tool-call arguments (`request`) and tool
    /// results (`response`): reject, mask or audit PII, secrets and keywords.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp_guard: Option<PromptGuardPolicy>,
    /// A route to an A2A agent: agent cards rewritten to point at the gateway, and
    /// A2A JSON-RPC methods and task ids observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub a2a: Option<A2aPolicy>,
    /// Cross-origin resource sharing: preflights answered at the gateway, the CORS
    /// headers on responses to allowed origins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<super::CorsPolicy>,
    /// The authority and path the upstream gets instead of the client's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_rewrite: Option<super::UrlRewrite>,
    /// The credential the upstream gets: a key (`Authorization: Bearer`), or the
    /// client's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_auth: Option<super::BackendAuth>,
    /// Answer every request with this status and body; nothing is forwarded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct_response: Option<super::DirectResponse>,
    /// Send the client elsewhere with a redirect; nothing is forwarded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_redirect: Option<super::RequestRedirect>,
    /// The LLM provider behind the route's backend: upstream path, model override,
    /// and how a `backendAuth` key is sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm_provider: Option<super::LlmProvider>,
    /// Retries of a failed upstream call, on another backend when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<super::RetryPolicy>,
    /// An external processing server (Envoy's ext_proc protocol) called for each
    /// request, as Envoy's ext_proc filter would.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ext_proc: Option<super::ExtProcPolicy>,
}

/// The `a2a` policy.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct A2aPolicy {
    /// The agent's URL as clients reach it through the gateway, written into its cards
    /// (`https://agents.example.com/travel`). Default: the card request's scheme and
    /// host, with the path before `/.well-known`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
}

impl Policies {
    /// This route's policies, with each one it does not set taken from `gateway`.
    pub fn over(&self, gateway: &Policies) -> Policies {
        Policies {
            request_header_modifier: self
                .request_header_modifier
                .clone()
                .or_else(|| gateway.request_header_modifier.clone()),
            response_header_modifier: self
                .response_header_modifier
                .clone()
                .or_else(|| gateway.response_header_modifier.clone()),
            token_accounting: self
                .token_accounting
                .clone()
                .or_else(|| gateway.token_accounting.clone()),
            token_limit: self
                .token_limit
                .clone()
                .or_else(|| gateway.token_limit.clone()),
            prompt_guard: self
                .prompt_guard
                .clone()
                .or_else(|| gateway.prompt_guard.clone()),
            endpoint_picker: self
                .endpoint_picker
                .clone()
                .or_else(|| gateway.endpoint_picker.clone()),
            timeout: self.timeout.or(gateway.timeout),
            mcp_authentication: self
                .mcp_authentication
                .clone()
                .or_else(|| gateway.mcp_authentication.clone()),
            mcp_authorization: self
                .mcp_authorization
                .clone()
                .or_else(|| gateway.mcp_authorization.clone()),
            mcp_tool_limit: self
                .mcp_tool_limit
                .clone()
                .or_else(|| gateway.mcp_tool_limit.clone()),
            mcp_guard: self.mcp_guard.clone().or_else(|| gateway.mcp_guard.clone()),
            a2a: self.a2a.clone().or_else(|| gateway.a2a.clone()),
            cors: self.cors.clone().or_else(|| gateway.cors.clone()),
            url_rewrite: self
                .url_rewrite
                .clone()
                .or_else(|| gateway.url_rewrite.clone()),
            backend_auth: self
                .backend_auth
                .clone()
                .or_else(|| gateway.backend_auth.clone()),
            direct_response: self
                .direct_response
                .clone()
                .or_else(|| gateway.direct_response.clone()),
            request_redirect: self
                .request_redirect
                .clone()
                .or_else(|| gateway.request_redirect.clone()),
            llm_provider: self
                .llm_provider
                .clone()
                .or_else(|| gateway.llm_provider.clone()),
            retry: self.retry.clone().or_else(|| gateway.retry.clone()),
            ext_proc: self.ext_proc.clone().or_else(|| gateway.ext_proc.clone()),
        }
    }
}

/// Header operations, applied in the order remove → set → add.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HeaderModifier {
    /// Replace (or create) these headers.
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Append these values, keeping existing ones.
    #[serde(default)]
    pub add: BTreeMap<String, String>,
    /// Remove these headers.
    #[serde(default)]
    pub remove: Vec<String>,
    /// What happens if the policy cannot be applied: `failClosed` (default, the request
    /// fails) or `failOpen` (it goes on unmodified).
    #[serde(default)]
    pub failure_mode: FailureMode,
}

/// What a processor's failure does to the request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum FailureMode {
    /// The request fails with an error reply.
    #[default]
    FailClosed,
    /// The processor is skipped and the request goes on.
    FailOpen,
}

/// A standalone-mode upstream.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Backend {
    /// `host:port` of the upstream.
    pub host: String,
    /// Connect with TLS. Omit for plaintext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<BackendTls>,
    /// Speak HTTP/2 (prior knowledge over plaintext, ALPN over TLS). Default false:
    /// HTTP/1.1.
    #[serde(default)]
    pub http2: bool,
    /// This backend's share of the route's requests, relative to the others'. Default 1.
    #[serde(
        default = "super::balance::default_weight",
        skip_serializing_if = "super::balance::is_default_weight"
    )]
    pub weight: u32,
}

/// TLS towards a backend.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BackendTls {
    /// Server name to send and verify. Default: the host part of `host`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// PEM file of CA certificates to trust instead of the built-in web roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// Accept any certificate for any name: anyone on the path can read and change the
    /// traffic. For test servers only; every load logs a warning naming the backend.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
    /// PEM client certificate chain presented to the backend (mutual TLS), with
    /// `keyFile`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<String>,
    /// PEM private key of `certFile`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<String>,
}

/// A server certificate.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServerTls {
    /// PEM certificate chain.
    pub cert_file: String,
    /// PEM private key.
    pub key_file: String,
}
