//! The gRPC server: the `ExternalProcessor` service (each response stream driving an
//! `ExtProcStream`), the `grpc.health.v1` service, TCP or Unix socket, optional TLS.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;

use envoy_types::pb::envoy::service::ext_proc::v3::{
    external_processor_server::{ExternalProcessor, ExternalProcessorServer},
    ProcessingRequest, ProcessingResponse,
};
use futures::Stream;
use tonic::{Request, Response, Status, Streaming};

use super::{ExtProcStream, StreamError};
use crate::config::ConnectionLimits;
use crate::listen::{Acceptor, Refusal};
use crate::metrics::{Metrics, ResultLabels};
use crate::pipeline::PipelineStore;

/// The ext_proc service over the current pipeline.
#[derive(Clone)]
pub struct ExtProcService {
    store: Arc<PipelineStore>,
}

impl ExtProcService {
    pub fn new(store: Arc<PipelineStore>) -> Self {
        ExtProcService { store }
    }
}

/// The one place a stream error becomes a gRPC status.
fn status(err: &StreamError) -> Status {
    match err {
        StreamError::Empty => Status::invalid_argument(err.to_string()),
        StreamError::OutOfOrder { .. } => Status::failed_precondition(err.to_string()),
    }
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<ProcessingResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ExternalProcessor for ExtProcService {
    type ProcessStream = ResponseStream;

    async fn process(
        &self,
        request: Request<Streaming<ProcessingRequest>>,
    ) -> Result<Response<Self::ProcessStream>, Status> {
        let pipeline = self.store.load();
        let guard = StreamGuard::new(pipeline.metrics.clone());
        let driver = Driver {
            inbound: request.into_inner(),
            machine: ExtProcStream::new(pipeline),
            pending: VecDeque::new(),
            done: false,
            guard,
        };
        // The response stream drives the state machine itself: no task per stream, and
        // when Envoy resets the stream tonic drops it, which drops the exchange (its
        // `on_complete` runs) — nothing can outlive the stream.
        let stream = futures::stream::unfold(driver, |mut d| async move {
            loop {
                if let Some(reply) = d.pending.pop_front() {
                    return Some((Ok(reply), d));
                }
                if d.done {
                    return None;
                }
                match d.inbound.message().await {
                    Ok(Some(msg)) => match d.machine.on_message(msg).await {
                        Ok(replies) => d.pending.extend(replies),
                        Err(err) => {
                            tracing::warn!(error = %err, "ext_proc protocol error");
                            d.done = true;
                            d.machine.end();
                            d.guard.ended("protocol_error");
                            return Some((Err(status(&err)), d));
                        }
                    },
                    Ok(None) => {
                        d.machine.end();
                        d.guard.ended("closed");
                        return None;
                    }
                    Err(status) => {
                        tracing::debug!(%status, "ext_proc stream reset");
                        d.machine.end();
                        d.guard.ended("reset");
                        return None;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

/// One stream's driving state.
struct Driver {
    inbound: Streaming<ProcessingRequest>,
    machine: ExtProcStream,
    pending: VecDeque<ProcessingResponse>,
    done: bool,
    guard: StreamGuard,
}

/// Counts a stream as active while it lives, and by how it ended when it goes
/// ("cancelled" unless something else was recorded: tonic dropped it).
struct StreamGuard {
    metrics: Arc<Metrics>,
    result: &'static str,
}

impl StreamGuard {
    fn new(metrics: Arc<Metrics>) -> Self {
        metrics.ext_proc_streams_active.inc();
        StreamGuard {
            metrics,
            result: "cancelled",
        }
    }

    fn ended(&mut self, result: &'static str) {
        self.result = result;
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.metrics.ext_proc_streams_active.dec();
        self.metrics
            .ext_proc_streams
            .get_or_create(&ResultLabels {
                result: self.result,
            })
            .inc();
    }
}

/// The ext_proc listener's acceptor, over TCP or a Unix socket alike: beyond the limit a
/// connection waits in the backlog (Envoy keeps a few long-lived connections and would
/// reconnect in a loop if refused).
fn stream_acceptor<L: crate::listen::Listen>(
    listener: L,
    max: std::num::NonZeroU32,
    metrics: &crate::metrics::Metrics,
) -> Acceptor<L> {
    Acceptor::new(listener, "ext_proc", max, Refusal::Hold, metrics)
}

/// What the gRPC server on `extProc.address` serves.
pub struct GrpcServer {
    pub store: Arc<PipelineStore>,
    /// `host:port`, or `unix:/path`.
    pub address: String,
    pub tls: Option<tonic::transport::ServerTlsConfig>,
    /// A second listener for gRPC health checks only.
    pub health_address: Option<String>,
    /// How long open streams may run on after the drain begins.
    pub grace: std::time::Duration,
    /// xDS for Envoy, when the config has `xds`.
    pub xds: Option<Arc<crate::xds::Xds>>,
}

/// Serves ext_proc and gRPC health (`""`, `liveness`, `readiness` and the ExternalProcessor
/// service, and xDS when configured) on the configured address until `shutdown` resolves. Readiness turns
/// NOT_SERVING first, then in-flight streams get until `grace` to finish.
pub async fn serve(
    server: GrpcServer,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ready: tokio::sync::oneshot::Sender<String>,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let GrpcServer {
        store,
        address,
        tls,
        health_address,
        grace,
        xds,
    } = server;
    let (reporter, health) = health_service().await;
    let (metrics, limits) = {
        let pipeline = store.load();
        let limits = pipeline.config().limits.connections.clone();
        (pipeline.metrics.clone(), limits)
    };
    let service = ExternalProcessorServer::new(ExtProcService::new(store))
        .max_decoding_message_size(64 * 1024 * 1024);
    // Keepalive pings close a connection whose peer vanished without a FIN.
    let mut builder = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(20)));
    if let Some(tls) = tls {
        builder = builder.tls_config(tls).context("ext_proc TLS config")?;
    }
    if let Some(addr) = health_address {
        spawn_health_listener(&addr, health.clone(), &limits, &metrics).await?;
    }
    let mut router = builder.add_service(health).add_service(service);
    if let Some(xds) = xds {
        let xds = crate::xds::services(xds);
        router = router
            .add_service(xds.ads)
            .add_service(xds.cds)
            .add_service(xds.eds)
            .add_service(xds.lds)
            .add_service(xds.rds)
            .add_service(xds.ecds);
        tracing::info!("xDS (ADS, CDS, EDS, LDS, RDS, ECDS) served on the ext_proc server");
    }
    let (drain_tx, drain_rx) = tokio::sync::oneshot::channel::<()>();
    let signal = drain_signal(shutdown, reporter, drain_tx);
    let serving = serve_on(router, address, &limits, &metrics, signal, ready);
    tokio::pin!(serving);
    tokio::select! {
        res = &mut serving => res,
        _ = async { let _ = drain_rx.await; tokio::time::sleep(grace).await } => {
            tracing::warn!("ext_proc streams still open after the grace period; closing them");
            Ok(())
        }
    }
}

/// The gRPC health service, every name serving: `""` and the processor service until
/// the drain, `liveness` while the process is up, `readiness` while it takes new
/// streams (the names endpoint-picker deployments probe).
async fn health_service() -> (
    tonic_health::server::HealthReporter,
    tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
) {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_serving::<ExternalProcessorServer<ExtProcService>>()
        .await;
    for name in ["", "liveness", "readiness"] {
        reporter
            .set_service_status(name, tonic_health::ServingStatus::Serving)
            .await;
    }
    (reporter, health)
}

/// Serves `health` alone on `extProc.healthAddress`, for as long as the process lives:
/// probes keep answering through the drain (readiness NOT_SERVING, liveness SERVING).
async fn spawn_health_listener(
    addr: &str,
    health: tonic_health::pb::health_server::HealthServer<
        impl tonic_health::pb::health_server::Health,
    >,
    limits: &ConnectionLimits,
    metrics: &Metrics,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding extProc.healthAddress {addr}"))?;
    tracing::info!(address = %listener.local_addr()?, "gRPC health listening");
    // Probes get the admin server's small limit, held in the backlog beyond it.
    let acceptor = Acceptor::new(
        listener,
        "ext_proc_health",
        limits.admin_max_connections,
        Refusal::Hold,
        metrics,
    );
    let incoming = crate::listen::incoming(acceptor);
    tokio::spawn(async move {
        if let Err(e) = tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming(incoming)
            .await
        {
            tracing::error!(error = %e, "gRPC health server failed");
        }
    });
    Ok(())
}

/// Resolves when `shutdown` does, after turning the processor service, `""` and
/// `readiness` NOT_SERVING; tells `drain` the drain began.
async fn drain_signal(
    shutdown: impl std::future::Future<Output = ()>,
    reporter: tonic_health::server::HealthReporter,
    drain: tokio::sync::oneshot::Sender<()>,
) {
    shutdown.await;
    reporter
        .set_not_serving::<ExternalProcessorServer<ExtProcService>>()
        .await;
    for name in ["", "readiness"] {
        reporter
            .set_service_status(name, tonic_health::ServingStatus::NotServing)
            .await;
    }
    let _ = drain.send(());
}

/// Binds `address` (`host:port` or `unix:/path`), sends the bound address on `ready` and
/// serves `router` until `signal` resolves and the streams end.
async fn serve_on(
    router: tonic::transport::server::Router,
    address: String,
    limits: &ConnectionLimits,
    metrics: &Metrics,
    signal: impl std::future::Future<Output = ()>,
    ready: tokio::sync::oneshot::Sender<String>,
) -> anyhow::Result<()> {
    use anyhow::Context;
    if let Some(path) = address.strip_prefix("unix:") {
        let _ = std::fs::remove_file(path);
        let listener = tokio::net::UnixListener::bind(path)
            .with_context(|| format!("binding ext_proc socket {path}"))?;
        let _ = ready.send(address.clone());
        let acceptor = stream_acceptor(listener, limits.max_connections, metrics);
        router
            .serve_with_incoming_shutdown(crate::listen::incoming(acceptor), signal)
            .await
            .context("ext_proc server")
    } else {
        let listener = tokio::net::TcpListener::bind(&address)
            .await
            .with_context(|| format!("binding ext_proc address {address}"))?;
        let _ = ready.send(listener.local_addr()?.to_string());
        let acceptor = stream_acceptor(listener, limits.max_connections, metrics);
        router
            .serve_with_incoming_shutdown(crate::listen::incoming(acceptor), signal)
            .await
            .context("ext_proc server")
    }
}
