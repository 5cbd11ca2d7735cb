//! tollgate's configuration: the serde model (every field documented — these doc comments
//! are the reference), loading with `${ENV}` substitution and field-path errors, semantic
//! validation, the redacted dump, and the file watcher that drives hot reload.

mod access_log;
mod balance;
mod compat;
mod compat_ai;
mod cors;
mod duration;
mod epp;
mod epp_disagg;
mod epp_flow;
mod epp_prefix_cache;
mod epp_scheduling;
mod epp_session;
mod epp_source;
mod error;
mod ext_proc_policy;
mod guard;
mod http_policies;
mod limits;
mod llm;
mod llm_provider;
mod load;
mod mcp;
mod mcp_auth;
mod mcp_limit;
mod model;
mod otlp;
mod redact;
mod runtime;
mod serving;
mod watch;
mod xds;

pub use access_log::AccessLogFields;
pub use balance::{OutlierDetection, RetryPolicy, MAX_ATTEMPTS, MAX_WEIGHT};
pub use cors::CorsPolicy;
pub use duration::Duration;
pub use epp::*;
pub use epp_disagg::*;
pub use epp_flow::*;
pub use epp_prefix_cache::*;
pub use epp_scheduling::*;
pub use epp_session::*;
pub use epp_source::*;
pub use error::{ConfigError, ConfigErrors};
pub use ext_proc_policy::{BodySendMode, ExtProcPolicy, HeaderSendMode, ProcessingMode};
pub use guard::*;
pub use http_policies::{
    AuthorityRewrite, BackendAuth, DirectResponse, KeySource, PathRewrite, RequestRedirect,
    UrlRewrite,
};
pub use limits::*;
pub use llm::*;
pub use llm_provider::{LlmProvider, ProviderKind, RouteKind};
pub use load::{load_file, parse_str, LoadedConfig};
pub use mcp::{McpBackend, McpChecked, McpPrefix, McpSession, McpTarget};
pub use mcp_auth::{
    AuthChecked, JwksConfig, McpAuthentication, McpAuthorization, ResourceMetadata, WELL_KNOWN,
};
pub use mcp_limit::{McpToolLimitPolicy, ToolLimitAmount, ToolLimitRule};
pub use model::*;
pub use otlp::{OtlpProtocol, Sampling, TracingConfig};
pub use redact::redacted_json;
pub use runtime::RuntimeConfig;
pub use serving::{check_reload, check_serves, start_only_changes, ReloadRefusal};
pub use watch::watch_file;
pub use xds::{check_xds, mcp_listener, XdsConfig, XdsNode, ENVOY_ROUTE_HEADER};

/// The configuration tollgate runs when `serve` is given no file: ext_proc on
/// 127.0.0.1:50051, the proxy on 127.0.0.1:8080 and admin on 127.0.0.1:15000.
pub const EMBEDDED_DEFAULT: &str = include_str!("config/default.yaml");
