//! Drives one xDS stream, SotW or Delta alike: reads the node from the first request,
//! registers the stream for `/xds`, then answers requests and config changes with the
//! protocol's state machine until the node goes away. Responses go through a bounded
//! channel, so a node that stops reading holds this task, not memory; config changes
//! meanwhile coalesce to the latest snapshot.

use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::Node;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use super::snapshot::{short_type, Delivery, Snapshot, PUSH_ORDER};
use super::status::{bounded_message, Nack, Registered};
use super::Xds;
use crate::metrics::{XdsTypeLabels, XdsVariantLabels};

/// Most resource names one request may carry (subscribe, unsubscribe and initial
/// versions together); Envoy asks for one per cluster or route configuration.
pub const MAX_NAMES: usize = 100_000;

/// Responses queued for a node before this stream waits for it to read.
const QUEUED_RESPONSES: usize = 8;

/// One xDS protocol variant's per-stream state machine.
pub trait Protocol: Default + Send + 'static {
    type Request: Send + 'static;
    type Response: Send + 'static;
    const VARIANT: &'static str;
    fn node(req: &Self::Request) -> Option<&Node>;
    /// The responses a request calls for, or the error that ends the stream.
    fn on_request(
        &mut self,
        req: Self::Request,
        snapshot: &Snapshot,
        cx: &StreamCx<'_>,
    ) -> Result<Vec<Self::Response>, Status>;
    /// The response for `type_url` if the node should get one now (`force`: its
    /// subscription changed, so it gets one even at the same version).
    fn respond(
        &mut self,
        type_url: &'static str,
        snapshot: &Snapshot,
        force: bool,
        cx: &StreamCx<'_>,
    ) -> Option<Self::Response>;

    /// The responses a new snapshot calls for, in push order.
    fn on_snapshot(&mut self, snapshot: &Snapshot, cx: &StreamCx<'_>) -> Vec<Self::Response> {
        PUSH_ORDER
            .iter()
            .filter_map(|t| self.respond(t, snapshot, false, cx))
            .collect()
    }

    /// The answer to a request for `type_url`, followed by what other types held back
    /// and may now send (an ACK may be what a held response waited for).
    fn answer(
        &mut self,
        type_url: &'static str,
        snapshot: &Snapshot,
        force: bool,
        cx: &StreamCx<'_>,
    ) -> Vec<Self::Response> {
        let mut out: Vec<_> = self
            .respond(type_url, snapshot, force, cx)
            .into_iter()
            .collect();
        for t in PUSH_ORDER.iter().filter(|t| **t != type_url) {
            out.extend(self.respond(t, snapshot, false, cx));
        }
        out
    }
}

/// What a state machine may read and record about its stream.
pub struct StreamCx<'a> {
    pub node: &'a str,
    variant: &'static str,
    /// The one type a per-type service serves; `None` for ADS.
    only: Option<&'static str>,
    xds: &'a Xds,
    registered: &'a Registered,
}

impl StreamCx<'_> {
    /// `type_url` as one of the served types, or the error for a request asking for
    /// another.
    pub fn known_type(&self, type_url: &str) -> Result<&'static str, Status> {
        let known = PUSH_ORDER.iter().find(|t| **t == type_url).copied();
        match (known, self.only) {
            (Some(t), None) => Ok(t),
            (Some(t), Some(only)) if t == only => Ok(t),
            (_, Some(only)) => {
                Err(self.reject(format!("this service serves {only}, not {type_url:?}")))
            }
            (None, None) => Err(self.reject(format!(
                "unknown type URL {type_url:?}: tollgate serves {}",
                PUSH_ORDER.join(", ")
            ))),
        }
    }

    /// Whether this stream carries every type (ADS), so a response may wait for the
    /// ACKs of what it needs on it. A per-type stream sees no other type's ACKs: its
    /// responses go out as they are (Envoy without ADS gives no order across types).
    pub fn orders_types(&self) -> bool {
        self.only.is_none()
    }

    /// The error for a request with more names than [`MAX_NAMES`].
    pub fn check_names(&self, n: usize) -> Result<(), Status> {
        if n > MAX_NAMES {
            return Err(self.reject(format!(
                "{n} resource names in one request; at most {MAX_NAMES}"
            )));
        }
        Ok(())
    }

    fn reject(&self, message: String) -> Status {
        self.xds
            .metrics
            .xds
            .rejected
            .get_or_create(&XdsVariantLabels {
                variant: self.variant,
            })
            .inc();
        tracing::warn!(node = %self.node, error = %message, "xDS request rejected; stream closed");
        Status::invalid_argument(message)
    }

    fn labels(&self, type_url: &str) -> XdsTypeLabels {
        XdsTypeLabels {
            variant: self.variant,
            r#type: short_type(type_url),
        }
    }

    /// Records a response sent.
    pub fn sent(&self, type_url: &str, version: &str, bytes: usize) {
        let labels = self.labels(type_url);
        self.xds.metrics.xds.responses.get_or_create(&labels).inc();
        self.xds
            .metrics
            .xds
            .response_bytes
            .get_or_create(&labels)
            .inc_by(bytes as u64);
        self.registered.update(short_type(type_url), |t| {
            t.sent_version = version.to_string();
            t.responses += 1;
        });
    }

    /// Records an ACK of `version`.
    pub fn ack(&self, type_url: &str, version: &str) {
        self.registered.update(short_type(type_url), |t| {
            t.acked_version = version.to_string()
        });
    }

    /// Records a NACK: the node kept `kept` and refused `refused` for `message`.
    pub fn nack(&self, type_url: &str, kept: &str, refused: &str, message: &str) {
        let labels = self.labels(type_url);
        self.xds.metrics.xds.nacks.get_or_create(&labels).inc();
        let message = bounded_message(message);
        tracing::warn!(node = %self.node, r#type = labels.r#type, refused_version = %refused, error = %message, "xDS NACK: the node keeps its last good version");
        self.registered.update(short_type(type_url), |t| {
            t.last_nack = Some(Nack {
                kept_version: kept.to_string(),
                refused_version: refused.to_string(),
                message,
                at: std::time::SystemTime::now(),
            })
        });
    }
}

/// Serves one stream of protocol `P`; `only` restricts it to one type (the per-type
/// services).
pub fn serve<P: Protocol>(
    xds: Arc<Xds>,
    inbound: Streaming<P::Request>,
    only: Option<&'static str>,
) -> ReceiverStream<Result<P::Response, Status>>
where
    P::Request: prost::Message + Default,
{
    let (tx, rx) = mpsc::channel(QUEUED_RESPONSES);
    tokio::spawn(async move {
        if let Err(status) = drive::<P>(xds, inbound, &tx, only).await {
            let _ = tx.send(Err(status)).await;
        }
    });
    ReceiverStream::new(rx)
}

/// `Err(())`: the node stopped reading.
async fn send_all<R>(tx: &mpsc::Sender<Result<R, Status>>, responses: Vec<R>) -> Result<(), ()> {
    for r in responses {
        tx.send(Ok(r)).await.map_err(|_| ())?;
    }
    Ok(())
}

async fn drive<P: Protocol>(
    xds: Arc<Xds>,
    mut inbound: Streaming<P::Request>,
    tx: &mpsc::Sender<Result<P::Response, Status>>,
    only: Option<&'static str>,
) -> Result<(), Status>
where
    P::Request: prost::Message + Default,
{
    let Some(first) = inbound.message().await? else {
        return Ok(());
    };
    let Some(node) = P::node(&first).cloned() else {
        xds.metrics
            .xds
            .rejected
            .get_or_create(&XdsVariantLabels {
                variant: P::VARIANT,
            })
            .inc();
        return Err(Status::invalid_argument(
            "the stream's first request carries no node",
        ));
    };
    let registered = xds
        .streams
        .register(node.id.clone(), node.cluster.clone(), P::VARIANT);
    let gauge = xds
        .metrics
        .xds
        .streams
        .get_or_create(&XdsVariantLabels {
            variant: P::VARIANT,
        })
        .clone();
    gauge.inc();
    let _open = scopeguard(move || {
        gauge.dec();
    });
    tracing::info!(node = %node.id, cluster = %node.cluster, variant = P::VARIANT, "xDS stream opened");
    let cx = StreamCx {
        node: &node.id,
        variant: P::VARIANT,
        only,
        xds: &xds,
        registered: &registered,
    };
    let delivery = match only {
        None => Delivery::Ads,
        Some(_) => Delivery::PerType {
            delta: P::VARIANT == "delta",
        },
    };
    let mut fleet = xds.subscribe();
    let mut snapshot = fleet.borrow_and_update().of(delivery).snapshot(&node.id);
    let mut proto = P::default();
    let responses = proto.on_request(first, &snapshot, &cx)?;
    if send_all(tx, responses).await.is_err() {
        return Ok(());
    }
    loop {
        let responses = tokio::select! {
            msg = inbound.message() => match msg {
                Ok(Some(req)) => proto.on_request(req, &snapshot, &cx)?,
                Ok(None) | Err(_) => break,
            },
            changed = fleet.changed() => {
                if changed.is_err() {
                    break;
                }
                snapshot = fleet.borrow_and_update().of(delivery).snapshot(&node.id);
                proto.on_snapshot(&snapshot, &cx)
            }
        };
        if send_all(tx, responses).await.is_err() {
            break;
        }
    }
    tracing::info!(node = %node.id, variant = P::VARIANT, "xDS stream closed");
    Ok(())
}

/// Runs `f` when dropped.
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f()
            }
        }
    }
    Guard(Some(f))
}

#[cfg(test)]
pub(super) mod testing {
    //! A [`StreamCx`] for the state machines' unit tests.
    use super::*;

    pub struct TestStream {
        pub xds: Arc<Xds>,
        pub registered: Registered,
    }

    impl TestStream {
        pub fn new() -> Self {
            let xds = Arc::new(Xds::new(Arc::new(crate::metrics::Metrics::new())));
            let registered = xds.streams.register("n".into(), "c".into(), "test");
            TestStream { xds, registered }
        }

        pub fn cx(&self) -> StreamCx<'_> {
            StreamCx {
                node: "n",
                variant: "test",
                only: None,
                xds: &self.xds,
                registered: &self.registered,
            }
        }
    }
}
