//! The two transports that drive the pipeline: Envoy's ext_proc gRPC stream and the
//! standalone hyper proxy. Each translates its protocol into `Exchange` calls and the
//! verdicts back, and does nothing else.

pub mod ext_proc;
pub mod proxy;
