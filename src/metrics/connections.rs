//! Client-connection metrics of every listener (proxy binds, ext_proc, admin): open
//! connections, connections refused at the limit, timeouts that closed a connection or
//! ended a request, and accept errors. The `listener` label is set by the config
//! (`proxy:<port>`, `ext_proc`, `admin`), never by a client.

use std::sync::atomic::AtomicI64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    pub listener: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TimeoutLabels {
    pub listener: String,
    /// `first_byte`, `header_read`, `idle` or `body_progress`.
    pub timeout: &'static str,
}

pub struct ConnectionMetrics {
    pub active: Family<ListenerLabels, Gauge<i64, AtomicI64>>,
    pub refused: Family<ListenerLabels, Counter>,
    pub timeouts: Family<TimeoutLabels, Counter>,
    pub accept_errors: Family<ListenerLabels, Counter>,
}

impl ConnectionMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let active = Family::<ListenerLabels, Gauge<i64, AtomicI64>>::default();
        registry.register(
            "tollgate_connections_active",
            "Client connections open now, by listener",
            active.clone(),
        );
        let refused = Family::<ListenerLabels, Counter>::default();
        registry.register(
            "tollgate_connections_refused",
            "Client connections refused because the listener was at limits.connections",
            refused.clone(),
        );
        let timeouts = Family::<TimeoutLabels, Counter>::default();
        registry.register(
            "tollgate_connection_timeouts",
            "Connections closed (first_byte, header_read, idle) or requests ended \
             (body_progress) by a timeout, by listener",
            timeouts.clone(),
        );
        let accept_errors = Family::<ListenerLabels, Counter>::default();
        registry.register(
            "tollgate_accept_errors",
            "Failed accepts (e.g. out of file descriptors), by listener",
            accept_errors.clone(),
        );
        ConnectionMetrics {
            active,
            refused,
            timeouts,
            accept_errors,
        }
    }

    /// Counts a timeout on `listener`.
    pub fn timed_out(&self, listener: &str, timeout: &'static str) {
        self.timeouts
            .get_or_create(&TimeoutLabels {
                listener: listener.to_string(),
                timeout,
            })
            .inc();
    }
}
