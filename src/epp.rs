//! The endpoint picker's domain: where the pool's endpoints come from (`discovery`),
//! what is scraped from model servers (`metrics`), the prefix-cache index (`hash`,
//! `prefix`), the reference default scheduler (`scheduler`) and the pool of endpoints
//! with its scraper (`pool`). Everything but `pool`'s scraper and `discovery`'s watchers
//! is pure and synchronous.

pub mod discovery;
pub mod hash;
pub mod metrics;
pub mod pool;
pub mod prefix;
pub mod scheduler;

pub use metrics::EndpointMetrics;
pub use pool::{Pool, PoolSpec};
pub use scheduler::{Candidate, Pick, Rng};
