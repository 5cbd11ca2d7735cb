//! The `extProc` policy: an external processing server (Envoy's ext_proc protocol) that
//! tollgate calls for each request of a route, as Envoy's ext_proc filter would
//! (agentgateway's `extProc` keys: `host`, `failureMode`; Envoy's `processing_mode` and
//! `message_timeout`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ConfigError, Duration, FailureMode};

/// The `extProc` policy.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExtProcPolicy {
    /// `host:port` of the ext_proc gRPC server (plaintext HTTP/2).
    pub host: String,
    /// What the server being unreachable, failing, or too slow does: `failClosed`
    /// (default, as Envoy: the request fails with 500, 504 for a timeout) or
    /// `failOpen` (the request goes on without the server).
    #[serde(default)]
    pub failure_mode: FailureMode,
    /// Longest wait for each answer of the server (Envoy's `message_timeout`).
    /// Default `200ms`, as Envoy's.
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    /// Which parts of the exchange the server gets.
    #[serde(default)]
    pub processing_mode: ProcessingMode,
}

fn default_timeout() -> Duration {
    Duration::from_millis(200)
}

/// Envoy's `ProcessingMode`: headers sent or skipped, bodies not sent, buffered whole,
/// or streamed chunk by chunk (one answer per chunk).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProcessingMode {
    #[serde(default)]
    pub request_header_mode: HeaderSendMode,
    #[serde(default)]
    pub response_header_mode: HeaderSendMode,
    #[serde(default)]
    pub request_body_mode: BodySendMode,
    #[serde(default)]
    pub response_body_mode: BodySendMode,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum HeaderSendMode {
    #[default]
    Send,
    Skip,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum BodySendMode {
    #[default]
    None,
    Buffered,
    Streamed,
}

impl ExtProcPolicy {
    /// Checks the values at `path` (`….policies.extProc`).
    pub fn check(&self, path: &str) -> Result<(), ConfigError> {
        let valid = self
            .host
            .rsplit_once(':')
            .is_some_and(|(name, port)| !name.is_empty() && port.parse::<u16>().is_ok());
        if !valid {
            return Err(ConfigError::field(
                format!("{path}.host"),
                format!("{:?} must be host:port", self.host),
            ));
        }
        if self.timeout.get().is_zero() {
            return Err(ConfigError::field(
                format!("{path}.timeout"),
                "must be more than 0",
            ));
        }
        Ok(())
    }
}
