//! xDS metrics: streams open by variant, and per type the responses and bytes sent and
//! the NACKs received. Types are a fixed set of five (and `unknown`).

use std::sync::atomic::AtomicI64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels of the per-type families.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct XdsTypeLabels {
    /// `sotw` or `delta`.
    pub variant: &'static str,
    /// `cluster`, `endpoint`, `listener`, `route` or `tollgate_config`.
    pub r#type: &'static str,
}

/// Labels of the stream gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct XdsVariantLabels {
    pub variant: &'static str,
}

#[derive(Clone)]
pub struct XdsMetrics {
    pub streams: Family<XdsVariantLabels, Gauge<i64, AtomicI64>>,
    pub responses: Family<XdsTypeLabels, Counter>,
    pub response_bytes: Family<XdsTypeLabels, Counter>,
    pub nacks: Family<XdsTypeLabels, Counter>,
    /// Streams ended by tollgate for a protocol error of the client.
    pub rejected: Family<XdsVariantLabels, Counter>,
}

impl XdsMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let streams = Family::<XdsVariantLabels, Gauge<i64, AtomicI64>>::default();
        registry.register(
            "tollgate_xds_streams",
            "xDS streams open now, by variant (sotw or delta)",
            streams.clone(),
        );
        let responses = Family::<XdsTypeLabels, Counter>::default();
        registry.register(
            "tollgate_xds_responses",
            "xDS responses sent, by variant and resource type",
            responses.clone(),
        );
        let response_bytes = Family::<XdsTypeLabels, Counter>::default();
        registry.register(
            "tollgate_xds_response_bytes",
            "Encoded bytes of the xDS responses sent, by variant and resource type",
            response_bytes.clone(),
        );
        let nacks = Family::<XdsTypeLabels, Counter>::default();
        registry.register(
            "tollgate_xds_nacks",
            "xDS responses a node refused (NACK), by variant and resource type",
            nacks.clone(),
        );
        let rejected = Family::<XdsVariantLabels, Counter>::default();
        registry.register(
            "tollgate_xds_streams_rejected",
            "xDS streams ended for a malformed request (no node, an unknown type, too many names)",
            rejected.clone(),
        );
        XdsMetrics {
            streams,
            responses,
            response_bytes,
            nacks,
            rejected,
        }
    }
}
