//! The Envoy ext_proc adapter: a tonic `ExternalProcessor` service whose every gRPC
//! stream is one HTTP exchange. `stream` holds the per-stream state machine (every body
//! mode Envoy 1.40 can send), `convert` the protobuf translation, `service` the gRPC
//! server with its health service.

mod convert;
mod service;
mod stream;

pub use service::{serve, ExtProcService, GrpcServer};
pub use stream::{ExtProcStream, StreamError, MAX_STREAMED_CHUNK};
