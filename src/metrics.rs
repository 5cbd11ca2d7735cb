//! Prometheus metrics of the process, served as text on the admin `/metrics`. One
//! registry, created at start and shared by every config snapshot, so counters survive
//! reloads.

mod a2a;
mod buffers;
mod connections;
mod flow_control;
mod gen_ai;
mod inference;
mod kv_events;
mod labels;
mod mcp;
mod route;
mod slo;
mod xds;

pub use a2a::{A2aLabels, A2aMetrics};
pub use buffers::{BufferLimitLabels, BufferMetrics, UsageInvalidLabels};
pub use connections::{ConnectionMetrics, ListenerLabels, TimeoutLabels};
pub use flow_control::{
    FlowControlMetrics, InferencePoolLabels, OutcomeLabels, QueueDurationLabels, QueueLabels,
};
pub use gen_ai::{DurationLabels, GenAiLabels, GenAiMetrics, TokenLabels};
pub use inference::{
    DropLabels, InferenceMetrics, ModelLabels, ObjectiveErrorLabels, ObjectiveLabels, PickLabels,
    PoolStats, PoolStatsSource, ServedLabels, StatusLabels,
};
pub use labels::{truncate, BoundedLabel, LabelBounds, OTHER};
pub use mcp::{
    McpCallLabels, McpMethodLabels, McpMetrics, McpRequestLabels, McpRouteMethodLabels,
    McpToolLabels,
};
pub use route::RouteTallies;
pub use slo::{SloMetrics, SloType};
pub use xds::{XdsMetrics, XdsTypeLabels, XdsVariantLabels};

use std::sync::atomic::AtomicI64;
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    pub adapter: &'static str,
    pub status: u16,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
    pub adapter: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProcessorLabels {
    pub processor: &'static str,
    pub failure_mode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    pub route: String,
    pub limit: String,
    pub decision: &'static str,
}

/// `tollgate_guard_findings_total` labels. `rule` is the configured rule's name; the
/// finding itself never becomes a label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GuardLabels {
    pub route: String,
    /// `request` or `response`.
    pub side: &'static str,
    pub rule: String,
    /// `reject`, `mask` or `audit`.
    pub action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SideLabels {
    pub side: &'static str,
}

/// Every metric tollgate exports.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub request_duration: Family<RouteLabels, Histogram>,
    pub ext_proc_streams: Family<ResultLabels, Counter>,
    pub ext_proc_streams_active: Gauge<i64, AtomicI64>,
    /// ext_proc streams whose body messages showed Envoy ignoring `mode_override`.
    pub mode_override_ignored: Counter,
    pub config_reloads: Family<ResultLabels, Counter>,
    pub processor_errors: Family<ProcessorLabels, Counter>,
    pub gen_ai: GenAiMetrics,
    pub token_limit_decisions: Family<LimitLabels, Counter>,
    pub guard_findings: Family<GuardLabels, Counter>,
    /// Calls an MCP gateway route made to its targets.
    pub mcp: McpMetrics,
    pub a2a: A2aMetrics,
    pub guard_duration: Family<SideLabels, Histogram>,
    pub inference: InferenceMetrics,
    pub flow_control: FlowControlMetrics,
    pub slo: SloMetrics,
    pub buffers: BufferMetrics,
    /// Bounds on client- or upstream-chosen label values and log fields
    /// (`limits.labels`), applied by every pipeline build.
    pub labels: Arc<LabelBounds>,
    pub connections: ConnectionMetrics,
    pub xds: XdsMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let labels = Arc::new(LabelBounds::default());
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "tollgate_requests",
            "HTTP exchanges handled, by route, adapter, final status and outcome",
            requests.clone(),
        );
        let request_duration = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ])
        });
        registry.register(
            "tollgate_request_duration_seconds",
            "Time from request headers to the end of the exchange, by route and adapter",
            request_duration.clone(),
        );
        let ext_proc_streams = Family::<ResultLabels, Counter>::default();
        registry.register(
            "tollgate_ext_proc_streams",
            "ext_proc gRPC streams ended, by result",
            ext_proc_streams.clone(),
        );
        let ext_proc_streams_active = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "tollgate_ext_proc_streams_active",
            "ext_proc gRPC streams open now",
            ext_proc_streams_active.clone(),
        );
        let mode_override_ignored = Counter::default();
        registry.register(
            "tollgate_ext_proc_mode_override_ignored",
            "ext_proc streams on which Envoy ignored tollgate's mode_override (its filter has \
             allow_mode_override: false); tollgate then handles the bodies in Envoy's static mode",
            mode_override_ignored.clone(),
        );
        let config_reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "tollgate_config_reloads",
            "Config reload attempts, by result (success or failure)",
            config_reloads.clone(),
        );
        let processor_errors = Family::<ProcessorLabels, Counter>::default();
        registry.register(
            "tollgate_processor_errors",
            "Processor errors, by processor and the failure mode applied",
            processor_errors.clone(),
        );
        let gen_ai = GenAiMetrics::register(&mut registry, labels.clone());
        let token_limit_decisions = Family::<LimitLabels, Counter>::default();
        registry.register(
            "tollgate_token_limit_decisions",
            "Token limit checks, by route, limit and decision (allowed or denied)",
            token_limit_decisions.clone(),
        );
        let mcp = McpMetrics::register(&mut registry, labels.clone());
        let a2a = A2aMetrics::register(&mut registry);
        let guard_findings = Family::<GuardLabels, Counter>::default();
        registry.register(
            "tollgate_guard_findings",
            "Prompt guard findings, by route, side (request or response), rule and action",
            guard_findings.clone(),
        );
        let guard_duration = Family::<SideLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                0.025, 0.05, 0.1, 0.25, 1.0,
            ])
        });
        registry.register(
            "tollgate_guard_duration_seconds",
            "Time the prompt guard spent on one check: a request body, a JSON response, or \
             one chunk of a streamed response",
            guard_duration.clone(),
        );
        let inference = InferenceMetrics::register(&mut registry, labels.clone());
        let flow_control = FlowControlMetrics::register(&mut registry);
        let slo = SloMetrics::register(&mut registry);
        let connections = ConnectionMetrics::register(&mut registry);
        let buffers = BufferMetrics::register(&mut registry);
        let xds = XdsMetrics::register(&mut registry);
        Metrics {
            xds,
            buffers,
            labels,
            connections,
            inference,
            flow_control,
            slo,
            gen_ai,
            guard_findings,
            mcp,
            a2a,
            guard_duration,
            token_limit_decisions,
            registry,
            requests,
            request_duration,
            ext_proc_streams,
            ext_proc_streams_active,
            mode_override_ignored,
            config_reloads,
            processor_errors,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
