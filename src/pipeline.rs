//! The transport-agnostic pipeline: one `Exchange` per HTTP exchange drives the route's
//! processors through the phases (request headers, body, trailers; response headers,
//! body, trailers) and turns their answers into verdicts that an adapter translates for
//! its transport. Nothing here knows tonic, hyper or protobuf.

mod body;
mod build;
mod ctx;
mod direction;
mod error;
mod exchange;
mod headers;
mod processor;
mod reply;
mod router;

pub use body::{Body, BodyMode, BodyOutput};
pub use build::header_name as header_name_at;
pub use build::{BuildCx, Pipeline, PipelineStore, Registry};
pub use ctx::{Adapter, Ctx, LlmFacts, Outcome, RequestHead};
pub use direction::Direction;
pub use error::ProcessorError;
pub use exchange::{Exchange, Verdict};
pub use headers::{HeaderDiff, Headers};
pub use processor::{Flow, Processor, ProcessorFactory};
pub use reply::LocalReply;
pub use router::{CompiledRoute, RouteSelector};

#[cfg(test)]
pub(crate) mod testing;
