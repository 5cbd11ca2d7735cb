//! A client of Envoy's ext_proc protocol: tollgate calling an external processing server
//! the way Envoy's ext_proc filter does — one bidirectional gRPC stream per HTTP
//! exchange, opened on its first message (which carries the `protocol_config`), one
//! `ProcessingRequest` per phase sent, and one `ProcessingResponse` awaited for each,
//! within the message timeout. A server that closes its stream cleanly is done with
//! the exchange: the rest proceeds without it (Envoy's rule).
//!
//! `convert` turns the pipeline's view of a phase into the protocol's messages, and
//! the server's mutations and immediate responses back.

pub mod convert;

use std::time::Duration;

use envoy_types::pb::envoy::service::ext_proc::v3::{
    external_processor_client::ExternalProcessorClient, ProcessingRequest, ProcessingResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

/// Why a call to the server failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("the ext_proc server {host} did not answer within {after:?}")]
    Timeout { host: String, after: Duration },
    #[error("the ext_proc server {host} failed: {reason}")]
    Failed { host: String, reason: String },
}

/// The connection to one ext_proc server, shared by every exchange of a config
/// snapshot (connected lazily, reconnected by tonic).
#[derive(Clone)]
pub struct ExtProcClient {
    client: ExternalProcessorClient<Channel>,
    host: String,
    timeout: Duration,
}

/// One exchange's stream.
pub struct ExtProcStream {
    tx: mpsc::Sender<ProcessingRequest>,
    rx: tonic::Streaming<ProcessingResponse>,
    host: String,
    timeout: Duration,
}

impl ExtProcClient {
    /// A client of the server at `host` (`host:port`, plaintext HTTP/2), waiting
    /// `timeout` for each answer and `connect_timeout` for a connection.
    pub fn new(host: &str, timeout: Duration, connect_timeout: Duration) -> Result<Self, String> {
        let endpoint = Endpoint::from_shared(format!("http://{host}"))
            .map_err(|e| format!("{host:?}: {e}"))?
            .connect_timeout(connect_timeout)
            .tcp_nodelay(true);
        Ok(ExtProcClient {
            client: ExternalProcessorClient::new(endpoint.connect_lazy()),
            host: host.to_string(),
            timeout,
        })
    }

    /// Opens an exchange's stream with its first message; the stream and the answer
    /// (`None`: the server closed the stream without one).
    pub async fn open(
        &self,
        first: ProcessingRequest,
    ) -> Result<(ExtProcStream, Option<ProcessingResponse>), CallError> {
        // Room for a phase's message and the next; a server that stops reading makes
        // the sender wait, within the timeout.
        let (tx, rx) = mpsc::channel(4);
        tx.send(first)
            .await
            .map_err(|_| self.failed("the stream closed"))?;
        let mut client = self.client.clone();
        let opened = tokio::time::timeout(self.timeout, client.process(ReceiverStream::new(rx)))
            .await
            .map_err(|_| self.timed_out())?
            .map_err(|status| self.failed(&status.to_string()))?;
        let mut stream = ExtProcStream {
            tx,
            rx: opened.into_inner(),
            host: self.host.clone(),
            timeout: self.timeout,
        };
        let answer = stream.receive().await?;
        Ok((stream, answer))
    }

    fn timed_out(&self) -> CallError {
        CallError::Timeout {
            host: self.host.clone(),
            after: self.timeout,
        }
    }

    fn failed(&self, reason: &str) -> CallError {
        CallError::Failed {
            host: self.host.clone(),
            reason: reason.to_string(),
        }
    }
}

impl ExtProcStream {
    /// Sends one phase's message and waits for the answer (`None`: the server closed
    /// the stream cleanly).
    pub async fn call(
        &mut self,
        message: ProcessingRequest,
    ) -> Result<Option<ProcessingResponse>, CallError> {
        let sent = tokio::time::timeout(self.timeout, self.tx.send(message)).await;
        match sent {
            Err(_) => return Err(self.timed_out()),
            Ok(Err(_)) => return Ok(None), // the server ended the stream
            Ok(Ok(())) => {}
        }
        self.receive().await
    }

    async fn receive(&mut self) -> Result<Option<ProcessingResponse>, CallError> {
        match tokio::time::timeout(self.timeout, self.rx.message()).await {
            Err(_) => Err(self.timed_out()),
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(status)) => Err(CallError::Failed {
                host: self.host.clone(),
                reason: status.to_string(),
            }),
        }
    }

    fn timed_out(&self) -> CallError {
        CallError::Timeout {
            host: self.host.clone(),
            after: self.timeout,
        }
    }
}
