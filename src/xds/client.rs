//! tollgate as an xDS client of another tollgate: a sidecar started with
//! `tollgate serve --from-xds HOST:PORT` subscribes over ADS (State-of-the-World) to one
//! `tollgate.config.v1.Config` resource by name and applies each new version as a
//! reload of its config file would be applied: valid and reloadable → ACK; otherwise
//! NACK with the reasons, and the running config stays.
//!
//! [`Follower::next`] connects, reconnects after a lost stream with exponential backoff
//! (100 ms doubling to 5 s, reset once a response arrives), and hands out only
//! versions it has not applied: after a reconnect the server's answer of the version
//! already running is ACKed without being applied again. While the server is away the
//! running config simply stays.

use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use envoy_types::pb::google::rpc::Status as RpcStatus;
use prost::Message;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

use super::resource::TollgateConfig;
use super::snapshot::TOLLGATE_CONFIG;

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Where a sidecar takes its config from.
#[derive(Clone, Debug)]
pub struct ClientSettings {
    /// `host:port` of the control plane's gRPC server.
    pub address: String,
    /// This tollgate's node id (per-node resources, `/xds` on the server).
    pub node: String,
    /// The `xds.configs` entry to follow.
    pub name: String,
}

/// A config version received and not yet answered.
#[derive(Debug)]
pub struct Pending {
    pub text: String,
    pub version: String,
    nonce: String,
}

struct Conn {
    tx: mpsc::Sender<DiscoveryRequest>,
    stream: Streaming<DiscoveryResponse>,
}

/// One subscription to a config, across reconnects.
pub struct Follower {
    settings: ClientSettings,
    conn: Option<Conn>,
    /// The version running now.
    applied: Option<String>,
    backoff: Duration,
}

impl Follower {
    pub fn new(settings: ClientSettings) -> Self {
        Follower {
            settings,
            conn: None,
            applied: None,
            backoff: FIRST_BACKOFF,
        }
    }

    fn request(&self, version: String, nonce: String, error: Option<String>) -> DiscoveryRequest {
        DiscoveryRequest {
            node: Some(Node {
                id: self.settings.node.clone(),
                cluster: "tollgate".into(),
                ..Default::default()
            }),
            type_url: TOLLGATE_CONFIG.into(),
            resource_names: vec![self.settings.name.clone()],
            version_info: version,
            response_nonce: nonce,
            error_detail: error.map(|message| RpcStatus {
                code: tonic::Code::InvalidArgument as i32,
                message,
                details: vec![],
            }),
            ..Default::default()
        }
    }

    async fn connect(&self) -> Result<Conn, String> {
        let endpoint =
            tonic::transport::Endpoint::from_shared(format!("http://{}", self.settings.address))
                .map_err(|e| e.to_string())?
                .connect_timeout(Duration::from_secs(2))
                .http2_keep_alive_interval(Duration::from_secs(30))
                .keep_alive_timeout(Duration::from_secs(10));
        let channel = endpoint.connect().await.map_err(|e| e.to_string())?;
        let (tx, rx) = mpsc::channel(4);
        let first = self.request(
            self.applied.clone().unwrap_or_default(),
            String::new(),
            None,
        );
        tx.send(first).await.map_err(|e| e.to_string())?;
        let stream = AggregatedDiscoveryServiceClient::new(channel)
            .stream_aggregated_resources(ReceiverStream::new(rx))
            .await
            .map_err(|s| s.message().to_string())?
            .into_inner();
        Ok(Conn { tx, stream })
    }

    /// The next version to apply; `None` once `stop` turns true.
    pub async fn next(&mut self, stop: &mut watch::Receiver<bool>) -> Option<Pending> {
        loop {
            if *stop.borrow() {
                return None;
            }
            let Some(conn) = self.conn.as_mut() else {
                match self.connect().await {
                    Ok(conn) => {
                        tracing::info!(server = %self.settings.address, name = %self.settings.name, "following a tollgate config over xDS");
                        self.conn = Some(conn);
                    }
                    Err(e) => self.wait_to_retry(&e, stop).await,
                }
                continue;
            };
            let received = tokio::select! {
                r = conn.stream.message() => r,
                _ = stop.changed() => return None,
            };
            let response = match received {
                Ok(Some(r)) => r,
                Ok(None) => {
                    self.conn = None;
                    self.wait_to_retry("the server closed the stream", stop)
                        .await;
                    continue;
                }
                Err(status) => {
                    self.conn = None;
                    self.wait_to_retry(status.message(), stop).await;
                    continue;
                }
            };
            self.backoff = FIRST_BACKOFF;
            let config = response
                .resources
                .iter()
                .filter(|a| a.type_url == TOLLGATE_CONFIG)
                .filter_map(|a| TollgateConfig::decode(a.value.as_slice()).ok())
                .find(|c| c.name == self.settings.name);
            match config {
                Some(c) if self.applied.as_deref() != Some(response.version_info.as_str()) => {
                    return Some(Pending {
                        text: c.yaml,
                        version: response.version_info,
                        nonce: response.nonce,
                    })
                }
                _ => {
                    let ack = self.request(response.version_info, response.nonce, None);
                    self.send(ack).await;
                }
            }
        }
    }

    /// Answers `pending`: applied (ACK) or refused for `error` (NACK, naming the
    /// version still running).
    pub async fn answer(&mut self, pending: Pending, result: Result<(), String>) {
        let request = match result {
            Ok(()) => {
                self.applied = Some(pending.version.clone());
                self.request(pending.version, pending.nonce, None)
            }
            Err(error) => {
                tracing::error!(version = %pending.version, error = %error, "config from xDS refused (NACK); the running config stays");
                self.request(
                    self.applied.clone().unwrap_or_default(),
                    pending.nonce,
                    Some(error),
                )
            }
        };
        self.send(request).await;
    }

    async fn send(&mut self, request: DiscoveryRequest) {
        if let Some(conn) = &self.conn {
            if conn.tx.send(request).await.is_err() {
                self.conn = None;
            }
        }
    }

    async fn wait_to_retry(&mut self, error: &str, stop: &mut watch::Receiver<bool>) {
        tracing::warn!(server = %self.settings.address, error = %error, retry_in = ?self.backoff, "xDS config server unreachable; the running config stays");
        tokio::select! {
            _ = tokio::time::sleep(self.backoff) => {}
            _ = stop.changed() => {}
        }
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }
}
