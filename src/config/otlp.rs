//! `tracing`: OTLP export of a span per exchange (agentgateway's `config.tracing` keys:
//! `otlpEndpoint`, `otlpProtocol`, `randomSampling`, `clientSampling`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ConfigError;

/// Where spans go and which exchanges get one.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TracingConfig {
    /// The collector: `http://host:4317` for gRPC; for HTTP the traces URL
    /// (`http://host:4318/v1/traces`, the path added when the URL has none).
    pub otlp_endpoint: String,
    /// `grpc` (default) or `http` (protobuf over HTTP).
    #[serde(default)]
    pub otlp_protocol: OtlpProtocol,
    /// Which exchanges without a sampling decision of their own are traced: `true`
    /// (default: all), `false` (none), or a ratio (`0.1`).
    #[serde(default)]
    pub random_sampling: Sampling,
    /// Follow the sampled flag of the client's W3C `traceparent` when it sends one
    /// (default true).
    #[serde(default = "default_true")]
    pub client_sampling: bool,
}

fn default_true() -> bool {
    true
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum OtlpProtocol {
    #[default]
    Grpc,
    Http,
}

/// All, none, or a ratio.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Sampling {
    All(bool),
    Ratio(f64),
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling::All(true)
    }
}

impl Sampling {
    /// The share of exchanges traced, 0 to 1.
    pub fn ratio(self) -> f64 {
        match self {
            Sampling::All(true) => 1.0,
            Sampling::All(false) => 0.0,
            Sampling::Ratio(r) => r,
        }
    }
}

impl TracingConfig {
    /// Checks the values at `tracing`.
    pub fn check(&self) -> Result<(), ConfigError> {
        let uri: Result<http::Uri, _> = self.otlp_endpoint.parse();
        let ok = uri.as_ref().is_ok_and(|u| {
            matches!(u.scheme_str(), Some("http") | Some("https")) && u.host().is_some()
        });
        if !ok {
            return Err(ConfigError::field(
                "tracing.otlpEndpoint",
                format!("{:?} is not an http(s):// URL", self.otlp_endpoint),
            ));
        }
        if let Sampling::Ratio(r) = self.random_sampling {
            if !(0.0..=1.0).contains(&r) {
                return Err(ConfigError::field(
                    "tracing.randomSampling",
                    "must be true, false or a ratio from 0 to 1",
                ));
            }
        }
        Ok(())
    }

    /// The endpoint the exporter posts to: for HTTP, with `/v1/traces` when the URL
    /// has no path.
    pub fn export_url(&self) -> String {
        let trimmed = self.otlp_endpoint.trim_end_matches('/');
        match self.otlp_protocol {
            OtlpProtocol::Http if trimmed.matches('/').count() <= 2 => {
                format!("{trimmed}/v1/traces")
            }
            _ => self.otlp_endpoint.clone(),
        }
    }
}
