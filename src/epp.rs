//! The endpoint picker's domain: where the pool's endpoints come from (`discovery`),
//! what is scraped from model servers (`metrics`), the prefix-cache index (`hash`,
//! `prefix`; `kv_events`, the exact one fed by the model servers' KV-cache events),
//! this picker's in-flight load and observed latencies (`load`), scheduling
//! profiles — filters, scorers, pickers, the latency model and the saturation detector
//! (`scheduling`) — and the pool of endpoints with its membership, scraper and the pick
//! itself (`pool`), flow control's queues in front of a saturated pool (`flow`), and
//! prefill/decode disaggregation's roles and decider (`disagg`). Everything but
//! `pool`'s scraper, `discovery`'s watchers and `flow`'s waiting is
//! synchronous.

pub mod disagg;
pub mod discovery;
pub mod flow;
pub mod hash;
pub mod kv_events;
pub mod load;
pub mod metrics;
pub mod pool;
pub mod prefix;
pub mod scheduling;
mod stats;

pub use load::InFlight;
pub use metrics::{EndpointMetrics, Scrape};
pub use pool::{PickPolicy, PickRejection, PickRequest, Picked, Pool, PoolSpec, Prompt};
pub use scheduling::{Candidate, Rng};
