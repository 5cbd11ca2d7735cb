//! The precise prefix cache's figures per pool (`tollgate_epp_kv_events_*`), encoded
//! with the other pool gauges when `/metrics` is read, for pools in `kvEvents` mode
//! only. Counters sum over the pool's current members.

use std::fmt;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use super::inference::{PoolLabels, PoolStats};
use crate::epp::kv_events::KvEventsStats;

type Pick = fn(&KvEventsStats) -> u64;

const GAUGES: [(&str, &str, Pick); 2] = [
    (
        "tollgate_epp_kv_events_fresh_endpoints",
        "Endpoints scored from their KV events (published within staleAfter)",
        |s| s.fresh as u64,
    ),
    (
        "tollgate_epp_kv_events_blocks",
        "Blocks the endpoints' KV events say they hold",
        |s| s.blocks as u64,
    ),
];

const COUNTERS: [(&str, &str, Pick); 4] = [
    (
        "tollgate_epp_kv_events_batches",
        "KV-event batches applied",
        |s| s.batches,
    ),
    (
        "tollgate_epp_kv_events_malformed",
        "KV-event messages dropped as malformed",
        |s| s.malformed,
    ),
    (
        "tollgate_epp_kv_events_gaps",
        "Jumps in KV-event sequence numbers (messages lost)",
        |s| s.gaps,
    ),
    (
        "tollgate_epp_kv_events_tokenize_failures",
        "Prompts that could not be tokenized (scored from the approximate index)",
        |s| s.tokenize_failures,
    ),
];

/// Encodes the families for the pools of `live` that read KV events.
pub(super) fn encode(
    encoder: &mut DescriptorEncoder,
    live: &[(String, PoolStats)],
) -> Result<(), fmt::Error> {
    let pools: Vec<(&String, &KvEventsStats)> = live
        .iter()
        .filter_map(|(name, s)| Some((name, s.kv_events.as_ref()?)))
        .collect();
    if pools.is_empty() {
        return Ok(());
    }
    for (kind, family) in [
        (MetricType::Gauge, &GAUGES[..]),
        (MetricType::Counter, &COUNTERS[..]),
    ] {
        for (name, help, value) in family {
            let mut f = encoder.encode_descriptor(name, help, None, kind)?;
            for (pool, stats) in &pools {
                let labels = PoolLabels {
                    name: (*pool).clone(),
                };
                let m = f.encode_family(&labels)?;
                match kind {
                    MetricType::Counter => ConstCounter::new(value(stats)).encode(m)?,
                    _ => ConstGauge::new(value(stats) as i64).encode(m)?,
                }
            }
        }
    }
    Ok(())
}
