//! tollgate: AI-traffic processors for Envoy. One pipeline of processors, driven by two
//! transports — an Envoy ext_proc gRPC server and a standalone reverse proxy.

pub mod access_log;
pub mod adapters;
pub mod admin;
pub mod app;
pub mod auth;
pub mod config;
pub mod epp;
pub mod expr;
pub mod ext_proc_client;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod guard;
pub mod limits;
pub mod listen;
pub mod llm;
pub mod mcp;
pub mod metrics;
pub mod otlp;
pub mod outbound;
pub mod pipeline;
pub mod pricing;
pub mod processors;
pub mod redact;
pub mod services;
pub mod sim;
pub mod telemetry;
pub mod xds;
